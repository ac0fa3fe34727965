"""`manifest.json`, the contract a consumer reads beside the graphs: found and parsed here.

`FORMAT_VERSION` rises when a consumer that pins it would break: an input or output renamed, a
dtype or shape changed, a required file added, or a manifest key removed or given another meaning.
Added optional keys and files keep it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clip_onnx.errors import ClipOnnxError

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
# The versions this runtime reads; a manifest of any other is refused, never half-understood.
FORMAT_VERSIONS = (2,)
# The keys a consumer reads; a manifest without one is refused when read, not with a KeyError later.
CONSUMER_KEYS = ("graphs", "files", "tokenizer", "preprocessing", "logit_scale", "architecture")


def read(folder: Path) -> dict:
    if not isinstance(folder, (str, os.PathLike)):
        raise ClipOnnxError(f"a model folder is a path, not a {type(folder).__name__}; pass the folder that holds "
                            f"{MANIFEST}")
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        raise ClipOnnxError(f"{folder} does not exist; point at a folder written by `clip-onnx export`", "not_an_export")
    if not folder.is_dir():
        raise ClipOnnxError(f"{folder} is a file; pass the folder that holds {MANIFEST}", "not_an_export")
    if not path.is_file():
        raise ClipOnnxError(f"{folder} has no {MANIFEST}; point at a folder written by `clip-onnx export`",
                            "not_an_export")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClipOnnxError(f"{path} is not valid JSON ({error}); export the variant again", "bad_manifest") from None
    if not isinstance(data, dict):
        raise ClipOnnxError(f"{path} is not a JSON object; export the variant again", "bad_manifest")
    version = data.get("format_version")
    # a JSON number, not a string or a boolean (Python's True == 1), shown as the JSON it is
    if type(version) is not int or version not in FORMAT_VERSIONS:
        raise ClipOnnxError(f"{path}: format_version {json.dumps(version)}, but this clip-onnx reads "
                            f"{', '.join(map(str, FORMAT_VERSIONS))}; pip install --upgrade clip-onnx, or use files "
                            f"of a release with format_version {FORMAT_VERSION}", "unsupported_format")
    absent = [key for key in CONSUMER_KEYS if not isinstance(data.get(key), dict)]
    if absent:
        raise ClipOnnxError(f"{path} lacks {', '.join(absent)}; export the variant again with this clip-onnx",
                            "bad_manifest")
    return data
