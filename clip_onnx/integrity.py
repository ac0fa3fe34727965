"""Whether files are the ones recorded: SHA-256 of a file, and a folder checked against its manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path

from clip_onnx.errors import ClipOnnxError
from clip_onnx.manifest import MANIFEST


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(manifest: dict, folder: Path, file_name: str) -> None:
    """One file the manifest lists is present with its recorded size and SHA-256."""
    facts = manifest["files"].get(file_name)
    path = folder / file_name
    if facts is None:
        raise ClipOnnxError(f"{path} is not listed in {folder / MANIFEST}; export the variant again")
    if not path.is_file():
        raise ClipOnnxError(f"{path} is missing; export the variant again")
    if path.stat().st_size != facts["bytes"] or sha256_file(path) != facts["sha256"]:
        raise ClipOnnxError(f"{path} does not match the SHA-256 in {MANIFEST}; it changed since export")


def check_files(manifest: dict, folder: Path) -> None:
    """Every file the manifest lists is present with its recorded size and SHA-256."""
    for file_name in manifest["files"]:
        check_file(manifest, folder, file_name)
