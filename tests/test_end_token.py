"""The text graph's end token: the `aten::index` hazard of the old tool at every token layout, and the cut
after the longest end token."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from exporter import export
from clip_onnx.contract import DEFAULT_OPSET, GRAPHS
from clip_onnx.errors import ClipOnnxError
from exporter.variants import get_variant
from exporter.verify import LONG_CAPTION, token_layouts, tokenize
from exporter.weights import random_weights


@pytest.fixture(scope="module")
def tiny():
    return random_weights(get_variant("tiny-ViT")).model


@pytest.fixture(scope="module")
def text_graph(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "tiny_transformer.onnx"
    export.export_graph(tiny, GRAPHS["transformer"], path, DEFAULT_OPSET)
    return path


def test_layouts_put_the_end_token_at_every_position():
    layouts = token_layouts(49408, 77)
    assert layouts.argmax(dim=-1).tolist() == list(range(77))
    assert [int((row != 0).sum()) for row in layouts] == list(range(1, 78))


def test_rewritten_encode_text_equals_clip_on_every_layout(tiny):
    layouts = token_layouts(49408, 77)
    with torch.no_grad():
        # the longest row reaches position 76: nothing is cut, and the result is CLIP's to the bit
        assert torch.equal(export.encode_text(tiny, layouts), tiny.encode_text(layouts))
        for length in (1, 2, 7, 40):  # batches cut after their longest end token
            rows = layouts[:length]
            got, want = export.encode_text(tiny, rows), tiny.encode_text(rows)
            assert torch.nn.functional.cosine_similarity(got, want).min() > 0.99999
            assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def _attention_widths(text_graph: Path, tokens: torch.Tensor) -> set[int]:
    """Run the graph under onnxruntime's profiler: how many positions its attention softmaxes spanned."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(text_graph.parent / "profile")
    session = ort.InferenceSession(str(text_graph), options, providers=["CPUExecutionProvider"])
    session.run(None, {"text": tokens.numpy()})
    events = json.loads(Path(session.end_profiling()).read_text())
    return {shape["float"][-1] for e in events if e.get("args", {}).get("op_name") == "Softmax"
            for shape in e["args"]["input_type_shape"]}


def test_text_graph_computes_only_up_to_the_longest_end_token(text_graph):
    assert _attention_widths(text_graph, tokenize(["a photo of a cat", "hi"])) == {7}  # end tokens at 6 and 2
    # the check can fail: a row whose end token sits last makes the whole batch run all 77 positions
    assert _attention_widths(text_graph, token_layouts(49408, 77)[-2:]) == {77}


def test_text_graph_selects_the_same_token_as_pytorch_on_every_layout(tiny, text_graph):
    layouts = token_layouts(49408, 77)
    session = ort.InferenceSession(str(text_graph), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"text": layouts.numpy()})[0])
    with torch.no_grad():
        want = tiny.encode_text(layouts)
    per_row = torch.nn.functional.cosine_similarity(got, want)
    assert per_row.min() > 0.99999
    # each row differs from its neighbours, so selecting a wrong position could not pass
    neighbours = torch.nn.functional.cosine_similarity(want[1:], want[:-1])
    assert neighbours.max() < 0.999


def test_text_graph_has_no_integer_argmax_and_no_index(text_graph):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(text_graph)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    argmax_inputs = [node.input[0] for node in model.graph.node if node.op_type == "ArgMax"]
    assert argmax_inputs, "the end token is selected with ArgMax"
    assert all(types[name] == onnx.TensorProto.FLOAT for name in argmax_inputs)
    assert not [n for n in model.graph.node if n.op_type in ("GatherND", "ScatterND")]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def test_over_long_text_fails_clearly_unless_truncated():
    with pytest.raises(ClipOnnxError, match="--truncate"):
        tokenize([LONG_CAPTION])
    tokens = tokenize([LONG_CAPTION], truncate=True)
    assert tokens.shape == (1, 77) and tokens[0, -1] == 49407
