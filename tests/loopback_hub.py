"""A Hugging Face Hub on loopback: an in-process fake of the Hub HTTP API for tests and the release rehearsal.

It speaks the endpoints, request bodies and response fields used by the ``huggingface_hub`` client
**2.4.0** (read from that release's ``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py`` and
``utils/_http.py``), for **model repositories only**, so the real ``HfApi(endpoint=hub.url, token=hub.token)``
and ``hf_hub_download(..., endpoint=hub.url)`` can run against it.

Xet is not played: large files go through git-LFS "basic" transfer, and while the fake runs it sets
``huggingface_hub.constants.HF_HUB_DISABLE_XET``; ``LoopbackHub(xet=True)`` leaves Xet on, so that the
client's Xet path meets this fake and fails as against a refusing Xet service. The Hub (``hub.url``)
redirects LFS downloads with a signed URL to a "CDN" on another port (``hub.cdn_url``), as huggingface.co
does, so the client drops ``Authorization`` there exactly as it would.

Endpoints (``{repo}`` is ``namespace/name``, ``{rev}`` a branch, tag or full commit oid, URL-quoted):

====== ============================================== ===================================================
POST   /api/repos/create                              ``create_repo`` (409 + ``url`` when it exists)
GET    /api/models/{repo}[/revision/{rev}]            ``repo_info`` / ``model_info`` (minimal fields)
GET    /api/models/{repo}/refs                        ``list_repo_refs``
POST   /api/models/{repo}/paths-info/{rev}            ``get_paths_info`` (form-encoded ``paths``)
GET    /api/models/{repo}/tree/{rev}[/{path}]         ``list_repo_tree`` / ``list_repo_files`` (one page)
POST   /api/models/{repo}/preupload/{rev}             upload mode of each file (``create_commit``)
POST   /api/models/{repo}/commit/{rev}                ndjson commit (``create_commit``)
POST   /api/models/{repo}/tag/{rev}                   ``create_tag`` (409 when the tag exists)
POST   /api/models/{repo}/branch/{branch}             ``create_branch`` (409 when it exists)
DELETE /api/models/{repo}/branch/{branch}             ``delete_branch``
GET    /api/whoami-v2                                 ``whoami``: the token's user, orgs and role
POST   /api/validate-yaml                             a README.md's metadata, checked by ``create_commit`` (YAML)
POST   /oauth/token                                   Trusted Publishers: an OIDC id token for a repo's token
POST   /{repo}.git/info/lfs/objects/batch             LFS batch API, "basic" transfer
PUT    /{repo}.git/info/lfs/objects/upload/{sha256}   signed upload URL given by the batch API
POST   /{repo}.git/info/lfs/objects/verify            LFS verify action
HEAD   /{repo}/resolve/{rev}/{path}                   file metadata (``hf_hub_download``)
GET    /{repo}/resolve/{rev}/{path}                   regular files: content; LFS files: 302 to the CDN
GET    (CDN) /lfs/{repo}/{sha256}?sig=...             LFS content (``Range`` supported)
====== ============================================== ===================================================

State is kept in memory like a git server would: per repository a list of commits (each holding the full
mapping path -> content), branches and tags pointing at commit oids, and the LFS objects uploaded to it.
``create_repo`` makes an initial commit holding ``.gitattributes``, as the Hub does. Write endpoints need
``Authorization: Bearer <token>`` (401 otherwise); reads are public. Upload modes follow a fixed rule:
paths ending in ``.onnx`` or ``.data``, and files over 10 MB, are LFS; everything else is a regular file.

Trusted Publishers (the Hub's keyless CI writes): ``hub.trust(repo, issuer_key, repository=, workflow=,
environment=)`` adds a repo's trusted publisher, as its settings page does. ``/oauth/token`` exchanges an id
token (RFC 8693; ``tests/id_tokens.py``: signature, issuer, audience ``hub.url``, expiry) whose claims match
one of the repo's publishers for a one-hour token that writes to that repo only: it is refused (403) on any
other repo and on ``create_repo``. A refused exchange is a 400 ``invalid_grant``.

Usage: ``with LoopbackHub() as hub: HfApi(endpoint=hub.url, token=hub.token)...``; ``hub.fail(method,
regex, status=, times=)`` injects failures, ``hub.commits(repo)``, ``hub.files(repo, rev)`` and
``hub.tags(repo)`` show what a person would see. Only what the project's code calls is played.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml
from huggingface_hub import constants as hub_constants

from tests import id_tokens

LFS_SUFFIXES: tuple[str, ...] = (".onnx", ".data")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # bytes; larger files are stored as LFS whatever their name
GITATTRIBUTES = b"".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n".encode() for suffix in LFS_SUFFIXES)

_REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_REV = r"(?P<rev>[^/]+)"
_SHA256 = r"(?P<oid>[0-9a-f]{64})"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob with this content (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its content and whether git stores it as an LFS pointer."""

    content: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.content)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)

    @cached_property
    def blob_id(self) -> str:
        """The git blob oid: of the pointer file for LFS files (as on the Hub), of the content otherwise."""
        return git_blob_oid(self.pointer if self.lfs else self.content)


@dataclass(frozen=True)
class CommitRecord:
    oid: str
    parent: str | None
    title: str
    description: str
    files: Mapping[str, StoredFile]


@dataclass
class _Repo:
    repo_id: str
    commits: list[CommitRecord] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content, once uploaded

    def commit(self, oid: str) -> CommitRecord:
        return next(c for c in self.commits if c.oid == oid)


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int | None  # None: forever


class _HttpError(Exception):
    """Raised by a route to answer with an error the client maps to its exceptions."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})
        self.body = dict(body or {})


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # send half the body under the full Content-Length, then drop the connection

    @classmethod
    def json(cls, data: Any, status: int = 200, content_type: str = "application/json") -> _Response:
        return cls(status, json.dumps(data).encode(), {"Content-Type": content_type})


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # raw (still percent-encoded), without the query string
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str]  # named groups of the route's regex, percent-decoded

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise _HttpError(400, f"Invalid JSON body: {e}") from e


_Route = tuple[str, "re.Pattern[str]", Callable[["LoopbackHub", _Request], _Response], bool]


def whoami_answer(user: str, role: str, orgs: dict[str, str] | None = None, scoped: list[dict] | None = None) -> dict:
    """The fields of the Hub's ``/api/whoami-v2`` answer that permission checks read: the user, their orgs
    (name -> ``roleInOrg``) and the token's role (``read``, ``write`` or ``fineGrained`` with ``scoped``
    entries ``{"entity": {"type": "org"|"user"|"model", "name": ...}, "permissions": [...]}``)."""
    token = {"displayName": "test", "role": role}
    if role == "fineGrained":
        token["fineGrained"] = {"global": [], "scoped": scoped or []}
    return {"type": "user", "name": user, "orgs": [{"name": n, "roleInOrg": r} for n, r in (orgs or {}).items()],
            "auth": {"type": "access_token", "accessToken": token}}


class LoopbackHub:
    """A fake Hugging Face Hub on 127.0.0.1 (random free ports); a context manager that starts and stops it.

    Args:
        token: the only token write endpoints accept (``Authorization: Bearer <token>``).
        user: the namespace ``create_repo`` uses when the repo id has none.
        xet: leave the client's Xet upload path on (it fails here: the fake has no Xet service).
        whoami: token -> the answer of ``/api/whoami-v2`` (``whoami_answer``); only ``token`` may write.
    """

    def __init__(self, token: str = "hf_test", *, user: str = "test-user", xet: bool = False,
                 whoami: dict[str, dict] | None = None) -> None:
        self.token = token
        self.xet = xet
        # token -> what /api/whoami-v2 answers for it; by default the write token of `user`, in no org
        self.whoami = whoami or {token: whoami_answer(user, "write")}
        self.user = user
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._failures: list[_Failure] = []
        self._cuts = 0
        self._log: list[tuple[str, str, int]] = []
        self.internal_errors: list[str] = []  # tracebacks of bugs in the fake itself (answered with 500)
        self._secret = secrets.token_bytes(16)
        self._commit_counter = 0
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._url = ""
        self._cdn_url = ""
        self._publishers: dict[str, list[tuple[bytes, dict[str, str]]]] = {}  # repo -> (issuer key, claims)
        self._scoped: dict[str, tuple[str, float]] = {}  # exchanged token -> (its repo, when it expires)

    def trust(self, repo_id: str, issuer_key: bytes, *, repository: str, workflow: str,
              environment: str | None = None) -> None:
        """Add a trusted publisher to `repo_id`: jobs of `workflow` (a file name) in GitHub's `repository`,
        and of `environment` when given, may exchange their id token for a token that writes to it."""
        claims = {"repository": repository, "workflow": workflow}
        if environment:
            claims["environment"] = environment
        self._publishers.setdefault(repo_id, []).append((issuer_key, claims))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LoopbackHub:
        self._xet_disabled_before = hub_constants.HF_HUB_DISABLE_XET
        hub_constants.HF_HUB_DISABLE_XET = not self.xet  # the client must speak LFS to this server
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.loopback_hub = self  # type: ignore[attr-defined]
            server.role = role  # type: ignore[attr-defined]
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fake-hub-{role}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self._url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self._cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._servers:
            hub_constants.HF_HUB_DISABLE_XET = self._xet_disabled_before
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Hub endpoint, e.g. ``http://127.0.0.1:41234`` (pass it as ``endpoint=``)."""
        return self._url

    @property
    def cdn_url(self) -> str:
        """Origin of the fake CDN serving LFS content (reached through ``/resolve/`` redirects)."""
        return self._cdn_url

    # ------------------------------------------------------------------ failure injection and request log

    def fail(self, method: str, path_regex: str, *, status: int = 500, times: int | None = None) -> None:
        """Answer requests whose method matches (``"*"``: any) and whose raw path (no query string,
        e.g. ``/test-user/m.git/info/lfs/objects/upload/<sha256>``) matches ``path_regex`` (``re.search``)
        with ``status`` and a JSON error body, ``times`` times (``None``: until :meth:`reset_failures`).

        The request body is read first, and nothing is stored. Mind the client's own retries: its
        ``http_backoff`` requests retry 408/429/500/502/503/504 five times (six attempts in all).
        """
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, times))

    def reset_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._cuts = 0

    def cut_downloads(self, times: int = 1) -> None:
        """The next ``times`` LFS downloads from the CDN send half the file, then drop the connection."""
        with self._lock:
            self._cuts = times

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request received so far, in order, as ``(method, raw path without query)``; both servers."""
        with self._lock:
            return [(method, path) for method, path, _ in self._log]

    def count(self, method: str, path_regex: str) -> int:
        """How many requests matched ``method`` (``"*"``: any) and ``path_regex`` (``re.search``)."""
        pattern = re.compile(path_regex)
        method = method.upper()
        return sum(1 for m, p in self.requests if method in ("*", m) and pattern.search(p))

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ introspection

    def commits(self, repo_id: str) -> list[str]:
        """Commit oids of the repo, oldest first (the first one is the initial ``.gitattributes`` commit)."""
        with self._lock:
            return [c.oid for c in self._get_repo(repo_id).commits]

    def commit(self, repo_id: str, revision: str = "main") -> CommitRecord:
        """The commit a branch, tag or commit oid points at."""
        with self._lock:
            repo = self._get_repo(repo_id)
            try:
                return repo.commit(self._resolve(repo, revision))
            except _HttpError:
                raise KeyError(f"no revision {revision!r} in {repo_id!r}") from None

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file at ``revision`` (branch, tag or commit oid)."""
        return {path: f.content for path, f in self.commit(repo_id, revision).files.items()}

    def lfs_paths(self, repo_id: str, revision: str = "main") -> set[str]:
        """Paths stored as LFS at ``revision``."""
        return {path for path, f in self.commit(repo_id, revision).files.items() if f.lfs}

    def tags(self, repo_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._get_repo(repo_id).tags)

    def branches(self, repo_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._get_repo(repo_id).branches)

    def _get_repo(self, repo_id: str) -> _Repo:
        try:
            return self._repos[repo_id]
        except KeyError:
            raise KeyError(f"no repo {repo_id!r} on the fake hub") from None

    # ------------------------------------------------------------------ request handling

    def _handle(self, role: str, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> _Response:
        split = urlsplit(raw_path)
        path = split.path
        try:
            injected = self._take_failure(method, path)
            if injected is not None:
                raise _HttpError(injected, f"Injected failure ({injected}) for {method} {path}")
            for route_method, pattern, handler, needs_auth in _ROUTES[role]:
                match = pattern.fullmatch(path)
                if match is None or method not in route_method.split("|"):
                    continue
                params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                if needs_auth:
                    self._check_auth(headers, f"{params['ns']}/{params['name']}" if "ns" in params else None)
                request = _Request(method, path, parse_qs(split.query, keep_blank_values=True), headers, body, params)
                with self._lock:
                    return handler(self, request)
            raise _HttpError(404, f"Not found: {method} {path}")
        except _HttpError as e:
            response = _Response.json({"error": e.message, **e.body}, status=e.status)
            response.headers.update(e.headers)
            if e.code is not None:
                response.headers["X-Error-Code"] = e.code
            return response
        except Exception as e:  # a bug in the fake: answer 500 and keep it for the test to see
            with self._lock:
                self.internal_errors.append(f"{method} {path}: {traceback.format_exc()}")
            return _Response.json({"error": f"LoopbackHub internal error: {e!r}"}, status=500)

    def _log_request(self, method: str, raw_path: str, status: int) -> None:
        with self._lock:
            self._log.append((method, urlsplit(raw_path).path, status))

    def _take_failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for failure in self._failures:
                if failure.method in ("*", method) and failure.pattern.search(path):
                    if failure.remaining is not None:
                        failure.remaining -= 1
                        if failure.remaining == 0:
                            self._failures.remove(failure)
                    return failure.status
        return None

    def _check_auth(self, headers: Mapping[str, str], repo_id: str | None) -> None:
        """`token` writes anywhere; an exchanged token only to its own repo (`repo_id`; None: create_repo)."""
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and hmac.compare_digest(token, self.token):
            return
        with self._lock:
            scope, expires = self._scoped.get(token, (None, 0.0))
        if scheme.lower() != "bearer" or scope is None or expires < time.time():
            message = "Invalid credentials in Authorization header"
            raise _HttpError(401, message, headers={"X-Error-Message": message})
        if repo_id != scope:
            message = f"This token may write only to {scope}"
            raise _HttpError(403, message, headers={"X-Error-Message": message})

    def _sign(self, *parts: str) -> str:
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def _check_signature(self, request: _Request, *parts: str) -> None:
        given = request.query.get("sig", [""])[0]
        if not hmac.compare_digest(given, self._sign(*parts)):
            raise _HttpError(403, "Invalid or missing URL signature")

    # helpers used by the routes (called with the lock held)

    def _repo(self, request: _Request) -> _Repo:
        repo_id = f"{request.params['ns']}/{request.params['name']}"
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _HttpError(404, f"Repository not found: {repo_id}", code="RepoNotFound")
        return repo

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> str:
        """Commit oid of a branch, tag or full commit oid."""
        if revision in repo.branches or revision in repo.tags:
            return repo.branches.get(revision) or repo.tags[revision]
        if any(c.oid == revision for c in repo.commits):
            return revision
        raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _new_commit(self, repo: _Repo, parent: str | None, title: str, description: str,
                    files: dict[str, StoredFile]) -> CommitRecord:
        self._commit_counter += 1
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_id}\0{parent}\0{title}\0{description}\0{self._commit_counter}\0".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].blob_id}\0".encode())
        record = CommitRecord(digest.hexdigest(), parent, title, description, dict(files))
        repo.commits.append(record)
        return record

    @staticmethod
    def _upload_mode(path: str, size: int) -> str:
        return "lfs" if path.endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD else "regular"

    # ------------------------------------------------------------------ routes

    def _create_repo(self, request: _Request) -> _Response:
        payload = request.json() or {}
        name, organization = payload.get("name"), payload.get("organization") or self.user
        repo_id = f"{organization}/{name}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self._repos:
            raise _HttpError(409, "You already created this model repo", body={"url": url})
        repo = self._repos[repo_id] = _Repo(repo_id)
        gitattributes = {".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)}
        initial = self._new_commit(repo, None, "initial commit", "", gitattributes)
        repo.branches["main"] = initial.oid
        return _Response.json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_info(self, request: _Request) -> _Response:
        repo = self._repo(request)
        record = repo.commit(self._resolve(repo, request.params.get("rev", "main")))
        return _Response.json({"id": repo.repo_id, "sha": record.oid, "private": False,  # what production reads
                               "siblings": [{"rfilename": path} for path in sorted(record.files)]})

    def _refs(self, request: _Request) -> _Response:
        repo = self._repo(request)

        def refs(kind: str, mapping: Mapping[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(mapping.items())]

        data: dict[str, Any] = {
            "branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": [],
        }
        return _Response.json(data)

    def _paths_info(self, request: _Request) -> _Response:
        repo = self._repo(request)
        record = repo.commit(self._resolve(repo, request.params["rev"]))
        form = parse_qs(request.body.decode(), keep_blank_values=True)
        entries: list[dict[str, Any]] = []
        for raw in form.get("paths", []):  # files only: production asks for no folder
            f = record.files.get(str(raw).strip("/"))
            if f is not None:
                entries.append(self._file_entry(str(raw).strip("/"), f))
        return _Response.json(entries)

    @staticmethod
    def _file_entry(path: str, f: StoredFile) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": f.size, "oid": f.blob_id}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        return entry

    def _tree(self, request: _Request) -> _Response:
        """`list_repo_tree` / `list_repo_files`: one page, files and the folders above them."""
        repo = self._repo(request)
        record = repo.commit(self._resolve(repo, request.params["rev"]))
        prefix = (request.params.get("path") or "").strip("/")
        recursive = request.query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict[str, Any]] = {}
        for path, f in sorted(record.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            parts = path[len(prefix) + 1 if prefix else 0:].split("/")
            if len(parts) > 1:
                folder = "/".join(filter(None, [prefix, parts[0]]))
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
                if not recursive:
                    continue
            entries[path] = self._file_entry(path, f)
        return _Response.json(list(entries.values()))

    def _preupload(self, request: _Request) -> _Response:
        repo = self._repo(request)
        record = repo.commit(self._resolve(repo, request.params["rev"]))
        payload = request.json() or {}
        files = payload.get("files")
        if not isinstance(files, list):
            raise _HttpError(400, "Expected a 'files' list")
        answer = []
        for item in files:
            path, size = item.get("path"), item.get("size")
            if not isinstance(path, str) or not isinstance(size, int):
                raise _HttpError(400, f"Invalid file entry: {item!r}")
            mode = self._upload_mode(path, size)
            entry: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            existing = record.files.get(path)
            if existing is not None:  # the client skips files whose local oid equals this one
                entry["oid"] = existing.sha256 if mode == "lfs" else git_blob_oid(existing.content)
            answer.append(entry)
        return _Response.json({"files": answer, "commitOid": record.oid})

    def _lfs_batch(self, request: _Request) -> _Response:
        repo = self._repo(request)
        payload = request.json() or {}
        if payload.get("operation") != "upload":
            raise _HttpError(400, "The fake hub's LFS batch API only supports 'upload'")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise _HttpError(400, "The fake hub only supports the 'basic' LFS transfer")
        if payload.get("hash_algo", "sha256") != "sha256":
            raise _HttpError(400, "Only sha256 is supported")
        ref = (payload.get("ref") or {}).get("name")
        if ref is not None and ref not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {ref}", code="RevisionNotFound")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            valid = isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) is not None
            if not (valid and isinstance(size, int) and size >= 0):
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            stored = repo.lfs_objects.get(oid)
            if stored is None or len(stored) != size:  # already present => no actions, the client skips it
                base = f"{self.url}/{repo.repo_id}.git/info/lfs/objects"
                sig = self._sign("upload", repo.repo_id, oid, str(size))
                answer["actions"] = {
                    "upload": {"href": f"{base}/upload/{oid}?size={size}&sig={sig}"},
                    "verify": {"href": f"{base}/verify"},
                }
            objects.append(answer)
        return _Response.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                              content_type="application/vnd.git-lfs+json")

    def _lfs_upload(self, request: _Request) -> _Response:
        repo = self._repo(request)
        oid = request.params["oid"]
        size_param = request.query.get("size", [""])[0]
        self._check_signature(request, "upload", repo.repo_id, oid, size_param)
        if str(len(request.body)) != size_param:
            raise _HttpError(400, f"Size mismatch: expected {size_param} bytes, got {len(request.body)}")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise _HttpError(400, "Content does not match its sha256 oid")
        repo.lfs_objects[oid] = request.body
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(request.body).hexdigest()}"'})

    def _lfs_verify(self, request: _Request) -> _Response:
        repo = self._repo(request)
        payload = request.json() or {}
        stored = repo.lfs_objects.get(str(payload.get("oid")))
        if stored is None or len(stored) != payload.get("size"):
            raise _HttpError(404, f"LFS object {payload.get('oid')} was not uploaded")
        return _Response.json({"success": True})

    def _commit(self, request: _Request) -> _Response:
        repo = self._repo(request)
        branch = request.params["rev"]
        if branch not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {branch} is not a branch", code="RevisionNotFound")
        try:
            lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        except ValueError as e:
            raise _HttpError(400, f"Invalid ndjson: {e}") from e
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "The first ndjson line must be the header")
        header = lines[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title.strip():
            raise _HttpError(400, "Commit summary is required")
        head = repo.branches[branch]
        parent_commit = header.get("parentCommit")
        if parent_commit is not None and not head.startswith(str(parent_commit).lower()):
            # the status: observed by the canary (release.hub.check_stale_parent), not documented
            raise _HttpError(412, "A commit has happened since. Please refresh and try again.")

        files = dict(repo.commit(head).files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = str(value.get("path", "")).strip("/")
            if not path:
                raise _HttpError(400, f"Missing path in {key} operation")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HttpError(400, f"Unsupported encoding {value.get('encoding')!r}")
                try:
                    content = base64.b64decode(value.get("content", ""), validate=True)
                except ValueError as e:
                    raise _HttpError(400, f"Invalid base64 content for {path}") from e
                if len(content) > LFS_SIZE_THRESHOLD:
                    raise _HttpError(400, f"{path} is larger than 10 MiB: upload it with LFS")
                files[path] = StoredFile(content, lfs=False)
            elif key == "lfsFile":
                oid = value.get("oid")
                stored = repo.lfs_objects.get(str(oid))
                if value.get("algo", "sha256") != "sha256" or stored is None:
                    raise _HttpError(400, f"LFS object {oid} of {path} was never uploaded to {repo.repo_id}")
                if "size" in value and value["size"] != len(stored):
                    raise _HttpError(400, f"Size of {path} does not match its LFS object")
                files[path] = StoredFile(stored, lfs=True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
            else:
                raise _HttpError(400, f"Unsupported commit operation {key!r}")

        record = self._new_commit(repo, head, title, str(header.get("description") or ""), files)
        repo.branches[branch] = record.oid
        return _Response.json({
            "success": True,
            "commitOid": record.oid,
            "commitUrl": f"{self.url}/{repo.repo_id}/commit/{record.oid}",
            "hookOutput": "", "pullRequestUrl": None,
        })

    def _tag(self, request: _Request) -> _Response:
        repo = self._repo(request)
        target = self._resolve(repo, request.params["rev"])
        payload = request.json() or {}
        tag = payload.get("tag")
        if not isinstance(tag, str) or not re.fullmatch(r"[\w.\-/]+", tag) or ".." in tag:
            raise _HttpError(400, f"Invalid tag name: {tag!r}")
        if tag in repo.tags:
            raise _HttpError(409, f"Tag {tag} already exists")
        repo.tags[tag] = target
        return _Response.json({})

    def _create_branch(self, request: _Request) -> _Response:
        repo = self._repo(request)
        branch = unquote(request.params["branch"])
        if branch in repo.branches:
            raise _HttpError(409, f"Branch {branch} already exists")
        repo.branches[branch] = self._resolve(repo, (request.json() or {}).get("startingPoint") or "main")
        return _Response.json({})

    def _delete_branch(self, request: _Request) -> _Response:
        repo = self._repo(request)
        branch = unquote(request.params["branch"])
        if branch not in repo.branches or branch == "main":
            raise _HttpError(404 if branch not in repo.branches else 403, f"Cannot delete branch {branch}")
        del repo.branches[branch]
        return _Response.json({})

    def _validate_yaml(self, request: _Request) -> _Response:
        """The front matter must be a YAML mapping; the Hub's schema of its keys is not played."""
        content = (request.json() or {}).get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match[1]) if match else {}
        except yaml.YAMLError as error:
            problem = f"Invalid YAML in the metadata: {' '.join(str(error).split())}"
        else:
            problem = None if isinstance(metadata, dict) else "The metadata is not a YAML mapping"
        if problem:
            raise _HttpError(400, "Invalid metadata", body={"errors": [{"message": problem}]})
        return _Response.json({"errors": [], "warnings": []})

    def _exchange(self, request: _Request) -> _Response:
        payload = request.json() or {}
        if payload.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" or payload.get(
                "subject_token_type") != "urn:ietf:params:oauth:token-type:id_token":
            raise _HttpError(400, "unsupported_grant_type", body={"error_description": "expected an id token exchange"})
        repo_id = payload.get("resource", "")
        problem = f"{repo_id} has no trusted publisher"
        for key, wanted in self._publishers.get(repo_id, []):
            try:
                claims = id_tokens.verify(payload.get("subject_token", ""), key, self.url)
            except ValueError as error:
                problem = str(error)
                continue
            workflow = claims.get("workflow_ref", "").split("@")[0].rsplit("/", 1)[-1]  # o/r/.github/workflows/F@ref
            if {**claims, "workflow": workflow}.items() >= wanted.items():
                token = f"hf_oidc_{secrets.token_hex(12)}"
                self._scoped[token] = (repo_id, time.time() + 3600)
                return _Response.json({"access_token": token, "token_type": "bearer", "expires_in": 3600,
                                       "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
            problem = f"no trusted publisher of {repo_id} matches the token's claims"
        raise _HttpError(400, "invalid_grant", body={"error_description": problem})

    def _whoami(self, request: _Request) -> _Response:
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        if token not in self.whoami:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return _Response.json(self.whoami[token])

    def _resolve_file(self, request: _Request) -> _Response:
        repo = self._repo(request)
        oid = self._resolve(repo, request.params["rev"])
        path = request.params["path"]
        f = repo.commit(oid).files.get(path)
        if f is None:
            raise _HttpError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "ETag": f'"{f.blob_id}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            sig = self._sign("cdn", repo.repo_id, f.sha256)
            location = f"{self.cdn_url}/lfs/{repo.repo_id}/{f.sha256}?sig={sig}&filename={quote(path.split('/')[-1])}"
            headers.update({"Location": location, "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
            return _Response(302, b"", headers)
        headers["Content-Type"] = "application/octet-stream"
        return _Response(200, f.content, headers)

    def _cdn_get(self, request: _Request) -> _Response:
        repo_id = f"{request.params['ns']}/{request.params['name']}"
        oid = request.params["oid"]
        self._check_signature(request, "cdn", repo_id, oid)
        repo = self._repos.get(repo_id)
        content = repo.lfs_objects.get(oid) if repo is not None else None
        if content is None:
            raise _HttpError(404, "No such object")
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": f'"{oid}"'}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        with self._lock:
            cut = request.method == "GET" and self._cuts > 0
            self._cuts -= cut
        if match is None:
            return _Response(200, content, headers, cut)
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(content) - 1, len(content) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        return _Response(206, content[start : end + 1], headers, cut)


def _route(method: str, pattern: str, handler: Callable[[LoopbackHub, _Request], _Response], auth: bool) -> _Route:
    return (method, re.compile(pattern), handler, auth)


_API = rf"/api/models/{_REPO}"
_LFS = rf"/{_REPO}\.git/info/lfs/objects"
_ROUTES: dict[str, list[_Route]] = {
    "hub": [
        _route("POST", r"/api/repos/create", LoopbackHub._create_repo, True),
        _route("GET", rf"{_API}/refs", LoopbackHub._refs, False),
        _route("POST", rf"{_API}/paths-info/{_REV}", LoopbackHub._paths_info, False),
        _route("GET", rf"{_API}/tree/{_REV}(?:/(?P<path>.+))?", LoopbackHub._tree, False),
        _route("POST", rf"{_API}/preupload/{_REV}", LoopbackHub._preupload, True),
        _route("POST", rf"{_API}/commit/{_REV}", LoopbackHub._commit, True),
        _route("POST", rf"{_API}/tag/{_REV}", LoopbackHub._tag, True),
        _route("POST", rf"{_API}/branch/(?P<branch>[^/]+)", LoopbackHub._create_branch, True),
        _route("DELETE", rf"{_API}/branch/(?P<branch>[^/]+)", LoopbackHub._delete_branch, True),
        _route("GET", rf"{_API}(?:/revision/{_REV})?", LoopbackHub._repo_info, False),
        _route("GET", r"/api/whoami-v2", LoopbackHub._whoami, False),
        _route("POST", r"/api/validate-yaml", LoopbackHub._validate_yaml, False),
        _route("POST", r"/oauth/token", LoopbackHub._exchange, False),
        _route("POST", rf"{_LFS}/batch", LoopbackHub._lfs_batch, True),
        _route("PUT", rf"{_LFS}/upload/{_SHA256}", LoopbackHub._lfs_upload, False),  # signed URL, no token (like S3)
        _route("POST", rf"{_LFS}/verify", LoopbackHub._lfs_verify, True),
        _route("GET|HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", LoopbackHub._resolve_file, False),
    ],
    "cdn": [
        _route("GET|HEAD", rf"/lfs/{_REPO}/{_SHA256}", LoopbackHub._cdn_get, False),
    ],
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        hub: LoopbackHub = self.server.loopback_hub  # type: ignore[attr-defined]
        role: str = self.server.role  # type: ignore[attr-defined]
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = hub._handle(role, self.command, self.path, headers, body)
        hub._log_request(self.command, self.path, response.status)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body[: len(response.body) // 2] if response.cut else response.body)
        if response.cut:
            self.wfile.flush()
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass
