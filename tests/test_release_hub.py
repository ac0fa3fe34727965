"""Publishing a staged release to a Hugging Face Hub on loopback with the real `huggingface_hub` client:
one commit and a tag, re-runs that change nothing, a failure halfway that leaves nothing and can be
retried, a next release that removes what it no longer has, and a tag that is never moved."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx.errors import ClipOnnxError
from release import hub as hub_release

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "test-user/clip-onnx"
UPLOAD = r"\.git/info/lfs/objects/upload/"


def staged_release(root: Path, tag: str, files: dict[str, bytes]) -> tuple[Path, dict]:
    """A staged folder as `python -m release stage` lays it out, holding `files` (Hub path -> bytes)."""
    for path, content in files.items():
        (root / "hub" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "hub" / path).write_bytes(content)
    release = {"tag": tag, "files": [{"hub_path": p, "sha256": hashlib.sha256(c).hexdigest()}
                                     for p, c in files.items() if p != "README.md"]}
    (root / "release-manifest.json").write_text(json.dumps(release))
    return root, release


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "README.md": b"---\nlicense: mit\n---\n# card\n",
        "RN50/RN50_visual.onnx": os.urandom(300_001),
        "RN50/RN50_transformer.onnx": os.urandom(200_003),
        "RN50/manifest.json": b'{"variant": "RN50"}\n',
    }


def publish(hub, staged: Path, release: dict) -> str:
    return hub_release.publish(staged, release, REPO, endpoint=hub.url, token=hub.token, log=lambda _: None)


def test_one_commit_then_the_tag_and_a_rerun_changes_nothing(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    oid = publish(hub, staged, release)
    assert hub.tags(REPO) == {"v1.0.0": oid} and hub.branches(REPO)["main"] == oid
    assert {p: c for p, c in hub.files(REPO, "v1.0.0").items() if p != ".gitattributes"} == files
    assert hub.lfs_paths(REPO, "v1.0.0") == {"RN50/RN50_visual.onnx", "RN50/RN50_transformer.onnx"}
    commits = hub.commits(REPO)
    hub.clear_requests()
    assert publish(hub, staged, release) == oid
    assert hub.commits(REPO) == commits and hub.count("PUT", UPLOAD) == 0 and hub.count("POST", "/commit/") == 0


def test_failure_halfway_leaves_no_commit_and_no_tag_and_a_retry_completes(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    transformer = hashlib.sha256(files["RN50/RN50_transformer.onnx"]).hexdigest()
    hub.fail("PUT", UPLOAD + transformer)  # the second LFS upload fails, every retry too
    with pytest.raises(ClipOnnxError, match="nothing was committed or tagged, re-run"):
        publish(hub, staged, release)
    commits = hub.commits(REPO)
    assert len(commits) == 1 and hub.tags(REPO) == {}  # the repository's first commit only
    hub.reset_failures()
    hub.clear_requests()
    oid = publish(hub, staged, release)
    assert hub.commits(REPO) == [*commits, oid] and hub.tags(REPO) == {"v1.0.0": oid}
    assert hub.count("PUT", UPLOAD) == 1  # only the file that had failed is sent again


def test_commit_refused_then_retried(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    hub.fail("POST", "/commit/main", times=1)
    with pytest.raises(ClipOnnxError, match="was not tagged, re-run"):
        publish(hub, staged, release)
    assert hub.tags(REPO) == {}
    assert publish(hub, staged, release) == hub.tags(REPO)["v1.0.0"]


def test_next_release_commits_changes_and_removals_and_keeps_the_old_tag(hub, tmp_path, files):
    old_oid = publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    newer = {**files, "RN50/RN50_visual.onnx": os.urandom(300_001)}
    del newer["RN50/RN50_transformer.onnx"]
    hub.clear_requests()
    new_oid = publish(hub, *staged_release(tmp_path / "b", "v1.1.0", newer))
    assert hub.count("PUT", UPLOAD) == 1
    assert {p: c for p, c in hub.files(REPO, "v1.1.0").items() if p != ".gitattributes"} == newer
    assert {p: c for p, c in hub.files(REPO, "v1.0.0").items() if p != ".gitattributes"} == files
    assert hub.tags(REPO) == {"v1.0.0": old_oid, "v1.1.0": new_oid}


def test_a_published_tag_is_never_moved(hub, tmp_path, files):
    publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    other = {**files, "RN50/manifest.json": b'{"variant": "RN51"}\n'}  # same size, other bytes
    commits = hub.commits(REPO)
    with pytest.raises(ClipOnnxError, match="RN50/manifest.json has other content.*never moved"):
        publish(hub, *staged_release(tmp_path / "b", "v1.0.0", other))
    assert hub.commits(REPO) == commits


def test_dry_run_lists_every_upload_and_contacts_nothing(tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    (staged / "github").mkdir()
    (staged / "github" / "RN50_visual.onnx").write_bytes(files["RN50/RN50_visual.onnx"])
    digest = hashlib.sha256(files["RN50/RN50_visual.onnx"]).hexdigest()
    (staged / "github" / "SHA256SUMS").write_text(f"{digest}  RN50_visual.onnx\n")
    result = subprocess.run([sys.executable, "-m", "release", "publish", str(staged), "--hub-repo", REPO,
                             "--github-repo", "owner/clip-onnx", "--dry-run"], capture_output=True, text=True,
                            env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.startswith(f"would upload to {REPO}: ") for line in lines) == len(files)
    assert f"would attach to GitHub release v1.0.0 of owner/clip-onnx: RN50_visual.onnx  sha256 {digest}" in lines
    assert sum("would attach" in line for line in lines) == 2 and lines[-1] == "dry run: nothing was uploaded"


def test_rehearsal_of_the_whole_release(tmp_path):
    """The README's rehearsal command: both families in both precisions, exported, verified, staged, carded,
    published twice to a loopback Hub and downloaded back."""
    out = tmp_path / "rehearsal"
    result = subprocess.run([sys.executable, "-m", "release", "rehearse", "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "hub: 24 files downloaded at v0.0.0 match their SHA-256" in result.stdout
    assert "already holds these 25 files; nothing to do" in result.stdout
    staged = out / "staged"
    assert {p.name for p in (staged / "hub").iterdir()} == {"README.md", "tiny-ViT", "tiny-ViT-fp16", "tiny-RN",
                                                            "tiny-RN-fp16"}
    assert "tiny-RN-fp16" in (staged / "RELEASE_NOTES.md").read_text()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=staged / "github", capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 24


def test_rerun_of_an_older_release_is_judged_at_its_tag_not_at_main(hub, tmp_path, files):
    old_oid = publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    publish(hub, *staged_release(tmp_path / "b", "v1.1.0", {**files, "RN50/RN50_visual.onnx": os.urandom(300_001)}))
    commits = hub.commits(REPO)
    assert publish(hub, *staged_release(tmp_path / "c", "v1.0.0", files)) == old_oid
    assert hub.commits(REPO) == commits


def test_differences_name_what_the_hub_has_wrong(hub, tmp_path, files):
    from huggingface_hub import HfApi

    publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    changed = {**files, "RN50/RN50_visual.onnx": os.urandom(300_001), "RN50/RN50_transformer.onnx": os.urandom(9),
               "RN50/new.onnx": b"new"}
    staged, release = staged_release(tmp_path / "b", "v1.0.0", changed)
    wrong = hub_release.differences(HfApi(endpoint=hub.url, token=hub.token), REPO, "v1.0.0",
                                    hub_release.hub_files(staged, release))
    visual = hashlib.sha256(files["RN50/RN50_visual.onnx"]).hexdigest()
    assert wrong == {
        "RN50/RN50_visual.onnx": f"has SHA-256 {visual}, not {hashlib.sha256(changed['RN50/RN50_visual.onnx']).hexdigest()}",
        "RN50/RN50_transformer.onnx": "has 200003 bytes, not 9",
        "RN50/new.onnx": "is missing",
    }
