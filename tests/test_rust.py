"""The Rust crate (rust/) held to the Python runtime: `cargo test --locked` against the shared test
vectors (tests/vectors.py) and a Hugging Face Hub on loopback, with the libonnxruntime of the
onnxruntime wheel these tests already use.

Needs cargo; skipped without it, except on CI (CI=true), where a skip would hide a broken crate."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import onnxruntime
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.loopback_hub import LoopbackHub

CRATE = Path(__file__).resolve().parent.parent / "rust"


def ort_library() -> str:
    """The wheel's libonnxruntime; only its versioned name ships (libonnxruntime.so.1.x.y), so glob for it."""
    found = glob.glob(str(Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so*"))
    assert found, "the onnxruntime wheel ships no libonnxruntime.so.*"
    return sorted(found)[-1]


def _publish(hub: LoopbackHub, folder: Path, repo: str, tamper: bool) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo)
    operations = []
    for path in sorted(folder.iterdir()):
        content = path.read_bytes()
        if tamper and path.name.endswith("_visual.onnx"):
            content = content[:-1] + bytes([content[-1] ^ 1])  # same size, other bytes
        operations.append(CommitOperationAdd(f"fp32/{path.name}", content))
    commit = api.create_commit(repo, operations, commit_message="release")
    api.create_tag(repo, tag="v1.0.0", revision=commit.oid)


@pytest.fixture(scope="module")
def cargo() -> str:
    found = shutil.which("cargo")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cargo is not on PATH; CI must run the Rust tests, so install Rust in the workflow")
        pytest.skip("cargo is not on PATH: the Rust crate needs a Rust toolchain")
    return found


def test_the_rust_crate_equals_the_python_runtime(cargo, shared_vectors, tmp_path):
    data = json.loads(shared_vectors.read_text())
    path = tmp_path / "vectors.json"
    with LoopbackHub() as hub:
        _publish(hub, Path(data["exports"][0]["folder"]), "org/clip-onnx-tiny-ViT", tamper=False)
        _publish(hub, Path(data["exports"][0]["folder"]), "org/tampered", tamper=True)
        data["hub"] = {"endpoint": hub.url, "repo": "org/clip-onnx-tiny-ViT", "tampered_repo": "org/tampered",
                       "tag": "v1.0.0"}
        path.write_text(json.dumps(data, ensure_ascii=False))
        result = subprocess.run([cargo, "test", "--locked", "--", "--nocapture", "--test-threads", "2"], cwd=CRATE,
                                capture_output=True, text=True, timeout=3000,
                                env={**os.environ, "CLIP_ONNX_VECTORS": str(path), "ORT_DYLIB_PATH": ort_library()})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", output))
    assert passed >= 7 and "0 failed" in output, output[-3000:]
    for line in output.splitlines():  # the measured lines: JPEG decoding and the texts ftfy would change
        if line.startswith(("JPEG:", "token ids:")):
            print(line)


def test_the_documented_rust_example_is_the_one_cargo_compiles():
    """docs/consumers.md and every model card show the crate's doctest, which `cargo test` compiles."""
    from release.cards import rust_snippet

    docs = (CRATE.parent / "docs" / "consumers.md").read_text()
    assert rust_snippet("org/clip-onnx-ViT-B-32", "<commit>") in docs
