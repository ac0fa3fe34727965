"""The preflight job's checks against the loopback Hub and GitHub double, with the real clients: a good
setup passes; a read-only Hub token, a GitHub token that cannot write, a taken tag, a tag that is not
the project's version, a published release and a missing lock are each named; an interrupted run's
draft makes an existing Hub tag resumable only when it lists the same bytes. Weight pins: unpinned
variants are named in one line, a pin the Hub does not hold (other bytes, a commit that does not exist)
is named; a contributor's token is refused for a variant repo that exists; an empty Hub org is refused."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from huggingface_hub import HfApi

from clip_onnx.errors import ClipOnnxError
from exporter import hub_weights
from exporter.hub_weights import HubPin
from release import locks, packages, preflight as checks
from release.github import GitHub
from release.publish import RunArtifacts, publish
from release.stage import attempt_artifact, matrix
from tests.loopback_hub import LoopbackHub, whoami_answer
from tests.loopback_registries import LoopbackRegistries

# the GitHub repository every package manifest names, as a release runs in it
REPO, ORG = packages.PACKAGES[0].repository().removeprefix("https://github.com/"), "org"
TAG = f"v{packages.PACKAGES[0].version()}"
WRITER = whoami_answer("maintainer", "write", orgs={ORG: "write"})
WEIGHTS_REPO, WEIGHTS = "timm/tiny_clip.openai", b"tiny weights " * 1000
AGAIN = "pin it again with `python -m release pin-weights --variants tiny-ViT` and commit the result"


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


@pytest.fixture(autouse=True)
def registries(monkeypatch):
    """PyPI, crates.io and npm on loopback, each package name already this repository's."""
    with LoopbackRegistries() as fake:
        for package in packages.PACKAGES:
            fake.add(package.ecosystem, package.name, f"https://github.com/{REPO}")
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


def upload_weights(hub, path: str, content: bytes = WEIGHTS) -> str:
    """Put `content` at `path` of the weights repo on the loopback Hub; return the commit id."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(WEIGHTS_REPO, exist_ok=True)
    return api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id=WEIGHTS_REPO).oid


@pytest.fixture
def pins(org_hub) -> dict[str, HubPin]:
    """tiny-ViT's weights pinned at their commit on the loopback Hub (a regular file there, so hashed)."""
    commit = upload_weights(org_hub, "open_clip_model.safetensors")
    return {"tiny-ViT": HubPin(WEIGHTS_REPO, "open_clip_model.safetensors", commit,
                               hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))}


def run(github, hub, pins, token="hf_test", gh_token=None, tag=TAG, org=ORG, folders=("tiny-ViT",)) -> list[str]:
    lines = []
    try:
        gh = GitHub(REPO, gh_token or github.token, api=github.url, sleep=lambda _: None)
        checks.preflight(tag, org, gh, list(folders),
                         hub_endpoint=hub.url, hub_token=token, pins=pins, log=lines.append)
    except ClipOnnxError as error:
        assert str(error).startswith("preflight found") and str(error).endswith("nothing was exported")
    return lines


GOOD = (f"preflight: {TAG} can be released: new; both tokens may write to GitHub {REPO} and the 1 Hub repos of "
        f"{ORG}; every variant's pinned weights are on the Hub")


def test_a_good_setup_passes_and_leaves_nothing_behind(github, org_hub, pins):
    github.create_tag(REPO, TAG)
    assert run(github, org_hub, pins) == [GOOD]
    assert github.releases(REPO) == [] and github.count("DELETE", r"/releases/\d+$") == 1


def test_each_bad_setup_is_named(github, org_hub, pins, tmp_path):
    (locks.FOLDER / "build.txt").write_text("setuptools>=80\n")
    lines = run(github, org_hub, pins, token="hf_read", gh_token=github.read_only_token, tag="v9.9.9")
    assert f"preflight: pyproject.toml says version {TAG[1:]}, not 9.9.9: set every package's version to 9.9.9 " \
           f"(pyproject.toml, rust/ftfy/Cargo.toml, rust/Cargo.toml, examples/node/package.json) and tag again" in lines
    assert sum("says version" in line for line in lines) == len(packages.PACKAGES)
    assert "preflight: build.txt:1: 'setuptools>=80' is not pinned with ==" in lines
    assert any(line.startswith(f"preflight: the GitHub token may not create releases in {REPO}: GitHub answered "
                               f"403") for line in lines)
    assert (f"preflight: HF_TOKEN (user maintainer, role read) may not write to {ORG}/clip-onnx-tiny-ViT: give it "
            f"write access to {ORG}") in lines
    assert len(lines) == 3 + len(packages.PACKAGES), lines


def test_a_token_outside_the_org_may_not_write(github, org_hub, pins):
    org_hub.whoami["hf_test"] = whoami_answer("someone", "write", orgs={"elsewhere": "admin"})
    assert any("(user someone, role write) may not write to org/clip-onnx-tiny-ViT" in line
               for line in run(github, org_hub, pins))


def test_unpinned_variants_are_named_in_one_line(github, org_hub):
    """Every variant the matrix exports, its pin in today's exporter/weight_pins.json, and all of them unpinned."""
    github.create_tag(REPO, TAG)
    folders = sorted({cell["folder"] for cell in matrix()["include"]})
    names = [name for name, pin in hub_weights.pins().items()]
    assert len(folders) == len(names) == 9
    unpinned = {name: dataclasses.replace(pin, revision=None, sha256=None, bytes=None)
                for name, pin in hub_weights.pins().items()}
    line = (f"preflight: exporter/weight_pins.json pins no weights (revision, sha256, bytes) for {', '.join(names)}: "
            f"run `python -m release pin-weights` with network and commit the result")
    assert run(github, org_hub, unpinned, folders=folders) == [line]
    # the committed pins (None: preflight's default), as long as some are still null
    committed = [name for name, pin in hub_weights.pins().items() if not pin.pinned]
    lines = run(github, org_hub, None, folders=folders)
    assert (line.replace(", ".join(names), ", ".join(committed)) in lines) is bool(committed), lines


def test_a_pin_is_a_full_commit_id(github, org_hub, pins):
    github.create_tag(REPO, TAG)
    pins["tiny-ViT"] = dataclasses.replace(pins["tiny-ViT"], revision="main")
    assert run(github, org_hub, pins) == [
        "preflight: tiny-ViT's pinned revision 'main' in exporter/weight_pins.json is not a full 40-hex commit id: "
        "run `python -m release pin-weights --variants tiny-ViT` and commit the result"]


@pytest.mark.parametrize("path", ["open_clip_model.safetensors", "open_clip_model.data"], ids=["regular", "lfs"])
def test_a_pin_of_other_bytes_than_its_commit_holds_is_named(github, org_hub, pins, path):
    github.create_tag(REPO, TAG)
    commit = upload_weights(org_hub, path, WEIGHTS + b"!")  # LFS on the loopback Hub when it ends in .data
    assert (path in org_hub.lfs_paths(WEIGHTS_REPO)) is path.endswith(".data")
    pin = pins["tiny-ViT"] = dataclasses.replace(pins["tiny-ViT"], file=path, revision=commit)
    other = hashlib.sha256(WEIGHTS + b"!").hexdigest()
    assert run(github, org_hub, pins) == [
        f"preflight: tiny-ViT's {path} at {WEIGHTS_REPO}@{commit} has SHA-256 {other}, not the pinned {pin.sha256} "
        f"and {len(WEIGHTS) + 1} bytes, not the pinned {len(WEIGHTS)}: {AGAIN}"]
    pins["tiny-ViT"] = dataclasses.replace(pin, bytes=len(WEIGHTS) + 1)  # only the SHA-256 differs
    assert run(github, org_hub, pins) == [
        f"preflight: tiny-ViT's {path} at {WEIGHTS_REPO}@{commit} has SHA-256 {other}, not the pinned {pin.sha256}: "
        f"{AGAIN}"]
    pins["tiny-ViT"] = dataclasses.replace(pin, sha256=other, bytes=len(WEIGHTS) + 1)
    assert run(github, org_hub, pins) == [GOOD]


def test_a_pin_the_hub_does_not_hold_is_named(github, org_hub, pins):
    github.create_tag(REPO, TAG)
    pin = pins["tiny-ViT"]
    pins["tiny-ViT"] = dataclasses.replace(pin, revision="0" * 40)
    assert run(github, org_hub, pins) == [
        f"preflight: tiny-ViT's pinned commit {'0' * 40} does not exist in the Hub repo {WEIGHTS_REPO}: {AGAIN}"]
    pins["tiny-ViT"] = dataclasses.replace(pin, file="elsewhere.safetensors")
    assert run(github, org_hub, pins) == [
        f"preflight: tiny-ViT's pinned file elsewhere.safetensors is not in {WEIGHTS_REPO}@{pin.revision}: {AGAIN}"]
    pins["tiny-ViT"] = dataclasses.replace(pin, repo="timm/nothing")
    assert run(github, org_hub, pins) == [
        "preflight: tiny-ViT's pinned Hub repo timm/nothing does not exist (or HF_TOKEN may not read it): fix its "
        f"`repo` in exporter/weight_pins.json, then {AGAIN}"]


def test_a_contributor_may_create_a_variants_repo_but_not_write_to_an_existing_one(github, org_hub, pins):
    github.create_tag(REPO, TAG)
    org_hub.whoami["hf_test"] = whoami_answer("maintainer", "write", orgs={ORG: "contributor"})
    assert run(github, org_hub, pins) == [GOOD]  # publication creates the repo: the contributor's own
    HfApi(endpoint=org_hub.url, token=org_hub.token).create_repo(f"{ORG}/clip-onnx-tiny-ViT")
    assert run(github, org_hub, pins) == [
        f"preflight: HF_TOKEN's user maintainer is a contributor in {ORG}, who may write only to repos it created, "
        f"and {ORG}/clip-onnx-tiny-ViT exists: give maintainer the `write` role in {ORG}"]


@pytest.mark.parametrize("role", ["write", "admin"])
def test_a_write_or_admin_member_may_write_to_an_existing_repo(github, org_hub, pins, role):
    github.create_tag(REPO, TAG)
    org_hub.whoami["hf_test"] = whoami_answer("maintainer", "write", orgs={ORG: role})
    HfApi(endpoint=org_hub.url, token=org_hub.token).create_repo(f"{ORG}/clip-onnx-tiny-ViT")
    assert run(github, org_hub, pins) == [GOOD]


@pytest.mark.parametrize("org", ["", "  "], ids=["empty", "blank"])
def test_an_empty_hub_org_is_refused(github, org_hub, pins, org):
    github.create_tag(REPO, TAG)
    assert run(github, org_hub, pins, org=org) == [
        "preflight: the Hub organisation of the variants' repos is empty: set the repository variable HF_ORG "
        "(Settings > Secrets and variables > Actions > Variables)"]


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


@pytest.mark.parametrize("role,org_role,scoped,exists,allowed", [
    ("write", "contributor", None, True, False),
    ("write", "contributor", None, False, True),
    ("write", "admin", None, True, True),
    ("fineGrained", "contributor", [{"entity": {"type": "org", "name": ORG}, "permissions": ["repo.write"]}], True,
     False),
    ("fineGrained", "contributor", [{"entity": {"type": "org", "name": ORG}, "permissions": ["repo.write"]}], False,
     True),
    ("fineGrained", "contributor", [{"entity": {"type": "org", "name": ORG}, "permissions": ["repo.content.read"]}],
     False, False),
], ids=["contributor-existing", "contributor-new", "admin-existing", "scoped-contributor-existing",
        "scoped-contributor-new", "scoped-read-only-contributor-new"])
def test_a_contributor_may_write_only_to_a_repo_it_creates(role, org_role, scoped, exists, allowed):
    whoami = whoami_answer("m", role, orgs={ORG: org_role}, scoped=scoped)
    assert checks.can_write(whoami, f"{ORG}/clip-onnx-tiny-ViT", exists=exists) is allowed


def test_a_taken_tag_and_a_published_release_are_refused(github, org_hub, pins, release_exports, tmp_path):
    publish_tag(github, org_hub, release_exports, tmp_path)
    lines = run(github, org_hub, pins)
    assert f"preflight: {REPO} has already published {TAG}: release a new version" in lines
    assert (f"preflight: {ORG}/clip-onnx-tiny-ViT already has tag {TAG}, and GitHub has no draft of {TAG} listing its "
            f"files: a published tag is never moved, release a new version") in lines


def test_an_interrupted_run_is_resumable_only_with_the_same_bytes(github, org_hub, pins, release_exports,
                                                                  tmp_path):
    github.fail("PATCH", r"/releases/\d+$")  # the Hub is tagged, the GitHub release stays a draft
    with pytest.raises(ClipOnnxError):
        publish_tag(github, org_hub, release_exports, tmp_path)
    github.reset_failures()
    assert run(github, org_hub, pins)[-1].startswith(f"preflight: {TAG} can be released: a resumable draft")
    # the draft's SHA256SUMS now lists another fp16 manifest than the Hub tag holds
    github.set_content(REPO, TAG, "SHA256SUMS", _other_manifest_digest(github.content(REPO, TAG, "SHA256SUMS")))
    lines = run(github, org_hub, pins)
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
    gh = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
    publish(RunArtifacts(gh, 1), TAG, ORG, gh, tmp_path / "work", hub_endpoint=hub.url, hub_token=hub.token,
            part_bytes=300_000, log=lambda _: None)
