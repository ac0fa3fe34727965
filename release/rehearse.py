"""The whole release, offline, in one command: what the release workflow does for a tag, on random
weights, against a Hugging Face Hub and a GitHub on loopback (`tests/loopback_hub.py` and
`tests/loopback_github.py`, so it runs from a checkout).

Steps, each named in the output: export and verify every (variant, precision) as the matrix jobs do;
re-verify the written folders; upload them as the run's artifacts; publish the tag from those
artifacts with parts small enough that files are split; download every file from both places and
check it; publish the same tag again, which must change nothing; publish a second tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import hf_hub_download

from clip_onnx import integrity, manifest
from clip_onnx.errors import ClipOnnxError
from exporter import pipeline
from exporter.variants import folder_name, get_variant
from exporter.weights import random_weights
from release.github import GitHub
from release.publish import RunArtifacts, publish
from release.stage import artifact_name, read_sums
from tests.loopback_github import LoopbackGitHub
from tests.loopback_hub import LoopbackHub

TAGS = ("v0.0.0", "v0.0.1")
ORG, GITHUB_REPO, RUN_ID = "clip-onnx-rehearsal", "clip-onnx/rehearsal", 1
# small enough that the rehearsal's fp32 graphs are published in parts, as RN50x64's data file is
PART_BYTES = 4_000_000


def rehearse(out: Path, variants: list[str], precisions: list[str], log: Callable[[str], None] = print) -> None:
    """Run the release into the new folder `out`."""
    out = Path(out)
    if out.exists():
        raise ClipOnnxError(f"{out} already exists; rehearse into a new folder")
    exports = out / "exports"
    steps = 7

    def step(number: int, what: str) -> None:
        log(f"==== step {number}/{steps}: {what}")

    step(1, "export and verify with random weights, as the matrix jobs do")
    for name in variants:
        for precision in precisions:
            log(f"== export {name} {precision}")
            pipeline.export(random_weights(get_variant(name)), folder_name(name), exports / precision,
                            precision=precision, log=log)
    step(2, "re-verify the written folders, as the export jobs' test step does")
    folders = sorted(p.parent for p in exports.glob("*/*/manifest.json"))
    for folder in folders:
        if not pipeline.verify_folder(folder, log=log).passed:
            raise ClipOnnxError(f"{folder} no longer verifies")
    with LoopbackHub() as hub, LoopbackGitHub() as github_double:
        step(3, "upload the exports as the run's artifacts")
        for folder in folders:
            data_name, precision = folder.name.removesuffix(f"-{folder.parent.name}"), folder.parent.name
            github_double.add_artifact(GITHUB_REPO, RUN_ID, artifact_name(data_name, precision), folder)
        github = GitHub(GITHUB_REPO, github_double.token, api=github_double.url)

        def run(tag: str) -> dict[str, str]:
            github_double.create_tag(GITHUB_REPO, tag)
            return publish(RunArtifacts(github, RUN_ID), tag, ORG, github, out / "work", hub_endpoint=hub.url,
                           hub_token=hub.token, part_bytes=PART_BYTES, log=log)

        step(4, f"publish {TAGS[0]}: GitHub draft, Hub repos, GitHub release")
        commits = run(TAGS[0])
        step(5, f"download {TAGS[0]} from both and check every file")
        _check(hub, github_double, commits, out / "downloads", log)
        step(6, f"publish {TAGS[0]} again: nothing may change")
        before = {repo: hub.commits(repo) for repo in commits}, github_double.releases(GITHUB_REPO)
        github_double.requests.clear()
        if run(TAGS[0]) != commits:
            raise ClipOnnxError("publishing the same tag again moved a Hub tag")
        writes = [r for r in github_double.requests if r[0] != "GET"]
        after = {repo: hub.commits(repo) for repo in commits}, github_double.releases(GITHUB_REPO)
        if after != before or writes:
            raise ClipOnnxError(f"publishing the same tag again changed something: {writes or 'Hub commits'}")
        log("== the second run changed nothing")
        step(7, f"publish the next tag, {TAGS[1]}")
        run(TAGS[1])
        tags = {repo: set(hub.tags(repo)) for repo in commits}
        if any(t != set(TAGS) for t in tags.values()) or len(github_double.releases(GITHUB_REPO)) != 2:
            raise ClipOnnxError(f"after {TAGS[1]} the Hub repos have tags {tags}")
    log(f"rehearsal passed: {out}")


def _check(hub: LoopbackHub, github_double: LoopbackGitHub, commits: dict[str, str], downloads: Path,
           log: Callable[[str], None]) -> None:
    """Every Hub file at its tag's commit against the variant's manifest, every GitHub asset against
    `SHA256SUMS`, and every split file joined back."""
    checked = 0
    for repo, commit in commits.items():
        files = hub.files(repo, commit)
        for path in files:
            if path.endswith("manifest.json"):
                precision = path.split("/")[0]
                local = Path(hf_hub_download(repo, path, revision=commit, endpoint=hub.url, cache_dir=downloads))
                data = manifest.read(local.parent)
                for name in data["files"]:
                    hf_hub_download(repo, f"{precision}/{name}", revision=commit, endpoint=hub.url,
                                    cache_dir=downloads)
                integrity.check_files(data, local.parent)
                checked += len(data["files"]) + 1
    (release,) = [r for r in github_double.releases(GITHUB_REPO) if r["tag_name"] == TAGS[0]]
    sums = read_sums(github_double.content(GITHUB_REPO, TAGS[0], "SHA256SUMS").decode())
    split = 0
    for joined in {n.rsplit(".part-", 1)[0] for n in sums if ".part-" in n}:
        parts = sorted(n for n in sums if n.startswith(f"{joined}.part-"))
        content = b"".join(github_double.content(GITHUB_REPO, TAGS[0], p) for p in parts)
        if _digest(content) != sums[joined]:
            raise ClipOnnxError(f"the parts of {joined} do not join to its SHA-256")
        split += 1
    for asset in release["assets"]:
        if asset["name"] != "SHA256SUMS" and _digest(github_double.content(
                GITHUB_REPO, TAGS[0], asset["name"])) != sums[asset["name"]]:
            raise ClipOnnxError(f"GitHub asset {asset['name']} differs from SHA256SUMS")
    if not split:
        raise ClipOnnxError("no file was published in parts; the rehearsal must exercise split assets")
    log(f"== hub: {checked} files downloaded at their tag's commit match their manifests")
    log(f"== github: {len(release['assets'])} assets match SHA256SUMS; {split} split files join back")


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
