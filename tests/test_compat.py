"""The oldest onnxruntime we claim runs the exported graphs and gives the same outputs as the current one.

The graphs are IR version 10 at opset 18: onnxruntime 1.18 is the first release that reads IR 10
(1.17.3 refuses it). The old release runs in its own virtual environment, installed from PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from exporter import pipeline
from clip_onnx.contract import GRAPHS
from exporter.tolerances import TOLERANCES
from exporter.variants import get_variant
from exporter.verify import row_cosine, synthetic_images, token_layouts
from exporter.weights import random_weights

OLDEST_ONNXRUNTIME = "1.18.1"
# onnxruntime 1.18 was built against numpy 1.x
OLD_ENVIRONMENT = [f"onnxruntime=={OLDEST_ONNXRUNTIME}", "numpy<2"]

RUN = """
import json, sys
import numpy as np, onnxruntime as ort
jobs = json.load(open(sys.argv[1]))
for job in jobs:
    session = ort.InferenceSession(job["graph"], providers=["CPUExecutionProvider"])
    feeds = {name: np.load(path) for name, path in job["inputs"].items()}
    for index, output in enumerate(session.run(None, feeds)):
        np.save(f"{job['out']}-{index}.npy", output)
print(ort.__version__)
"""


@pytest.fixture(scope="module")
def old_python(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("old-onnxruntime")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *OLD_ENVIRONMENT], capture_output=True, text=True)
    if install.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"could not install {OLD_ENVIRONMENT} from PyPI:\n{install.stderr[-2000:]}")
        pytest.skip(f"could not install {OLD_ENVIRONMENT} from PyPI (offline?)")
    return python


@pytest.mark.parametrize("variant,precision", [("tiny-ViT", "fp32"), ("tiny-RN", "fp32"), ("tiny-ViT", "fp16")])
def test_oldest_onnxruntime_matches_current(old_python, tmp_path, variant, precision):
    weights = random_weights(get_variant(variant), seed=1)
    folder = pipeline.export(weights, variant, tmp_path / "dist", precision=precision, log=lambda _: None)
    manifest = json.loads((folder / "manifest.json").read_text())
    feeds = {"image": synthetic_images(manifest["preprocessing"]["resolution"]).numpy(),
             "text": token_layouts(49408, 77)[::7].numpy()}
    for name, array in feeds.items():
        np.save(tmp_path / f"{name}.npy", array)
    jobs = [{"graph": str(folder / graph["file"]), "out": str(tmp_path / key),
             "inputs": {n: str(tmp_path / f"{n}.npy") for n in GRAPHS[key].inputs}}
            for key, graph in manifest["graphs"].items()]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run([str(old_python), "-c", RUN, str(tmp_path / "jobs.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == OLDEST_ONNXRUNTIME
    # fp16 graphs: the two releases place fp16/fp32 casts differently (measured: 6e-4 of the largest
    # logit apart on tiny-ViT), so each graph is held to its own precision's tolerance
    tolerance = TOLERANCES[precision]
    for job, (key, graph) in zip(jobs, manifest["graphs"].items()):
        session = ort.InferenceSession(job["graph"], providers=["CPUExecutionProvider"])
        current = session.run(None, {n: feeds[n] for n in GRAPHS[key].inputs})
        for index, expected in enumerate(current):
            old = np.load(f"{job['out']}-{index}.npy")
            assert old.shape == expected.shape and old.dtype == expected.dtype
            assert row_cosine(old, expected) >= tolerance.min_cosine, key
            assert np.abs(old - expected).max() <= tolerance.max_relative * np.abs(expected).max(), key
