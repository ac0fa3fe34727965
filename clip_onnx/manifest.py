"""`manifest.json`, the contract a consumer reads beside the graphs: found and parsed here.

`FORMAT_VERSION` rises when a consumer that pins it would break: an input or output renamed, a
dtype or shape changed, a required file added, or a manifest key removed or given another meaning.
Added optional keys and files keep it."""

from __future__ import annotations

import json
from pathlib import Path

from clip_onnx.errors import ClipOnnxError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# The versions this runtime reads; a manifest of any other is refused, never half-understood.
FORMAT_VERSIONS = (1,)


def read(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise ClipOnnxError(f"{folder} has no {MANIFEST}; point at a folder written by `clip-onnx export`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClipOnnxError(f"{path} is not valid JSON ({error}); export the variant again") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version not in FORMAT_VERSIONS:
        raise ClipOnnxError(f"{path}: format_version {version}, but this clip-onnx reads "
                            f"{', '.join(map(str, FORMAT_VERSIONS))}; pip install --upgrade clip-onnx, or use files "
                            f"of a release with format_version {FORMAT_VERSION}")
    return data
