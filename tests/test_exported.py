"""Point the suite at already exported files (and their real weights): how a release verifies what it
publishes. `CLIP_ONNX_EXPORTED=dist pytest tests/test_exported.py` checks every folder under dist/
against its manifest's SHA-256s, re-loads the weights its manifest names (OpenAI's download cache,
the checkpoint, or the random seed) and re-runs the PyTorch comparison. Without the variable the
same tests run on a tiny-ViT folder exported here, so they can fail in every run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from exporter import pipeline
from clip_onnx.contract import GRAPHS
from clip_onnx.errors import ClipOnnxError
from exporter.variants import get_variant
from exporter.weights import random_weights

ROOT = os.environ.get("CLIP_ONNX_EXPORTED")
FOLDERS = sorted(p.parent for p in Path(ROOT).glob("**/manifest.json")) if ROOT else []
SELF_MADE = "tiny-ViT exported by this test"


@pytest.fixture(scope="module")
def self_made(tmp_path_factory) -> Path:
    return pipeline.export(random_weights(get_variant("tiny-ViT")), "tiny-ViT", tmp_path_factory.mktemp("exported"),
                           graphs=["visual", "transformer"], log=lambda _: None)


@pytest.fixture
def folder(request, self_made) -> Path:
    if request.param is None:
        pytest.fail(f"CLIP_ONNX_EXPORTED={ROOT}: no manifest.json under it")
    return self_made if request.param == SELF_MADE else Path(request.param)


@pytest.mark.parametrize("folder", ([str(f) for f in FOLDERS] or [None]) if ROOT else [SELF_MADE], indirect=True)
def test_exported_folder_matches_pytorch(folder):
    report = pipeline.verify_folder(folder, log=lambda _: None)
    print(report.table())
    assert report.passed
    assert report.comparisons and {c.graph for c in report.comparisons} <= set(GRAPHS)


def test_a_folder_changed_after_export_is_refused(self_made, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(self_made, copy)
    graph = copy / "tiny-ViT_visual.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF  # same size: only the SHA-256 can tell
    graph.write_bytes(bytes(data))
    with pytest.raises(ClipOnnxError, match="tiny-ViT_visual.onnx does not match the SHA-256"):
        pipeline.verify_folder(copy, log=lambda _: None)
