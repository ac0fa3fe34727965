"""The files themselves: the self-contained graph written in fragments is the same model as torch's own
inline save, and an export is reproducible to the byte."""

from __future__ import annotations

import subprocess
import sys

import onnx
import torch
from onnx import numpy_helper

from exporter import pipeline
from exporter.contract import GRAPHS
from exporter.export import WRAPPERS, example_inputs, save_single_file
from exporter.variants import get_variant
from exporter.weights import random_weights


def test_fragmented_single_file_equals_an_inline_save(tmp_path):
    model = random_weights(get_variant("tiny-RN")).model.float().eval()
    spec = GRAPHS["forward"]
    examples = example_inputs(model, torch.device("cpu"))
    with torch.no_grad():
        program = torch.onnx.export(WRAPPERS[spec.key](model).eval(), tuple(examples[n] for n in spec.inputs),
                                    input_names=list(spec.inputs), output_names=list(spec.outputs), dynamo=True,
                                    opset_version=18, verbose=False)
    program.save(tmp_path / "inline.onnx", external_data=False)
    save_single_file(program, tmp_path / "fragments.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fragments.onnx", "inline.onnx"]  # no scratch left
    inline, fragments = (onnx.load(str(tmp_path / n)) for n in ("inline.onnx", "fragments.onnx"))
    onnx.checker.check_model(fragments)
    assert [t.name for t in fragments.graph.initializer] == [t.name for t in inline.graph.initializer]
    assert len(inline.graph.initializer) > 50
    for a, b in zip(fragments.graph.initializer, inline.graph.initializer):
        assert a.data_location == onnx.TensorProto.DEFAULT
        assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes()
    del inline.graph.initializer[:], fragments.graph.initializer[:]
    assert fragments.SerializeToString() == inline.SerializeToString()


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
    assert names == sorted(p.name for p in child.iterdir()) and len(names) == 6
    for name in names:
        assert (here / name).read_bytes() == (child / name).read_bytes(), name
    # the comparison can fail: another seed gives other bytes
    other = pipeline.export(random_weights(get_variant("tiny-RN"), seed=1), "tiny-RN", tmp_path / "other",
                            graphs=["visual"], verify=False, log=lambda _: None)
    assert (other / "tiny-RN_visual.onnx").read_bytes() != (here / "tiny-RN_visual.onnx").read_bytes()
