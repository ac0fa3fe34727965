"""`manifest.check_files`: what decides that a folder is untampered, file by file."""

from __future__ import annotations

import hashlib

import pytest

from exporter import manifest
from exporter.errors import ExporterError

FILES = {"g.onnx": b"graph bytes " * 100, "tokenizer.json": b'{"model": "bpe"}'}


@pytest.fixture
def folder(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def recorded() -> dict:
    return {"files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in FILES.items()}}


def test_untouched_files_pass(folder):
    manifest.check_files(recorded(), folder)


@pytest.mark.parametrize("name", list(FILES))
def test_a_same_size_change_is_caught_by_the_sha256(folder, name):
    data = bytearray(FILES[name])
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ExporterError, match=f"{name} does not match the SHA-256"):
        manifest.check_files(recorded(), folder)


def test_a_size_change_is_caught(folder):
    (folder / "g.onnx").write_bytes(FILES["g.onnx"] + b"x")
    with pytest.raises(ExporterError, match="g.onnx does not match the SHA-256"):
        manifest.check_files(recorded(), folder)


def test_a_missing_file_is_named(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ExporterError, match="tokenizer.json is missing"):
        manifest.check_files(recorded(), folder)


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(bytes(range(256)) * 9000)  # spans more than one read chunk
    assert manifest.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
