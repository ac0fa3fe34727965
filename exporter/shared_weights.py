"""Where the three graphs come to share their weights: three graphs in the bytes of two.

`<name>.onnx` computes `CLIP.forward` from the same tensors as the two encoders. Each encoder keeps its
weights in its own external-data file (`GraphSpec.data_file_name`); the forward graph's initializers
point into those files (ONNX external data names a file, an offset and a length per tensor) and only a
tensor found in neither encoder is stored for the forward graph itself. Tensors are matched by their
bytes (SHA-256 and length), never by name, and every tensor keeps the exact bytes the exporter wrote,
so every graph computes what it did as one self-contained file. Each graph also drops torch's per-node
debug records, so what the forward graph stores beyond the encoders' files is its operators alone.

Needs onnx, not torch, so int8 graphs (quantised after the export) are laid out by the same code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
from onnx import numpy_helper

from clip_onnx.contract import GRAPHS
from exporter.onnx_files import external_files

# Tensors smaller than this stay inside their graph (onnx's own default for external data): shapes,
# scalars and biases cost less inline than their file, offset and length do.
INLINE_BYTES = 1024
# Each tensor starts on a page boundary, so onnxruntime can map it from the file in place.
ALIGN = 4096
CHUNK = 16 * 1024**2

Key = tuple[str, int]  # a tensor's bytes: (SHA-256, length)
Place = tuple[str, int, int]  # where they are: (file name, offset, length)


def _external(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _raw(tensor: onnx.TensorProto, folder: Path) -> bytes:
    """A tensor's bytes as onnx stores them in `raw_data`, wherever they are now."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = _external(tensor)
        with open(folder / info["location"], "rb") as data:
            data.seek(int(info.get("offset", 0)))
            return data.read(int(info["length"])) if "length" in info else data.read()
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return numpy_helper.to_array(tensor).tobytes()  # typed fields (float_data, ...): the same values as raw bytes


def _point(tensor: onnx.TensorProto, place: Place) -> None:
    """Make `tensor` refer to its bytes at `place` instead of holding them."""
    location, offset, length = place
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)


def _inline(tensor: onnx.TensorProto, raw: bytes) -> None:
    for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = raw


def _lay_out_graph(path: Path, data_name: str, known: dict[Key, Place], share: bool) -> list[Path]:
    """Rewrite the graph at `path`: each large tensor either refers to bytes already in `known` (when
    `share`) or is appended to `data_name`, and is then known there. Returns the graph's files."""
    folder = path.parent
    proto = onnx.load(str(path), load_external_data=False)
    for node in proto.graph.node:
        # torch's per-node debug records (FX node, class hierarchy, stack trace with the exporting checkout's
        # paths): most of a graph's own bytes, nothing onnxruntime reads, and different in every checkout
        del node.metadata_props[:]
    old_files = external_files(path, proto)
    partial = folder / f".{data_name}.partial"
    used: list[str] = []
    try:
        with open(partial, "wb") as out:
            for tensor in proto.graph.initializer:
                raw = _raw(tensor, folder)
                if len(raw) < INLINE_BYTES:
                    _inline(tensor, raw)
                    continue
                key = (hashlib.sha256(raw).hexdigest(), len(raw))
                place = known.get(key) if share else None
                if place is None:
                    out.write(bytes(-out.tell() % ALIGN))
                    place = (data_name, out.tell(), len(raw))
                    out.write(raw)
                    known.setdefault(key, place)
                _point(tensor, place)
                if place[0] not in used:
                    used.append(place[0])
                del raw
        graph_partial = folder / f".{path.name}.partial"
        with open(graph_partial, "wb") as out:
            out.write(proto.SerializeToString())
        for old in old_files:
            old.unlink()
        os.replace(graph_partial, path)
        if data_name in used:
            os.replace(partial, folder / data_name)
    finally:
        partial.unlink(missing_ok=True)
        (folder / f".{path.name}.partial").unlink(missing_ok=True)
    return [path, *(folder / name for name in used)]


def lay_out(graph_files: dict[str, list[Path]], name: str, precision: str) -> dict[str, list[Path]]:
    """Lay out exported graphs (self-contained or with any external data) in one folder: the encoders
    first, each with its own data file, then the forward graph, sharing their tensors. Returns each
    graph's files: its `.onnx` first, then the data files it reads."""
    known: dict[Key, Place] = {}
    laid_out = {}
    for key in sorted(graph_files, key=lambda k: k == "forward"):  # the encoders before the graph that shares
        laid_out[key] = _lay_out_graph(graph_files[key][0], GRAPHS[key].data_file_name(name, precision), known,
                                       share=key == "forward")
    return {key: laid_out[key] for key in graph_files}
