"""int8: onnxruntime's dynamic quantisation of an exported float32 graph, in place.

Weights of every MatMul and Gemm (and the token embedding's Gather) are stored as int8 with one scale
per tensor; activations are quantised on the fly at run time (`DynamicQuantizeLinear` + `MatMulInteger`),
so no calibration data is needed. Convolutions stay float32: onnxruntime's `ConvInteger` kernel made
RN50's visual graph 7.6x slower than float32 on this project's CPU (954 ms against 125 ms), while
`MatMulInteger` made ViT-B/32's 2.4x faster. One scale per output channel (`per_channel`) measured no
more accurate on ViT-B/32 (cosine 0.99977 against 0.99976) and 1.5x slower, so it is off.
"""

from __future__ import annotations

import logging
from pathlib import Path

from exporter.onnx_files import external_files

OPS = ["MatMul", "Gemm", "Gather"]


def quantize(path: Path) -> list[Path]:
    """Replace the float32 graph at `path` (and its external data) by its int8 version; return its files.

    The int8 graph is written as one self-contained file, so it must stay under protobuf's 2 GiB: the
    largest, RN50x64's forward graph, keeps its float32 convolutions (its fp32 visual graph is 1.68 GB,
    convolutions and attention pooling together), an estimate from the fp32 file sizes, not measured."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = path.with_name(f".{path.name}.int8")
    old_files = [path, *external_files(path)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises a pre-processing pass that dynamic quantisation does not need
    try:
        quantize_dynamic(path, scratch, weight_type=QuantType.QInt8, per_channel=False, op_types_to_quantize=OPS)
    finally:
        root.setLevel(level)
    for old in old_files:
        old.unlink()
    scratch.rename(path)
    return [path]
