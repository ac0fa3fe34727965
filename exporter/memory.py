"""Giving memory back between the steps of an export, so the largest variants fit small machines.

torch's ONNX exporter keeps each exported graph's tensors alive after the export, through onnxscript's
rewrite rules, which remember their last match: `forget_rewrite_matches` drops that after every
graph, and `release` empties the weights' storages after the last, since `model.to("meta")` alone
frees little. glibc keeps freed heap instead of returning it to the system: `trim`. What each step
saves: docs/measurements.md (`bench/export_table.py`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import warnings
from collections.abc import Callable

from torch import nn

# What an onnxscript PatternMatcher remembers of its last match (private to onnxscript 0.5 to 0.7).
MATCHER_STATE = ("_graph", "_match", "_current_node", "_tracer")


def release(model: nn.Module) -> None:
    """Free a consumed model's weights wherever they are still referenced: every tensor sharing a
    parameter's or buffer's storage becomes empty."""
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        if storage.resizable():
            storage.resize_(0)
    model.to("meta")
    trim()


def forget_rewrite_matches() -> int:
    """Drop what onnxscript's pattern matchers remember of the graph they last matched; return how
    many matchers held something.

    torch's exporter optimises every graph with onnxscript's rewrite rules; each rule's matcher keeps
    the graph, the match and the node it last looked at (`_graph`, `_match`, `_current_node`,
    `_tracer`), and through them every initializer of the exported graph, constant-folded copies
    included, until the next export replaces them. The names are private to onnxscript, so
    pyproject.toml bounds onnxscript to the releases tested, and
    `tests/test_export_files.py::test_the_rewrite_matchers_memory_is_found_and_dropped` fails when an
    export leaves nothing for this to find."""
    from onnxscript.rewriter import _matcher

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on some lazily deprecated torch objects warns
        matchers = [o for o in gc.get_objects() if isinstance(o, _matcher.PatternMatcher)]
    held = 0
    for matcher in matchers:
        dropped = [matcher.__dict__.pop(name, None) for name in MATCHER_STATE]
        held += any(value is not None for value in dropped)
    return held


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once: find_library runs ldconfig or a compiler to find libc."""
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    return getattr(libc, "malloc_trim", None)


def trim() -> None:
    """Collect garbage and return the heap's free pages to the system (glibc only; elsewhere a no-op)."""
    gc.collect()
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)
