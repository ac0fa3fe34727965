"""The Node.js example (examples/node/clip.mjs) against the Python runtime, through the shared test
vectors (tests/vectors.py) the Rust crate answers to as well: token ids, and pixels file by file for
every listed kind of image (`all_images`: PNG in every mode and depth, JPEG subsamplings, progressive,
grey, CMYK, EXIF-rotated, with ICC profiles; WebP, GIF, BMP, TIFF), each reported and each bit for bit;
every unlisted and bad image refused (kind unreadable_image, one line naming it); embeddings, logits and
probabilities within the float32 tolerance. Then the example's own node:test suites
(examples/node/test/*.test.mjs, also `npm test`) against the same vectors plus what `write_node_vectors`
adds: the integrity check (every file the graphs need, an external-data file included, refused after
one changed byte, by `loadModel` and the CLI; an untouched copy loads), the shared `bad_inputs` table
(each bad input an error of the kind Python and Rust give it, in one line naming the input), a sparse
file over 2 GiB hashed with bounded memory, token ids and `clean` against Python on every text (CLIP's
ftfy cleaning with ftfy-js, held to the shared `cleaning` sets: 10,663 texts), pixels bit for bit.

Vectors for running those suites by hand (or for the mutation run, docs in examples/node/test/README.md):
    .venv/bin/python -m tests.test_node_example /tmp/clip-node-vectors   # prints CLIP_ONNX_VECTORS=...

Needs Node.js and npm; skipped without them, except on CI (CI=true), where a skip would hide a broken
example. Installs the example's pinned packages with `npm ci` when node_modules is missing or stale."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from clip_onnx import preprocess, tokenizer
from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.verify import row_cosine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
FP32 = TOLERANCES["fp32"]
LARGE = 2**31 + 4096  # a sparse file over 2 GiB: past every 32-bit size and Buffer limit
SUITES = sorted(path.name for path in (EXAMPLE / "test").glob("*.test.mjs"))
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


@pytest.fixture(scope="module")
def vectors(installed, shared_vectors) -> dict:
    return json.loads(shared_vectors.read_text())


def _pixels(vectors: dict, tmp_path: Path, jobs: list[tuple[int, str]]) -> tuple[np.ndarray, dict, dict]:
    """(token ids of the vectors' texts, file -> Node's pixels per job, file -> error message)."""
    folder = vectors["exports"][0]["folder"]
    request = {"folder": folder, "texts": vectors["texts"],
               "pixels": [{"resolution": r, "file": f, "out": str(tmp_path / f"{i}.bin")} for i, (r, f) in enumerate(jobs)]}
    answer = json.loads(node("--input-type=module", "-e", PROBE, stdin=json.dumps(request)))
    found = {(r, f): np.fromfile(tmp_path / f"{i}.bin", dtype=np.float32) for i, (r, f) in enumerate(jobs)
             if f not in answer["errors"]}
    return np.array(answer["ids"]).reshape(len(vectors["texts"]), -1), found, answer["errors"]


def test_token_ids_and_pixels_equal_python_file_by_file(vectors, tmp_path):
    images, everything = vectors["images"], vectors["all_images"]
    jobs = [(int(r), f) for r in vectors["pixels"] for f in images] + [(224, f) for f in everything]
    ids, found, errors = _pixels(vectors, tmp_path, jobs)
    assert errors == {}, errors

    expected = np.fromfile(vectors["token_ids"], dtype=np.int32).reshape(ids.shape)
    changes = np.array(vectors["ftfy_changes"])
    # Every text must give Python's ids: clean() is ftfy.fix_text (ftfy-js) and the double HTML unescape,
    # those ftfy repairs and the HTML texts (which a consumer unescaping once gets wrong) among them.
    assert changes.any() and vectors["html_texts"]
    wrong = [text for text, a, b in zip(vectors["texts"], ids, expected) if (a != b).any()]
    assert wrong == [], f"{len(wrong)} of {len(ids)} texts get other ids than Python's: {wrong[:5]}"
    print(f"token ids: all {len(ids)} texts equal Python's ({int(changes.sum())} that ftfy changes, "
          f"{len(vectors['html_texts'])} HTML texts among them)")

    for resolution, file in vectors["pixels"].items():  # the PNGs at several sizes, upsampling included
        reference = np.fromfile(file, dtype=np.float32).reshape(len(images), -1)
        for n, image in enumerate(images):
            assert found[int(resolution), image].view(np.uint32).tobytes() == reference[n].view(np.uint32).tobytes(), (
                f"{image} at R={resolution}")
    reference = np.fromfile(vectors["all_pixels"], dtype=np.float32).reshape(len(everything), -1)
    report = []
    for n, image in enumerate(everything):
        difference = np.abs(found[224, image] - reference[n])
        name = Path(image).name
        report.append(f"{name}: " + ("bit-identical" if not difference.any() else
                                     f"{int((difference > 0).sum())} of {difference.size} values differ, "
                                     f"mean |diff| {difference.mean():.4f}, max {difference.max():.4f}"))
    print("\n".join(report))
    assert all(line.endswith("bit-identical") for line in report), report
    assert len(report) == len(everything) == len(set(everything))
    print(f"{len(everything)} files of every listed kind compared bit for bit at R=224, 0 skipped")


def test_unlisted_and_bad_images_are_refused(vectors, tmp_path):
    """Every file outside preprocess.json's list (format, TIFF kind) and every damaged one (empty, not an
    image, each format cut in half, over max_pixels): kind unreadable_image, one line naming the file."""
    refused = vectors["unlisted_images"] + vectors["bad_images"]
    _, found, errors = _pixels(vectors, tmp_path, [(224, f) for f in refused])
    assert found == {}, f"decoded where Python refuses: {sorted(f for _, f in found)}"
    wrong = {file: error for file, error in errors.items()
             if error["kind"] != "unreadable_image" or not error["message"].startswith(file) or "\n" in error["message"]}
    assert wrong == {} and len(errors) == len(refused)
    print("\n".join(error["message"] for error in errors.values()))
    print(f"{len(refused)} files refused ({len(vectors['unlisted_images'])} unlisted, {len(vectors['bad_images'])} bad), "
          f"each unreadable_image naming the file")


def test_cli_embeddings_match_python(vectors):
    folder = vectors["exports"][0]["folder"]
    images, texts = vectors["all_images"], vectors["embedded_texts"]
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
    folder = vectors["exports"][0]["folder"]
    images, texts = vectors["images"], vectors["embedded_texts"]
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
    [path] = [file for file in vectors["bad_images"] + vectors["unlisted_images"] if Path(file).name == name]
    result = subprocess.run(["node", "clip.mjs", vectors["exports"][0]["folder"], "--image", path, "--text", "a cat"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(path) and says in result.stderr, result.stderr


def write_node_vectors(shared: Path, root: Path) -> Path:
    """`root/node-vectors.json`: the shared vectors plus, under "node", what the example's node:test
    suites need beyond them: a copy of the first export whose visual graph keeps its weights in an
    external-data file (manifest updated to the new sizes and hashes), a sparse file over 2 GiB with
    the SHA-256 Python computes reading it as a stream, and `clip_onnx.tokenizer.clean` (ftfy, then
    `html.unescape` twice) of every text."""
    vectors = json.loads(Path(shared).read_text())
    root.mkdir(parents=True, exist_ok=True)
    copy = root / "external-data"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(vectors["exports"][0]["folder"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    visual = copy / manifest["graphs"]["visual"]["file"]
    data = visual.with_name(f"{visual.name}.data")
    onnx.save_model(onnx.load(str(visual)), str(visual), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name)  # tensors of 1 KiB and more: ORT must read small shape tensors inline
    manifest["graphs"]["visual"]["external_data"] = [data.name]
    for path in (visual, data):
        manifest["files"][path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))

    # Python's pixels where the vectors' own have no case: an image whose shorter side already is R (LA
    # and RGBA: Pillow does not resize, so nothing is premultiplied), sizes where both resampling pass
    # orders are candidates (height - h == 2 * (width - w)), and CMYK with black (Pillow's RGB->CMYK
    # writes K = 0 only)
    named = {Path(file).name: file for file in vectors["images"]}
    cmyk = root / "cmyk-black.jpg"  # a CMYK JPEG: CMYK TIFF is outside the list of files consumers read
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 4), dtype=np.uint8), mode="CMYK").save(cmyk, quality=95)
    extra = [(named["rgba.png"], 97), (named["la.png"], 45), (named["odd-rgb.png"], 36), (named["rgba.png"], 96),
             (named["la.png"], 44), (str(cmyk), 224), (str(cmyk), 40)]
    extra += [(str(path), 32) for path in _bmp_kinds(root, np.random.default_rng(2))]
    extra_pixels = [{"file": file, "resolution": r,
                     "pixels": str(_save_pixels(preprocess.load([file], r), root / f"extra-{n}.bin"))}
                    for n, (file, r) in enumerate(extra)]

    large = root / "large.bin"
    with open(large, "wb") as f:
        f.truncate(LARGE)
    vectors["node"] = {
        "external_data": str(copy),
        "large_file": {"path": str(large), "bytes": LARGE, "sha256": _sha256(large)},
        "extra_pixels": extra_pixels,
        "cleaned": {text: tokenizer.clean(text) for text in vectors["texts"]},
    }
    path = root / "node-vectors.json"
    path.write_text(json.dumps(vectors, indent=1, ensure_ascii=False))
    return path


def _bmp_kinds(root: Path, rng: np.random.Generator) -> list[Path]:
    """BMPs clip.mjs decodes itself beyond the shared vectors' (bottom-up 1, 8, 24, 32 bits with a colour
    palette): a grey palette (Pillow opens it as "L", so bicubic, not NEAREST), a two-colour 1-bit palette
    other than black and white ("P"), and top-down rows (a negative height) at 8, 24 and 32 bits."""
    made = []

    def save(name: str, image: Image.Image) -> Path:
        image.save(root / name)
        made.append(root / name)
        return root / name

    def top_down(source: Path, name: str) -> None:
        data = bytearray(source.read_bytes())
        offset, height = int.from_bytes(data[10:14], "little"), int.from_bytes(data[22:26], "little", signed=True)
        stride = (len(data) - offset) // height
        rows = [data[offset + stride * y: offset + stride * (y + 1)] for y in range(height)]
        data[offset:] = b"".join(reversed(rows))
        data[22:26] = (-height).to_bytes(4, "little", signed=True)
        (root / name).write_bytes(bytes(data))
        made.append(root / name)

    rgb = Image.fromarray(rng.integers(0, 256, (43, 61, 3), dtype=np.uint8))
    save("bmp-grey.bmp", rgb.convert("L"))
    two = bytearray(save("bmp-1-colours.bmp", rgb.convert("1")).read_bytes())
    two[54:62] = bytes([200, 30, 10, 0, 20, 180, 90, 0])  # the palette: two colours, not black and white
    (root / "bmp-1-colours.bmp").write_bytes(bytes(two))
    for bits, image in (("8", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)), ("24", rgb), ("32", rgb.convert("RGBA"))):
        top_down(save(f"bmp-{bits}.bmp", image), f"bmp-{bits}-top-down.bmp")
    for path in made:  # what each is to Pillow, so the file tests what it says
        with Image.open(path) as image:
            image.load()
    return made


def _save_pixels(array: np.ndarray, path: Path) -> Path:
    np.ascontiguousarray(array, dtype=np.float32).tofile(path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def node_vectors(vectors, shared_vectors, tmp_path_factory) -> Path:
    return write_node_vectors(shared_vectors, tmp_path_factory.mktemp("node-vectors"))


@pytest.mark.parametrize("suite", SUITES)
def test_node_suite(node_vectors, suite):
    """One of examples/node/test/*.test.mjs with `node --test`: every test must run (none skipped) and pass."""
    result = subprocess.run(["node", "--test", "--test-reporter=tap", f"test/{suite}"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CLIP_ONNX_VECTORS": str(node_vectors)})
    counts = {key: int(value) for key, value in re.findall(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$",
                                                            result.stdout, re.MULTILINE)}
    print(result.stdout[-4000:])
    assert result.returncode == 0, f"node --test test/{suite} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert counts.get("pass", 0) > 0 and counts["pass"] == counts["tests"], counts


if __name__ == "__main__":
    # python -m tests.test_node_example OUT: the shared vectors and the Node suites' own, for `npm test`
    # or the mutation run by hand.
    from tests import vectors as shared_module

    out = Path(sys.argv[1]).resolve()
    print(f"CLIP_ONNX_VECTORS={write_node_vectors(shared_module.write(out / 'shared'), out / 'node')}")
