"""Every onnxruntime the project supports loads every graph, from a plain folder and from the Hugging Face
cache's layout (each file a symbolic link into `blobs/`, as `hf_hub_download` leaves it), and gives the
current release's outputs.

- 1.18.1, the oldest that reads the graphs (IR version 10 at opset 18; 1.17.3 refuses IR 10): onnxruntime
  alone, as any consumer calls it.
- 1.24.1, which refuses external data behind a symbolic link: the Python runtime (`clip_onnx.Model`),
  which hands it the mapped bytes instead.
- the current one, in this process.

Each old release runs in its own virtual environment, installed from PyPI."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from clip_onnx.contract import GRAPHS, OLDEST_ONNXRUNTIME
from clip_onnx.model import Model
from exporter import pipeline
from exporter.tolerances import TOLERANCES
from exporter.variants import get_variant
from exporter.verify import row_cosine, synthetic_images, token_layouts
from exporter.weights import random_weights
from tests.loopback_hub import LoopbackHub
from tests.released_hub import publish

ROOT = Path(__file__).resolve().parent.parent
REFUSES_SYMLINKS = "1.24.1"
# onnxruntime 1.18 was built against numpy 1.x; the runtime's own dependencies run the runtime
ENVIRONMENTS = {OLDEST_ONNXRUNTIME: [f"onnxruntime=={OLDEST_ONNXRUNTIME}", "numpy<2"],
                REFUSES_SYMLINKS: [f"onnxruntime=={REFUSES_SYMLINKS}", "numpy", "pillow", "tokenizers", "ftfy==6.3.1",
                                   "huggingface_hub"]}
CASES = [("tiny-ViT", "fp32"), ("tiny-RN", "fp32"), ("tiny-ViT", "fp16")]

# Runs in the old environment: every graph of every folder through onnxruntime alone, or (with "runtime")
# through clip_onnx.Model's session, which checks the files and opens the graph its own way.
RUN = """
import json, sys
import numpy as np, onnxruntime as ort
jobs = json.load(open(sys.argv[1]))
for job in jobs:
    if job["runtime"]:
        from clip_onnx.model import Model
        session = Model(job["folder"]).session(job["graph"])
    else:
        session = ort.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
    feeds = {name: np.load(path) for name, path in job["inputs"].items()}
    for index, output in enumerate(session.run(None, feeds)):
        np.save(f"{job['out']}-{index}.npy", output)
print(ort.__version__)
"""


@pytest.fixture(scope="module", params=list(ENVIRONMENTS))
def old_python(request, tmp_path_factory) -> tuple[str, Path]:
    version = request.param
    folder = tmp_path_factory.mktemp(f"onnxruntime-{version}")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *ENVIRONMENTS[version]], capture_output=True, text=True)
    if install.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"could not install {ENVIRONMENTS[version]} from PyPI:\n{install.stderr[-2000:]}")
        pytest.skip(f"could not install {ENVIRONMENTS[version]} from PyPI (offline?)")
    return version, python


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[tuple[str, str], dict[str, Path]]:
    """Each case's export as a plain folder, and downloaded by `huggingface_hub` from the loopback Hub
    into a cache (symbolic links into blobs/)."""
    root = tmp_path_factory.mktemp("layouts")
    found = {}
    with LoopbackHub() as hub:
        for variant, precision in CASES:
            plain = pipeline.export(random_weights(get_variant(variant), seed=1), variant, root / "dist",
                                    precision=precision, log=lambda _: None)
            repo = f"org/{plain.name}"
            publish(hub, plain, repo)
            cached = Model.from_hub(repo, "v1.0.0", cache_dir=root / "cache", endpoint=hub.url).folder
            found[variant, precision] = {"plain": plain, "cache": cached}
    assert all(p.is_symlink() for f in found.values() for p in f["cache"].iterdir())
    return found


@pytest.mark.parametrize("variant,precision", CASES)
def test_each_supported_onnxruntime_loads_every_graph_from_both_layouts(old_python, layouts, tmp_path, variant,
                                                                      precision):
    version, python = old_python
    folders = layouts[variant, precision]
    manifest = json.loads((folders["plain"] / "manifest.json").read_text())
    feeds = {"image": synthetic_images(manifest["preprocessing"]["resolution"]).numpy(),
             "text": token_layouts(49408, 77)[::7].numpy()}
    for name, array in feeds.items():
        np.save(tmp_path / f"{name}.npy", array)
    jobs = [{"folder": str(folder), "graph": key, "path": str(folder / graph["file"]), "out": str(tmp_path / f"{layout}-{key}"),
             "runtime": version == REFUSES_SYMLINKS, "inputs": {n: str(tmp_path / f"{n}.npy") for n in GRAPHS[key].inputs}}
            for layout, folder in folders.items() for key, graph in manifest["graphs"].items()]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run([str(python), "-c", RUN, str(tmp_path / "jobs.json")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == version
    # fp16 graphs: releases place fp16/fp32 casts differently (measured: 6e-4 of the largest logit apart on
    # tiny-ViT between 1.18.1 and 1.32), so each graph is held to its own precision's tolerance
    tolerance = TOLERANCES[precision]
    current = Model(folders["cache"])
    for key in manifest["graphs"]:
        expected = current.session(key).run(None, {n: feeds[n] for n in GRAPHS[key].inputs})
        for index, want in enumerate(expected):
            plain, cached = (np.load(tmp_path / f"{layout}-{key}-{index}.npy") for layout in ("plain", "cache"))
            assert plain.tobytes() == cached.tobytes(), (key, "one release, two layouts, other outputs")
            assert plain.shape == want.shape and plain.dtype == want.dtype
            assert row_cosine(plain, want) >= tolerance.min_cosine, key
            assert np.abs(plain - want).max() <= tolerance.max_relative * np.abs(want).max(), key


@pytest.mark.parametrize("old_python", [REFUSES_SYMLINKS], indirect=True)
def test_onnxruntime_1_24_1_refuses_the_cache_layout_that_the_runtime_opens(old_python, layouts):
    """Why the runtime maps the data itself: the release alone refuses the symbolic links (1.24.2 and later
    accept them again), and would refuse them in every consumer that calls it directly."""
    _, python = old_python
    graph = layouts["tiny-ViT", "fp32"]["cache"] / "tiny-ViT_visual.onnx"
    code = f"import onnxruntime as ort; ort.InferenceSession({str(graph)!r}, providers=['CPUExecutionProvider'])"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "escapes model directory" in result.stderr, result.stderr[-2000:]
