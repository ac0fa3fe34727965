"""Whether files are the ones recorded: SHA-256 of a file, and a folder checked against its manifest.

"The files a graph needs" are the manifest's own list, `graphs.<graph>.files`: the graph, the
external-data files it reads (the forward graph reads the encoders'), and `tokenizer.json` and/or
`preprocess.json`, whichever feed its inputs. The Rust crate (`manifest::needed_files`) and the Node
consumer (`neededFiles`) read the same key."""

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
    """The files that running `graphs` needs, each once, in the manifest's order."""
    names: list[str] = []
    for graph in graphs:
        spec = manifest["graphs"].get(graph)
        files = spec.get("files") if isinstance(spec, dict) else None
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise ClipOnnxError(f"{MANIFEST} lists no files for the {graph} graph; export the variant again with "
                                f"this clip-onnx", "bad_manifest")
        names += files
    return list(dict.fromkeys(names))


def check_present(folder: Path, file_name: str) -> None:
    path = folder / file_name
    if not path.is_file():
        raise ClipOnnxError(f"{path} is missing; download it beside {MANIFEST}, or export the variant again",
                            "missing_file")


def check_file(manifest: dict, folder: Path, file_name: str) -> None:
    """One file the manifest lists is present with its recorded size and SHA-256."""
    facts = manifest["files"].get(file_name)
    path = folder / file_name
    if facts is None:
        raise ClipOnnxError(f"{path} is not listed in {folder / MANIFEST}; export the variant again", "changed_file")
    check_present(folder, file_name)
    if path.stat().st_size != facts["bytes"] or sha256_file(path) != facts["sha256"]:
        raise ClipOnnxError(f"{path} does not match the SHA-256 in {MANIFEST}; it changed since export", "changed_file")


def check_files(manifest: dict, folder: Path) -> None:
    """Every file the manifest lists, and every file its graphs need, is present with its recorded size
    and SHA-256."""
    for file_name in dict.fromkeys([*manifest["files"], *needed_files(manifest, manifest["graphs"])]):
        check_file(manifest, folder, file_name)
