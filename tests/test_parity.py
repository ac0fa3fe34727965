"""Variants x precisions x graphs x input sets: onnxruntime against PyTorch float32, number by number.

The default run covers the small configurations of both families in every precision; `-m full` covers
all nine OpenAI variants at full size in both published precisions (fp32, fp16).
"""

from __future__ import annotations

import numpy as np
import pytest

from clip_onnx.contract import GRAPHS, PUBLISHED_PRECISIONS
from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES
from exporter.variants import VARIANTS, folder_name
from exporter.verify import partner

DEFAULT = [("tiny-ViT", "fp32"), ("tiny-RN", "fp32"), ("tiny-ViT", "fp16"), ("tiny-RN", "fp16"),
           ("tiny-ViT", "int8"), ("tiny-RN", "int8")]
FULL = [(v.name, p) for v in VARIANTS.values() if v.published for p in PUBLISHED_PRECISIONS if (v.name, p) not in DEFAULT]
CASES = [pytest.param((v, p), id=f"{folder_name(v)}-{p}") for v, p in DEFAULT] + [
    pytest.param((v, p), id=f"{folder_name(v)}-{p}", marks=pytest.mark.full) for v, p in FULL]
# every input set that feeds each graph; token layouts (end token at every position) feed the text tower
GRAPH_INPUTS = [pytest.param(g, s, id=f"{g}-{s}") for g in GRAPHS for s in ("single", "photos", "synthetic")] + [
    pytest.param("transformer", "token-layouts", id="transformer-token-layouts")]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("graph,input_set", GRAPH_INPUTS)
@pytest.mark.parametrize("exported", CASES, indirect=True)
def test_graph_matches_pytorch(exported, graph, input_set):
    expected = exported.references.outputs[graph, input_set]
    inputs = next(s for s in exported.references.sets if s.name == input_set)
    feeds = {"image": inputs.image, "text": inputs.text}
    actual = exported.session(graph).run(None, {n: feeds[n].numpy() for n in GRAPHS[graph].inputs})
    tolerance = TOLERANCES[exported.precision]
    scale = exported.references.logit_scale if graph == "forward" else np.abs(expected[0]).max()
    for got, want in zip(actual, expected):
        assert got.shape == want.shape and got.dtype == np.float32
        if graph != "forward":  # the cosine is a tolerance of embeddings (see verify.Tolerance)
            assert cosines(got, want).min() >= tolerance.min_cosine
        assert np.abs(got - want).max() <= tolerance.max_relative * scale
    if graph == "forward":
        decisions = actual[0].argmax(1), expected[0].argmax(1)
        np.testing.assert_allclose(actual[1], actual[0].T)
    else:  # the zero-shot decision against the other tower's embeddings
        other = partner(exported.references, graph, input_set)
        decisions = (actual[0] @ other.T).argmax(1), (expected[0] @ other.T).argmax(1)
    assert np.mean(decisions[0] == decisions[1]) >= tolerance.min_agreement


@pytest.mark.parametrize("exported", CASES, indirect=True)
def test_export_recorded_a_passing_verification(exported):
    manifest = exported.manifest
    verification = manifest["verification"]
    assert verification["passed"] and verification["precision"] == exported.precision
    checked = {(c["graph"], c["input_set"]) for c in verification["comparisons"]}
    assert checked >= {(g, "photos") for g in GRAPHS} | {("transformer", "token-layouts")}
    assert manifest["opset"] == 18 and manifest["ir_version"] == 10


@pytest.mark.parametrize("exported", CASES, indirect=True)
def test_random_weights_discriminate_inputs(exported):
    """A parity pass means something only if different inputs give clearly different outputs."""
    references = exported.references
    for key, value in references.discrimination.items():
        assert value < MAX_INPUT_COSINE, f"different {key} give near-identical embeddings ({value})"
    logits = references.outputs["forward", "photos"][0]
    assert np.ptp(logits, axis=1).min() > 1e-2


@pytest.mark.parametrize("exported", CASES[:2], indirect=True)
def test_parity_check_fails_on_a_wrong_input(exported):
    """The comparison can fail: the visual graph run on other photos misses the references."""
    photos = next(s for s in exported.references.sets if s.name == "photos")
    wrong = np.roll(photos.image.numpy(), 1, axis=0)
    got = exported.session("visual").run(None, {"image": wrong})[0]
    want = exported.references.outputs["visual", "photos"][0]
    assert cosines(got, want).min() < TOLERANCES[exported.precision].min_cosine - 1e-4
