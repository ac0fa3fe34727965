"""Shared fixtures: exports are expensive, so each (variant, precision) is exported once a session."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import onnxruntime as ort
import pytest

from exporter import pipeline, verify
from exporter.variants import folder_name, get_variant
from exporter.verify import References
from exporter.weights import random_weights
from tests.loopback_github import LoopbackGitHub
from tests.loopback_hub import LoopbackHub

ROOT = Path(__file__).resolve().parent.parent


class Exported:
    """An exported folder plus the float32 PyTorch references of the same random weights."""

    def __init__(self, variant: str, precision: str, root: Path):
        self.variant, self.precision = variant, precision
        weights = random_weights(get_variant(variant), seed=0)
        self.references = References.compute(weights.model, ["forward", "visual", "transformer"])
        self.folder = pipeline.export(weights, folder_name(variant), root, precision=precision, log=lambda _: None)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self._sessions: dict[str, ort.InferenceSession] = {}

    def session(self, graph: str) -> ort.InferenceSession:
        if graph not in self._sessions:
            path = self.folder / self.manifest["graphs"][graph]["file"]
            self._sessions = {graph: verify.session(path)}  # one at a time
        return self._sessions[graph]


@pytest.fixture(scope="session")
def exported(request, tmp_path_factory) -> Exported:
    """Parametrize indirectly with (variant, precision): pytest then runs all tests of one export
    together and releases it before building the next, so one full-size model is held at a time."""
    variant, precision = request.param
    return Exported(variant, precision, tmp_path_factory.mktemp(f"{folder_name(variant)}-{precision}"))


@pytest.fixture
def quick_hub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `huggingface_hub` client with no waits between retries and no progress bars."""
    # http_backoff sleeps 1+2+4+8+8 s over its five retries; the failure tests don't need to wait.
    # (only `sleep` of the `time` module that huggingface_hub.utils._http sees is replaced)
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils._http"), "time",
                        SimpleNamespace(sleep=lambda _seconds: None))
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", True)


@pytest.fixture
def hub(quick_hub_client) -> Iterator[LoopbackHub]:
    """A Hugging Face Hub on loopback, with the real client set to talk to it quickly."""
    with LoopbackHub() as fake:
        yield fake
        assert fake.internal_errors == []


@pytest.fixture
def github() -> Iterator[LoopbackGitHub]:
    """GitHub's REST API on loopback, with the repository `owner/clip-onnx`."""
    with LoopbackGitHub() as fake:
        yield fake


@pytest.fixture(scope="session")
def release_exports(tmp_path_factory) -> Path:
    """Verified tiny-ViT exports in fp32 and fp16 (two graphs each, to stay quick), laid out as the
    release workflow's export jobs write them: `<precision>/<folder>/`."""
    root = tmp_path_factory.mktemp("release-exports")
    quiet = dict(log=lambda _: None, graphs=["visual", "transformer"])
    for precision in ("fp32", "fp16"):
        pipeline.export(random_weights(get_variant("tiny-ViT")), "tiny-ViT", root / precision, precision=precision,
                        **quiet)
    return root


def build_wheel(root: Path, table: dict | None = None) -> Path:
    """The wheel as the release builds it (`pip wheel --no-deps --no-build-isolation`), built from a copy
    of the checkout (release/ and tests/ included) under `root`, so no earlier build/ folder of the
    checkout can add files to it; `table`: the release table the wheel job writes into it first."""
    source, out = root / "clip-onnx", root / "wheel"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "mutants", "node_modules", "target", "*.egg-info", "__pycache__", "release.json"))
    if table is not None:
        (source / "clip_onnx" / "release.json").write_text(json.dumps(table))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True)
    return next(out.glob("clip_onnx-*.whl"))


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the checkout: it pins no release."""
    return build_wheel(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="session")
def pinned_wheel(tmp_path_factory) -> Path:
    """The wheel as the release workflow builds it, carrying the table of tests/released_hub.py's release."""
    from tests.released_hub import pinned

    return build_wheel(tmp_path_factory.mktemp("pinned-source"), pinned())
