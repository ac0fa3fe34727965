"""The Node.js example (examples/node/clip.mjs) against the Python runtime. Its own node:test suites
(examples/node/test/*.test.mjs, what `npm test` runs, one pytest test per file) hold it to the committed
conformance artifact (tests/conformance/vectors.json, written by `python -m tests.conformance`) the Rust
crate answers to as well, and each prints how many of the artifact's cases ran; asserted here, number for
number: pixels file by file for every listed kind of image (bit for bit), every unlisted and bad image
refused, token ids and CLIP's ftfy cleaning (10,663 texts), embeddings within the export's tolerance, the
shared `bad_inputs` table (each bad input an error of the kind Python and Rust give it, in one line naming
the input), partial folders (one encoder's files only: it encodes as the whole folder does and refuses
the other encoder's input, `missing_file`), and download() from the loopback Hub (tests/loopback_hub.py,
the export released by tests/released_hub.py, intact, tampered and moved, and downloadRelease() by the
release table it pins), served here through
`CLIP_ONNX_TEST_HUB` so that those cases run, none skipped. Beside them, the integrity check (every file a
graph needs, external data included, refused after one changed byte, by the API and the CLI) and a
sparse file over 2 GiB hashed with bounded memory. Here too: the CLI's embeddings and logits and
`probabilities` against a live `clip_onnx` `Model`, and the CLI's one-line refusals of bad images.

Needs Node.js and npm; skipped without them, except on CI (CI=true), where a skip would hide a broken
example. Installs the example's pinned packages with `npm ci` when node_modules is missing or stale."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.verify import row_cosine
from tests.conformance import COMMITTED, pixel_cases
from tests.loopback_hub import LoopbackHub
from tests.released_hub import serve
from tests.tools import required

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
VECTORS = COMMITTED / "vectors.json"
FP32 = TOLERANCES["fp32"]  # Node and Python run the same graphs: float32's tolerance, whatever the export's precision
SUITES = sorted(path.name for path in (EXAMPLE / "test").glob("*.test.mjs"))
# The cases download.test.mjs runs against the loopback Hub (text-only, every file, tampered, kept or
# replaced; by the release table: intact, moved, a pin differing).
HUB_CASES = 7


def count_lines(vectors: dict) -> dict[str, list[str]]:
    """The count lines (t.diagnostic) each suite must print: every case of the artifact ran, none differs."""
    cleaning = json.loads((COMMITTED / vectors["cleaning"]["file"]).read_text())["sets"]
    bad_inputs = [case for case in vectors["bad_inputs"] if case["call"] != "cli"]
    return {
        "pixels.test.mjs": [f"{len(pixel_cases(vectors))} pixel cases ran, 0 differ, 0 skipped",
                            f"{len(vectors['unlisted_images']) + len(vectors['bad_images'])} files refused"],
        "tokens.test.mjs": [f"{len(vectors['texts'])} token cases ran, 0 differ, 0 skipped"],
        "cleaning.test.mjs": [f"{name}: {len(texts)} texts, 0 cleaned differ, 0 ids differ" for name, texts in cleaning.items()],
        "embeddings.test.mjs": [f"{len(vectors['images']) + len(vectors['embedded_texts'])} embedding cases ran, 0 skipped"],
        "bad-inputs.test.mjs": [f"{len(bad_inputs)} bad-input cases ran, 0 differ, 0 skipped"],
        "partial-folders.test.mjs": [f"{len(vectors['partial_folders'])} partial-folder cases ran, 0 skipped"],
        "download.test.mjs": [f"{HUB_CASES} hub download cases ran, 0 skipped"],
    }


def node(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["node", *args], cwd=EXAMPLE, input=stdin, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"node {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed() -> None:
    required("node", "npm", purpose="the Node.js example needs Node.js 20.19+ with npm")
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


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    """The loopback Hub serving the export's release, intact, tampered and moved, and the release table
    pinning the intact one, as CLIP_ONNX_TEST_HUB's JSON."""
    with LoopbackHub() as served:
        yield json.dumps(serve(served))


@pytest.mark.parametrize("suite", SUITES)
def test_node_suite(installed, vectors, hub, suite):
    """One of examples/node/test/*.test.mjs with `node --test`, as `npm test` runs it: on the committed
    artifact (CLIP_ONNX_VECTORS unset), with the loopback Hub served, every test must run (none skipped)
    and pass, and each suite that counts its cases must print that every case of the artifact ran."""
    env = {key: value for key, value in os.environ.items() if key not in ("CLIP_ONNX_VECTORS", "HF_ENDPOINT", "HF_TOKEN")}
    env["CLIP_ONNX_TEST_HUB"] = hub
    result = subprocess.run(["node", "--test", "--test-reporter=tap", f"test/{suite}"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=600, env=env)
    counts = {key: int(value) for key, value in re.findall(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$",
                                                            result.stdout, re.MULTILINE)}
    print(result.stdout[-4000:])
    assert result.returncode == 0, f"node --test test/{suite} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert counts.get("pass", 0) > 0 and counts["pass"] == counts["tests"] and counts["skipped"] == 0, counts
    for line in count_lines(vectors).get(suite, []):
        assert re.search(rf"^# {re.escape(line)}", result.stdout, re.MULTILINE), f"{suite} printed no line {line!r}"


def test_every_counting_suite_is_run():
    """The suites count_lines expects are the files there: a renamed suite does not drop its counts unseen."""
    expected = count_lines(json.loads(VECTORS.read_text()))
    assert set(expected) <= set(SUITES), sorted(set(expected) - set(SUITES))
