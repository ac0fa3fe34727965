"""What `pip install clip-onnx` gives: the torch-free runtime `clip_onnx` and the exporter's code, not
the release tooling or the test doubles; and a base install that never loads torch."""

from __future__ import annotations

import re
import subprocess
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPORT_ONLY = ("torch", "torchvision", "clip", "onnx", "onnxscript")


def test_the_wheel_holds_the_runtime_and_the_exporter_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if n.endswith(".py")}
    assert packages == {"clip_onnx", "exporter"}
    assert "clip_onnx/model.py" in names and "exporter/pipeline.py" in names
    assert not [n for n in names if "loopback" in n or n.startswith(("release/", "tests/"))]


def test_the_wheel_says_on_pypi_what_pyproject_says(wheel):
    """What PyPI shows and pip resolves, read from the built wheel's METADATA: the release's pypi job
    uploads this very build."""
    import email
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    archive = zipfile.ZipFile(wheel)
    info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    assert (metadata["Name"], metadata["Version"]) == ("clip-onnx", project["version"])
    assert metadata["Requires-Python"] == project["requires-python"] and metadata["License-Expression"] == "MIT"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~ ;\[]", r)[0] for r in requirements}

    base = names([r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r])
    assert base == names(project["dependencies"]) and not base & set(EXPORT_ONLY), base
    assert set(metadata.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    assert "clip-onnx = exporter.cli:main" in archive.read(f"{info}/entry_points.txt").decode()
    assert f"{info}/licenses/LICENSE" in archive.namelist() and "exporter/weight_pins.json" in archive.namelist()


def test_a_base_install_runs_the_runtime_without_torch(wheel, tmp_path):
    """A fresh virtual environment, `pip install` of the wheel with no extras (its dependencies from
    the package index): `import clip_onnx` loads none of the exporter's libraries, and the exporter's
    commands name the extra to install instead of failing halfway."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python, script = env / "bin" / "python", env / "bin" / "clip-onnx"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True, text=True)
    probe = ("import sys, clip_onnx\n"
             f"loaded = [m for m in {EXPORT_ONLY!r} if m in sys.modules]\n"
             "assert not loaded, loaded\n"
             "assert clip_onnx.Model and issubclass(clip_onnx.ClipOnnxError, Exception)\n"
             "import importlib.util\n"
             f"print([m for m in {EXPORT_ONLY!r} if importlib.util.find_spec(m)])")
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", "the base install pulled in an exporter library"
    for command in (["export", "ViT-B/32"], ["verify", str(tmp_path)]):
        result = subprocess.run([script, *command], capture_output=True, text=True)
        assert result.returncode == 1 and result.stdout == ""
        assert "pip install 'clip-onnx[export]'" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([script, "list"], capture_output=True, text=True)  # counted without torch
    assert result.returncode == 0 and "ViT-L/14@336px" in result.stdout, result.stderr
    result = subprocess.run([script, "classify", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--labels" in result.stdout


def test_the_release_wheel_carries_the_table_it_was_built_with_and_a_checkouts_none(wheel, pinned_wheel):
    """The wheel job writes clip_onnx/release.json before it builds (python -m release table); the wheel
    must carry it, or the installed runtime would pin no release."""
    import json

    from tests.released_hub import pinned

    assert json.loads(zipfile.ZipFile(pinned_wheel).read("clip_onnx/release.json")) == pinned()
    assert "clip_onnx/release.json" not in zipfile.ZipFile(wheel).namelist()
