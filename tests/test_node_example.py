"""The Node.js example (examples/node/clip.mjs) against the Python runtime on one tiny-ViT export:
token ids and PNG pixels bit for bit, embeddings and logits within the float32 tolerance.

Needs Node.js and npm; skipped without them, except on CI (CI=true), where a skip would hide a broken
example. Installs the example's pinned packages with `npm ci` when node_modules is missing or stale."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from clip_onnx import preprocess, tokenizer
from exporter import pipeline
from clip_onnx.errors import ClipOnnxError
from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.variants import get_variant
from exporter.verify import row_cosine
from exporter.weights import random_weights

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
CORPUS = Path(__file__).resolve().parent / "data" / "tokenizer_corpus.jsonl"
FP32 = TOLERANCES["fp32"]
LONG_TEXT = " ".join(["a very long caption"] * 30)  # 120 words: truncated to 75 tokens + start + end
TEXTS = ["a photo of an astronaut", "a cat", "Café &amp; CRÈME brûlée", "東京の夜景 🚀", "naïve façade 😺🎉", "",
         LONG_TEXT]
# Token ids and pixels through the library functions; the resolutions besides the export's own
# exercise the resampler on more sizes (upsampling included) without another export.
PROBE = """
import { readFileSync, writeFileSync } from "node:fs";
import { loadModel, pixels, tokenize } from "./clip.mjs";
const request = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModel(request.folder);
for (const [resolution, file] of Object.entries(request.pixels)) {
  const preprocess = { ...model.preprocess, resolution: Number(resolution) };
  writeFileSync(file, pixels({ ...model, preprocess }, request.images));
}
console.log(JSON.stringify(Array.from(tokenize(model, request.texts, { truncate: true }))));
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
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
                                env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}, timeout=600)
        assert result.returncode == 0, f"npm ci in {EXAMPLE} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def case(installed, tmp_path_factory):
    """A tiny-ViT export (the two encoder graphs) and PNG files: photos, a grey one, an odd-sized one, RGBA."""
    root = tmp_path_factory.mktemp("node")
    folder = pipeline.export(random_weights(get_variant("tiny-ViT"), seed=0), "tiny-ViT", root,
                             graphs=["visual", "transformer"], verify=False, log=lambda _: None)
    rng = np.random.default_rng(0)
    arrays = {name: getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "camera")}
    arrays["odd"] = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    arrays["rgba"] = rng.integers(0, 256, (97, 131, 4), dtype=np.uint8)
    images = []
    for name, array in arrays.items():
        Image.fromarray(array).save(root / f"{name}.png")
        images.append(root / f"{name}.png")
    return folder, images


def test_token_ids_and_pixels_equal_python(case, tmp_path):
    folder, images = case
    corpus = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    texts = TEXTS + corpus
    pixel_files = {resolution: tmp_path / f"{resolution}.bin" for resolution in (32, 224, 301)}
    request = {"folder": str(folder), "texts": texts, "images": [str(p) for p in images],
               "pixels": {r: str(f) for r, f in pixel_files.items()}}
    ids = np.array(json.loads(node("--input-type=module", "-e", PROBE, stdin=json.dumps(request))))
    ids = ids.reshape(len(texts), -1)

    model = Model(folder)
    expected = tokenizer.encode(model.tokenizer, texts, truncate=True)
    assert ids.shape == expected.shape == (len(texts), 77)
    with pytest.raises(ClipOnnxError, match="too long"):
        tokenizer.encode(model.tokenizer, [LONG_TEXT])  # so the long text does test truncation
    # The JavaScript side has no ftfy: where ftfy.fix_text changes the ids, the JS ids may be those
    # of the text without it (HTML unescaping only) or, where JavaScript's wider whitespace (\s and
    # trim() include U+FEFF) happens to do ftfy's work, Python's.
    unfixed = np.array([e.ids for e in model.tokenizer.encode_batch([html.unescape(html.unescape(t)) for t in texts])])
    ftfy_changes = (unfixed != expected).any(axis=1)
    assert not ftfy_changes[: len(TEXTS)].any() and ftfy_changes.sum() < len(corpus) // 5
    equal = (ids == expected).all(axis=1) | (ftfy_changes & (ids == unfixed).all(axis=1))
    mismatched = [texts[i] for i in np.flatnonzero(~equal)]
    assert mismatched == [], f"JS token ids differ from Python's for {mismatched[:10]}"

    for resolution, file in pixel_files.items():
        actual = np.fromfile(file, dtype=np.float32).reshape(len(images), 3, resolution, resolution)
        reference = preprocess.load(images, resolution)
        assert actual.view(np.uint32).tobytes() == reference.view(np.uint32).tobytes(), f"pixels differ at R={resolution}"


def test_cli_embeddings_match_python(case, tmp_path):
    folder, images = case
    jpeg = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage.data.chelsea()).save(jpeg, quality=90)
    args = [str(folder), "--truncate", "--json"]
    for image in [*images, jpeg]:
        args += ["--image", str(image)]
    for text in TEXTS:
        args += ["--text", text]
    result = json.loads(node("clip.mjs", *args))
    actual = {key: np.array(value, dtype=np.float32) for key, value in result.items()}

    model = Model(folder)
    expected_images = model.encode_image(images)
    expected_texts = model.encode_text(TEXTS, truncate=True)
    # The comparison can fail: different inputs are far further apart than the tolerance.
    for embeds in (expected_images, expected_texts):
        unit = embeds / np.linalg.norm(embeds, axis=1, keepdims=True)
        assert (unit @ unit.T)[~np.eye(len(unit), dtype=bool)].max() < MAX_INPUT_COSINE

    png = actual["image_embeds"][: len(images)]
    for js, reference in ((png, expected_images), (actual["text_embeds"], expected_texts)):
        assert js.shape == reference.shape
        assert row_cosine(js, reference) >= FP32.min_cosine
        assert np.abs(js - reference).max() <= FP32.max_relative * np.abs(reference).max()
    expected_logits, _ = logits(expected_images, expected_texts, model.logit_scale)
    assert np.abs(actual["logits_per_image"][: len(images)] - expected_logits).max() <= FP32.max_relative * model.logit_scale

    # jpeg-js decodes colour differently from libjpeg (chroma upsampling): not equal, but closer than
    # any two different photos.
    assert row_cosine(actual["image_embeds"][-1:], model.encode_image([jpeg])) >= MAX_INPUT_COSINE


@pytest.mark.parametrize("kind,content,says", [
    ("webp", None, "a WebP file; this example reads PNG and JPEG only"),
    ("empty", b"", "an empty file; this example reads PNG and JPEG only"),
    ("truncated-png", "png-half", "this PNG file cannot be decoded"),
])
def test_an_unreadable_image_is_named_with_its_format(case, tmp_path, kind, content, says):
    folder, images = case
    path = tmp_path / f"{kind}.img"
    if content is None:
        Image.fromarray(skimage.data.chelsea()).save(path, format="WEBP")
    elif content == "png-half":
        data = images[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    result = subprocess.run(["node", "clip.mjs", str(folder), "--image", str(path), "--text", "a cat"], cwd=EXAMPLE,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"{path}: ") and says in result.stderr
