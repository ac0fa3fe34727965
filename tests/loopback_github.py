"""GitHub's REST API on loopback: the endpoints `release/github.py` calls, for tests and the rehearsal.

It answers what GitHub's REST API documents for these calls (status codes, JSON fields, `Link`
pagination, the `upload_url` template, the `digest` of an asset, the 302 of an artifact download),
so the real client code runs against it unchanged. Writes need ``Authorization: Bearer <token>``;
a ``read_only_token`` is answered 403 on writes, as a token without ``contents: write`` is.

Rate limits and 5xx answers are injected with `fail` (with the headers GitHub's "Rate limits for the REST
API" documents), dropped connections with `drop`. With ``immutable`` (GitHub's "About immutable releases"),
a published release's assets can be neither added nor deleted.

Latest follows GitHub's documented ``make_latest``: a release published without it, or with ``"true"``,
becomes Latest; ``"false"`` leaves Latest where it is; a draft cannot be Latest. Whether GitHub lists
the artifacts of a run's earlier attempts beside a re-run's is not documented: the canary records it
(``release/github_observed.json``), and ``earlier_attempts_listed`` plays either answer.

====== =================================================== ==========================================
GET    /repos/{o}/{r}/releases?per_page&page               releases, drafts included, newest first
GET    /repos/{o}/{r}/releases/latest                      the Latest release (404 if none)
POST   /repos/{o}/{r}/releases                             create (422 if a published one has the tag)
PATCH  /repos/{o}/{r}/releases/{id}                        edit: body, name, draft, make_latest
DELETE /repos/{o}/{r}/releases/{id}                        delete a release
GET    /repos/{o}/{r}/releases/{id}/assets?per_page&page   a release's assets
GET    /repos/{o}/{r}/releases/assets/{id}                 an asset's bytes (302 to the storage host)
GET    /repos/{o}/{r}/git/ref/tags/{tag}                   does the tag exist
POST   /uploads/repos/{o}/{r}/releases/{id}/assets?name=   upload (422 if the name exists)
DELETE /repos/{o}/{r}/releases/assets/{id}                 delete an asset
GET    /repos/{o}/{r}/actions/runs/{run}/artifacts?per_page&page  a run's artifacts
GET    /repos/{o}/{r}/actions/artifacts/{id}/zip           302 to the archive (no auth needed there)
GET    /blobs/{id}?sig=...                                 an archive or an asset's bytes
GET    /_apis/idtoken?api-version=2.0&audience=            the Actions runtime's OIDC id token (a job's
                                                           ``ACTIONS_ID_TOKEN_REQUEST_URL``, its own token)
====== =================================================== ==========================================

A job with ``id-token: write`` gets ``oidc_env()``: GitHub's two variables, whose URL mints an id token
(``tests/id_tokens.py``) with the claims of ``oidc_claims`` -- by default the release workflow's job in
the ``release`` environment of a tag push.

Usage: ``with LoopbackGitHub() as github: GitHub("owner/name", github.token, api=github.url)...``;
``create_tag``, ``add_artifact``, ``cut_upload`` (a "starter" asset left), ``fail``, ``drop`` set it up;
``releases``, ``latest``, ``content`` and ``count`` show what a person would see.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests import id_tokens
from tests.loopback_server import LoopbackServer

REPO = r"/repos/(?P<repo>[\w.-]+/[\w.-]+)"


@dataclass
class Asset:
    id: int
    name: str
    content: bytes
    state: str = "uploaded"

    def json(self, url: str) -> dict:
        return {"id": self.id, "name": self.name, "size": len(self.content), "state": self.state,
                "digest": f"sha256:{hashlib.sha256(self.content).hexdigest()}" if self.state == "uploaded" else None,
                "browser_download_url": f"{url}/downloads/{self.id}"}


@dataclass
class Release:
    id: int
    repo: str
    tag_name: str
    name: str
    body: str
    draft: bool
    assets: list[Asset] = field(default_factory=list)

    def json(self, url: str) -> dict:
        return {"id": self.id, "tag_name": self.tag_name, "name": self.name, "body": self.body, "draft": self.draft,
                "html_url": f"https://github.invalid/{self.repo}/releases/tag/{self.tag_name}",
                "upload_url": f"{url}/uploads/repos/{self.repo}/releases/{self.id}/assets{{?name,label}}",
                "assets": [a.json(url) for a in self.assets]}


@dataclass
class _Failure:
    """An injected answer: `status` None drops the connection; `times` None lasts until reset_failures."""
    method: str
    pattern: re.Pattern[str]
    status: int | None
    headers: dict[str, str]
    message: str
    times: int | None


class _Error(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class LoopbackGitHub(LoopbackServer):
    def __init__(self, token: str = "ghs_test", read_only_token: str = "ghs_read_only", page_size: int = 2,
                 earlier_attempts_listed: bool = True, immutable: bool = True):
        self.token, self.read_only_token, self.page_size = token, read_only_token, page_size
        self.earlier_attempts_listed, self.immutable = earlier_attempts_listed, immutable
        self._lock = threading.RLock()
        self._tags: dict[str, set[str]] = {}
        self._releases: list[Release] = []
        self._latest: dict[str, int] = {}  # repo -> id of its Latest release
        self._artifacts: dict[int, tuple[str, str, bytes, int]] = {}  # id -> (repo, run/name, zip, attempt)
        self._cuts: set[str] = set()
        self._failures: list[_Failure] = []
        self._next_id = 0
        self.requests: list[tuple[str, str]] = []
        self.oidc_key, self.oidc_request_token = secrets.token_bytes(16), "oidc-request-test"
        self.oidc_claims = {"repository": "owner/clip-onnx", "ref": "refs/tags/v1.0.0", "environment": "release",
                            "workflow_ref": "owner/clip-onnx/.github/workflows/release.yml@refs/tags/v1.0.0",
                            "sub": "repo:owner/clip-onnx:environment:release"}

    # ------------------------------------------------------------------ set-up, faults and inspection

    def oidc_env(self) -> dict[str, str]:
        """What GitHub puts in the environment of a job with `id-token: write`."""
        return {"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.url}/_apis/idtoken?api-version=2.0",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.oidc_request_token}

    def create_tag(self, repo: str, tag: str) -> None:
        with self._lock:
            self._tags.setdefault(repo, set()).add(tag)

    def add_artifact(self, repo: str, run_id: int, name: str, folder: Path, attempt: int = 1) -> None:
        """`folder` as the artifact `name` of the run's `attempt`, zipped as actions/upload-artifact zips it:
        as `<folder name>/...`."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(Path(folder).parent).as_posix())
        with self._lock:
            self._artifacts[self._id()] = (repo, f"{run_id}/{name}", buffer.getvalue(), attempt)

    def cut_upload(self, name: str) -> None:
        """The next upload of asset `name` stops halfway: the connection drops, a "starter" asset stays."""
        with self._lock:
            self._cuts.add(name)

    def fail(self, method: str, path_regex: str, status: int = 500, *, headers: dict[str, str] | None = None,
             times: int | None = None, message: str = "Injected failure") -> None:
        """Answer matching requests with `status` (and `headers`, `message`): the next `times` of them, or
        all until `reset_failures`. A status of None drops the connection without an answer."""
        with self._lock:
            self._failures.append(_Failure(method, re.compile(path_regex), status, headers or {}, message, times))

    def drop(self, method: str, path_regex: str, times: int = 1) -> None:
        """The next `times` matching requests get no answer: the connection is closed."""
        self.fail(method, path_regex, None, times=times)

    def reset_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def releases(self, repo: str) -> list[dict]:
        with self._lock:
            return [r.json(self.url) for r in reversed(self._releases) if r.repo == repo]

    def latest(self, repo: str) -> str | None:
        """The tag of the release shown as Latest."""
        with self._lock:
            return next((r.tag_name for r in self._releases if r.id == self._latest.get(repo)), None)

    def content(self, repo: str, tag: str, name: str) -> bytes:
        with self._lock:
            return self._named_asset(repo, tag, name).content

    def set_content(self, repo: str, tag: str, name: str, content: bytes) -> None:
        """Replace an asset's bytes behind the API's back (its digest follows)."""
        with self._lock:
            self._named_asset(repo, tag, name).content = content

    def _named_asset(self, repo: str, tag: str, name: str) -> Asset:
        release = next(r for r in self._releases if r.repo == repo and r.tag_name == tag)
        return next(a for a in release.assets if a.name == name)

    def count(self, method: str, path_regex: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and re.search(path_regex, p))

    # ------------------------------------------------------------------ requests

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _release(self, repo: str, release_id: str) -> Release:
        found = next((r for r in self._releases if r.repo == repo and r.id == int(release_id)), None)
        if found is None:
            raise _Error(404, "Not Found")
        return found

    def handle(self, method: str, target: str, headers: dict[str, str],
               read_body) -> tuple[int, dict[str, str], bytes] | None:
        path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
        with self._lock:
            self.requests.append((method, path))
            failure = next((f for f in self._failures if f.method == method and f.pattern.search(path)), None)
            if failure and failure.times is not None:
                failure.times -= 1
                if failure.times == 0:
                    self._failures.remove(failure)
        if failure:
            if failure.status is None:
                return None
            read_body()
            raise _Error(failure.status, failure.message, failure.headers)
        if path.startswith("/blobs/"):  # the storage host: signed URL, no Authorization
            return 200, {"Content-Type": "application/octet-stream"}, self._blob(int(path.rsplit("/", 1)[1]))
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if path == "/_apis/idtoken":  # the Actions runtime, with the job's request token
            # api-version is not required: huggingface_hub 2.4 drops the URL's query when it adds `audience`
            # (httpx's params replace it), and whether GitHub minds is only seen by the canary
            if token != self.oidc_request_token or "audience" not in query:
                raise _Error(401 if token != self.oidc_request_token else 400, "Bad id token request")
            value = id_tokens.sign({**self.oidc_claims, "aud": query["audience"][0]}, self.oidc_key)
            return 200, {}, json.dumps({"count": len(value), "value": value}).encode()
        if scheme.lower() not in ("bearer", "token") or token not in (self.token, self.read_only_token):
            read_body()
            raise _Error(401, "Bad credentials")
        if method != "GET" and token != self.token:
            read_body()
            raise _Error(403, "Resource not accessible by integration")
        for route_method, pattern, handler in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                return handler(self, match, query, headers, read_body)
        read_body()
        raise _Error(404, "Not Found")

    def _page(self, path: str, query, everything: list) -> tuple[list, dict[str, str]]:
        """One page of `everything` and its `Link` header; pages are at most `page_size` long (GitHub: 100,
        30 by default), so that every list is paged through."""
        per_page = min(int(query.get("per_page", ["30"])[0]), 100, self.page_size)
        page = int(query.get("page", ["1"])[0])
        link = {}
        if page * per_page < len(everything):
            link["Link"] = f'<{self.url}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return everything[(page - 1) * per_page: page * per_page], link

    def _list(self, match, query, headers, read_body):
        with self._lock:
            everything = [r.json(self.url) for r in reversed(self._releases) if r.repo == match["repo"]]
        chunk, link = self._page(f"/repos/{match['repo']}/releases", query, everything)
        return 200, link, json.dumps(chunk).encode()

    def _assets(self, match, query, headers, read_body):
        with self._lock:
            everything = [a.json(self.url) for a in self._release(match["repo"], match["id"]).assets]
        chunk, link = self._page(f"/repos/{match['repo']}/releases/{match['id']}/assets", query, everything)
        return 200, link, json.dumps(chunk).encode()

    def _latest_release(self, match, query, headers, read_body):
        with self._lock:
            found = next((r for r in self._releases if r.id == self._latest.get(match["repo"])), None)
            if found is None:
                raise _Error(404, "Not Found")
            return 200, {}, json.dumps(found.json(self.url)).encode()

    def _create(self, match, query, headers, read_body):
        payload = json.loads(read_body())
        with self._lock:
            if any(r.repo == match["repo"] and r.tag_name == payload["tag_name"] and not r.draft
                   for r in self._releases):
                raise _Error(422, "Validation Failed: tag_name already_exists")
            release = Release(self._id(), match["repo"], payload["tag_name"], payload.get("name", ""),
                              payload.get("body", ""), bool(payload.get("draft")))
            self._releases.append(release)
            if not release.draft and payload.get("make_latest", "true") == "true":
                self._latest[release.repo] = release.id
            return 201, {}, json.dumps(release.json(self.url)).encode()

    def _edit(self, match, query, headers, read_body):
        payload = json.loads(read_body())
        with self._lock:
            release = self._release(match["repo"], match["id"])
            if payload.get("draft") is False and release.tag_name not in self._tags.get(release.repo, set()):
                raise _Error(422, "Validation Failed: tag does not exist")  # the client checks first
            make_latest = payload.get("make_latest", "true" if release.draft and payload.get("draft") is False
                                      else None)
            if make_latest not in (None, "true", "false"):
                raise _Error(422, f"Validation Failed: make_latest {make_latest!r} is not played by this double")
            if make_latest == "true" and payload.get("draft", release.draft):
                raise _Error(422, "Validation Failed: a draft cannot be the latest release")
            for key in ("body", "name", "draft"):
                if key in payload:
                    setattr(release, key, payload[key])
            if make_latest == "true":
                self._latest[release.repo] = release.id
            return 200, {}, json.dumps(release.json(self.url)).encode()

    def _tag(self, match, query, headers, read_body):
        with self._lock:
            if match["tag"] not in self._tags.get(match["repo"], set()):
                raise _Error(404, "Not Found")
        return 200, {}, json.dumps({"ref": f"refs/tags/{match['tag']}"}).encode()

    def _upload(self, match, query, headers, read_body):
        name = query["name"][0]
        with self._lock:
            release = self._release(match["repo"], match["id"])
            if self.immutable and not release.draft:  # GitHub's "About immutable releases"
                read_body()
                raise _Error(422, "Cannot upload assets to an immutable release")
            if any(a.name == name for a in release.assets):
                read_body()
                raise _Error(422, "Validation Failed: name already_exists")
            if name in self._cuts:  # GitHub keeps an asset in state "starter" after a broken upload
                self._cuts.discard(name)
                release.assets.append(Asset(self._id(), name, b"", state="starter"))
                return None
        content = read_body()
        with self._lock:
            asset = Asset(self._id(), name, content)
            release.assets.append(asset)
            return 201, {}, json.dumps(asset.json(self.url)).encode()

    def _blob(self, blob_id: int) -> bytes:
        with self._lock:
            if blob_id in self._artifacts:
                return self._artifacts[blob_id][2]
            return next(a.content for r in self._releases for a in r.assets if a.id == blob_id)

    def _asset(self, match, query, headers, read_body):
        with self._lock:
            if not any(a.id == int(match["id"]) for r in self._releases for a in r.assets if r.repo == match["repo"]):
                raise _Error(404, "Not Found")
        return 302, {"Location": f"{self.url}/blobs/{match['id']}?sig=signed"}, b""

    def _delete_release(self, match, query, headers, read_body):
        with self._lock:
            self._releases.remove(self._release(match["repo"], match["id"]))
            if self._latest.get(match["repo"]) == int(match["id"]):
                del self._latest[match["repo"]]
        return 204, {}, b""

    def _delete_asset(self, match, query, headers, read_body):
        with self._lock:
            for release in self._releases:
                if release.repo == match["repo"] and any(a.id == int(match["id"]) for a in release.assets):
                    if self.immutable and not release.draft:  # GitHub's "About immutable releases"
                        raise _Error(422, "Cannot delete assets of an immutable release")
                    release.assets = [a for a in release.assets if a.id != int(match["id"])]
        return 204, {}, b""

    def _artifact_list(self, match, query, headers, read_body):
        with self._lock:
            run = [(i, repo, key, content, attempt) for i, (repo, key, content, attempt) in self._artifacts.items()
                   if repo == match["repo"] and key.split("/", 1)[0] == match["run"]]
            newest = max((attempt for *_, attempt in run), default=1)
            found = [{"id": i, "name": key.split("/", 1)[1], "size_in_bytes": len(content), "expired": False,
                      "archive_download_url": f"{self.url}/repos/{repo}/actions/artifacts/{i}/zip"}
                     for i, repo, key, content, attempt in run if self.earlier_attempts_listed or attempt == newest]
        chunk, link = self._page(f"/repos/{match['repo']}/actions/runs/{match['run']}/artifacts", query, found)
        return 200, link, json.dumps({"total_count": len(found), "artifacts": chunk}).encode()

    def _artifact_zip(self, match, query, headers, read_body):
        if int(match["id"]) not in self._artifacts:
            raise _Error(404, "Not Found")
        return 302, {"Location": f"{self.url}/blobs/{match['id']}?sig=signed"}, b""


ROUTES = [
    ("GET", REPO + r"/releases", LoopbackGitHub._list),
    ("GET", REPO + r"/releases/latest", LoopbackGitHub._latest_release),
    ("POST", REPO + r"/releases", LoopbackGitHub._create),
    ("PATCH", REPO + r"/releases/(?P<id>\d+)", LoopbackGitHub._edit),
    ("DELETE", REPO + r"/releases/(?P<id>\d+)", LoopbackGitHub._delete_release),
    ("GET", REPO + r"/releases/(?P<id>\d+)/assets", LoopbackGitHub._assets),
    ("GET", REPO + r"/releases/assets/(?P<id>\d+)", LoopbackGitHub._asset),
    ("GET", REPO + r"/git/ref/tags/(?P<tag>[^/]+)", LoopbackGitHub._tag),
    ("POST", r"/uploads" + REPO + r"/releases/(?P<id>\d+)/assets", LoopbackGitHub._upload),
    ("DELETE", REPO + r"/releases/assets/(?P<id>\d+)", LoopbackGitHub._delete_asset),
    ("GET", REPO + r"/actions/runs/(?P<run>\d+)/artifacts", LoopbackGitHub._artifact_list),
    ("GET", REPO + r"/actions/artifacts/(?P<id>\d+)/zip", LoopbackGitHub._artifact_zip),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        github: LoopbackGitHub = self.server.double  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        consumed = []

        def read_body() -> bytes:
            if not consumed:
                consumed.append(self.rfile.read(length) if length else b"")
            return consumed[0]

        try:
            answer = github.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                   read_body)
        except _Error as error:
            answer = error.status, error.headers, json.dumps({"message": error.message}).encode()
        if answer is None:  # a cut upload or a drop: read half of the body, then drop the connection
            self.rfile.read(length // 2)
            self.close_connection = True
            return
        if not consumed and length:
            read_body()
        status, headers, payload = answer
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


LoopbackGitHub.handler = _Handler  # set here: the handler is defined after the double
