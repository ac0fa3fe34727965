"""The Node.js example (examples/node/clip.mjs) against the Python runtime, through the shared test
vectors (tests/vectors.py) the Rust crate answers to as well: token ids, and pixels file by file for
every kind of image (PNG in every mode and depth, JPEG baseline, progressive, 4:4:4, grey and CMYK,
WebP, GIF, TIFF), each reported and each bit for bit; embeddings and logits within the float32
tolerance; a bad file named in one line.

Needs Node.js and npm; skipped without them, except on CI (CI=true), where a skip would hide a broken
example. Installs the example's pinned packages with `npm ci` when node_modules is missing or stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clip_onnx.model import Model, logits
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.verify import row_cosine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"
FP32 = TOLERANCES["fp32"]
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
  try { writeFileSync(out, await pixels({ ...model, preprocess }, [file])); } catch (error) { errors[file] = error.message; }
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
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
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
    changes = np.array(vectors["cleaning_changes"])
    # Texts that CLIP's cleaning leaves alone must give Python's ids; the others may differ where
    # ftfy repairs them (no JavaScript port).
    assert (ids[~changes] == expected[~changes]).all()
    print(f"token ids: {(~changes).sum()} of {len(changes)} texts compared exactly, all equal; "
          f"{int((ids[changes] == expected[changes]).all(axis=1).sum())} of the {int(changes.sum())} that cleaning changes equal")

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


@pytest.mark.parametrize("index,says", [
    (0, "an empty file"),
    (1, "this JPEG file cannot be decoded"),
    (2, "not an image format this example reads (PNG, JPEG, WebP, GIF, TIFF)"),
], ids=["empty", "truncated-jpeg", "text-named-png"])
def test_a_bad_file_is_one_line_naming_it(vectors, index, says):
    path = vectors["bad_images"][index]
    result = subprocess.run(["node", "clip.mjs", vectors["exports"][0]["folder"], "--image", path, "--text", "a cat"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"{path}: ") and says in result.stderr
