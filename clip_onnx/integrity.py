"""Whether files are the ones recorded: SHA-256 of a file, and a folder checked against its manifest.

"The files a graph needs" is defined here, once, from the manifest: the graph, its external data,
`tokenizer.json` and `preprocess.json`. The Rust crate (`manifest::needed_files`) and the Node
consumer (`neededFiles`) read the same keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from clip_onnx.errors import ClipOnnxError
from clip_onnx.manifest import MANIFEST

CHUNK = 1 << 20  # files are hashed in pieces of this size, never read whole


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def consumer_files(manifest: dict) -> list[str]:
    """The files every graph is fed through: the tokenizer's and the preprocessing's."""
    try:
        return [manifest["tokenizer"]["file"], manifest["preprocessing"]["file"]]
    except (KeyError, TypeError):
        raise ClipOnnxError(f"{MANIFEST} names no tokenizer or preprocessing file; export the variant again "
                            f"with this clip-onnx", "bad_manifest") from None


def needed_files(manifest: dict, graphs: Iterable[str]) -> list[str]:
    """The files that running `graphs` needs: each graph's file and external data, then the consumer files."""
    names = []
    for graph in graphs:
        spec = manifest["graphs"][graph]
        names += [spec["file"], *spec.get("external_data", [])]
    return names + consumer_files(manifest)


def check_file(manifest: dict, folder: Path, file_name: str) -> None:
    """One file the manifest lists is present with its recorded size and SHA-256."""
    facts = manifest["files"].get(file_name)
    path = folder / file_name
    if facts is None:
        raise ClipOnnxError(f"{path} is not listed in {folder / MANIFEST}; export the variant again", "changed_file")
    if not path.is_file():
        raise ClipOnnxError(f"{path} is missing; export the variant again", "missing_file")
    if path.stat().st_size != facts["bytes"] or sha256_file(path) != facts["sha256"]:
        raise ClipOnnxError(f"{path} does not match the SHA-256 in {MANIFEST}; it changed since export", "changed_file")


def check_files(manifest: dict, folder: Path) -> None:
    """Every file the manifest lists, and every file its graphs need, is present with its recorded size
    and SHA-256."""
    for file_name in dict.fromkeys([*manifest["files"], *needed_files(manifest, manifest["graphs"])]):
        check_file(manifest, folder, file_name)
