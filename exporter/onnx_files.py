"""Where an exported graph's files are found: the `.onnx` file and the external-data files it names.
Needs onnx, not torch, so quantisation, the weight sharing and the benchmarks read a graph's files
without loading torch."""

from __future__ import annotations

from pathlib import Path

import onnx


def external_files(path: Path, model: onnx.ModelProto | None = None) -> list[Path]:
    """The external data files the graph at `path` refers to (the truth, whoever decided to write them)."""
    model = model or onnx.load(str(path), load_external_data=False)
    locations = {entry.value for tensor in model.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    return [path.parent / location for location in sorted(locations)]
