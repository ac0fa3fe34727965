"""Publishing one variant's staged folder to its Hub repo on loopback with the real `huggingface_hub` client:
one commit off `main` and a tag, re-runs that change nothing, a failure halfway that leaves nothing and
can be retried, a next release that removes what it no longer has, a tag that is never moved, `main`
brought to a tag by server-side copies and only from the commit it was read at, Xet's errors in one
line, and the README's rehearsal of the whole release."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx.errors import ClipOnnxError
from release import hub as hub_release

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = "test-user/clip-onnx"
UPLOAD = r"\.git/info/lfs/objects/upload/"


def staged_release(root: Path, tag: str, files: dict[str, bytes]) -> tuple[Path, str]:
    """A variant's staged Hub folder as `python -m release stage` lays it out, holding `files` (path -> bytes)."""
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root, tag


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "README.md": b"---\nlicense: mit\n---\n# card\n",
        "fp32/RN50_visual.onnx": os.urandom(300_001),
        "fp32/RN50_transformer.onnx": os.urandom(200_003),
        "fp32/manifest.json": b'{"variant": "RN50"}\n',
    }


def publish(hub, staged: Path, tag: str) -> str:
    return hub_release.publish(staged, tag, REPO, endpoint=hub.url, token=hub.token, log=lambda _: None)


def test_one_commit_then_the_tag_and_a_rerun_changes_nothing(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    oid = publish(hub, staged, release)
    # main still holds the repo's first commit only; the staging branch is gone
    assert hub.tags(REPO) == {"v1.0.0": oid} and hub.branches(REPO) == {"main": hub.commits(REPO)[0]}
    assert {p: c for p, c in hub.files(REPO, "v1.0.0").items() if p != ".gitattributes"} == files
    assert hub.lfs_paths(REPO, "v1.0.0") == {"fp32/RN50_visual.onnx", "fp32/RN50_transformer.onnx"}
    commits = hub.commits(REPO)
    hub.clear_requests()
    assert publish(hub, staged, release) == oid
    assert hub.commits(REPO) == commits and hub.count("PUT", UPLOAD) == 0 and hub.count("POST", "/commit/") == 0


def test_failure_halfway_leaves_no_commit_and_no_tag_and_a_retry_completes(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    transformer = hashlib.sha256(files["fp32/RN50_transformer.onnx"]).hexdigest()
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


def test_a_card_the_hub_refuses_is_one_line_and_nothing_is_tagged(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", {**files, "README.md": b"---\nlicense: [mit\n---\n# card\n"})
    with pytest.raises(ClipOnnxError) as refused:
        publish(hub, staged, release)
    assert str(refused.value).startswith(f"Hugging Face Hub, {REPO}: the model card's metadata is refused (Invalid "
                                         f"metadata in README.md. - Invalid YAML in the metadata: ")
    assert str(refused.value).endswith("; v1.0.0 was not tagged. Fix release/cards.py")
    assert "\n" not in str(refused.value) and hub.tags(REPO) == {}


def test_commit_refused_then_retried(hub, tmp_path, files):
    staged, release = staged_release(tmp_path, "v1.0.0", files)
    hub.fail("POST", "/commit/clip-onnx-v1.0.0", times=1)
    with pytest.raises(ClipOnnxError, match="was not tagged, re-run"):
        publish(hub, staged, release)
    assert hub.tags(REPO) == {}
    assert publish(hub, staged, release) == hub.tags(REPO)["v1.0.0"]


def test_next_release_commits_changes_and_removals_and_keeps_the_old_tag(hub, tmp_path, files):
    old_oid = publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    newer = {**files, "fp32/RN50_visual.onnx": os.urandom(300_001)}
    del newer["fp32/RN50_transformer.onnx"]
    hub.clear_requests()
    new_oid = publish(hub, *staged_release(tmp_path / "b", "v1.1.0", newer))
    assert hub.count("PUT", UPLOAD) == 1
    assert {p: c for p, c in hub.files(REPO, "v1.1.0").items() if p != ".gitattributes"} == newer
    assert {p: c for p, c in hub.files(REPO, "v1.0.0").items() if p != ".gitattributes"} == files
    assert hub.tags(REPO) == {"v1.0.0": old_oid, "v1.1.0": new_oid}


def test_a_published_tag_is_never_moved_and_every_differing_file_is_named(hub, tmp_path, files):
    publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    other = {**files, "fp32/manifest.json": b'{"variant": "RN51"}\n'}  # same size, other bytes
    del other["fp32/RN50_transformer.onnx"]
    commits = hub.commits(REPO)
    with pytest.raises(ClipOnnxError) as refused:
        publish(hub, *staged_release(tmp_path / "b", "v1.0.0", other))
    assert str(refused.value) == (
        f"{REPO} already has tag v1.0.0 with other files: fp32/manifest.json has other content (git blob "
        f"{hub.commit(REPO, 'v1.0.0').files['fp32/manifest.json'].blob_id}); fp32/RN50_transformer.onnx is not part "
        f"of this release; a published tag is never moved: release a new version")
    assert hub.commits(REPO) == commits


def test_main_is_brought_to_a_tag_by_server_side_copies_in_one_commit(hub, tmp_path, files):
    publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    hub.clear_requests()
    assert hub_release.advance_main(REPO, "v1.0.0", "# main card\n", endpoint=hub.url, token=hub.token,
                                    log=lambda _: None)
    main = {p: c for p, c in hub.files(REPO, "main").items() if p != ".gitattributes"}
    assert main == {**files, "README.md": b"# main card\n"}
    assert hub.count("PUT", UPLOAD) == 0 and hub.count("POST", "/commit/main") == 1  # copied, not uploaded
    assert hub_release.main_holds(REPO, "v1.0.0", endpoint=hub.url, token=hub.token)
    assert not hub_release.advance_main(REPO, "v1.0.0", "# main card\n", endpoint=hub.url, token=hub.token,
                                        log=lambda _: None)  # already there: no commit
    newer = {**files, "fp32/RN50_visual.onnx": os.urandom(300_001)}
    del newer["fp32/RN50_transformer.onnx"]
    publish(hub, *staged_release(tmp_path / "b", "v1.1.0", newer))
    assert not hub_release.main_holds(REPO, "v1.1.0", endpoint=hub.url, token=hub.token)  # tagging moves no main
    hub_release.advance_main(REPO, "v1.1.0", "# main card\n", endpoint=hub.url, token=hub.token, log=lambda _: None)
    assert {p: c for p, c in hub.files(REPO, "main").items() if p != ".gitattributes"} == {
        **newer, "README.md": b"# main card\n"}  # the file v1.1.0 dropped is deleted from main too


def test_main_that_moved_since_it_was_read_is_not_overwritten(hub, tmp_path, files, monkeypatch):
    from huggingface_hub import CommitOperationAdd, HfApi

    publish(hub, *staged_release(tmp_path, "v1.0.0", files))
    original = HfApi.create_commit

    def someone_commits_first(self, repo_id, operations, **kwargs):  # between advance_main's read and its commit
        monkeypatch.setattr(HfApi, "create_commit", original)
        original(self, repo_id, [CommitOperationAdd(path_in_repo="other.txt", path_or_fileobj=b"meanwhile")],
                 commit_message="meanwhile", revision="main")
        return original(self, repo_id, operations, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", someone_commits_first)
    with pytest.raises(hub_release.MainMoved, match=f"{REPO}@main moved while it was being brought to v1.0.0"):
        hub_release.advance_main(REPO, "v1.0.0", "card", endpoint=hub.url, token=hub.token, log=lambda _: None)
    assert hub.files(REPO, "main")["other.txt"] == b"meanwhile" and "README.md" not in hub.files(REPO, "main")


def test_the_canary_checks_how_the_hub_refuses_a_stale_parent(hub, tmp_path, files, monkeypatch):
    publish(hub, *staged_release(tmp_path, "v1.0.0", files))
    lines = []
    hub_release.check_stale_parent(REPO, endpoint=hub.url, token=hub.token, log=lines.append)
    assert lines == [f"hub: {REPO} refuses a stale parent_commit with 412, as advance_main expects"]
    monkeypatch.setattr(hub_release, "STALE_PARENT", 409)  # what the canary would say if the Hub answered 412
    with pytest.raises(ClipOnnxError, match=r"the second commit on \w+ was answered 412 .*advance_main expects only "
                                            r"the second refused, with 409: change release/hub.py's STALE_PARENT"):
        hub_release.check_stale_parent(REPO, endpoint=hub.url, token=hub.token, log=lines.append)


def test_a_failed_xet_upload_is_one_line_that_names_the_repo_and_the_token(tmp_path, files, quick_hub_client):
    """Against huggingface.co large files go through Xet (hf_xet); its errors are OSErrors with multi-line text.
    Here the real client takes its Xet path and the loopback Hub refuses the Xet write token."""
    from tests.loopback_hub import LoopbackHub

    with LoopbackHub(xet=True) as xet_hub:
        xet_hub.fail("GET", "/xet-write-token/", status=401)
        with pytest.raises(ClipOnnxError) as failed:
            publish(xet_hub, *staged_release(tmp_path, "v1.0.0", files))
        assert xet_hub.count("GET", "/xet-write-token/") >= 1 and xet_hub.tags(REPO) == {}
    message = str(failed.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"Hugging Face Hub: uploading to {REPO} failed (")
    assert message.endswith(f"nothing was committed or tagged. Check that HF_TOKEN may write to {REPO}, then re-run")


def test_rehearsal_of_the_whole_release(tmp_path):
    """The README's rehearsal command: both families in both precisions, exported, verified, then every
    scenario of tests/rehearsal.py (each kind of re-run, an older tag after a newer one, two tags at once, a
    failure at each step, the full scale), with Latest and every main checked after each."""
    from tests.rehearsal import SCENARIOS

    out = tmp_path / "rehearsal"
    result = subprocess.run([sys.executable, "-m", "tests.rehearsal", "-o", str(out)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("==== ")] == [
        "==== step 1/2: export and verify with random weights, as the matrix jobs do",
        "==== step 2/2: re-verify the written folders, as the export jobs' test step does",
        *(f"==== scenario {n}/{len(SCENARIOS)}: {s}" for n, s in enumerate(SCENARIOS, 1))]
    finished = [re.fullmatch(r"== Latest and every main at (v\S+): highest public (v\S+), highest complete (v\S+)", line)
                for line in lines]
    # after each scenario, and after the failures in steps 1-3 (v0.5.0 not yet public)
    assert [m.group(1) for m in finished if m and len(set(m.groups())) == 1] == [
        "v0.1.0", "v0.1.0", "v0.1.0", "v0.1.0", "v0.2.0", "v0.4.0", "v0.4.0", "v0.4.0", "v0.4.0", "v0.5.0", "v1.0.0"]
    assert [line.split(":")[0] for line in lines if line.startswith("== failed in step ")] == [
        f"== failed in step {n}" for n in range(1, 5)]
    assert "== Latest and every main at v0.4.0 or v0.5.0: highest public v0.5.0, highest complete v0.4.0" in lines
    assert "== hub: 32 files downloaded at their tag's commit match their manifests" in lines
    assert any(re.fullmatch(r"== github: \d+ assets match SHA256SUMS; [1-9]\d* split files join back", line)
               for line in lines)
    assert lines.count("== nothing changed") == 2
    # 9 variants x 2 precisions x 8 files (2 of them split in 3 parts), OpenAI's licence, SHA256SUMS
    assert "== full scale: 9 Hub repos, 182 GitHub assets" in lines
    assert lines[-1] == f"rehearsal passed: {out}"


def test_rerun_of_an_older_release_is_judged_at_its_tag_not_at_main(hub, tmp_path, files):
    old_oid = publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    publish(hub, *staged_release(tmp_path / "b", "v1.1.0", {**files, "fp32/RN50_visual.onnx": os.urandom(300_001)}))
    commits = hub.commits(REPO)
    assert publish(hub, *staged_release(tmp_path / "c", "v1.0.0", files)) == old_oid
    assert hub.commits(REPO) == commits


def test_differences_name_what_the_hub_has_wrong(hub, tmp_path, files):
    from huggingface_hub import HfApi

    publish(hub, *staged_release(tmp_path / "a", "v1.0.0", files))
    changed = {**files, "fp32/RN50_visual.onnx": os.urandom(300_001), "fp32/RN50_transformer.onnx": os.urandom(9),
               "fp32/new.onnx": b"new"}
    staged, _ = staged_release(tmp_path / "b", "v1.0.0", changed)
    wrong = hub_release.differences(HfApi(endpoint=hub.url, token=hub.token), REPO, "v1.0.0",
                                    hub_release.hub_files(staged, {}))
    visual = hashlib.sha256(files["fp32/RN50_visual.onnx"]).hexdigest()
    assert wrong == {
        "fp32/RN50_visual.onnx": f"has SHA-256 {visual}, not {hashlib.sha256(changed['fp32/RN50_visual.onnx']).hexdigest()}",
        "fp32/RN50_transformer.onnx": "has 200003 bytes, not 9",
        "fp32/new.onnx": "is missing",
    }
