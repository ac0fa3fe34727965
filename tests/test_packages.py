"""The packages one tag publishes (release/packages.py): one version for all of them, as each manifest
says it; what preflight says about each registry's name; and `python -m release unpublished`, which
makes a re-run of a publishing job upload only what is missing. The registries' read APIs are
tests/loopback_registries.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from release import packages
from tests.loopback_registries import LoopbackRegistries

ROOT = Path(__file__).resolve().parents[1]
REPO = packages.PACKAGES[0].repository().removeprefix("https://github.com/")  # OWNER/NAME
VERSION = packages.PACKAGES[0].version()  # pyproject.toml's


def test_every_package_carries_one_version():
    """Bump them together: the wheel, both crates and the npm package are published from one tag."""
    assert {p.manifest: p.version() for p in packages.PACKAGES} == {p.manifest: VERSION for p in packages.PACKAGES}
    assert packages.disagreeing(f"v{VERSION}") == []


def test_every_package_names_one_repository():
    """Each registry links it, and npm refuses a provenance statement from any other repository."""
    assert {p.manifest: packages.same_repository(p.repository(), REPO) for p in packages.PACKAGES} == {
        p.manifest: True for p in packages.PACKAGES}


@pytest.fixture
def node_manifest(tmp_path, monkeypatch):
    """A copy of every manifest, examples/node/package.json's to be changed."""
    for package in packages.PACKAGES:
        (tmp_path / package.manifest).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / package.manifest).write_text((ROOT / package.manifest).read_text())
    monkeypatch.setattr(packages, "ROOT", tmp_path)
    path = tmp_path / "examples/node/package.json"

    def change(**fields) -> None:
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))

    return change


def test_one_package_bumped_alone_is_named(node_manifest):
    node_manifest(version="9.0.0")
    assert packages.disagreeing(f"v{VERSION}") == [
        f"examples/node/package.json says version 9.0.0, not {VERSION}: set every package's version to {VERSION} "
        f"(pyproject.toml, rust/ftfy/Cargo.toml, rust/Cargo.toml, examples/node/package.json) and tag again"]


@pytest.fixture
def registries(monkeypatch):
    with LoopbackRegistries() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


def test_a_manifest_naming_another_repository_is_named(node_manifest, registries):
    for package in packages.PACKAGES:
        registries.add(package.ecosystem, package.name, f"https://github.com/{REPO}")
    node_manifest(repository={"type": "git", "url": "git+https://github.com/someone/fork.git"})
    assert packages.problems(f"v{VERSION}", REPO) == [
        f"examples/node/package.json names the repository git+https://github.com/someone/fork.git, not "
        f"github.com/{REPO} where this release runs: npm refuses its provenance, and every registry would link "
        f"elsewhere; fix it"]


def test_names_that_are_free_or_ours_pass_and_others_are_named(registries):
    ours = f"git+https://github.com/{REPO}.git"
    assert packages.problems(f"v{VERSION}", REPO) == [
        f"{e} package {n} does not exist yet: publish it once with a token, then add this workflow as its trusted "
        f"publisher (docs/releasing.md, 'Packages: the first publication')"
        for e, n in [("crates", "clip-onnx-ftfy"), ("crates", "clip-onnx"), ("npm", "clip-onnx")]]  # PyPI: pending
    for package in packages.PACKAGES:
        registries.add(package.ecosystem, package.name, ours)
    assert packages.problems(f"v{VERSION}", REPO) == []
    registries.add("npm", "clip-onnx", "https://github.com/someone/else")
    registries.add("crates", "clip-onnx", "")
    assert packages.problems(f"v{VERSION}", REPO) == [
        f"crates package clip-onnx belongs to a package that names no repository, not github.com/{REPO}: choose "
        f"another name, or have it transferred",
        f"npm package clip-onnx belongs to https://github.com/someone/else, not github.com/{REPO}: choose another "
        f"name, or have it transferred"]


@pytest.mark.parametrize("url,ours", [
    (f"git+https://github.com/{REPO}.git", True), (f"https://github.com/{REPO}", True),
    (f"https://github.com/{REPO}/", True), ("https://github.com/owner/clip-onnx-fork", False),
    ("https://gitlab.com/x/owner/clip-onnx", False), ("", False)])
def test_a_registrys_repository_url_is_matched_to_the_github_repository(url, ours):
    assert packages.same_repository(url, REPO) is ours


def unpublished(registries, ecosystem: str, tag: str = f"v{VERSION}") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "release", "unpublished", ecosystem, "--tag", tag], cwd=ROOT,
                          env={**os.environ, **registries.env()}, capture_output=True, text=True, timeout=120)


def test_a_rerun_publishes_only_what_is_missing(registries):
    ours = f"https://github.com/{REPO}"
    registries.add("crates", "clip-onnx-ftfy", ours, "0.0.1")
    assert unpublished(registries, "crates").stdout.split() == ["clip-onnx-ftfy", "clip-onnx"]  # dependency first
    registries.add("crates", "clip-onnx-ftfy", ours, "0.0.1", VERSION)  # the first of two published, then a failure
    assert unpublished(registries, "crates").stdout.split() == ["clip-onnx"]
    registries.add("crates", "clip-onnx", ours, VERSION)
    registries.add("npm", "clip-onnx", ours, VERSION)
    assert [unpublished(registries, e).stdout for e in ("crates", "npm")] == ["", ""]
    assert unpublished(registries, "pypi").stdout == "clip-onnx\n"


def test_unpublished_refuses_a_tag_that_is_not_the_packages_version(registries):
    result = unpublished(registries, "npm", tag="v9.9.9")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"release: error: pyproject.toml says version {VERSION}, not 9.9.9: ")


def test_a_registry_that_cannot_be_read_is_one_line(monkeypatch):
    monkeypatch.setenv("CLIP_ONNX_NPM_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(Exception) as error:
        packages.published(packages.PACKAGES[-1], VERSION)
    assert str(error.value).startswith(f"npm clip-onnx: http://127.0.0.1:9/clip-onnx/{VERSION} could not be read (")
    assert str(error.value).endswith("; run it again") and "\n" not in str(error.value)
