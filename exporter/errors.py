"""The exporter's own failures and how `clip-onnx` ends on them: verification verdicts (exit 3 and 4)
and a runtime-only install that lacks the `export` extra (exit 1)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

from clip_onnx.errors import ClipOnnxError


class VerificationError(ClipOnnxError):
    """ONNX Runtime disagreed with PyTorch beyond the tolerance table."""


class InconclusiveError(ClipOnnxError):
    """Verification could not tell: the files match PyTorch, but the model's outputs barely depend on
    its input (exit code 4; the files are written, their manifest says so, and releases refuse them)."""


# The exporter's expected failures before the runtime's (`clip_onnx.cli.EXITS`): the line printed, the exit code.
EXITS = ((VerificationError, "clip-onnx: verification failed: {}", 3),
         (InconclusiveError, "clip-onnx: verification {}", 4))
# What the exporter's commands import that a runtime-only install lacks.
EXPORT_MODULES = ("torch", "torchvision", "clip", "onnx", "onnxscript", "huggingface_hub", "safetensors")
# Exports write into a hidden folder renamed only when complete (exporter.pipeline).
INTERRUPTED = "clip-onnx: interrupted ({}); no partial file was left under a final name"


def require_export_modules() -> None:
    """Every exporter dependency installed, found without importing any (torch takes seconds): the
    first one missing raises as its import would, before any download is tried."""
    for name in EXPORT_MODULES:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def needs_export_extra(command: str, handler: Callable) -> Callable:
    """`handler`, with a missing exporter dependency turned into one line that names the extra."""
    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except ModuleNotFoundError as error:
            if error.name not in EXPORT_MODULES:
                raise
            raise ClipOnnxError(f"`clip-onnx {command}` needs {error.name}, which a runtime-only install lacks; "
                                f"pip install 'clip-onnx[export]'") from None
    return run
