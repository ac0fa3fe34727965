"""The release table (`release/table.py`, `clip_onnx/pinned.py`): written from the exports' manifests
before anything is public, it pins exactly what publication then tags on the Hub, so a package built
with it downloads its release by tag alone; publication refuses exports that differ from it, and the
table is taken from each matrix cell's newest attempt."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx import hub as runtime_hub
from clip_onnx.errors import ClipOnnxError
from release import table
from release.__main__ import main
from release.github import GitHub
from release.publish import RunArtifacts, publish
from release.stage import attempt_artifact, hub_repo

ROOT = Path(__file__).resolve().parents[1]
REPO, ORG, RUN, TAG = "owner/clip-onnx", "org", 7, "v1.0.0"
HUB_REPO = hub_repo(ORG, "tiny-ViT")


@pytest.fixture
def pinned(release_exports, tmp_path) -> dict:
    """The table `python -m release table` writes for the exports, read back from each file it wrote."""
    outputs = [tmp_path / "a" / "release.json", tmp_path / "b" / "release.json"]
    for output in outputs:
        output.parent.mkdir()
    assert main(["table", "--exports", str(release_exports), "--tag", TAG, "--hub-org", ORG,
                 *(arg for output in outputs for arg in ("-o", str(output)))]) == 0
    assert outputs[0].read_text() == outputs[1].read_text()
    return table.read(outputs[0])


def _publish(github, hub, release_exports, tmp_path, pinned_table: dict) -> dict[str, str]:
    for precision in ("fp32", "fp16"):
        github.add_artifact(REPO, RUN, attempt_artifact("tiny-ViT", precision, 1),
                            next((release_exports / precision).iterdir()))
    github.create_tag(REPO, TAG)
    client = GitHub(REPO, github.token, api=github.url, sleep=lambda _: None)
    return publish(RunArtifacts(client, RUN), TAG, ORG, client, tmp_path / "work", hub_endpoint=hub.url,
                   hub_token=hub.token, table=pinned_table, log=lambda _: None)


def test_a_package_built_before_publication_downloads_what_publication_tagged(pinned, github, hub, release_exports,
                                                                               tmp_path):
    assert pinned["variants"]["tiny-ViT"]["hub_repo"] == HUB_REPO
    _publish(github, hub, release_exports, tmp_path, pinned)
    for precision in ("fp32", "fp16"):
        folder = runtime_hub.download_release("tiny-ViT", precision=precision, release=pinned,
                                              cache_dir=tmp_path / "cache", endpoint=hub.url)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["precision"] == precision
        assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["files"], "manifest.json"])


def test_exports_that_differ_from_the_table_are_refused_before_anything_is_public(pinned, github, hub,
                                                                                  release_exports, tmp_path):
    path = "fp16/tiny-ViT_visual.onnx"
    pinned["variants"]["tiny-ViT"]["files"][path]["sha256"] = "0" * 64
    with pytest.raises(ClipOnnxError, match=f"tiny-ViT is not what the packages pin \\({HUB_REPO} {path} is not") as no:
        _publish(github, hub, release_exports, tmp_path, pinned)
    assert "\n" not in str(no.value)
    assert all(release["draft"] and not release["assets"] for release in github.releases(REPO))
    with pytest.raises(KeyError):
        hub.commits(HUB_REPO)  # never created


def test_a_table_of_other_variants_is_refused_before_anything_is_contacted(pinned, github, hub, release_exports,
                                                                           tmp_path):
    pinned["variants"]["RN50"] = pinned["variants"]["tiny-ViT"]
    with pytest.raises(ClipOnnxError, match="the packages pin RN50, tiny-ViT, but the run's exports are of tiny-ViT"):
        _publish(github, hub, release_exports, tmp_path, pinned)
    assert github.releases(REPO) == []


def test_the_dry_run_checks_the_table_it_is_given(pinned, release_exports, tmp_path, capsys):
    del pinned["variants"]["tiny-ViT"]["files"]["fp32/tokenizer.json"]
    (tmp_path / "edited.json").write_text(json.dumps(pinned))
    assert main(["publish", "--exports", str(release_exports), "--work", str(tmp_path / "w"), "--tag", TAG,
                 "--hub-org", ORG, "--github-repo", REPO, "--dry-run", "--table", str(tmp_path / "edited.json")]) == 1
    assert f"{HUB_REPO} fp32/tokenizer.json is staged but not pinned" in capsys.readouterr().err


def test_each_cell_is_pinned_from_its_newest_attempt(release_exports, tmp_path):
    artifacts = tmp_path / "manifests"
    for precision in ("fp32", "fp16"):
        export = next((release_exports / precision).iterdir())
        for attempt in (1, 2, 10):
            folder = artifacts / attempt_artifact("tiny-ViT", precision, attempt, "manifest")
            (folder / precision / export.name).mkdir(parents=True)
            data = json.loads((export / "manifest.json").read_text())
            data["attempt"] = attempt  # a later export's manifest differs
            (folder / precision / export.name / "manifest.json").write_text(json.dumps(data))
    pinned = table.from_exports(table.newest_manifests(artifacts), TAG, ORG)
    newest = artifacts / "manifest-tiny-ViT-fp16-attempt10" / "fp16" / "tiny-ViT-fp16" / "manifest.json"
    assert pinned["variants"]["tiny-ViT"]["files"]["fp16/manifest.json"]["bytes"] == newest.stat().st_size
    assert len(table.newest_manifests(artifacts)) == 2


def test_a_matrix_cell_without_a_manifest_artifact_is_named(release_exports, tmp_path, capsys):
    folder = tmp_path / "manifests" / "manifest-tiny-ViT-fp32-attempt1"
    shutil.copytree(next((release_exports / "fp32").iterdir()), folder / "tiny-ViT")
    assert main(["table", "--artifacts", str(tmp_path / "manifests"), "--tag", TAG, "--hub-org", ORG,
                 "-o", str(tmp_path / "release.json")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("release: error: no manifest artifact of RN101 fp16, RN101 fp32, RN50 fp16, ")
    assert "ViT-L-14 fp32" in error and error.endswith("every export must be pinned: re-run all jobs\n")
    assert not (tmp_path / "release.json").exists()


@pytest.mark.parametrize("args,says", [
    (["--tag", "1.0.0", "--hub-org", ORG], "tag '1.0.0' is not of the form vX.Y.Z"),
    (["--tag", TAG, "--hub-org", " "], "--hub-org is empty"),
])
def test_a_bad_tag_or_organisation_is_one_line(release_exports, tmp_path, capsys, args, says):
    assert main(["table", "--exports", str(release_exports), *args, "-o", str(tmp_path / "release.json")]) == 1
    error = capsys.readouterr().err
    assert says in error and error.count("\n") == 1 and not (tmp_path / "release.json").exists()


def test_the_table_is_written_with_the_standard_library_alone(release_exports, tmp_path):
    """The wheel job runs `python -m release table` before it installs anything."""
    result = subprocess.run([sys.executable, "-S", "-m", "release", "table", "--exports", str(release_exports),
                             "--tag", TAG, "--hub-org", ORG, "-o", str(tmp_path / "release.json")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"pinned 14 files of 1 variant at {TAG}: {tmp_path / 'release.json'}\n"
