"""The preflight job's checks against the loopback Hub and GitHub double, with the real clients: a good
setup passes; a read-only Hub token, a GitHub token that cannot write, a taken tag, a tag that is not
the project's version, a published release and a missing lock are each named; an interrupted run's
draft makes an existing Hub tag resumable only when it lists the same bytes."""

from __future__ import annotations

import pytest

from clip_onnx.errors import ClipOnnxError
from release import locks, preflight as checks
from release.github import GitHub
from release.publish import RunArtifacts, publish
from release.stage import attempt_artifact
from tests.loopback_hub import LoopbackHub, whoami_answer

REPO, ORG = "owner/clip-onnx", "org"
TAG = f"v{checks.project_version()}"
WRITER = whoami_answer("maintainer", "write", orgs={ORG: "write"})


@pytest.fixture
def org_hub(quick_hub_client):
    """The loopback Hub, its token a member of ORG who may write, plus a read-only token."""
    with LoopbackHub(whoami={"hf_test": WRITER, "hf_read": whoami_answer("maintainer", "read", orgs={ORG: "write"})},
                     ) as hub:
        yield hub


@pytest.fixture(autouse=True)
def committed_locks(tmp_path, monkeypatch):
    """The export lock exists only once GitHub made it: stand one in, in the committed locks' format."""
    folder = tmp_path / "locks"
    folder.mkdir()
    for lock in locks.LOCKS.values():
        source = lock.path if lock.path.exists() else locks.LOCKS["publish"].path
        (folder / lock.path.name).write_text(source.read_text())
    monkeypatch.setattr(locks, "FOLDER", folder)


def run(github, hub, token="hf_test", gh_token=None, tag=TAG) -> list[str]:
    lines = []
    try:
        checks.preflight(tag, ORG, GitHub(REPO, gh_token or github.token, api=github.url), ["tiny-ViT"],
                         hub_endpoint=hub.url, hub_token=token, log=lines.append)
    except ClipOnnxError as error:
        assert str(error).startswith("preflight found") and str(error).endswith("nothing was exported")
    return lines


def test_a_good_setup_passes_and_leaves_nothing_behind(github, org_hub):
    github.create_tag(REPO, TAG)
    (line,) = run(github, org_hub)
    assert line == (f"preflight: {TAG} can be released: new; both tokens may write to GitHub {REPO} and the 1 Hub "
                    f"repos of {ORG}")
    assert github.releases(REPO) == [] and github.count("DELETE", r"/releases/\d+$") == 1


def test_each_bad_setup_is_named(github, org_hub, tmp_path):
    (locks.FOLDER / "build.txt").write_text("setuptools>=80\n")
    lines = run(github, org_hub, token="hf_read", gh_token=github.read_only_token, tag="v9.9.9")
    assert f"preflight: tag v9.9.9 is not pyproject.toml's version {checks.project_version()}: PyPI publishes " \
           f"that version, so set `version = \"9.9.9\"` and tag again" in lines
    assert "preflight: build.txt:1: 'setuptools>=80' is not pinned with ==" in lines
    assert any(line.startswith(f"preflight: the GitHub token may not create releases in {REPO}: GitHub answered "
                               f"403") for line in lines)
    assert (f"preflight: HF_TOKEN (user maintainer, role read) may not write to {ORG}/clip-onnx-tiny-ViT: give it "
            f"write access to {ORG}") in lines
    assert len(lines) == 4, lines


def test_a_token_outside_the_org_may_not_write(github, org_hub):
    org_hub.whoami["hf_test"] = whoami_answer("someone", "write", orgs={"elsewhere": "admin"})
    assert any("(user someone, role write) may not write to org/clip-onnx-tiny-ViT" in line
               for line in run(github, org_hub))


@pytest.mark.parametrize("role,orgs,scoped,allowed", [
    ("write", {ORG: "write"}, None, True),
    ("write", {ORG: "read"}, None, False),
    ("read", {ORG: "admin"}, None, False),
    ("fineGrained", {ORG: "write"}, [{"entity": {"type": "org", "name": ORG}, "permissions": ["repo.write"]}], True),
    ("fineGrained", {ORG: "write"}, [{"entity": {"type": "org", "name": ORG}, "permissions": ["repo.content.read"]}],
     False),
    ("fineGrained", {ORG: "write"}, [{"entity": {"type": "model", "name": f"{ORG}/clip-onnx-RN50"},
                                      "permissions": ["repo.write"]}], False),
], ids=["org-writer", "org-reader", "read-token", "scoped-to-org", "scoped-read-only", "scoped-to-another-repo"])
def test_who_may_write_to_a_variants_repo(role, orgs, scoped, allowed):
    assert checks.can_write(whoami_answer("m", role, orgs=orgs, scoped=scoped), f"{ORG}/clip-onnx-tiny-ViT") is allowed


def test_a_taken_tag_and_a_published_release_are_refused(github, org_hub, release_exports, tmp_path):
    publish_tag(github, org_hub, release_exports, tmp_path)
    lines = run(github, org_hub)
    assert f"preflight: {REPO} has already published {TAG}: release a new version" in lines
    assert (f"preflight: {ORG}/clip-onnx-tiny-ViT already has tag {TAG}, and GitHub has no draft of {TAG} listing its "
            f"files: a published tag is never moved, release a new version") in lines


def test_an_interrupted_run_is_resumable_only_with_the_same_bytes(github, org_hub, release_exports, tmp_path):
    github.fail("PATCH", r"/releases/\d+$")  # the Hub is tagged, the GitHub release stays a draft
    with pytest.raises(ClipOnnxError):
        publish_tag(github, org_hub, release_exports, tmp_path)
    github.reset_failures()
    assert run(github, org_hub)[-1].startswith(f"preflight: {TAG} can be released: a resumable draft")
    # the draft's SHA256SUMS now lists another fp16 manifest than the Hub tag holds
    github.set_content(REPO, TAG, "SHA256SUMS", _other_manifest_digest(github.content(REPO, TAG, "SHA256SUMS")))
    lines = run(github, org_hub)
    assert (f"preflight: {ORG}/clip-onnx-tiny-ViT already has tag {TAG} with files the draft's SHA256SUMS does not "
            f"list: fp16/manifest.json; a published tag is never moved, release a new version") in lines


def _other_manifest_digest(sums: bytes) -> bytes:
    lines = [line if not line.endswith(b"  tiny-ViT-fp16.manifest.json") else b"0" * 64 + line[64:]
             for line in sums.splitlines()]
    return b"\n".join(lines) + b"\n"


def publish_tag(github, hub, release_exports, tmp_path) -> None:
    for precision in ("fp32", "fp16"):
        github.add_artifact(REPO, 1, attempt_artifact("tiny-ViT", precision, 1), next((release_exports / precision).iterdir()))
    github.create_tag(REPO, TAG)
    gh = GitHub(REPO, github.token, api=github.url)
    publish(RunArtifacts(gh, 1), TAG, ORG, gh, tmp_path / "work", hub_endpoint=hub.url, hub_token=hub.token,
            part_bytes=300_000, log=lambda _: None)
