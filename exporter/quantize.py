"""int8: onnxruntime's dynamic quantisation of an exported float32 graph, in place.

Weights of every MatMul and Gemm (and the token embedding's Gather) are stored as 8-bit integers with
one scale per tensor; activations are quantised on the fly at run time (`DynamicQuantizeLinear` +
`MatMulInteger`), so no calibration data is needed. The weights are unsigned (uint8), like the
activations: onnxruntime multiplies uint8 by int8 in 16-bit pairs that saturate on x86 CPUs without
VNNI (AVX2), so signed weights would give other outputs there than on the machine that verified them;
uint8 by uint8 is exact on every CPU. Convolutions stay float32, because onnxruntime's `ConvInteger`
is far slower than float32 on the CPU, and one scale per output channel (`per_channel`) is off,
because it is slower and no more accurate (docs/measurements.md, "int8 design").
"""

from __future__ import annotations

import logging
from pathlib import Path

from exporter.onnx_files import external_files

OPS = ["MatMul", "Gemm", "Gather"]
# what quantize_dynamic is told besides the weight type (bench/int8_weights.py compares weight types with it)
OPTIONS = {"per_channel": False, "op_types_to_quantize": OPS}


def quantize(path: Path) -> list[Path]:
    """Replace the float32 graph at `path` (and its external data) by its int8 version; return its files.

    The int8 graph is written as one self-contained file, so it must stay under protobuf's 2 GiB, which
    RN50x64's forward graph, keeping its float32 convolutions, is estimated to do (docs/measurements.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = path.with_name(f".{path.name}.int8")
    old_files = [path, *external_files(path)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises a pre-processing pass that dynamic quantisation does not need
    try:
        quantize_dynamic(path, scratch, weight_type=QuantType.QUInt8, **OPTIONS)
    finally:
        root.setLevel(level)
    for old in old_files:
        old.unlink()
    scratch.rename(path)
    return [path]
