"""Where `manifest.json` is written: the contract a consumer reads (`clip_onnx.manifest`) beside the graphs."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import ftfy

from clip_onnx import preprocess
from clip_onnx.contract import GRAPHS, GraphSpec, io_contract
from clip_onnx.integrity import sha256_file
from clip_onnx.manifest import FORMAT_VERSION, MANIFEST
from clip_onnx.tokenizer import TOKENIZER
from exporter import tokenizer as text_tokenizer
from exporter.variants import Architecture, known_name


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The exporter's git commit: the workflow's, or the checkout's; None for an installed wheel."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def versions() -> dict[str, str | None]:
    """The toolchain that built the files, for the manifest and the release's provenance."""
    return {
        "clip-onnx": _version("clip-onnx"),
        "clip-onnx-commit": _commit(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "onnx": _version("onnx"),
        "onnxscript": _version("onnxscript"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "clip": _version("openai-clip"),
        "python": platform.python_version(),
    }


def preprocessing(resolution: int) -> dict:
    """Where the rules are: `preprocess.json` (clip_onnx.preprocess) has every parameter and rule, proven
    equal to CLIP's transform; the resolution is the graphs' input size."""
    return {"file": preprocess.PREPROCESS, "resolution": resolution}


def tokenizer(context_length: int, vocab_size: int) -> dict:
    start, end = text_tokenizer.special_ids()
    return {
        "kind": "CLIP byte-level BPE (clip/bpe_simple_vocab_16e6.txt.gz, ftfy + html unescape + lowercase)",
        "file": TOKENIZER,
        "clean": "html.unescape(html.unescape(ftfy.fix_text(text))) before the tokenizer file (clip_onnx.tokenizer.clean)",
        # the Rust and JavaScript ports of ftfy follow this version's behaviour (pinned in pyproject.toml)
        "ftfy": ftfy.__version__,
        "context_length": context_length,
        "vocab_size": vocab_size,
        "start_token_id": start,
        "end_token_id": end,
        "pad_token_id": 0,
        "dtype": "int32",
        "over_length": "clip.tokenize raises; with truncate=True the row is cut and its last id set to the end token",
    }


def graph_consumer_files(spec: GraphSpec) -> list[str]:
    """The files that feed a graph's inputs: `tokenizer.json` for texts, `preprocess.json` for images."""
    return [TOKENIZER] * ("text" in spec.inputs) + [preprocess.PREPROCESS] * ("image" in spec.inputs)


def build(name: str, architecture: Architecture, source: dict, precision: str, opset: int,
          graph_files: dict[str, list[Path]], consumer_files: list[Path], logit_scale: float,
          verification: dict | None) -> dict:
    """The manifest of an export: `graph_files` are each graph's `.onnx` and data files (`exporter.shared_weights`),
    `consumer_files` the tokenizer and preprocessing files written beside them."""
    import onnx

    first = next(iter(graph_files.values()))[0]
    ir_version = onnx.load(str(first), load_external_data=False).ir_version
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "variant": known_name(architecture),
        "architecture": architecture.to_json(),
        "source": source,
        "precision": precision,
        "opset": opset,
        "ir_version": ir_version,
        "graphs": {
            key: {
                "file": files[0].name,
                # every file this graph needs, and only those: a folder holding them runs it
                "files": [f.name for f in files] + graph_consumer_files(GRAPHS[key]),
                **io_contract(GRAPHS[key], architecture.image_resolution, architecture.context_length,
                              architecture.embed_dim),
            }
            for key, files in graph_files.items()
        },
        "files": {
            f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
            for f in [*(f for files in graph_files.values() for f in files), *consumer_files]
        },
        "preprocessing": preprocessing(architecture.image_resolution),
        "tokenizer": tokenizer(architecture.context_length, architecture.vocab_size),
        "logit_scale": {"raw": logit_scale, "exp": math.exp(logit_scale)},
        "versions": versions(),
        "verification": verification or {"skipped": True},
    }


def write(manifest: dict, folder: Path) -> Path:
    path = folder / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
