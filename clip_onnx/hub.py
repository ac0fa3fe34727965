"""A release's files from the Hugging Face Hub: pinned to a revision, only the graphs asked for, every
file checked against the release's `manifest.json`.

Downloads go through `huggingface_hub.hf_hub_download` into its cache (`~/.cache/huggingface/hub`, or
`cache_dir`), so a file already there is not fetched again. It does not check SHA-256, so each file is
checked here against the manifest, and one that differs is removed from the cache before it is refused.
A release publishes each precision in its own folder of the variant's repo: `fp32/manifest.json`, ...
(`release/stage.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clip_onnx import integrity, manifest, pinned
from clip_onnx.contract import PRECISIONS
from clip_onnx.errors import ClipOnnxError, UsageError


def _fetch(repo: str, path: str, revision: str, cache_dir: Path | None, endpoint: str | None, token: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{repo} at revision {revision}"
    try:
        return Path(hf_hub_download(repo, path, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token))
    except RepositoryNotFoundError:
        raise ClipOnnxError(f"the Hub has no repo {repo} (or it is private); check the name, or set HF_TOKEN",
                            "missing_file") from None
    except RevisionNotFoundError:
        raise ClipOnnxError(f"{repo} has no revision {revision}; pin a commit or a release tag it has",
                            "missing_file") from None
    except EntryNotFoundError:
        raise ClipOnnxError(f"{where} has no {path}; pick a precision that release published", "missing_file") from None
    except (HfHubHTTPError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ClipOnnxError(f"downloading {path} from {where} failed ({first}); try again") from None


def _forget(path: Path) -> None:
    """Remove a cached file that failed its check: the snapshot's link and the blob it points to."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path:
        target.unlink(missing_ok=True)


def _facts(entry: object) -> tuple | None:
    return (entry.get("sha256"), entry.get("bytes")) if isinstance(entry, dict) else None


def _unpinned(repo: str, revision: str, precision: str, name: str) -> ClipOnnxError:
    return ClipOnnxError(f"{repo} at revision {revision}: {precision}/{name} is not the file this clip-onnx pins for "
                         f"release {revision} (its SHA-256 differs from {pinned.RELEASE_FILE}'s): the tag was moved or "
                         f"the file replaced, so it was refused; report it", "changed_file")


def download(repo: str, revision: str, *, precision: str = "fp32", graphs: Sequence[str] | None = None,
             cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None,
             pins: dict[str, dict] | None = None) -> Path:
    """Download `<precision>/manifest.json` of `repo` at `revision`, then only the files `graphs` need
    (`graphs.<graph>.files`; default: every graph), each checked against the manifest's SHA-256. Returns
    the folder, ready for `Model`. `revision` is a commit (what a program should pin) or a release tag.
    `pins` ({file name: {sha256, bytes}}, as `download_release` gives them): every file, the manifest
    first, must also be the one pinned, or it is removed from the cache and refused."""
    if not isinstance(revision, str) or not revision:
        raise UsageError("give the revision to download: the release's commit (or its tag), never a moving branch")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if isinstance(graphs, str):
        graphs = [graphs]
    cache = Path(cache_dir) if cache_dir is not None else None
    manifest_path = _fetch(repo, f"{precision}/{manifest.MANIFEST}", revision, cache, endpoint, token)
    folder = manifest_path.parent
    if pins is not None:
        if (integrity.sha256_file(manifest_path), manifest_path.stat().st_size) != _facts(pins.get(manifest.MANIFEST)):
            _forget(manifest_path)
            raise _unpinned(repo, revision, precision, manifest.MANIFEST)
    data = manifest.read(folder)
    graphs = list(data["graphs"]) if graphs is None else list(graphs)
    unknown = [g for g in graphs if g not in data["graphs"]]
    if unknown or len(set(graphs)) != len(graphs) or not graphs:
        raise UsageError(f"graphs {', '.join(map(repr, graphs)) or 'none'}: name each once, from "
                         f"{', '.join(data['graphs'])}")
    needed = integrity.needed_files(data, graphs)
    if pins is not None:  # every pin before any file is fetched, as the Rust and Node consumers check them
        for name in needed:
            if _facts(pins.get(name)) != _facts(data["files"].get(name)):
                raise _unpinned(repo, revision, precision, name)
    for name in needed:
        path = _fetch(repo, f"{precision}/{name}", revision, cache, endpoint, token)
        if path.parent != folder:  # one revision resolves to one snapshot folder
            raise ClipOnnxError(f"{repo}: {name} came from {path.parent}, not {folder}; pin a commit", "changed_file")
        try:
            integrity.check_file(data, folder, name)
        except ClipOnnxError as error:
            _forget(path)
            raise ClipOnnxError(f"{repo} at revision {revision}: {precision}/{name} does not match the SHA-256 in its "
                                f"{manifest.MANIFEST}, so it was removed from the cache; the release's files are "
                                f"damaged: report it", error.kind) from None
    return folder


def download_release(name: str, *, precision: str = "fp32", graphs: Sequence[str] | None = None,
                     cache_dir: str | Path | None = None, endpoint: str | None = None, token: str | None = None,
                     release: dict | None = None) -> Path:
    """Download variant `name` (`"ViT-B-32"`) of the release this package pins (`clip_onnx.pinned`): its
    Hub repo at the release's tag, every file checked against the SHA-256 the package holds for it, so a
    moved tag is refused. `release`: another table (`pinned.parse`); default the installed one."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    table = pinned.embedded() if release is None else pinned.parse(release)
    repo, tag, pins = pinned.pins(table, name, precision)
    return download(repo, tag, precision=precision, graphs=graphs, cache_dir=cache_dir, endpoint=endpoint,
                    token=token, pins=pins)
