"""The conformance artifact's export released on the loopback Hub (tests/loopback_hub.py) at a tag, as a
release publishes a variant (`fp32/<file>`): once intact, once with one byte of its visual graph changed.
What the Rust and Node download tests run against, through `CLIP_ONNX_TEST_HUB`."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from tests.conformance import COMMITTED
from tests.loopback_hub import LoopbackHub


def publish(hub: LoopbackHub, folder: Path, repo: str, tamper: bool = False) -> None:
    """`folder`'s files as `fp32/<file>` of `repo`, tagged v1.0.0; `tamper`: one byte of the visual graph changed."""
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


def serve(hub: LoopbackHub) -> dict:
    """The artifact's export released on the Hub, intact and tampered; what the Rust and Node tests read
    from `CLIP_ONNX_TEST_HUB` (rust/tests/common `hub`, examples/node/test)."""
    vectors = json.loads((COMMITTED / "vectors.json").read_text())
    export = COMMITTED / vectors["exports"][0]["folder"]
    publish(hub, export, "org/clip-onnx-tiny-ViT", tamper=False)
    publish(hub, export, "org/tampered", tamper=True)
    return {"endpoint": hub.url, "repo": "org/clip-onnx-tiny-ViT", "tampered_repo": "org/tampered", "tag": "v1.0.0"}
