"""What a release tag is, and how two compare: `v` and three numbers, compared as numbers."""

from __future__ import annotations

import re

from clip_onnx.errors import ClipOnnxError

TAG = re.compile(r"^v\d+\.\d+\.\d+$")


def version(tag: str) -> tuple[int, int, int]:
    """`v1.10.0` -> (1, 10, 0): `v1.10.0` is higher than `v1.9.0`, although it sorts before it as text."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    major, minor, patch = tag[1:].split(".")
    return int(major), int(minor), int(patch)
