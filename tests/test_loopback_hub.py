"""What the loopback Hub (tests/loopback_hub.py) must answer as the Hub does for the release's and
preflight's decisions that no other test reaches through production code: a stale `parent_commit`
refused with 412, writes refused without the token while reads stay public, and an unknown repo
answered as `RepositoryNotFoundError`. Everything else the double plays is exercised by the tests of
the code that calls it (tests/test_release_*.py, tests/test_hub_*.py, the rehearsal)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.loopback_hub import LoopbackHub

# the client PUTs LFS files with httpx2's deprecated `data=<file>`; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "test-user/clip-onnx-test"


@pytest.fixture
def api(hub: LoopbackHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    """A small random .onnx (stored as LFS) and a small .json on disk."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(os.urandom(100_003))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"variant": "ViT-B/32", "precision": "fp32"}, indent=2))
    return {"onnx": onnx, "json": manifest}


def _ops(local: dict[str, Path], *keys: str) -> list[CommitOperationAdd]:
    return [CommitOperationAdd(path_in_repo=local[k].name, path_or_fileobj=str(local[k])) for k in keys]


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
