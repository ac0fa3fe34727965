"""The GitHub Release step against GitHub's REST API on loopback: a draft completed across re-runs, an
upload that fails in the middle, a published release never altered, errors that say what to do, the
attesting job's SHA256SUMS read from the published release with nothing installed, and the canary's
record of how a run's attempts are listed. Calls are tried again after 5xx answers, dropped connections
and rate limits, waiting as GitHub documents (the waits are recorded, not slept)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx.errors import ClipOnnxError
from release import github as github_release
from release.github import GitHub, mismatches

REPO = "owner/clip-onnx"
NOW = 1_767_225_600  # 2026-01-01 00:00:00 UTC, the clients' clock
SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
ROOT = Path(__file__).resolve().parents[1]
# `python -m release ARGS` in a child that can import the standard library and this checkout only: the
# attesting job installs nothing.
STDLIB_ONLY = """
import runpy, sys
ALLOWED = set(sys.stdlib_module_names) | {"release", "clip_onnx", "exporter"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in ALLOWED:
            raise ImportError(f"{name} is not installed in the attest job")
sys.meta_path.insert(0, Block())
sys.argv = ["release", *sys.argv[1:]]
runpy.run_module("release", run_name="__main__")
"""


@pytest.fixture
def assets(tmp_path) -> dict[str, tuple[Path, str]]:
    found = {}
    for name, size in (("a.onnx", 70_001), ("b.onnx.part-00", 50_000), ("b.onnx.part-01", 123)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        found[name] = (path, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def client(github, token: str | None = None, waits: list[float] | None = None) -> GitHub:
    """The real client; its waits go to `waits` instead of sleeping."""
    return GitHub(REPO, token or github.token, api=github.url, now=lambda: NOW,
                  sleep=(waits if waits is not None else []).append)


def wanted(assets) -> dict[str, str]:
    return {name: digest for name, (_, digest) in assets.items()}


def test_a_draft_gets_every_asset_then_is_published(github, assets):
    github.create_tag(REPO, "v1.0.0")
    gh = client(github)
    release = github_release.upload(gh, gh.draft("v1.0.0", "t", "notes"), assets, log=lambda _: None)
    assert release["draft"] and mismatches(release["assets"], wanted(assets)) == {}
    url = github_release.finish(gh, "v1.0.0", wanted(assets), "final notes", log=lambda _: None)
    (published,) = github.releases(REPO)
    assert url == published["html_url"] and not published["draft"] and published["body"] == "final notes"
    assert github.content(REPO, "v1.0.0", "b.onnx.part-01") == assets["b.onnx.part-01"][0].read_bytes()


def test_an_upload_cut_in_the_middle_leaves_a_draft_that_a_rerun_repairs(github, assets):
    github.create_tag(REPO, "v1.0.0")
    gh = client(github)
    github.cut_upload("b.onnx.part-00")
    with pytest.raises(ClipOnnxError, match=r"GitHub POST .*/assets failed: .*; re-run to resume"):
        github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lambda _: None)
    (draft,) = github.releases(REPO)
    assert draft["draft"] and {a["name"]: a["state"] for a in draft["assets"]} == {
        "a.onnx": "uploaded", "b.onnx.part-00": "starter"}
    github.requests.clear()
    lines = []
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lines.append)
    assert "github: replacing b.onnx.part-00, which was not fully uploaded" in lines
    assert github.count("POST", "/assets$") == 2 and github.count("DELETE", "/assets/") == 1  # a.onnx is not sent
    github_release.finish(gh, "v1.0.0", wanted(assets), "", log=lambda _: None)
    assert not github.releases(REPO)[0]["draft"]


def test_a_published_release_is_left_alone_and_one_with_other_bytes_refused(github, assets):
    github.create_tag(REPO, "v1.0.0")
    gh = client(github)
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lambda _: None)
    github_release.finish(gh, "v1.0.0", wanted(assets), "", log=lambda _: None)
    github.requests.clear()
    lines = []
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lines.append)
    github_release.finish(gh, "v1.0.0", wanted(assets), "", log=lines.append)
    assert [m for m, _ in github.requests if m != "GET"] == [] and "nothing to do" in lines[-1]
    other = {**assets, "a.onnx": (assets["a.onnx"][0], "ff" * 32)}
    with pytest.raises(ClipOnnxError, match="published release v1.0.0 differs.*a.onnx has digest.*never altered"):
        github_release.upload(gh, gh.draft("v1.0.0", "t", ""), other, log=lambda _: None)
    with pytest.raises(ClipOnnxError, match="published release v1.0.0 differs.*never altered"):
        github_release.finish(gh, "v1.0.0", wanted(other), "", log=lambda _: None)


def test_a_draft_with_assets_this_release_lacks_is_not_published(github, assets):
    github.create_tag(REPO, "v1.0.0")
    gh = client(github)
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lambda _: None)
    fewer = dict(list(wanted(assets).items())[:1])
    with pytest.raises(ClipOnnxError, match=r"the draft v1.0.0 differs .*is not part of this release \(and 1 more\)\); delete"):
        github_release.finish(gh, "v1.0.0", fewer, "", log=lambda _: None)
    assert github.releases(REPO)[0]["draft"]


def test_releases_are_found_across_pages_and_duplicate_drafts_are_named(github):
    gh = client(github)
    for tag in ("v1.0.0", "v1.1.0", "v1.2.0"):
        github.create_tag(REPO, tag)
        gh.draft(tag, tag, "")
    github.requests.clear()
    assert gh.release("v1.0.0")["tag_name"] == "v1.0.0"  # the oldest is on the second page of two
    assert github.count("GET", "/releases$") == 2
    gh.json("POST", f"repos/{REPO}/releases", {"tag_name": "v1.1.0", "draft": True})  # GitHub allows this
    with pytest.raises(ClipOnnxError, match=r"has 2 releases of v1.1.0 \(ids \d+, \d+\); delete all but one"):
        gh.release("v1.1.0")


def test_a_release_is_never_made_for_a_tag_github_does_not_have(github):
    with pytest.raises(ClipOnnxError, match="owner/clip-onnx has no tag v9.9.9; push the tag first"):
        client(github).draft("v9.9.9", "t", "")
    assert github.releases(REPO) == []


@pytest.mark.parametrize("token,message", [
    ("wrong", "answered 401 .*Bad credentials; the token is not valid: check GH_TOKEN"),
    ("ghs_read_only", "answered 403 .*contents: write"),
], ids=["bad-token", "read-only-token"])
def test_a_token_that_cannot_write_is_named(github, token, message):
    github.create_tag(REPO, "v1.0.0")
    with pytest.raises(ClipOnnxError, match=message):
        client(github, token).draft("v1.0.0", "t", "")


def test_no_token_says_which_variable_to_set():
    with pytest.raises(ClipOnnxError, match="no GitHub token: set GH_TOKEN"):
        GitHub(REPO, None)


def test_mismatches_say_what_is_wrong_with_each_asset():
    want = {"a.onnx": "aa" * 32, "b.onnx": "bb" * 32, "c.onnx": "cc" * 32}
    existing = [{"name": "a.onnx", "state": "starter", "digest": None},
                {"name": "b.onnx", "state": "uploaded", "digest": f"sha256:{'ff' * 32}"},
                {"name": "old.onnx", "state": "uploaded", "digest": None}]
    assert mismatches(existing, want) == {
        "old.onnx": "is not part of this release",
        "a.onnx": "was not fully uploaded",
        "b.onnx": f"has digest sha256:{'ff' * 32}, not sha256:{'bb' * 32}",
        "c.onnx": "is missing",
    }
    assert "old.onnx" not in mismatches(existing, want, complete=False)


def release_cli(github, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STDLIB_ONLY, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "GH_TOKEN": github.token, "GITHUB_API_URL": github.url,
                               "PYTHONPATH": str(ROOT)})


def test_the_attesting_job_reads_sums_from_the_published_release_with_nothing_installed(github, assets, tmp_path):
    gh = client(github)
    github.create_tag(REPO, "v1.0.0")
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("".join(f"{digest}  {name}\n" for name, (_, digest) in assets.items()))
    files = {**assets, "SHA256SUMS": (sums, hashlib.sha256(sums.read_bytes()).hexdigest())}
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), files, log=lambda _: None)
    out = tmp_path / "sums" / "SHA256SUMS"
    command = ["sums", "--tag", "v1.0.0", "--github-repo", REPO, "-o", str(out)]
    refused = release_cli(github, *command)
    assert refused.returncode == 1 and not out.exists()
    assert refused.stderr.strip() == ("release: error: owner/clip-onnx has no published release of v1.0.0 (a draft); "
                                      "publish it first (re-run the publish job)")
    github_release.finish(gh, "v1.0.0", wanted(files), "", log=lambda _: None)
    result = release_cli(github, *command)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == sums.read_bytes() and result.stdout.strip() == f"wrote {out}: 3 files of v1.0.0"


@pytest.mark.parametrize("listed", [True, False])
def test_the_canary_records_whether_earlier_attempts_are_listed(tmp_path, listed):
    from tests.loopback_github import LoopbackGitHub

    (tmp_path / "attempt.txt").write_text("1")
    with LoopbackGitHub(earlier_attempts_listed=listed) as double:
        double.add_artifact(REPO, 5, "canary-attempt1", tmp_path)
        first = release_cli(double, "observe", "--run-id", "5", "--attempt", "1", "--github-repo", REPO)
        double.add_artifact(REPO, 5, "canary-attempt2", tmp_path, attempt=2)
        second = release_cli(double, "observe", "--run-id", "5", "--attempt", "2", "--github-repo", REPO)
    assert json.loads(first.stdout)["earlier_attempts_listed"] is None, first.stderr
    record = json.loads(second.stdout)
    assert record["earlier_attempts_listed"] is listed
    assert record["observed"] == f'{REPO} run 5, attempt 2 (after "Re-run all jobs")'
    assert set(json.loads(github_release.OBSERVED.read_text())) == set(record)  # the committed record's shape


def drafted(github, waits: list[float] | None = None) -> tuple[GitHub, dict]:
    github.create_tag(REPO, "v1.0.0")
    gh = client(github, waits=waits)
    return gh, gh.draft("v1.0.0", "t", "")


def test_5xx_answers_to_get_and_patch_are_tried_again_after_growing_waits(github):
    waits = []
    gh, draft = drafted(github, waits)
    github.requests.clear()
    github.fail("GET", "/releases$", 503, times=2)
    github.fail("PATCH", r"/releases/\d+$", 502, times=1)
    assert gh.release("v1.0.0")["id"] == draft["id"] and gh.edit(draft, body="edited")["body"] == "edited"
    assert github.count("GET", "/releases$") == 3 and github.count("PATCH", "/releases/") == 2
    assert waits == [1, 2, 1]


def test_a_dropped_connection_is_tried_again(github):
    waits = []
    gh, draft = drafted(github, waits)
    github.requests.clear()
    github.drop("GET", "/releases$")
    github.drop("DELETE", r"/releases/\d+$")
    assert gh.release("v1.0.0")["id"] == draft["id"]
    gh.request("DELETE", f"repos/{REPO}/releases/{draft['id']}")
    assert github.releases(REPO) == [] and github.count("GET", "/releases$") == 2 and waits == [1, 1]


def test_a_post_is_not_repeated_after_a_5xx_or_a_dropped_connection(github):
    waits = []
    github.create_tag(REPO, "v1.0.0")
    gh = client(github, waits=waits)
    github.fail("POST", "/releases$", 502, times=1)
    with pytest.raises(ClipOnnxError) as error:
        gh.draft("v1.0.0", "t", "")
    assert str(error.value) == (f"GitHub answered 502 to POST {github.url}/repos/{REPO}/releases: "
                                "Injected failure; re-run to resume")
    github.drop("POST", "/releases$")
    with pytest.raises(ClipOnnxError, match=f"^GitHub POST {github.url}/repos/{REPO}/releases failed: .*; re-run"):
        gh.draft("v1.0.0", "t", "")
    assert github.count("POST", "/releases$") == 2 and waits == []


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_rate_limit_waits_until_it_resets(github, status):
    waits = []
    gh, draft = drafted(github, waits)
    github.fail("GET", "/releases$", status, times=1, message="API rate limit exceeded for installation ID 1.",
                headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 300)})
    assert gh.release("v1.0.0")["id"] == draft["id"] and waits == [301]


def test_retry_after_is_honoured_even_for_a_post(github):
    waits = []
    github.create_tag(REPO, "v1.0.0")
    gh = client(github, waits=waits)
    github.fail("POST", "/releases$", 403, times=1, message=SECONDARY, headers={"retry-after": "30"})
    assert gh.draft("v1.0.0", "t", "")["draft"]
    assert len(github.releases(REPO)) == 1 and github.count("POST", "/releases$") == 2 and waits == [30]


def test_an_upload_refused_by_a_rate_limit_sends_the_whole_file_again(github, assets):
    waits = []
    github.create_tag(REPO, "v1.0.0")
    gh = client(github, waits=waits)
    github.fail("POST", r"/assets$", 429, times=1, headers={"retry-after": "5"})
    github_release.upload(gh, gh.draft("v1.0.0", "t", ""), assets, log=lambda _: None)
    assert waits == [5] and all(github.content(REPO, "v1.0.0", name) == path.read_bytes()
                                for name, (path, _) in assets.items())


def test_a_secondary_rate_limit_without_headers_waits_a_minute_then_longer(github):
    waits = []
    gh, draft = drafted(github, waits)
    github.fail("PATCH", r"/releases/\d+$", 403, times=2, message=SECONDARY)
    assert gh.edit(draft, body="edited")["body"] == "edited" and waits == [60, 120]


def test_a_rate_limit_that_lasts_is_named_a_rate_limit_not_a_permission_problem(github):
    waits = []
    gh, draft = drafted(github, waits)
    github.requests.clear()
    github.fail("PATCH", r"/releases/\d+$", 403, message=SECONDARY)
    with pytest.raises(ClipOnnxError) as error:
        gh.edit(draft, body="edited")
    assert str(error.value) == (f"GitHub answered 403 to PATCH {github.url}/repos/{REPO}/releases/{draft['id']}: "
                                f"a rate limit ({SECONDARY}), which resets at 2026-01-01 00:16:00 UTC; re-run after it")
    assert github.count("PATCH", "/releases/") == 5 and waits == [60, 120, 240, 480]


def test_a_403_that_is_no_rate_limit_gets_the_permission_advice_at_once(github):
    waits = []
    gh, draft = drafted(github, waits)
    github.requests.clear()
    with pytest.raises(ClipOnnxError) as error:
        client(github, "ghs_read_only", waits).edit(draft, body="edited")
    assert str(error.value) == (f"GitHub answered 403 to PATCH {github.url}/repos/{REPO}/releases/{draft['id']}: "
                                "Resource not accessible by integration; the token may not write releases: "
                                "the job needs `permissions: contents: write`")
    assert github.count("PATCH", "/releases/") == 1 and waits == []


@pytest.mark.parametrize("headers", [{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 3600)},
                                     {"retry-after": "3601"}], ids=["reset", "retry-after"])
def test_a_rate_limit_longer_than_a_job_waits_fails_at_once_naming_when_to_rerun(github, headers):
    waits = []
    gh, draft = drafted(github, waits)
    github.requests.clear()
    github.fail("GET", "/releases$", 429, headers=headers, message="API rate limit exceeded")
    with pytest.raises(ClipOnnxError) as error:
        gh.release("v1.0.0")
    assert str(error.value) == (f"GitHub answered 429 to GET {github.url}/repos/{REPO}/releases: a rate limit "
                                "(API rate limit exceeded), which resets at 2026-01-01 01:00:01 UTC; re-run after it")
    assert github.count("GET", "/releases$") == 1 and waits == []


def test_every_asset_of_a_release_is_seen_across_pages(github, tmp_path):
    gh, draft = drafted(github)
    files = {}
    for i in range(5):
        (tmp_path / f"{i}.bin").write_bytes(bytes([i]) * 10)
        files[f"{i}.bin"] = (tmp_path / f"{i}.bin", hashlib.sha256(bytes([i]) * 10).hexdigest())
    github_release.upload(gh, draft, files, log=lambda _: None)
    github.requests.clear()
    assert sorted(a["name"] for a in gh.assets(draft)) == sorted(files)
    assert github.count("GET", r"/releases/\d+/assets$") == 3  # pages of 2
    github_release.upload(gh, draft, files, log=lambda _: None)  # nothing is missing, nothing is sent again
    assert github.count("POST", "/assets$") == 0
    github_release.finish(gh, "v1.0.0", wanted(files), "", log=lambda _: None)
    assert not github.releases(REPO)[0]["draft"]


def test_an_immutable_published_release_refuses_asset_changes(github, assets):
    gh, draft = drafted(github)
    github_release.upload(gh, draft, assets, log=lambda _: None)
    github_release.finish(gh, "v1.0.0", wanted(assets), "", log=lambda _: None)
    published = gh.release("v1.0.0")
    with pytest.raises(ClipOnnxError, match=r"answered 422 to POST .*: Cannot upload assets to an immutable release$"):
        gh.upload(published, assets["a.onnx"][0], "extra.onnx")
    with pytest.raises(ClipOnnxError, match=r"answered 422 to DELETE .*: Cannot delete assets of an immutable release$"):
        gh.delete_asset(gh.assets(published)[0])
    assert len(gh.assets(published)) == len(assets)
