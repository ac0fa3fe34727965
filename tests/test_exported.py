"""Point the suite at already exported files (and their real weights): how a release verifies what it
publishes. `CLIP_ONNX_EXPORTED=dist pytest tests/test_exported.py` checks every folder under dist/
against its manifest's SHA-256s, re-loads the weights its manifest names (OpenAI's download cache,
the checkpoint, or the random seed) and re-runs the PyTorch comparison."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.contract import GRAPHS
from exporter.pipeline import verify_folder

ROOT = os.environ.get("CLIP_ONNX_EXPORTED")
FOLDERS = sorted(p.parent for p in Path(ROOT).glob("**/manifest.json")) if ROOT else []


@pytest.mark.skipif(not ROOT, reason="set CLIP_ONNX_EXPORTED=DIR to verify exported folders")
def test_folders_were_found():
    assert FOLDERS, f"no manifest.json under {ROOT}"


@pytest.mark.parametrize("folder", FOLDERS, ids=[str(f) for f in FOLDERS])
def test_exported_folder_matches_pytorch(folder):
    report = verify_folder(folder, log=lambda _: None)
    print(report.table())
    assert report.passed
    assert {c.graph for c in report.comparisons} <= set(GRAPHS)
