"""Publishing a tag end to end against GitHub's REST API and a Hugging Face Hub on loopback, from a run's
artifacts: split assets, the order that leaves nothing half-public (shown by stopping it at each step),
re-runs that resume or change nothing, each cell's newest attempt, a second tag, an older tag that moves
neither Latest nor main, the free-space check, the steps docs/releasing.md lists, and a publish job
that imports nothing but huggingface_hub."""

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
from release import publish as publishing
from release.github import GitHub, observed
from release.publish import STEPS, LocalExports, RunArtifacts, publish
from release.stage import attempt_artifact, hub_repo, read_sums

ROOT = Path(__file__).resolve().parents[1]
REPO, ORG, RUN = "owner/clip-onnx", "org", 7
HUB_REPO = hub_repo(ORG, "tiny-ViT")
PART = 300_000  # files over it (data files, tokenizer.json) are published in parts


@pytest.fixture
def run(github, hub, release_exports, tmp_path):
    """Publish `tag` from run RUN's artifacts; returns Hub repo -> commit."""
    for precision in ("fp32", "fp16"):
        folder = next((release_exports / precision).iterdir())
        github.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", precision, 1), folder)

    def publish_tag(tag: str = "v1.0.0", log=lambda _: None) -> dict[str, str]:
        github.create_tag(REPO, tag)
        gh = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
        return publish(RunArtifacts(gh, RUN), tag, ORG, gh, tmp_path / "work", hub_endpoint=hub.url,
                       hub_token=hub.token, part_bytes=PART, log=log)

    return publish_tag


def test_split_assets_are_published_and_join_back(run, github, hub):
    commits = run()
    (release,) = github.releases(REPO)
    assert not release["draft"]
    names = {a["name"] for a in release["assets"]}
    sums = read_sums(github.content(REPO, "v1.0.0", "SHA256SUMS").decode())
    parts = sorted(n for n in names if n.startswith("tiny-ViT_transformer.onnx.data.part-"))
    assert len(parts) > 1 and "tiny-ViT_transformer.onnx.data" not in names  # listed in SHA256SUMS, not an asset
    joined = b"".join(github.content(REPO, "v1.0.0", p) for p in parts)
    assert hashlib.sha256(joined).hexdigest() == sums["tiny-ViT_transformer.onnx.data"]
    split = {n.rsplit(".part-", 1)[0] for n in names if ".part-" in n}
    assert names == (set(sums) - split) | {"SHA256SUMS"}  # every other line of SHA256SUMS is an asset
    assert joined == hub.files(HUB_REPO, commits[HUB_REPO])["fp32/tiny-ViT_transformer.onnx.data"]
    assert hub.tags(HUB_REPO) == {"v1.0.0": commits[HUB_REPO]}
    files = set(hub.files(HUB_REPO, "v1.0.0"))
    assert {"README.md", "fp32/manifest.json", "fp16/tiny-ViT_visual.onnx"} <= files
    assert f"`{HUB_REPO}` | `{commits[HUB_REPO]}`" in release["body"]  # the notes pin the commit
    main_card = hub.files(HUB_REPO, "main")["README.md"].decode()  # and so does the card visitors see
    assert f"| `v1.0.0` | `{commits[HUB_REPO]}` |" in main_card and f'revision="{commits[HUB_REPO]}"' in main_card
    assert commits[HUB_REPO] not in hub.files(HUB_REPO, "v1.0.0")["README.md"].decode()


def test_a_github_upload_failure_leaves_the_hub_untouched(run, github, hub):
    github.fail("POST", r"/assets$", status=502)
    with pytest.raises(ClipOnnxError, match="answered 502 .*re-run to resume"):
        run()
    assert github.releases(REPO)[0]["draft"]
    with pytest.raises(KeyError):
        hub.commits(HUB_REPO)  # the Hub repo was never even created
    github.reset_failures()
    run()
    assert not github.releases(REPO)[0]["draft"] and "v1.0.0" in hub.tags(HUB_REPO)


def test_a_hub_failure_leaves_a_complete_draft_and_a_rerun_finishes(run, github, hub):
    hub.fail("POST", "/commit/clip-onnx-v1.0.0")
    with pytest.raises(ClipOnnxError, match="was not tagged, re-run"):
        run()
    (draft,) = github.releases(REPO)
    assert draft["draft"] and len(draft["assets"]) > 10 and hub.tags(HUB_REPO) == {}
    hub.reset_failures()
    github.requests.clear()
    run()
    assert github.count("POST", "/assets$") == 0 and not github.releases(REPO)[0]["draft"]


def test_publishing_github_last_and_a_rerun_that_changes_nothing(run, github, hub):
    github.fail("PATCH", r"/releases/\d+$")
    with pytest.raises(ClipOnnxError, match="answered 500"):
        commits = run()
    assert github.releases(REPO)[0]["draft"] and "v1.0.0" in hub.tags(HUB_REPO)  # Hub tagged, GitHub not yet
    github.reset_failures()
    commits = run()
    assert not github.releases(REPO)[0]["draft"]
    before = hub.commits(HUB_REPO), github.releases(REPO)
    github.requests.clear()
    hub.clear_requests()
    assert run() == commits
    assert [r for r in github.requests if r[0] != "GET"] == [] and hub.count("POST", "/commit/|/tag/") == 0
    assert (hub.commits(HUB_REPO), github.releases(REPO)) == before


def test_a_second_tag_is_a_second_release_and_hub_tag(run, github, hub):
    first = run("v1.0.0")
    second = run("v1.1.0")
    assert [r["tag_name"] for r in github.releases(REPO)] == ["v1.1.0", "v1.0.0"]
    assert hub.tags(HUB_REPO) == {"v1.0.0": first[HUB_REPO], "v1.1.0": second[HUB_REPO]}
    assert first != second  # the card names its tag


def test_an_older_tag_published_after_a_newer_one_moves_neither_latest_nor_main(run, github, hub):
    run("v1.1.0")
    lines = []
    run("v1.0.1", log=lines.append)
    assert [r["tag_name"] for r in github.releases(REPO) if not r["draft"]] == ["v1.0.1", "v1.1.0"]
    assert github.latest(REPO) == "v1.1.0" and "v1.0.1" in hub.tags(HUB_REPO)
    assert hub_release.main_holds(HUB_REPO, "v1.1.0", endpoint=hub.url, token=hub.token)
    published = r"github: published owner/clip-onnx v1.0.1 with \d+ assets; Latest stays on a higher version"
    assert any(re.fullmatch(published, line) for line in lines)
    card = hub.files(HUB_REPO, "main")["README.md"].decode()  # main's card lists it, its snippets the highest
    assert f"| `v1.0.1` | `{hub.tags(HUB_REPO)['v1.0.1']}` |" in card
    assert f'revision="{hub.tags(HUB_REPO)["v1.1.0"]}"' in card


def test_latest_moved_back_by_someone_else_is_brought_forward(run, github, hub):
    run("v1.1.0")
    run("v1.0.1")
    gh = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
    gh.edit(gh.release("v1.0.1"), make_latest="true")  # a person, or another tool, in between
    lines = []
    run("v1.0.1", log=lines.append)  # any publication's last step puts it right
    assert github.latest(REPO) == "v1.1.0" and "github: v1.1.0 made Latest, the highest published version" in lines


def test_a_main_that_moves_during_the_last_step_is_read_again(run, github, hub):
    hub.fail("POST", "/commit/main", status=412, times=1)  # what the Hub answers a stale parent_commit
    lines = []
    run(log=lines.append)
    assert any(line.endswith("moved while it was being brought to v1.0.0; reading it again") for line in lines)
    assert hub_release.main_holds(HUB_REPO, "v1.0.0", endpoint=hub.url, token=hub.token)


def test_main_holds_nothing_unpublished_while_a_tag_is_published(run, github, hub):
    run("v1.0.0")
    github.fail("PATCH", r"/releases/\d+$")  # the GitHub release of v1.1.0 cannot be published
    with pytest.raises(ClipOnnxError):
        run("v1.1.0")
    assert "v1.1.0" in hub.tags(HUB_REPO) and github.releases(REPO)[0]["draft"]
    assert hub_release.main_holds(HUB_REPO, "v1.0.0", endpoint=hub.url, token=hub.token)
    assert github.latest(REPO) == "v1.0.0"
    assert set(hub.branches(HUB_REPO)) == {"main"}  # the staging branch is gone once tagged


LISTINGS = [observed()["earlier_attempts_listed"]] if observed()["earlier_attempts_listed"] is not None else [True, False]


@pytest.mark.parametrize("listed", LISTINGS, ids=lambda v: f"earlier_attempts_listed={v}")
def test_each_cell_comes_from_its_newest_attempt_however_github_lists_them(release_exports, tmp_path, listed):
    from tests.loopback_github import LoopbackGitHub

    with LoopbackGitHub(earlier_attempts_listed=listed) as double:
        gh = GitHub(REPO, double.token, api=double.url)
        fp32, fp16 = (next((release_exports / p).iterdir()) for p in ("fp32", "fp16"))
        double.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", "fp32", 1), fp32)
        double.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", "fp16", 1), fp16)
        double.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", "fp16", 2), fp16, attempt=2)  # re-run failed jobs
        if listed:
            assert {a["name"] for a in RunArtifacts(gh, RUN, ["tiny-ViT"]).artifacts_of("tiny-ViT")} == {
                attempt_artifact("tiny-ViT", "fp32", 1), attempt_artifact("tiny-ViT", "fp16", 2)}
        else:  # the fp32 export is not listed any more: refused, never published without it
            with pytest.raises(ClipOnnxError, match=f"run {RUN} lists no export artifact of tiny-ViT fp32; nothing "
                                                    f"was published: re-run all jobs"):
                RunArtifacts(gh, RUN, ["tiny-ViT"])
        for precision, folder in (("fp32", fp32), ("fp16", fp16)):  # re-run all jobs
            double.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", precision, 3), folder, attempt=3)
        assert {a["name"] for a in RunArtifacts(gh, RUN, ["tiny-ViT"]).artifacts_of("tiny-ViT")} == {
            attempt_artifact("tiny-ViT", p, 3) for p in ("fp32", "fp16")}
        with pytest.raises(ClipOnnxError, match=r"lists no export artifact of tiny-RN fp32, tiny-RN fp16"):
            RunArtifacts(gh, RUN, ["tiny-RN", "tiny-ViT"])  # a variant of the matrix is missing altogether


def test_two_artifacts_of_one_cell_and_attempt_are_refused(github, release_exports):
    gh = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
    folder = next((release_exports / "fp32").iterdir())
    for _ in range(2):
        github.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", "fp32", 1), folder)
    with pytest.raises(ClipOnnxError, match=rf"run {RUN} has 2 artifacts named export-tiny-ViT-fp32-attempt1 \(ids "
                                            r"\d+, \d+\); which one to publish is ambiguous"):
        RunArtifacts(gh, RUN)


def test_the_steps_docs_list_are_the_steps_publication_runs(run):
    lines = []
    run(log=lines.append)
    assert [line for line in lines if line.startswith("== step ")] == [
        f"== step {n}/{len(STEPS)}: {title}" for n, title in enumerate(STEPS, 1)]
    text = (ROOT / "docs" / "releasing.md").read_text()
    section = text.split("### Publication, step by step\n", 1)[1].split("\n#", 1)[0]
    assert re.findall(r"^(\d+)\. \*\*(.+?)\*\*", section, re.M) == [(str(n), t) for n, t in enumerate(STEPS, 1)]


def test_a_disk_too_small_for_one_variant_stops_before_any_upload(run, github, monkeypatch):
    monkeypatch.setattr(publishing.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 10**9})())
    with pytest.raises(ClipOnnxError, match=r"has 1\.0 GB free, and publishing tiny-ViT needs 1\.1 GB; free space "
                                            r"on that disk or pass --work on a larger one"):
        run()
    assert github.releases(REPO) == []


def test_a_malformed_tag_is_refused_before_anything_is_contacted(github, release_exports, tmp_path):
    gh = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
    with pytest.raises(ClipOnnxError, match="tag 'v1.0' is not of the form vX.Y.Z"):
        publish(LocalExports(release_exports), "v1.0", ORG, gh, tmp_path, log=lambda _: None)
    assert github.requests == []


# Run in a child whose imports of anything but huggingface_hub (and its own dependencies) fail: the
# publish job installs only that, so anything else imported on this path would break the release.
PUBLISH_WITHOUT_EXPORT_DEPENDENCIES = """
import sys
BLOCKED = {"torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxscript", "PIL", "tokenizers",
           "safetensors", "clip", "ftfy", "skimage", "exporter.pipeline", "exporter.weights"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in the publish job")
sys.meta_path.insert(0, Block())
from pathlib import Path
from release.github import GitHub
from release.publish import RunArtifacts, publish
from tests.loopback_github import LoopbackGitHub
from tests.loopback_hub import LoopbackHub
exports, work = Path(sys.argv[1]), Path(sys.argv[2])
with LoopbackHub() as hub, LoopbackGitHub() as github:
    for precision in ("fp32", "fp16"):
        github.add_artifact("o/r", 1, f"export-tiny-ViT-{precision}-attempt1", next((exports / precision).iterdir()))
    github.create_tag("o/r", "v1.0.0")
    gh = GitHub("o/r", github.token, api=github.url, sleep=lambda _: None)
    publish(RunArtifacts(gh, 1), "v1.0.0", "org", gh, work, hub_endpoint=hub.url, hub_token=hub.token)
    assert not github.releases("o/r")[0]["draft"] and "v1.0.0" in hub.tags("org/clip-onnx-tiny-ViT")
print("imported:", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


def test_publishing_imports_only_what_the_publish_job_installs(release_exports, tmp_path):
    result = subprocess.run([sys.executable, "-c", PUBLISH_WITHOUT_EXPORT_DEPENDENCIES, str(release_exports),
                             str(tmp_path / "work")], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("imported: []")


def test_dry_run_lists_every_upload_and_contacts_nothing(release_exports, tmp_path):
    result = subprocess.run([sys.executable, "-m", "release", "publish", "--exports", str(release_exports),
                             "--tag", "v1.0.0", "--hub-org", ORG, "--github-repo", REPO, "--work", str(tmp_path),
                             "--dry-run"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "GITHUB_API_URL": "http://127.0.0.1:9",
                                 "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    hub_lines = [line for line in lines if line.startswith(f"would upload to {HUB_REPO}: ")]
    assert len(hub_lines) == 16  # README.md, LICENSE, and per precision two graphs, two data files, manifest,
    # tokenizer, preprocess
    assert sum("would attach to the GitHub release v1.0.0" in line for line in lines) == 16
    assert lines[-1] == "dry run: nothing was uploaded"


def test_an_empty_hub_organisation_is_refused(release_exports, tmp_path, capsys):
    from release.__main__ import main

    assert main(["publish", "--exports", str(release_exports), "--work", str(tmp_path / "w"), "--tag", "v1.0.0",
                 "--hub-org", " ", "--github-repo", REPO, "--dry-run"]) == 1
    assert capsys.readouterr().err == ("release: error: --hub-org is empty: set the repository variable HF_ORG "
                                       "(Settings > Secrets and variables > Actions > Variables)\n")


def test_a_work_folder_inside_the_exports_is_refused(release_exports, capsys):
    from release.__main__ import main

    assert main(["publish", "--exports", str(release_exports), "--work", str(release_exports / "w"), "--tag",
                 "v1.0.0", "--hub-org", ORG, "--github-repo", REPO, "--dry-run"]) == 1
    assert f"is inside --exports {release_exports}; put it elsewhere" in capsys.readouterr().err
