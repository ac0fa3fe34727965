"""`integrity.check_files`: what decides that a folder is untampered, file by file; and reading a manifest."""

from __future__ import annotations

import hashlib
import json

import pytest

from clip_onnx import integrity, manifest
from clip_onnx.errors import ClipOnnxError

FILES = {"g.onnx": b"graph bytes " * 100, "g.onnx.data": b"weights " * 300, "tokenizer.json": b'{"model": "bpe"}',
         "preprocess.json": b'{"resolution": 224}'}


@pytest.fixture
def folder(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def recorded() -> dict:
    return {"files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in FILES.items()},
            "graphs": {"g": {"file": "g.onnx", "files": ["g.onnx", "g.onnx.data", "tokenizer.json", "preprocess.json"]}},
            "tokenizer": {"file": "tokenizer.json"}, "preprocessing": {"file": "preprocess.json"}}


def test_untouched_files_pass(folder):
    integrity.check_files(recorded(), folder)


@pytest.mark.parametrize("name", list(FILES))
def test_a_same_size_change_is_caught_by_the_sha256(folder, name):
    data = bytearray(FILES[name])
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ClipOnnxError, match=f"{name} does not match the SHA-256"):
        integrity.check_files(recorded(), folder)


@pytest.mark.parametrize("name", list(FILES))
def test_a_needed_file_the_manifest_does_not_list_is_refused(folder, name):
    """A manifest whose graph or consumer file has no SHA-256 recorded cannot vouch for it."""
    data = recorded()
    del data["files"][name]
    with pytest.raises(ClipOnnxError, match=f"{name} is not listed in"):
        integrity.check_files(data, folder)


def test_a_size_change_is_caught(folder):
    (folder / "g.onnx").write_bytes(FILES["g.onnx"] + b"x")
    with pytest.raises(ClipOnnxError, match="g.onnx does not match the SHA-256"):
        integrity.check_files(recorded(), folder)


def test_a_missing_file_is_named(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ClipOnnxError, match="tokenizer.json is missing"):
        integrity.check_files(recorded(), folder)


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(bytes(range(256)) * 9000)  # spans more than one read chunk
    assert integrity.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_reading_a_manifest_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(ClipOnnxError, match=f"{tmp_path} has no manifest.json; point at a folder written by"):
        manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"files": ')
    with pytest.raises(ClipOnnxError, match="manifest.json is not valid JSON .*; export the variant again"):
        manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 2, "graphs": {}, "tokenizer": []}')
    with pytest.raises(ClipOnnxError, match="manifest.json lacks files, tokenizer, preprocessing, logit_scale, "
                                            "architecture; export the variant again") as caught:
        manifest.read(tmp_path)
    assert caught.value.kind == "bad_manifest"
    whole = {"format_version": 2, **{key: {} for key in manifest.CONSUMER_KEYS}}
    (tmp_path / "manifest.json").write_text(json.dumps(whole))
    assert manifest.read(tmp_path) == whole


@pytest.mark.parametrize("text", ['{"format_version": 999}', '{"format_version": 1}', '{"format_version": "2"}', '{}',
                                  '{"format_version": true}'])
def test_a_format_version_this_runtime_does_not_read_is_refused(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ClipOnnxError, match=r"manifest.json: format_version .*, but this clip-onnx reads 2; "
                                            r"pip install --upgrade clip-onnx"):
        manifest.read(tmp_path)


def test_the_files_each_graph_needs_come_from_the_manifest():
    """Its own list: a graph that shares another's data file needs it too; each file is named once."""
    data = recorded()
    data["graphs"]["h"] = {"file": "h.onnx", "files": ["h.onnx", "g.onnx.data", "tokenizer.json"]}
    assert integrity.needed_files(data, ["g", "h"]) == ["g.onnx", "g.onnx.data", "tokenizer.json", "preprocess.json",
                                                        "h.onnx"]
    assert integrity.needed_files(data, ["h"]) == ["h.onnx", "g.onnx.data", "tokenizer.json"]
    assert integrity.needed_files(data, []) == []


@pytest.mark.parametrize("spec", [{"file": "h.onnx"}, {"file": "h.onnx", "files": "h.onnx"},
                                  {"file": "h.onnx", "files": ["h.onnx", 7]}, "h.onnx"])
def test_a_graph_without_its_list_of_files_is_named(spec):
    data = recorded()
    data["graphs"]["h"] = spec
    with pytest.raises(ClipOnnxError, match="^manifest.json lists no files for the h graph; export the variant again "
                                            "with this clip-onnx$") as caught:
        integrity.needed_files(data, ["g", "h"])
    assert caught.value.kind == "bad_manifest"
