"""The Hugging Face Hub source of OpenAI's weights: open_clip's float32 safetensors in the Hub repos
`timm/<arch>_clip.openai`, pinned per variant in `weight_pins.json`.

Files come through `huggingface_hub` (its cache, progress bar and its HF_ENDPOINT, HF_HUB_OFFLINE,
HF_HOME and HF_TOKEN settings) and are hashed on every use, cache hits included: `hf_hub_download`
checks no SHA-256, and a cache can be altered after the download. Downloads go over plain HTTP
(`HF_HUB_DISABLE_XET` for the call), the path the tests prove against the loopback Hub."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import disable_progress_bars

from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file

PINS = Path(__file__).with_name("weight_pins.json")
# A `.incomplete` download untouched this long belongs to a killed process: huggingface_hub names each
# process's partial file uniquely and never resumes another's.
ORPHAN_SECONDS = 600


class SourceError(ClipOnnxError):
    """One weight source could not give the file; the next source may (outside releases)."""


@dataclass(frozen=True)
class HubPin:
    """Where a variant's weights live on the Hub, and the bytes a release expects there."""

    repo: str
    file: str
    revision: str | None  # a Hub commit id
    sha256: str | None
    bytes: int | None

    @property
    def pinned(self) -> bool:
        return None not in (self.revision, self.sha256, self.bytes)


@functools.cache
def pins() -> dict[str, HubPin]:
    return {name: HubPin(**fields) for name, fields in json.loads(PINS.read_text()).items()}


def write_pins(resolved: dict[str, HubPin]) -> None:
    """Replace `weight_pins.json` (the maintainer's one-time step, `python -m release pin-weights`)."""
    tmp = PINS.with_name(PINS.name + ".tmp")
    tmp.write_text(json.dumps({name: asdict(pin) for name, pin in resolved.items()}, indent=2) + "\n")
    tmp.replace(PINS)
    pins.cache_clear()


@contextlib.contextmanager
def _plain_http() -> Iterator[None]:
    disabled = hub_constants.HF_HUB_DISABLE_XET
    hub_constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_DISABLE_XET = disabled


def _repo_cache(repo: str, cache_dir: Path | None) -> Path:
    root = Path(cache_dir) if cache_dir else Path(hub_constants.HF_HUB_CACHE)
    return root / f"models--{repo.replace('/', '--')}"


def remove_orphans(repo: str, cache_dir: Path | None = None, now: float | None = None) -> list[Path]:
    """Delete this repo's partial downloads left by killed processes; return them."""
    blobs = _repo_cache(repo, cache_dir) / "blobs"
    now = time.time() if now is None else now
    orphans = [p for p in blobs.glob("*.incomplete") if now - p.stat().st_mtime > ORPHAN_SECONDS]
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def _evict(repo: str, commit: str, cache_dir: Path | None) -> None:
    """Remove a cached revision whose file failed its hash, so no later run takes it for a good one."""
    info = huggingface_hub.scan_cache_dir(_repo_cache(repo, cache_dir).parent)
    info.delete_revisions(commit).execute()


def unreachable(url: str) -> str | None:
    """Why `url` cannot be reached, found without trying it: HF_HUB_OFFLINE, or a host name that does not
    resolve (no network). Then a source answers from its cache at once instead of after retries."""
    if hub_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as error:
        return f"{host} cannot be resolved ({getattr(error, 'strerror', None) or error})"
    return None


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def fetch(pin: HubPin, revision: str | None = None, cache_dir: Path | None = None, endpoint: str | None = None,
          progress: bool = True) -> tuple[Path, dict]:
    """The pinned file (or `revision`'s), hashed; returns its path and the manifest's `source` record.

    The SHA-256 and size are checked against the pin when the pinned revision is used; a mismatch
    deletes the cached revision and raises."""
    revision = revision or pin.revision
    endpoint = endpoint or os.environ.get("HF_ENDPOINT")  # read per call, so a process can point at a mirror
    offline = unreachable(endpoint or hub_constants.ENDPOINT)
    remove_orphans(pin.repo, cache_dir)
    try:
        with _plain_http(), (contextlib.nullcontext() if progress else disable_progress_bars()):
            path = Path(huggingface_hub.hf_hub_download(pin.repo, pin.file, revision=revision, cache_dir=cache_dir,
                                                        endpoint=endpoint, local_files_only=offline is not None))
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError) as error:
        if offline is not None:
            raise SourceError(f"the Hub's {pin.repo}: not in the local cache, and {offline}") from None
        raise SourceError(f"the Hub's {pin.repo}: {_one_line(error)}") from None
    commit = path.parent.name  # the cache keeps files under snapshots/<commit id>/
    sha256, size = sha256_file(path), path.stat().st_size
    if revision == pin.revision and pin.sha256 is not None and (sha256, size) != (pin.sha256, pin.bytes):
        _evict(pin.repo, commit, cache_dir)
        raise SourceError(f"{pin.repo}: {pin.file} at {commit} has SHA-256 {sha256} ({size} bytes), not the pinned "
                          f"{pin.sha256} ({pin.bytes} bytes); the cached copy was deleted")
    source = {"kind": "hub", "repo": pin.repo, "file": pin.file, "revision": commit, "sha256": sha256, "bytes": size}
    return path, source


def resolve(pin: HubPin, revision: str = "main", endpoint: str | None = None, token: str | None = None) -> HubPin:
    """The pin of `pin.file` at `revision` as the Hub reports it: commit id, LFS SHA-256 and size."""
    api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
    try:
        commit = api.model_info(pin.repo, revision=revision).sha
        infos = api.get_paths_info(pin.repo, [pin.file], revision=commit)
    except (HfHubHTTPError, OSError) as error:
        raise SourceError(f"{pin.repo}: {_one_line(error)}") from None
    if not infos or infos[0].lfs is None:
        raise SourceError(f"{pin.repo} has no LFS file {pin.file} at {revision}")
    return HubPin(pin.repo, pin.file, commit, infos[0].lfs.sha256, infos[0].size)
