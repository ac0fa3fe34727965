"""A same-size change to any file a graph needs (the graph, its external data, `tokenizer.json`,
`preprocess.json`: `integrity.needed_files`) is refused by every Python path that loads or ships it:
`Model`, `clip-onnx classify`, `clip-onnx embed` (both checking by default), `clip-onnx verify` and
release staging, each in one line naming the file. Hashing streams: a file over 2 GiB is checked in
bounded memory. (The Rust crate and the Node consumer are held to the same in test_rust.py and
test_node_example.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx import integrity
from clip_onnx.errors import ClipOnnxError
from clip_onnx.model import Model
from exporter import pipeline
from exporter.cli import main
from exporter.variants import get_variant
from exporter.weights import random_weights
from release import stage as staging

NEEDED = ["tiny-ViT_visual.onnx", "tiny-ViT_visual.onnx.data", "preprocess.json"]  # what the visual graph needs
# and the tokenizer, which the transformer graph needs and every path that loads a folder checks when present
TAMPERED = [*NEEDED, "tokenizer.json"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A verified tiny-ViT export (visual, transformer), laid out as a release's export job writes it
    (<precision>/<name>/)."""
    root = tmp_path_factory.mktemp("tampering")
    folder = pipeline.export(random_weights(get_variant("tiny-ViT")), "tiny-ViT", root / "fp32",
                             graphs=["visual", "transformer"], log=lambda _: None)
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 100, 50)).save(root / "image.png")
    return folder


def test_the_files_a_graph_needs_are_read_from_the_manifest(export):
    manifest = json.loads((export / "manifest.json").read_text())
    assert integrity.needed_files(manifest, ["visual"]) == NEEDED
    assert integrity.needed_files(manifest, ["transformer"]) == [
        "tiny-ViT_transformer.onnx", "tiny-ViT_transformer.onnx.data", "tokenizer.json"]
    assert set(integrity.needed_files(manifest, manifest["graphs"])) == set(manifest["files"])


@pytest.fixture(params=TAMPERED)
def tampered(request, export, tmp_path) -> tuple[Path, str]:
    """A copy of the export with one byte of one needed file flipped (same size: only the SHA-256 can tell)."""
    copy = tmp_path / "fp32" / "tiny-ViT"
    shutil.copytree(export, copy)
    path = copy / request.param
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return copy, request.param


def refused_in_one_line(capsys, code: int, file_name: str) -> None:
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("clip-onnx: note: ")]  # the note that the weights are random
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("clip-onnx: error: ") and f"{file_name} does not match the SHA-256" in err[0], err


def test_model_refuses_it(tampered, export):
    folder, name = tampered
    with pytest.raises(ClipOnnxError, match=f"{name} does not match the SHA-256 in manifest.json"):
        Model(folder).encode_image(export.parent.parent / "image.png")


def test_classify_refuses_it(tampered, export, capsys):
    folder, name = tampered
    image = export.parent.parent / "image.png"
    refused_in_one_line(capsys, main(["classify", str(image), "-m", str(folder), "--labels", "a,b"]), name)


def test_embed_refuses_it(tampered, export, capsys, tmp_path):
    folder, name = tampered
    image = export.parent.parent / "image.png"
    code = main(["embed", "-m", str(folder), "--image", str(image), "--text", "a", "-o", str(tmp_path / "e.npz")])
    refused_in_one_line(capsys, code, name)
    assert not (tmp_path / "e.npz").exists()


def test_verify_refuses_it(tampered, capsys):
    folder, name = tampered
    refused_in_one_line(capsys, main(["verify", str(folder)]), name)


def test_staging_refuses_it(tampered, tmp_path):
    folder, name = tampered
    with pytest.raises(ClipOnnxError, match=f"{name} does not match the SHA-256"):
        staging.stage(folder.parent.parent, "v1.0.0", tmp_path / "out", "org")
    assert not (tmp_path / "out").exists()


def test_the_untouched_export_passes_every_check(export, tmp_path, capsys):
    image = export.parent.parent / "image.png"
    assert main(["classify", str(image), "-m", str(export), "--labels", "a,b"]) == 0
    assert Model(export).encode_image(image).shape == (1, 64)
    staging.stage(export.parent.parent, "v1.0.0", tmp_path / "out", "org")


HASH_IN_A_CHILD = """
import json, resource, sys
from pathlib import Path
from clip_onnx import integrity
folder = Path(sys.argv[1])
manifest = json.loads((folder / "manifest.json").read_text())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
integrity.check_file(manifest, folder, "big.onnx.data")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""
# SHA-256 of 2 GiB + 4 KiB of zero bytes, computed independently (hashlib over 1 MiB pieces)
SPARSE_BYTES, SPARSE_SHA256 = 2**31 + 4096, "d702231a97a4e742e747bd3fdc81d8d1b604378660d5fc38934b865ca2a9d6d1"


def test_a_file_over_2_gib_is_hashed_in_bounded_memory(tmp_path):
    """A sparse external-data file past 2 GiB (the size of RN50x64's) passes its check, and the checking
    process grows by far less than the file: it streams."""
    with open(tmp_path / "big.onnx.data", "wb") as f:
        f.truncate(SPARSE_BYTES)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"files": {"big.onnx.data": {"sha256": SPARSE_SHA256, "bytes": SPARSE_BYTES}}}))
    result = subprocess.run([sys.executable, "-c", HASH_IN_A_CHILD, str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) < 64 * 2**20, f"hashing grew the process by {int(result.stdout)} bytes"
