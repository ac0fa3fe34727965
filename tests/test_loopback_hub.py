"""The loopback Hub (tests/loopback_hub.py) against the real huggingface_hub client, with Xet disabled."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._runtime import is_xet_available
from huggingface_hub.utils.sha import git_hash

from tests.loopback_hub import LoopbackHub, git_blob_oid, lfs_pointer

# the client PUTs LFS files with httpx2's deprecated `data=<file>`; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "test-user/clip-onnx-test"
UPLOAD = r"\.git/info/lfs/objects/upload/"


@pytest.fixture
def api(hub: LoopbackHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    """A ~1 MB random .onnx, a ~1 MB random .data and a small .json on disk."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(os.urandom(1_000_003))
    data = tmp_path / "model.onnx.data"
    data.write_bytes(os.urandom(700_001))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"variant": "ViT-B/32", "precision": "fp32"}, indent=2))
    return {"onnx": onnx, "data": data, "json": manifest}


def _ops(local: dict[str, Path], *keys: str) -> list[CommitOperationAdd]:
    return [CommitOperationAdd(path_in_repo=local[k].name, path_or_fileobj=str(local[k])) for k in keys]


def test_xet_is_disabled(hub: LoopbackHub) -> None:
    assert is_xet_available() is False


def test_create_repo_twice(hub: LoopbackHub, api: HfApi) -> None:
    first = api.create_repo(REPO, exist_ok=True)
    assert first.repo_id == REPO and str(first) == f"{hub.url}/{REPO}"
    commits = hub.commits(REPO)
    assert len(commits) == 1  # the Hub's initial ".gitattributes" commit
    second = api.create_repo(REPO, exist_ok=True)
    assert second.repo_id == REPO
    assert hub.commits(REPO) == commits
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO)  # exist_ok=False
    assert info.value.response.status_code == 409
    refs = api.list_repo_refs(REPO)
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", commits[0])]
    assert refs.tags == []


def test_commit_lfs_and_regular_file_in_one_commit(hub: LoopbackHub, api: HfApi, local: dict[str, Path]) -> None:
    api.create_repo(REPO, exist_ok=True)
    before = hub.commits(REPO)
    hub.clear_requests()
    info = api.create_commit(REPO, operations=_ops(local, "onnx", "json"), commit_message="add model", revision="main")

    after = hub.commits(REPO)
    assert after[:-1] == before and len(after) == len(before) + 1
    assert info.oid == after[-1] and info.commit_url == f"{hub.url}/{REPO}/commit/{info.oid}"
    assert hub.branches(REPO) == {"main": info.oid}
    files = hub.files(REPO, "main")
    assert files["model.onnx"] == local["onnx"].read_bytes()
    assert files["manifest.json"] == local["json"].read_bytes()
    assert hub.lfs_paths(REPO) == {"model.onnx"}
    assert hub.commit(REPO).title == "add model"
    # one preupload, one LFS batch, one PUT (the .onnx only), one verify, one commit
    assert hub.count("POST", r"/preupload/main$") == 1
    assert hub.count("POST", r"/info/lfs/objects/batch$") == 1
    assert hub.count("PUT", UPLOAD) == 1
    assert hub.count("POST", r"/info/lfs/objects/verify$") == 1
    assert hub.count("POST", r"/commit/main$") == 1
    assert api.list_repo_refs(REPO).branches[0].target_commit == info.oid


def test_get_paths_info(hub: LoopbackHub, api: HfApi, local: dict[str, Path]) -> None:
    api.create_repo(REPO)
    info = api.create_commit(REPO, operations=_ops(local, "onnx", "json"), commit_message="add model")
    onnx, manifest = local["onnx"].read_bytes(), local["json"].read_bytes()
    sha256 = hashlib.sha256(onnx).hexdigest()

    for revision in ("main", info.oid):
        paths = ["model.onnx", "manifest.json", "nope.txt"]
        entries = {e.path: e for e in api.get_paths_info(REPO, paths, revision=revision)}
        assert set(entries) == {"model.onnx", "manifest.json"}  # unknown paths are left out, as on the Hub
        lfs_entry, json_entry = entries["model.onnx"], entries["manifest.json"]
        assert lfs_entry.size == len(onnx) and lfs_entry.lfs is not None
        assert lfs_entry.lfs.sha256 == sha256 and lfs_entry.lfs.size == len(onnx)
        assert lfs_entry.blob_id == git_blob_oid(lfs_pointer(sha256, len(onnx)))  # git oid of the pointer file
        assert lfs_entry.lfs.pointer_size == len(lfs_pointer(sha256, len(onnx)))
        assert json_entry.lfs is None and json_entry.size == len(manifest)
        assert json_entry.blob_id == git_hash(manifest)

    expanded = api.get_paths_info(REPO, "model.onnx", expand=True)
    assert expanded[0].last_commit is not None and expanded[0].last_commit.oid == info.oid
    with pytest.raises(RevisionNotFoundError):
        api.get_paths_info(REPO, ["model.onnx"], revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.get_paths_info(REPO, ["model.onnx"], revision="0" * 40)


def test_tag_then_download_at_tag(hub: LoopbackHub, api: HfApi, local: dict[str, Path], tmp_path: Path) -> None:
    api.create_repo(REPO)
    info = api.create_commit(REPO, operations=_ops(local, "onnx", "json"), commit_message="add model")
    api.create_tag(REPO, tag="v1", revision=info.oid, tag_message="first release")
    assert hub.tags(REPO) == {"v1": info.oid}
    refs = api.list_repo_refs(REPO)
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", info.oid)]

    # a later commit on main must not change what the tag serves
    (tmp_path / "manifest.json").write_text("{}")
    api.create_commit(REPO, operations=_ops(local, "json"), commit_message="change manifest")

    cache = tmp_path / "cache"
    for name, key in (("model.onnx", "onnx"), ("manifest.json", "json")):
        path = hf_hub_download(REPO, name, revision="v1", endpoint=hub.url, cache_dir=cache)
        expected = hub.files(REPO, "v1")[name]
        assert Path(path).read_bytes() == expected
        assert f"snapshots/{info.oid}/" in Path(path).as_posix()
    assert Path(hf_hub_download(REPO, "manifest.json", endpoint=hub.url, cache_dir=cache)).read_bytes() == b"{}"
    assert hub.count("GET", r"^/lfs/") == 1  # the LFS file came from the "CDN" redirect

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.onnx", revision="v1", endpoint=hub.url, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model.onnx", revision="v2", endpoint=hub.url, cache_dir=cache)


def test_create_same_tag_twice_raises_409(hub: LoopbackHub, api: HfApi) -> None:
    api.create_repo(REPO)
    api.create_tag(REPO, tag="v1")
    with pytest.raises(HfHubHTTPError) as info:
        api.create_tag(REPO, tag="v1", revision=hub.commits(REPO)[0])
    assert info.value.response.status_code == 409
    api.create_tag(REPO, tag="v1", exist_ok=True)
    assert hub.tags(REPO) == {"v1": hub.commits(REPO)[0]}
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(REPO, tag="v2", revision="nope")


def test_persistent_lfs_put_failure_leaves_no_commit_then_retry(
    hub: LoopbackHub, api: HfApi, local: dict[str, Path]
) -> None:
    api.create_repo(REPO)
    before = hub.commits(REPO)
    data_oid = hashlib.sha256(local["data"].read_bytes()).hexdigest()
    hub.fail("PUT", UPLOAD + data_oid, status=500)  # the second LFS file's upload, forever

    with pytest.raises(RuntimeError, match="model.onnx.data") as info:
        api.create_commit(REPO, operations=_ops(local, "onnx", "data", "json"), commit_message="add model")
    cause = info.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 500
    assert hub.commits(REPO) == before
    assert hub.count("POST", r"/commit/main$") == 0
    assert hub.count("PUT", UPLOAD + data_oid) == 6  # http_backoff: 1 try + 5 retries on 500

    hub.reset_failures()
    hub.clear_requests()
    result = api.create_commit(REPO, operations=_ops(local, "onnx", "data", "json"), commit_message="add model")
    assert hub.commits(REPO) == [*before, result.oid]
    assert hub.count("PUT", UPLOAD) == 1  # model.onnx was already stored: the LFS batch API skipped it
    assert hub.files(REPO)["model.onnx.data"] == local["data"].read_bytes()
    assert hub.lfs_paths(REPO) == {"model.onnx", "model.onnx.data"}


def test_commit_endpoint_failure_is_not_retried(hub: LoopbackHub, api: HfApi, local: dict[str, Path]) -> None:
    api.create_repo(REPO)
    before = hub.commits(REPO)
    hub.fail("POST", r"/commit/main$", status=500, times=1)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(REPO, operations=_ops(local, "json"), commit_message="add manifest")
    assert info.value.response.status_code == 500
    assert hub.count("POST", r"/commit/main$") == 1 and hub.commits(REPO) == before
    api.create_commit(REPO, operations=_ops(local, "json"), commit_message="add manifest")  # failure used up
    assert len(hub.commits(REPO)) == len(before) + 1


def test_unchanged_files_are_skipped_by_the_client(hub: LoopbackHub, api: HfApi, local: dict[str, Path]) -> None:
    api.create_repo(REPO)
    first = api.create_commit(REPO, operations=_ops(local, "onnx", "json"), commit_message="add model")
    again = api.create_commit(REPO, operations=_ops(local, "onnx", "json"), commit_message="same again")
    assert again.oid == first.oid and hub.commits(REPO)[-1] == first.oid


def test_lfs_file_never_uploaded_is_refused(hub: LoopbackHub, api: HfApi) -> None:
    api.create_repo(REPO)
    before = hub.commits(REPO)
    op = CommitOperationAdd(path_in_repo="ghost.onnx", path_or_fileobj=b"never uploaded")
    op._upload_mode, op._should_ignore, op._is_uploaded = "lfs", False, True  # pretend it was preuploaded
    with pytest.raises(BadRequestError, match="never uploaded"):
        api.create_commit(REPO, operations=[op], commit_message="ghost")
    assert hub.commits(REPO) == before


def test_parent_commit_must_be_the_head(hub: LoopbackHub, api: HfApi, local: dict[str, Path]) -> None:
    api.create_repo(REPO)
    initial = hub.commits(REPO)[0]
    api.create_commit(REPO, operations=_ops(local, "json"), commit_message="one", parent_commit=initial)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(REPO, operations=_ops(local, "onnx"), commit_message="two", parent_commit=initial)
    assert info.value.response.status_code == 412
    assert len(hub.commits(REPO)) == 2


def test_write_endpoints_need_the_token(hub: LoopbackHub, local: dict[str, Path]) -> None:
    HfApi(endpoint=hub.url, token=hub.token).create_repo(REPO)
    for token in ("hf_wrong", False):
        anonymous = HfApi(endpoint=hub.url, token=token)
        with pytest.raises(HfHubHTTPError) as info:
            anonymous.create_commit(REPO, operations=_ops(local, "json"), commit_message="nope")
        assert info.value.response.status_code == 401
        with pytest.raises(HfHubHTTPError) as info:
            anonymous.create_tag(REPO, tag="v1")
        assert info.value.response.status_code == 401
    assert len(hub.commits(REPO)) == 1 and hub.tags(REPO) == {}
    assert HfApi(endpoint=hub.url, token=False).list_repo_refs(REPO).branches[0].name == "main"  # reads are public


def test_unknown_repo_raises_repository_not_found(hub: LoopbackHub, api: HfApi) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_refs("test-user/missing")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("test-user/missing")
    api.create_repo(REPO)
    info = api.repo_info(REPO)
    assert info.sha == hub.commits(REPO)[-1] and [s.rfilename for s in info.siblings] == [".gitattributes"]
