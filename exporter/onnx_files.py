"""Where exported graphs become files: self-contained `.onnx` files streamed fragment by fragment, or a
graph with its external data (`<file>.data`) once its tensors exceed what protobuf can hold. Needs onnx,
not torch, so quantisation and the benchmarks list a graph's files without loading torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from clip_onnx.errors import ClipOnnxError

if TYPE_CHECKING:
    import torch

# Protobuf cannot hold a message over 2 GiB, so graphs with more initializer bytes than this are
# written with external data; torch's exporter does so above this size whatever it is told.
EXTERNAL_DATA_THRESHOLD = 1536 * 1024**2


def save(program: torch.onnx.ONNXProgram, path: Path, initializer_bytes: int) -> list[Path]:
    """Write an exported program to `path`, self-contained or with external data by its size; return the files."""
    if initializer_bytes > EXTERNAL_DATA_THRESHOLD:
        program.save(path, external_data=True)
        return [path, *external_files(path)]
    save_single_file(program, path)
    return [path]


def external_files(path: Path, model: onnx.ModelProto | None = None) -> list[Path]:
    """The external data files the graph at `path` refers to (the truth, whoever decided to write them)."""
    model = model or onnx.load(str(path), load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    return [path.parent / location for location in sorted(locations)]


# Keys of the length-delimited fields a graph fragment is framed with: ModelProto.graph (7),
# GraphProto.initializer (5) and TensorProto.raw_data (9).
_GRAPH_KEY, _INITIALIZER_KEY, _RAW_DATA_KEY = (bytes([field << 3 | 2]) for field in (7, 5, 9))
_COPY_CHUNK = 16 * 1024**2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _framed(key: bytes, length: int) -> bytes:
    return key + _varint(length)


def save_single_file(program: torch.onnx.ONNXProgram, path: Path) -> None:
    """Write `program` as one self-contained .onnx file without holding its tensors in memory.

    A plain inline save builds the whole ModelProto, tensors included, then serialises it, holding the
    weights several times over (docs/measurements.md). Here the tensors are first streamed to a scratch
    data file; then the file is written as the graph without its tensors followed by one `graph`
    fragment per tensor, whose bytes are framed by hand and copied from the scratch file in chunks
    (setting them on a protobuf message would keep every tensor in the message's arena until the end).
    Protobuf parsers merge repeated occurrences of an embedded message field, so every reader sees one
    graph holding every initializer, in order."""
    scratch = path.with_name(f".{path.name}.scratch")
    data_files: list[Path] = []
    try:
        program.save(scratch, external_data=True)
        proto = onnx.load(str(scratch), load_external_data=False)
        data_files = external_files(scratch, proto)
        initializers = list(proto.graph.initializer)
        del proto.graph.initializer[:]
        with open(path, "wb") as out:
            out.write(proto.SerializeToString())
            for tensor in initializers:
                if tensor.data_location != onnx.TensorProto.EXTERNAL:
                    fragment = onnx.GraphProto(initializer=[tensor]).SerializeToString()
                    out.write(_framed(_GRAPH_KEY, len(fragment)) + fragment)
                    continue
                info = {entry.key: entry.value for entry in tensor.external_data}
                source = scratch.parent / info["location"]
                offset = int(info.get("offset", 0))
                length = int(info["length"]) if "length" in info else source.stat().st_size - offset
                tensor.ClearField("external_data")
                tensor.ClearField("data_location")
                head = tensor.SerializeToString() + _framed(_RAW_DATA_KEY, length)
                initializer = _framed(_INITIALIZER_KEY, len(head) + length)
                out.write(_framed(_GRAPH_KEY, len(initializer) + len(head) + length) + initializer + head)
                with open(source, "rb") as data:
                    data.seek(offset)
                    while length:
                        chunk = data.read(min(length, _COPY_CHUNK))
                        if not chunk:
                            raise ClipOnnxError(f"{source.name} ended before tensor {tensor.name}'s data")
                        out.write(chunk)
                        length -= len(chunk)
    finally:
        for scratch_file in [scratch, *data_files]:
            scratch_file.unlink(missing_ok=True)
