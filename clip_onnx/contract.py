"""The public contract of the exported files, as data: which graphs exist, their file names, input and
output names, dtypes and shapes, and the precisions and opsets offered. Free of torch, so the
ONNX-only runtime and the command line read the same facts the exporter writes."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_OPSET = 18
# torch's exporter has no implementations below opset 18 and silently raises a lower request.
MIN_OPSET = 18
PRECISIONS = ("fp32", "fp16", "int8")
# What a release publishes. int8 is an export option: its accuracy is measured, not published per variant.
PUBLISHED_PRECISIONS = ("fp32", "fp16")
# The oldest onnxruntime that loads the graphs (IR version 10; tests/test_compat.py runs it): the cards say so.
OLDEST_ONNXRUNTIME = "1.18.1"


def export_folder(name: str, precision: str) -> str:
    """The folder of one export, as `clip-onnx export` writes it and a release publishes it: `<name>` in
    fp32, `<name>-<precision>` otherwise, so precisions never share a folder. File names keep `<name>`."""
    return name if precision == "fp32" else f"{name}-{precision}"


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its file suffix, I/O names, the CLIP method it equals, and what it outputs
    ("embeddings", judged by their cosine, or "logits", judged against their bound: `exporter.tolerances`).
    The exporter builds it with `exporter.export.WRAPPERS[key]`; everything else reads this spec."""

    key: str
    suffix: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    clip_method: str
    output_kind: str

    def file_name(self, name: str) -> str:
        return f"{name}{self.suffix}.onnx"

    def data_file_name(self, name: str, precision: str) -> str:
        """The external-data file of this graph's weights. It carries the precision (fp32's none), because a
        graph names its data file inside its bytes, and a GitHub release lists every precision's files in one
        flat list: `ViT-B-32_visual.onnx.data`, `ViT-B-32_visual-fp16.onnx.data`."""
        return f"{name}{self.suffix}{'' if precision == 'fp32' else '-' + precision}.onnx.data"


GRAPHS: dict[str, GraphSpec] = {
    spec.key: spec
    for spec in [
        GraphSpec("forward", "", ("image", "text"), ("logits_per_image", "logits_per_text"), "forward", "logits"),
        GraphSpec("visual", "_visual", ("image",), ("image_embeds",), "encode_image", "embeddings"),
        GraphSpec("transformer", "_transformer", ("text",), ("text_embeds",), "encode_text", "embeddings"),
    ]
}


def io_contract(spec: GraphSpec, resolution: int, context_length: int, embed_dim: int) -> dict:
    """Names, dtypes and shapes of a graph's inputs and outputs, as written in the manifest."""
    tensors = {
        "image": ("float32", ["image_batch", 3, resolution, resolution]),
        "text": ("int32", ["text_batch", context_length]),
        "image_embeds": ("float32", ["image_batch", embed_dim]),
        "text_embeds": ("float32", ["text_batch", embed_dim]),
        "logits_per_image": ("float32", ["image_batch", "text_batch"]),
        "logits_per_text": ("float32", ["text_batch", "image_batch"]),
    }
    return {
        side: [{"name": n, "dtype": tensors[n][0], "shape": tensors[n][1]} for n in names]
        for side, names in (("inputs", spec.inputs), ("outputs", spec.outputs))
    }
