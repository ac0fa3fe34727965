"""The read APIs of PyPI, crates.io and the npm registry on loopback, for what `release/packages.py` asks
them: whether a version exists, and which repository a name belongs to. One server, each registry under
its own prefix (`env()` points `release.packages` at them), answering with the fields each registry
documents:

====== ======================================= ==================================================
GET    /pypi/pypi/{name}/json                  PyPI's JSON API: ``info.project_urls``
GET    /pypi/pypi/{name}/{version}/json        404 when the version does not exist
GET    /crates/api/v1/crates/{name}            crates.io: ``crate.repository``, ``versions[].num``
GET    /crates/api/v1/crates/{name}/{version}  ``version.num``; 404 when it does not exist
GET    /npm/{name}                             the package document: ``repository.url``, ``versions``
GET    /npm/{name}/{version}                   one version's document; 404 when it does not exist
====== ======================================= ==================================================

Publishing and installing through real registries is `tests/test_registry_*.py`'s (pypiserver, Verdaccio,
cargo-http-registry); this double only answers the questions a release asks before and while publishing.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from tests.loopback_server import LoopbackServer

ROUTES = {
    "pypi": re.compile(r"/pypi/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?/json"),
    "crates": re.compile(r"/api/v1/crates/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?"),
    "npm": re.compile(r"/(?P<name>(?:@[^/]+/)?[^/@]+)(?:/(?P<version>[^/]+))?"),
}


class LoopbackRegistries(LoopbackServer):
    def __init__(self) -> None:
        self.packages: dict[tuple[str, str], dict] = {}  # (ecosystem, name) -> repository, versions
        self.requests: list[str] = []

    def add(self, ecosystem: str, name: str, repository: str, *versions: str) -> None:
        """A name on `ecosystem`'s registry, recording `repository` as its source, with `versions`."""
        self.packages[(ecosystem, name)] = {"repository": repository, "versions": set(versions)}

    def env(self) -> dict[str, str]:
        return {f"CLIP_ONNX_{ecosystem.upper()}_URL": f"{self.url}/{ecosystem}" for ecosystem in ROUTES}

    def answer(self, path: str) -> tuple[int, dict]:
        self.requests.append(path)
        ecosystem, _, rest = path.lstrip("/").partition("/")
        match = ROUTES[ecosystem].fullmatch("/" + rest) if ecosystem in ROUTES else None
        if match is None:
            return 404, {"message": "Not Found"}
        name, version = unquote(match["name"]), match["version"]
        package = self.packages.get((ecosystem, name))
        if package is None or (version is not None and version not in package["versions"]):
            return 404, {"message": "Not Found"} if ecosystem == "pypi" else {"errors": [{"detail": "Not Found"}]}
        repository, versions = package["repository"], sorted(package["versions"])
        if ecosystem == "pypi":
            info = {"name": name, "version": version or (versions or [None])[-1], "project_urls": {"Source": repository}}
            return 200, {"info": info, "releases": {v: [] for v in versions}} if version is None else {"info": info}
        if ecosystem == "crates":
            if version is not None:
                return 200, {"version": {"crate": name, "num": version}}
            return 200, {"crate": {"name": name, "repository": repository}, "versions": [{"num": v} for v in versions]}
        if version is not None:
            return 200, {"name": name, "version": version}
        return 200, {"name": name, "repository": {"type": "git", "url": repository},
                     "versions": {v: {"name": name, "version": v} for v in versions}}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        status, body = self.server.double.answer(self.path.split("?")[0])  # type: ignore[attr-defined]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


LoopbackRegistries.handler = _Handler  # set here: the handler is defined after the double
