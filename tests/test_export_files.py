"""The files themselves: convolution weights are the model's own (BatchNorms folded before the exporter
copies them), and an export is reproducible to the byte."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from exporter import memory, pipeline
from clip_onnx.contract import GRAPHS
from exporter.export import WRAPPERS, example_inputs, export_graph, fold_batch_norms
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.variants import get_variant
from exporter.verify import max_pairwise_cosine, photos, row_cosine
from exporter.weights import random_weights


def torch_export(variant: str, graph: str) -> torch.onnx.ONNXProgram:
    """torch's exporter called directly on one graph of a random-weight variant, nothing saved."""
    model = random_weights(get_variant(variant)).model.float().eval()
    spec = GRAPHS[graph]
    examples = example_inputs(model, torch.device("cpu"))
    with torch.no_grad():
        return torch.onnx.export(WRAPPERS[spec.key](model).eval(), tuple(examples[n] for n in spec.inputs),
                                 input_names=list(spec.inputs), output_names=list(spec.outputs), dynamo=True,
                                 opset_version=18, verbose=False)


def test_batch_norms_are_folded_in_place_before_the_export(tmp_path):
    """Left to torch's exporter, every BatchNorm is folded into a new copy of its convolution's weight
    while the model holds the old one (RN50x64: 1.6 GB more at the export's peak). Folded in place
    beforehand, the graph's convolution weights are the model's own tensors, bit for bit."""
    model = random_weights(get_variant("tiny-RN")).model.eval()
    images = photos(model.visual.input_resolution)
    with torch.no_grad():
        before = model.encode_image(images).numpy()
        assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19
        fold_batch_norms(model)
        after = model.encode_image(images).numpy()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert row_cosine(after, before) >= TOLERANCES["fp32"].min_cosine
    assert max_pairwise_cosine(after) < MAX_INPUT_COSINE  # different photos stay apart
    export_graph(model, GRAPHS["visual"], tmp_path / "visual.onnx", 18)
    graph = onnx.load(str(tmp_path / "visual.onnx"))
    exported = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    convolutions = {f"model.visual.{n}.weight": m.weight.detach().numpy() for n, m in model.visual.named_modules()
                    if isinstance(m, nn.Conv2d)}
    assert len(convolutions) == 19 and "BatchNormalization" not in {n.op_type for n in graph.graph.node}
    for name, weight in convolutions.items():
        assert np.array_equal(exported[name], weight), name


def test_same_weights_and_options_give_byte_identical_files(tmp_path):
    """Run after run, process after process: one export inside this test process (after whatever it
    exported before), one in a fresh `clip-onnx` process; every file, manifest included, is identical."""
    pipeline.export(random_weights(get_variant("tiny-RN"), seed=0), "tiny-RN", tmp_path / "here",
                    verify=False, log=lambda _: None)
    subprocess.run([sys.executable, "-m", "exporter", "export", "tiny-RN", "--weights", "random", "--seed", "0",
                    "--no-verify", "-o", str(tmp_path / "child")], check=True,
                   capture_output=True)
    here, child = tmp_path / "here" / "tiny-RN", tmp_path / "child" / "tiny-RN"
    names = sorted(p.name for p in here.iterdir())
    assert names == sorted(p.name for p in child.iterdir()) and len(names) == 8  # 3 graphs, 2 data files, 3 JSON
    for name in names:
        assert (here / name).read_bytes() == (child / name).read_bytes(), name
    # the comparison can fail: another seed gives other bytes
    other = pipeline.export(random_weights(get_variant("tiny-RN"), seed=1), "tiny-RN", tmp_path / "other",
                            graphs=["visual"], verify=False, log=lambda _: None)
    assert (other / "tiny-RN_visual.onnx.data").read_bytes() != (here / "tiny-RN_visual.onnx.data").read_bytes()


def test_the_rewrite_matchers_memory_is_found_and_dropped():
    """exporter.memory clears private state of onnxscript's pattern matchers (pyproject.toml bounds
    onnxscript to the releases tested): an export must leave state there for it to find, and clearing
    it must leave none."""
    torch_export("tiny-ViT", "visual")
    assert memory.forget_rewrite_matches() > 0
    assert memory.forget_rewrite_matches() == 0
