"""`pip install clip-onnx` rehearsed against a real package index on loopback: the wheel built as
tests/test_packaging.py and the release's wheel job build it, checked with `twine check --strict`,
uploaded with `twine upload` and a password to pypiserver (the tools exactly as release/locks/build.txt
pins them), installed into a fresh virtual environment from that index (its dependencies from PyPI),
and that install's `clip-onnx` downloading the conformance export released on the loopback Hub by the
release table the wheel carries (`Model.from_release`: the variant's name, no repo or revision) and
classifying the committed images as the checkout's runtime does.

What a local index cannot show (trusted publishing, PEP 740 attestations) is the canary's TestPyPI
upload's to show (.github/workflows/canary.yml)."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import venv
from pathlib import Path

import pytest

from release import packages
from tests.conformance import COMMITTED
from tests.loopback_hub import LoopbackHub
from tests.released_hub import serve

ROOT = Path(__file__).resolve().parent.parent
VERSION = packages.PACKAGES[0].version()  # pyproject.toml's
VECTORS = json.loads((COMMITTED / "vectors.json").read_text())
# what the pypiserver double is: the index pip and twine speak to (upload, simple API), not PyPI's publishing
SERVER = ["pypiserver==2.4.2", "passlib==1.7.4"]
USER = "publisher"


def test_the_wheel_shows_pypi_its_links_and_passes_twine_check(request):
    """What PyPI's sidebar shows (project.urls, classifiers, keywords) read from the built wheel's METADATA;
    and what the release's wheel job runs before anything is public, `twine check --strict` (the README
    renders on PyPI, the metadata has what PyPI requires), on every change (twine is in the test extra)."""
    import email
    import zipfile

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    built = request.getfixturevalue("wheel")
    archive = zipfile.ZipFile(built)
    metadata = email.message_from_bytes(archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))))
    assert metadata.get_all("Project-URL") == [f"{name}, {link}" for name, link in project["urls"].items()]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(project["urls"])
    assert metadata.get_all("Classifier") == project["classifiers"] and metadata["Keywords"] == ",".join(project["keywords"])
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # License-Expression says it
    minor = int(project["requires-python"].removeprefix(">=3."))
    assert f"Programming Language :: Python :: 3.{minor}" in project["classifiers"]
    assert f"Programming Language :: Python :: 3.{minor - 1}" not in project["classifiers"]
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(built)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "PASSED" in result.stdout, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def _classify(clip_onnx: list, folder: Path, env: dict | None = None) -> list[str]:
    return _run([*clip_onnx, "classify", *VECTORS["images"], "-m", folder, "--labels", ",".join(VECTORS["labels"]),
                 "--top", "9"], cwd=COMMITTED, env=env).stdout.splitlines()


@pytest.mark.registries
def test_pip_install_clip_onnx_from_an_index_classifies_a_hub_release(pinned_wheel, tmp_path):
    wheel = pinned_wheel  # as the release's wheel job builds it: with the release table of the loopback release
    times: dict[str, float] = {}
    start = time.monotonic()
    # pip's own settings only: no find-links or index of this machine may supply clip-onnx
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_FIND_LINKS", "PIP_INDEX", "PIP_EXTRA_INDEX",
                                                                    "PIP_NO_INDEX", "TWINE_", "HF_"))}
    env |= {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf-home")}

    tools = tmp_path / "tools"
    venv.create(tools, with_pip=True)
    python = tools / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--require-hashes", "-r", ROOT / "release/locks/build.txt"], env=env)
    _run([python, "-m", "pip", "install", "-q", *SERVER], env=env)
    times["install twine and pypiserver"] = time.monotonic() - start

    password = secrets.token_urlsafe(16)
    htpasswd = tmp_path / "htpasswd"
    _run([python, "-c", "import sys; from passlib.apache import HtpasswdFile\n"
                        "h = HtpasswdFile(sys.argv[1], new=True); h.set_password(sys.argv[2], sys.argv[3]); h.save()",
          htpasswd, USER, password])
    packages, port = tmp_path / "packages", _free_port()
    packages.mkdir()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "pypiserver.log").open("w")
    server = subprocess.Popen([tools / "bin" / "pypi-server", "run", "-i", "127.0.0.1", "-p", str(port),
                               "-a", "update", "-P", htpasswd, "--disable-fallback", packages],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/simple/", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "pypiserver.log").read_text()
                time.sleep(0.05)
        else:
            pytest.fail("pypiserver did not answer")

        _run([python, "-m", "twine", "check", "--strict", wheel], env=env)
        upload = [python, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                  "--repository-url", f"{url}/", "-u", USER]
        refused = subprocess.run([str(c) for c in [*upload, "-p", "not-" + password, wheel]],
                                 capture_output=True, text=True, env=env)
        assert refused.returncode != 0 and not list(packages.iterdir()), refused.stdout + refused.stderr
        mark = time.monotonic()
        _run([*upload, "-p", password, wheel], env=env)
        times["twine upload"] = time.monotonic() - mark
        assert [p.name for p in packages.iterdir()] == [wheel.name]
        assert (packages / wheel.name).read_bytes() == wheel.read_bytes()

        user = tmp_path / "user"
        venv.create(user, with_pip=True)
        mark = time.monotonic()
        report = tmp_path / "report.json"
        _run([user / "bin" / "python", "-m", "pip", "install", "-q", f"clip-onnx=={VERSION}", "--report", report,
              "--index-url", f"{url}/simple/", "--extra-index-url", "https://pypi.org/simple"], env=env)
        times["pip install clip-onnx (fresh venv)"] = time.monotonic() - mark
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    installed = {item["metadata"]["name"]: item["download_info"]["url"] for item in json.loads(report.read_text())["install"]}
    assert installed["clip-onnx"] == f"{url}/packages/{wheel.name}", installed["clip-onnx"]  # from the loopback index
    assert not {"torch", "onnx", "onnxscript", "openai-clip"} & set(installed), sorted(installed)

    with LoopbackHub() as hub:
        release = serve(hub)
        mark = time.monotonic()
        # by the variant's name alone: the installed package pins the release (tag and every SHA-256)
        folder = _run([user / "bin" / "python", "-c",
                       "import sys; from clip_onnx import Model\n"
                       "m = Model.from_release(sys.argv[1], cache_dir=sys.argv[2], endpoint=sys.argv[3])\n"
                       "print(m.folder, m.__class__.__module__, sep='\\n')",
                       release["name"], tmp_path / "hub-cache", release["endpoint"]],
                      env=env, cwd=tmp_path).stdout.splitlines()
        times["Model.from_release (installed)"] = time.monotonic() - mark
    assert f"models--{release['repo'].replace('/', '--')}" in folder[0]
    assert folder[1] == "clip_onnx.model"
    mark = time.monotonic()
    got = _classify([user / "bin" / "clip-onnx"], Path(folder[0]), env)
    times["clip-onnx classify (installed)"] = time.monotonic() - mark
    want = _classify([sys.executable, "-m", "clip_onnx"], COMMITTED / VECTORS["exports"][0]["folder"])
    scores = re.compile(r" (\d\.\d{3})(?=,|$)")
    assert [scores.sub("", line) for line in got] == [scores.sub("", line) for line in want] != []
    # the printed probabilities: the same to the digit, unless onnxruntime's release differs from the checkout's
    assert got == want or all(abs(float(a) - float(b)) <= 0.0011 for g, w in zip(got, want, strict=True)
                              for a, b in zip(scores.findall(g), scores.findall(w), strict=True)), (got, want)
    times["total"] = time.monotonic() - start
    print("".join(f"\n  {name}: {seconds:.1f} s" for name, seconds in times.items()),
          f"\n  classify's lines identical to the checkout's: {got == want}")
