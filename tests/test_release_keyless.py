"""Keyless Hub writes: `python -m release publish` and `preflight` as the jobs run them, with no HF_TOKEN
and GitHub's OIDC variables, so huggingface_hub exchanges the job's id token for one token per repo
(`release/hub_auth.py`) at the loopback Hub's `/oauth/token`. A repo that does not exist, or whose
trusted publisher is another workflow, is refused in one line that says what to set up. (Commands run as
subprocesses: the client exchanges at HF_ENDPOINT, read when it is imported.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from release import packages
from release.stage import hub_repo
from tests.loopback_registries import LoopbackRegistries
from tests.rehearsal import fabricate

ROOT = Path(__file__).resolve().parents[1]
REPO, ORG, TAG = "owner/clip-onnx", "org", "v1.0.0"
FOLDERS = ("tiny-ViT", "tiny-RN")


@pytest.fixture
def exports(release_exports, tmp_path) -> Path:
    """tiny-ViT's verified exports, and tiny-RN made from them (two repos, so a token used on the wrong
    one is caught)."""
    root = tmp_path / "exports"
    for precision in ("fp32", "fp16"):
        (source,) = (release_exports / precision).iterdir()  # tiny-ViT, or tiny-ViT-fp16
        shutil.copytree(source, root / precision / source.name)
        fabricate(source, "tiny-RN", "tiny-RN", root / precision)
    return root


def prepare(hub, github, folders=FOLDERS, workflow="release.yml") -> None:
    """What a maintainer does once per repo: create it and add the release workflow as its trusted publisher."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    for folder in folders:
        api.create_repo(hub_repo(ORG, folder))
        hub.trust(hub_repo(ORG, folder), github.oidc_key, repository=REPO, workflow=workflow, environment="release")
    github.create_tag(REPO, TAG)


def release(hub, github, tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m release ARGS` in a job's environment: GitHub's OIDC variables, no HF_TOKEN."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items()
           if not k.startswith(("HF_", "HUGGING", "GH_", "GITHUB_"))}
    env.update(github.oidc_env(), GH_TOKEN=github.token, GITHUB_API_URL=github.url, HF_ENDPOINT=hub.url,
               HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    return subprocess.run([sys.executable, "-m", "release", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def publish(hub, github, exports, tmp_path) -> subprocess.CompletedProcess:
    return release(hub, github, tmp_path, "publish", "--exports", str(exports), "--tag", TAG, "--work",
                   str(tmp_path / "work"), "--hub-org", ORG, "--github-repo", REPO)


def test_a_keyless_release_writes_each_repo_with_a_token_for_that_repo(hub, github, exports, tmp_path):
    prepare(hub, github)
    result = publish(hub, github, exports, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hub: writing as keyless" in result.stdout
    for folder in FOLDERS:
        repo = hub_repo(ORG, folder)
        assert TAG in hub.tags(repo) and "fp32/manifest.json" in hub.files(repo, TAG)
        assert hub.files(repo, "main").keys() == hub.files(repo, TAG).keys()  # step 4 brought main to the tag
    assert hub.count("POST", r"^/oauth/token$") >= len(FOLDERS)  # one exchange per repo at least
    (release,) = github.releases(REPO)
    assert not release["draft"]


def test_without_a_token_or_an_oidc_token_nothing_is_published(hub, github, exports, tmp_path, monkeypatch):
    prepare(hub, github)
    monkeypatch.setattr(github, "oidc_env", lambda: {})  # a job without `id-token: write`, or not on GitHub
    result = publish(hub, github, exports, tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("release: error: no Hub credentials: set HF_TOKEN, or run in a GitHub Actions job with "
                             "`id-token: write` (docs/releasing.md, 'Hub credentials'); nothing was published\n")
    assert github.releases(REPO) == []


def test_a_repo_that_does_not_exist_is_refused_before_anything_is_published(hub, github, exports, tmp_path):
    prepare(hub, github, folders=FOLDERS[:1])
    result = publish(hub, github, exports, tmp_path)
    assert result.returncode == 1
    *rest, line = result.stderr.strip().splitlines(); assert not rest, result.stderr
    assert hub_repo(ORG, "tiny-RN") in line and "does not exist" in line and "trusted publisher" in line
    assert "HF_TOKEN" in line and "nothing was published" in line
    assert github.releases(REPO) == [] and hub.tags(hub_repo(ORG, "tiny-ViT")) == {}


def test_a_repo_whose_trusted_publisher_is_another_workflow_is_named_with_what_to_set_up(hub, github, exports,
                                                                                         tmp_path):
    prepare(hub, github, workflow="other.yml")
    result = publish(hub, github, exports, tmp_path)
    assert result.returncode == 1
    *rest, line = result.stderr.strip().splitlines(); assert not rest, result.stderr
    assert hub_repo(ORG, FOLDERS[1]) in line and "no keyless token" in line and "invalid_grant" in line
    assert "release.yml" in line and "trusted publisher" in line
    assert all(not hub.tags(hub_repo(ORG, f)) for f in FOLDERS)
    assert all(r["draft"] for r in github.releases(REPO))  # step 1's draft, nothing public


def test_keyless_preflight_proves_a_write_to_each_repo_and_names_each_that_cannot_be_written(hub, github, tmp_path):
    api = HfApi(endpoint=hub.url, token=hub.token)
    ready, other_workflow, missing = hub_repo(ORG, "ViT-B-32"), hub_repo(ORG, "RN50"), hub_repo(ORG, "RN101")
    for repo in (ready, other_workflow):
        api.create_repo(repo)
    hub.trust(ready, github.oidc_key, repository=REPO, workflow="release.yml", environment="release")
    hub.trust(other_workflow, github.oidc_key, repository=REPO, workflow="canary.yml", environment="release")
    with LoopbackRegistries() as registries:  # every package name already this repository's
        for package in packages.PACKAGES:
            registries.add(package.ecosystem, package.name, f"https://github.com/{REPO}")
        result = release(hub, github, tmp_path, "preflight", "--tag", "v0.1.0", "--hub-org", ORG, "--github-repo",
                         REPO, env=registries.env())
    assert result.returncode == 1  # the weights are not pinned in this checkout, and 7 repos do not exist
    lines = result.stdout.splitlines()
    setup = ("add this repository's release.yml (environment release) as the repo's trusted publisher on the Hub, "
             "or set the secret HF_TOKEN (docs/releasing.md, 'Hub credentials')")
    assert f"preflight: {missing} does not exist, and a keyless token writes only to an existing repo: create it, " \
           f"then {setup}" in lines
    (refused,) = [line for line in lines if f"{other_workflow} " in line or f"{other_workflow}:" in line]
    assert refused.startswith(f"preflight: Hugging Face Hub, {other_workflow}: no keyless token (") and \
        refused.endswith(f"nothing was changed. To fix it, {setup}") and "invalid_grant" in refused
    assert not [line for line in lines if f"{ready} " in line or f"{ready}:" in line]  # its token made a branch and deleted it
    assert hub.count("POST", rf"^/api/models/{ready}/branch/clip-onnx-preflight-v0.1.0$") == 1
    assert hub.branches(ready).keys() == {"main"}


def test_the_canarys_keyless_check_writes_only_where_it_is_a_trusted_publisher(hub, github, tmp_path):
    repo = hub_repo("scratch", "tiny-ViT")
    HfApi(endpoint=hub.url, token=hub.token).create_repo(repo)
    github.oidc_claims.update(workflow_ref=f"{REPO}/.github/workflows/canary.yml@refs/heads/main", environment="canary")
    refused = release(hub, github, tmp_path, "keyless", "--hub-repo", repo)
    assert refused.returncode == 1 and "no keyless token" in refused.stderr and len(refused.stderr.splitlines()) == 1
    hub.trust(repo, github.oidc_key, repository=REPO, workflow="canary.yml", environment="canary")
    result = release(hub, github, tmp_path, "keyless", "--hub-repo", repo)
    assert result.returncode == 0, result.stderr
    assert hub.count("DELETE", rf"^/api/models/{repo}/branch/clip-onnx-keyless-check$") == 1
