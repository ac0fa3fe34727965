"""The conformance artifact's export released on the loopback Hub (tests/loopback_hub.py) at a tag, as a
release publishes a variant (`fp32/<file>`): once intact; once with one byte of its visual graph changed
(its manifest no longer matches); once moved: that byte changed and the manifest written to match, a
release whose files are self-consistent but not the ones a package's release table (`release.json`)
pins. What the Rust and Node download tests run against, through `CLIP_ONNX_TEST_HUB`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from clip_onnx.manifest import MANIFEST
from release import table
from tests.conformance import COMMITTED
from tests.loopback_hub import LoopbackHub

TAG = "v1.0.0"
REPO = "org/clip-onnx-tiny-ViT"
EXPORT = COMMITTED / json.loads((COMMITTED / "vectors.json").read_text())["exports"][0]["folder"]


def pinned() -> dict:
    """The release table a package built for this release carries (`release.json`)."""
    return table.build(TAG, [(REPO, "fp32", EXPORT)])


def publish(hub: LoopbackHub, folder: Path, repo: str, tamper: bool = False, moved: bool = False) -> None:
    """`folder`'s files as `fp32/<file>` of `repo`, tagged v1.0.0; `tamper`: one byte of the visual graph
    changed; `moved`: that, and the manifest's SHA-256 of it changed to match."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(repo)
    files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    if tamper or moved:
        visual = next(name for name in files if name.endswith("_visual.onnx"))
        content = files[visual]
        files[visual] = content[:-1] + bytes([content[-1] ^ 1])  # same size, other bytes
    if moved:
        data = json.loads(files[MANIFEST])
        data["files"][visual]["sha256"] = hashlib.sha256(files[visual]).hexdigest()
        files[MANIFEST] = (json.dumps(data, indent=2) + "\n").encode()
    operations = [CommitOperationAdd(f"fp32/{name}", content) for name, content in files.items()]
    commit = api.create_commit(repo, operations, commit_message="release")
    api.create_tag(repo, tag=TAG, revision=commit.oid)


def serve(hub: LoopbackHub) -> dict:
    """The artifact's export released on the Hub, intact, tampered and moved; what the Rust and Node tests
    read from `CLIP_ONNX_TEST_HUB` (rust/tests/common `hub`, examples/node/test). `release` is the table
    a package would pin for the intact release (variant `name`, repo `repo`); a download by it from
    `moved_repo` (the table with that `hub_repo`) must be refused."""
    publish(hub, EXPORT, REPO)
    publish(hub, EXPORT, "org/tampered", tamper=True)
    publish(hub, EXPORT, "org/moved", moved=True)
    release = pinned()
    return {"endpoint": hub.url, "repo": REPO, "tampered_repo": "org/tampered", "moved_repo": "org/moved",
            "tag": TAG, "name": next(iter(release["variants"])), "release": release}
