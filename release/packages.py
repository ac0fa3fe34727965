"""The packages a tag publishes beside the model files, one per ecosystem: the wheel on PyPI, the crates
on crates.io, the npm package. Each carries the tag's version, written in its own manifest; a maintainer
edits all of them together (`tests/test_packages.py` fails when one differs, and preflight refuses a tag
that is not their version).

`published` asks a registry whether it holds a version, so that a re-run publishes only what is
missing; `owner` reads which source repository a registry's name belongs to, so that preflight refuses a
name someone else holds. Both read each registry's documented public API with the standard library (the
publishing jobs install nothing for them). `CLIP_ONNX_<ECOSYSTEM>_URL` points one at another server:
TestPyPI, a local registry, a test double.
"""

from __future__ import annotations

import json
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from clip_onnx.errors import ClipOnnxError

ROOT = Path(__file__).resolve().parents[1]
# each registry's public read API; the npm registry and PyPI answer 404 for a name or version they do not have
REGISTRIES = {
    "pypi": "https://pypi.org",  # /pypi/<name>[/<version>]/json
    "crates": "https://crates.io",  # /api/v1/crates/<name>[/<version>]
    "npm": "https://registry.npmjs.org",  # /<name>[/<version>]
}
USER_AGENT = "clip-onnx-release (https://github.com/clip-onnx/clip-onnx)"  # crates.io refuses requests without one


@dataclass(frozen=True)
class Package:
    ecosystem: str  # a key of REGISTRIES
    name: str
    manifest: str  # the file holding its version, relative to the repository root

    def _read(self) -> dict:
        text = (ROOT / self.manifest).read_text()
        if self.manifest.endswith(".json"):
            return json.loads(text)
        data = tomllib.loads(text)
        return data.get("project") or data["package"]

    def version(self) -> str:
        return self._read()["version"]

    def repository(self) -> str:
        """The source repository the manifest names, which its registry shows (and npm's provenance checks)."""
        data = self._read()
        if "urls" in data:  # pyproject.toml
            return data["urls"].get("Source", "")
        repository = data.get("repository", "")
        return repository.get("url", "") if isinstance(repository, dict) else repository


# in publishing order: a crate after the crate it depends on
PACKAGES = (
    Package("pypi", "clip-onnx", "pyproject.toml"),
    Package("crates", "clip-onnx-ftfy", "rust/ftfy/Cargo.toml"),
    Package("crates", "clip-onnx", "rust/Cargo.toml"),
    Package("npm", "clip-onnx", "examples/node/package.json"),
)


def disagreeing(tag: str) -> list[str]:
    """Why the packages do not carry `tag`'s version, one line per manifest that differs."""
    wanted = tag.removeprefix("v")
    return [f"{p.manifest} says version {p.version()}, not {wanted}: set every package's version to {wanted} "
            f"({', '.join(q.manifest for q in PACKAGES)}) and tag again" for p in PACKAGES if p.version() != wanted]


def registry(ecosystem: str) -> str:
    return os.environ.get(f"CLIP_ONNX_{ecosystem.upper()}_URL", REGISTRIES[ecosystem]).rstrip("/")


def _path(package: Package, version: str | None) -> str:
    name = quote(package.name, safe="@")
    if package.ecosystem == "pypi":
        return f"/pypi/{name}/{version}/json" if version else f"/pypi/{name}/json"
    if package.ecosystem == "crates":
        return f"/api/v1/crates/{name}/{version}" if version else f"/api/v1/crates/{name}"
    return f"/{name}/{version}" if version else f"/{name}"


def _get(package: Package, version: str | None = None) -> dict | None:
    """The registry's JSON for the package (or one version of it); None when it has neither."""
    url = registry(package.ecosystem) + _path(package, version)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise ClipOnnxError(f"{package.ecosystem} {package.name}: {url} answered {error.code}; run it again") from None
    except (urllib.error.URLError, OSError) as error:
        raise ClipOnnxError(f"{package.ecosystem} {package.name}: {url} could not be read ({error}); "
                            f"run it again") from None


def published(package: Package, version: str) -> bool:
    """Whether the registry holds `version` of `package`."""
    return _get(package, version) is not None


def owner(package: Package) -> str | None:
    """The source repository the registry records for the name, '' when it records none, None when the name
    is free."""
    data = _get(package)
    if data is None:
        return None
    if package.ecosystem == "pypi":
        urls = (data.get("info") or {}).get("project_urls") or {}
        return urls.get("Source") or urls.get("Repository") or ""
    if package.ecosystem == "crates":
        return (data.get("crate") or {}).get("repository") or ""
    repository = data.get("repository") or {}
    return repository.get("url", "") if isinstance(repository, dict) else str(repository)


def same_repository(url: str, github_repo: str) -> bool:
    """Whether a registry's repository URL (`git+https://github.com/o/r.git`, `https://github.com/o/r`) is
    `github_repo` (OWNER/NAME)."""
    path = url.removeprefix("git+").removesuffix("/").removesuffix(".git")
    return path.lower().endswith(f"github.com/{github_repo}".lower())


# Names the first publication of which needs a token: trusted publishing attaches to an existing package
# on npm and crates.io; PyPI's pending publisher creates the project on its first upload.
NEEDS_BOOTSTRAP = {"crates", "npm"}


def problems(tag: str, github_repo: str) -> list[str]:
    """What keeps the tag's packages from being published: versions that differ from the tag, a manifest
    naming another repository, a name another repository holds, a name npm or crates.io does not have yet
    (its one-time bootstrap)."""
    found = disagreeing(tag)
    found += [f"{p.manifest} names the repository {p.repository() or '(none)'}, not github.com/{github_repo} where "
              f"this release runs: npm refuses its provenance, and every registry would link elsewhere; fix it"
              for p in PACKAGES if not same_repository(p.repository(), github_repo)]
    for package in PACKAGES:
        try:
            holder = owner(package)
        except ClipOnnxError as error:
            found.append(str(error))
            continue
        where = f"{package.ecosystem} package {package.name}"
        if holder is None and package.ecosystem in NEEDS_BOOTSTRAP:
            found.append(f"{where} does not exist yet: publish it once with a token, then add this workflow as its "
                         f"trusted publisher (docs/releasing.md, 'Packages: the first publication')")
        elif holder is not None and not same_repository(holder, github_repo):
            found.append(f"{where} belongs to {holder or 'a package that names no repository'}, not "
                         f"github.com/{github_repo}: choose another name, or have it transferred")
    return found
