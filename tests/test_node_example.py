"""The Node.js example (examples/node/clip.mjs) against the Python runtime, through the committed
conformance artifact (tests/conformance/vectors.json, written by `python -m tests.conformance`) the Rust
crate answers to as well: token ids, and pixels file by file for every listed kind of image
(`all_images`: PNG in every mode and depth, JPEG subsamplings, progressive, grey, CMYK, EXIF-rotated,
with ICC profiles; WebP, GIF, BMP, TIFF), each reported and each hashed to the SHA-256 of Python's
pixels; every unlisted and bad image refused (kind unreadable_image, one line naming it); embeddings,
logits and probabilities within the float32 tolerance. Then the example's own node:test suites
(examples/node/test/*.test.mjs, `npm test`) against the same artifact, with no environment variable:
pixels, token ids and embeddings (each suite printing how many cases ran, none skipped), the integrity
check (every file the graphs need, an external-data file included, refused after one changed byte, by
`loadModel` and the CLI; an untouched copy loads), the shared `bad_inputs` table (each bad input an error
of the kind Python and Rust give it, in one line naming the input), a sparse file over 2 GiB hashed
with bounded memory, `clean` against Python on the `cleaning` sets (CLIP's ftfy cleaning with ftfy-js:
10,663 texts).

Needs Node.js and npm; skipped without them, except on CI (CI=true), where a skip would hide a broken
example. Installs the example's pinned packages with `npm ci` when node_modules is missing or stale."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.verify import row_cosine
from tests.conformance import COMMITTED, pixel_cases

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
VECTORS = COMMITTED / "vectors.json"
FP32 = TOLERANCES["fp32"]  # Node and Python run the same graphs: float32's tolerance, whatever the export's precision
SUITES = sorted(path.name for path in (EXAMPLE / "test").glob("*.test.mjs"))
# The count line each of these suites prints (t.diagnostic): every case of the artifact ran, none differs.
COUNTS = {"pixels.test.mjs": r"\d+ pixel cases ran, 0 differ, 0 skipped", "tokens.test.mjs": r"\d+ token cases ran, 0 differ, 0 skipped",
          "embeddings.test.mjs": r"\d+ embedding cases ran, 0 skipped"}
# Token ids and pixels through the library functions, pixels one file at a time (an error is that
# file's result), at a given resolution.
PROBE = """
import { readFileSync, writeFileSync } from "node:fs";
import { loadModel, pixels, tokenize } from "./clip.mjs";
const request = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModel(request.folder);
const errors = {};
for (const { resolution, file, out } of request.pixels) {
  const preprocess = { ...model.preprocess, resolution };
  try { writeFileSync(out, await pixels({ ...model, preprocess }, [file])); } catch (error) { errors[file] = { kind: error.kind, message: error.message }; }
}
console.log(JSON.stringify({ ids: Array.from(tokenize(model, request.texts, { truncate: true })), errors }));
"""


def node(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["node", *args], cwd=EXAMPLE, input=stdin, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"node {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not on PATH: the Node.js example needs Node.js 20.19+ with npm"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run this test, so install Node.js in the workflow")
        pytest.skip(message)
    # npm writes node_modules/.package-lock.json on every install: older than the lock file means stale.
    installed_lock = EXAMPLE / "node_modules" / ".package-lock.json"
    if not installed_lock.is_file() or installed_lock.stat().st_mtime < (EXAMPLE / "package-lock.json").stat().st_mtime:
        # The CPU binaries ship inside onnxruntime-node; the variable skips its download of CUDA extras.
        # --omit=dev: the mutation tool (StrykerJS) is not needed to test.
        result = subprocess.run(["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
                                env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}, timeout=600)
        assert result.returncode == 0, f"npm ci in {EXAMPLE} failed:\n{result.stderr[-3000:]}"


def at(relative: str) -> str:
    """A path of vectors.json, relative to its folder, as an absolute one."""
    return str(VECTORS.parent / relative)


@pytest.fixture(scope="module")
def vectors(installed) -> dict:
    return json.loads(VECTORS.read_text())


def _pixels(vectors: dict, tmp_path: Path, jobs: list[tuple[int, str]]) -> tuple[np.ndarray, dict, dict]:
    """(token ids of the vectors' texts, (R, file) -> SHA-256 of Node's pixels, file -> error); files absolute."""
    request = {"folder": at(vectors["exports"][0]["folder"]), "texts": vectors["texts"],
               "pixels": [{"resolution": r, "file": f, "out": str(tmp_path / f"{i}.bin")} for i, (r, f) in enumerate(jobs)]}
    answer = json.loads(node("--input-type=module", "-e", PROBE, stdin=json.dumps(request)))
    found = {(r, f): hashlib.sha256((tmp_path / f"{i}.bin").read_bytes()).hexdigest() for i, (r, f) in enumerate(jobs)
             if f not in answer["errors"]}
    return np.array(answer["ids"]).reshape(len(vectors["texts"]), -1), found, answer["errors"]


def test_token_ids_and_pixels_equal_python_file_by_file(vectors, tmp_path):
    """Each case's pixels hash to the SHA-256 of Python's float32 [3, R, R] (little-endian, as Node writes
    a Float32Array here): the PNGs at every resolution, every listed kind of file at 224, the JPEG and
    `more_pixels`."""
    cases = [(r, at(f), sha) for f, r, sha in pixel_cases(vectors)]
    ids, found, errors = _pixels(vectors, tmp_path, [(r, f) for r, f, _ in cases])
    assert errors == {}, errors

    expected = np.fromfile(at(vectors["token_ids"]), dtype=np.int32).reshape(ids.shape)
    changes = np.array(vectors["ftfy_changes"])
    # Every text must give Python's ids: clean() is ftfy.fix_text (ftfy-js) and the double HTML unescape,
    # those ftfy repairs and the HTML texts (which a consumer unescaping once gets wrong) among them.
    assert changes.any() and vectors["html_texts"]
    wrong = [text for text, a, b in zip(vectors["texts"], ids, expected) if (a != b).any()]
    assert wrong == [], f"{len(wrong)} of {len(ids)} texts get other ids than Python's: {wrong[:5]}"
    print(f"token ids: all {len(ids)} texts equal Python's ({int(changes.sum())} that ftfy changes, "
          f"{len(vectors['html_texts'])} HTML texts among them)")

    report = [f"{Path(f).relative_to(VECTORS.parent)} at R={r}: " + ("bit-identical" if found[r, f] == sha else "differs")
              for r, f, sha in cases]
    print("\n".join(report))
    assert all(line.endswith("bit-identical") for line in report), [line for line in report if line.endswith("differs")]
    assert set(found) == {(r, f) for r, f, _ in cases}  # the PNGs at 224 are in `pixels` and `all_images` alike
    print(f"{len(cases)} pixel cases compared bit for bit ({len(vectors['all_images'])} files of every listed kind at R=224), 0 skipped")


def test_unlisted_and_bad_images_are_refused(vectors, tmp_path):
    """Every file outside preprocess.json's list (format, TIFF kind) and every damaged one (empty, not an
    image, each format cut in half, over max_pixels): kind unreadable_image, one line naming the file."""
    refused = [at(f) for f in vectors["unlisted_images"] + vectors["bad_images"]]
    _, found, errors = _pixels(vectors, tmp_path, [(224, f) for f in refused])
    assert found == {}, f"decoded where Python refuses: {sorted(f for _, f in found)}"
    wrong = {file: error for file, error in errors.items()
             if error["kind"] != "unreadable_image" or not error["message"].startswith(file) or "\n" in error["message"]}
    assert wrong == {} and len(errors) == len(refused)
    print("\n".join(error["message"] for error in errors.values()))
    print(f"{len(refused)} files refused ({len(vectors['unlisted_images'])} unlisted, {len(vectors['bad_images'])} bad), "
          f"each unreadable_image naming the file")


def test_cli_embeddings_match_python(vectors):
    folder = at(vectors["exports"][0]["folder"])
    images, texts = [at(f) for f in vectors["all_images"]], vectors["embedded_texts"]
    args = [folder, "--truncate", "--json"]
    for image in images:
        args += ["--image", image]
    for text in texts:
        args += ["--text", text]
    result = json.loads(node("clip.mjs", *args))
    actual = {key: np.array(value, dtype=np.float32) for key, value in result.items()}

    model = Model(folder)
    expected_images = model.encode_image(images)
    expected_texts = model.encode_text(texts, truncate=True)
    # The comparison can fail: different inputs (the four photographs) are far further apart than the tolerance.
    for embeds in (expected_images[:4], expected_texts):
        unit = embeds / np.linalg.norm(embeds, axis=1, keepdims=True)
        assert (unit @ unit.T)[~np.eye(len(unit), dtype=bool)].max() < MAX_INPUT_COSINE

    for js, reference in ((actual["image_embeds"], expected_images), (actual["text_embeds"], expected_texts)):
        assert js.shape == reference.shape
        assert row_cosine(js, reference) >= FP32.min_cosine
        assert np.abs(js - reference).max() <= FP32.max_relative * np.abs(reference).max()
    expected_logits, _ = logits(expected_images, expected_texts, model.logit_scale)
    assert np.abs(actual["logits_per_image"] - expected_logits).max() <= FP32.max_relative * model.logit_scale


PROBABILITIES = """
import { readFileSync } from "node:fs";
import { encodeImage, encodeText, loadModel, probabilities } from "./clip.mjs";
const { folder, images, texts } = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModel(folder);
const [imageEmbeds, textEmbeds] = [await encodeImage(model, images), await encodeText(model, texts, { truncate: true })];
let none;
try { probabilities(model, imageEmbeds, []); } catch (error) { none = { kind: error.kind, message: error.message }; }
console.log(JSON.stringify({ probabilities: probabilities(model, imageEmbeds, textEmbeds), none }));
"""


def test_probabilities_match_python(vectors):
    """`probabilities` (per image, the softmax over the texts) against `Model.probabilities`; no texts is
    a usage error, as in Python."""
    folder = at(vectors["exports"][0]["folder"])
    images, texts = [at(f) for f in vectors["images"]], vectors["embedded_texts"]
    answer = json.loads(node("--input-type=module", "-e", PROBABILITIES,
                             stdin=json.dumps({"folder": folder, "images": images, "texts": texts})))
    model = Model(folder)
    expected = model.probabilities(images, texts, truncate=True)
    actual = np.array(answer["probabilities"])
    assert actual.shape == expected.shape == (len(images), len(texts))
    assert np.allclose(actual.sum(axis=1), 1)
    # a logit off by d moves a probability by at most d / 2: the logits' float32 tolerance bounds both
    assert np.abs(actual - expected).max() <= FP32.max_relative * model.logit_scale
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert answer["none"] == {"kind": "usage", "message": "probabilities over no texts: give at least one label"}
    with pytest.raises(Exception, match="probabilities over no texts") as raised:
        model.probabilities(images, [])
    assert raised.value.kind == "usage"
    print(f"probabilities: {actual.shape[0]} images x {actual.shape[1]} texts, max |diff| {np.abs(actual - expected).max():.2e}")


@pytest.mark.parametrize("name,says", [
    ("empty.png", "is an empty file"),
    ("text.png", "is not an image format clip.mjs reads (PNG, JPEG, WEBP, GIF, BMP, TIFF"),
    ("truncated-chelsea.jpg", ": this JPEG file cannot be decoded"),
    ("truncated-bmp-24.bmp", ": this BMP file cannot be decoded"),
    ("icon.ico", "is in the ICO format; clip.mjs reads PNG, JPEG, WEBP, GIF, BMP, TIFF"),
    ("tiff-cmyk.tiff", "is a TIFF of mode CMYK"),
    ("over-the-limit.png", "more than preprocess.json's input.max_pixels (178956970)"),
])
def test_a_bad_file_is_one_line_naming_it(vectors, name, says):
    [path] = [at(file) for file in vectors["bad_images"] + vectors["unlisted_images"] if Path(file).name == name]
    result = subprocess.run(["node", "clip.mjs", at(vectors["exports"][0]["folder"]), "--image", path, "--text", "a cat"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(path) and says in result.stderr, result.stderr


@pytest.mark.parametrize("suite", SUITES)
def test_node_suite(installed, suite):
    """One of examples/node/test/*.test.mjs with `node --test`, as `npm test` runs it: on the committed
    artifact (CLIP_ONNX_VECTORS unset), every test must run (none skipped) and pass, and the pixel,
    token and embedding suites must print that every case of theirs ran."""
    env = {key: value for key, value in os.environ.items() if key != "CLIP_ONNX_VECTORS"}
    result = subprocess.run(["node", "--test", "--test-reporter=tap", f"test/{suite}"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=600, env=env)
    counts = {key: int(value) for key, value in re.findall(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$",
                                                            result.stdout, re.MULTILINE)}
    print(result.stdout[-4000:])
    assert result.returncode == 0, f"node --test test/{suite} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert counts.get("pass", 0) > 0 and counts["pass"] == counts["tests"] and counts["skipped"] == 0, counts
    if suite in COUNTS:
        assert re.search(rf"^# {COUNTS[suite]}", result.stdout, re.MULTILINE), f"{suite} printed no count line"
