"""Three graphs in the bytes of two (exporter/shared_weights.py): the forward graph reads the encoders'
data files, its own files hold little beyond their graph structure, and every graph computes exactly
what the same graph computes with every tensor inside it (the layout before sharing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clip_onnx.contract import GRAPHS
from exporter import pipeline
from exporter.variants import get_variant
from exporter.verify import photos, synthetic_images, token_layouts
from exporter.weights import random_weights

CASES = [("tiny-ViT", "fp32"), ("tiny-RN", "fp32"), ("tiny-ViT", "fp16"), ("tiny-RN", "fp16"), ("tiny-ViT", "int8")]


def inline_copy(folder: Path, file_name: str, out: Path) -> Path:
    """The graph with every tensor inside its one `.onnx` file: the layout every export had before sharing."""
    out.mkdir(exist_ok=True)
    onnx.save_model(onnx.load(str(folder / file_name)), str(out / file_name))
    return out / file_name


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def export(request, tmp_path_factory) -> Path:
    variant, precision = request.param
    return pipeline.export(random_weights(get_variant(variant), seed=3), variant, tmp_path_factory.mktemp("shared"),
                           precision=precision, verify=False, log=lambda _: None)


def test_the_forward_graph_stores_nothing_the_encoders_hold(export):
    manifest = json.loads((export / "manifest.json").read_text())
    graphs = manifest["graphs"]
    own = [name for name in graphs["forward"]["files"] if name not in graphs["visual"]["files"] + graphs["transformer"]["files"]]
    assert own == [graphs["forward"]["file"]]  # no data file of its own
    encoders = {name for key in ("visual", "transformer") for name in graphs[key]["files"][1:]}
    assert set(graphs["forward"]["files"][1:]) == encoders  # both data files, the tokenizer and preprocess.json
    sizes = {name: facts["bytes"] for name, facts in manifest["files"].items()}
    assert sizes[own[0]] <= 2**20  # its operators; torch's per-node debug records are dropped
    assert sorted(name for name in sizes if name.endswith(".data")) == sorted(
        GRAPHS[key].data_file_name(manifest["name"], manifest["precision"]) for key in ("visual", "transformer"))


def test_every_graph_computes_what_its_self_contained_layout_computes(export, tmp_path):
    """Bit for bit, on the verification's inputs: sharing moves tensors' bytes, never changes them. Against
    the self-contained copies, the forward graph costs its own `.onnx` file alone, and the three graphs
    take at most 52% of their bytes."""
    manifest = json.loads((export / "manifest.json").read_text())
    resolution = manifest["preprocessing"]["resolution"]
    feeds = {"image": np.concatenate([photos(resolution).numpy(), synthetic_images(resolution).numpy()]),
             "text": token_layouts(manifest["tokenizer"]["vocab_size"], 77).numpy()}
    inline_bytes = {}
    for key in GRAPHS:
        file_name = manifest["graphs"][key]["file"]
        inline = inline_copy(export, file_name, tmp_path)
        inline_bytes[key] = inline.stat().st_size
        for shared, alone in zip(run(export / file_name, feeds), run(inline, feeds), strict=True):
            assert shared.tobytes() == alone.tobytes(), key
    sizes = {name: facts["bytes"] for name, facts in manifest["files"].items() if name.endswith((".onnx", ".data"))}
    forward_own = sizes[manifest["graphs"]["forward"]["file"]]
    # the data files' alignment (a page per tensor at most) is the only other difference
    padding = 4096 * sum(len(onnx.load(str(export / n), load_external_data=False).graph.initializer) for n in sizes
                         if n.endswith(".onnx"))
    assert sum(sizes.values()) <= inline_bytes["visual"] + inline_bytes["transformer"] + forward_own + padding
    assert sum(sizes.values()) <= 0.52 * sum(inline_bytes.values()), (sizes, inline_bytes)


def test_a_forward_graph_alone_keeps_its_weights_in_its_own_data_file(tmp_path):
    folder = pipeline.export(random_weights(get_variant("tiny-ViT"), seed=3), "tiny-ViT", tmp_path, precision="fp16",
                             graphs=["forward"], verify=False, log=lambda _: None)
    graphs = json.loads((folder / "manifest.json").read_text())["graphs"]
    assert graphs["forward"]["files"] == ["tiny-ViT.onnx", "tiny-ViT-fp16.onnx.data", "tokenizer.json", "preprocess.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json", *graphs["forward"]["files"]])
