"""The whole release, offline, in one command: what the release workflow does for a tag, on random
weights, against a Hugging Face Hub and a GitHub on loopback (`tests/loopback_hub.py` and
`tests/loopback_github.py`). Run from a checkout: `python -m tests.rehearsal -o /tmp/rehearsal`.

First every (variant, precision) is exported and verified as the matrix jobs do, and the written
folders verified again. Then each of `SCENARIOS` runs, publishing from a run's artifacts with parts
small enough that files are split: every kind of re-run, an older tag after a newer one, a second tag
while one is being published, a failure at each publication step, and the full scale (every OpenAI
variant in both precisions, at the real names and number of files, with tiny bytes). After each,
GitHub's Latest and every Hub repo's `main` must be at a version between the highest one fully
published and the highest public one (equal to both once the scenario has finished): never behind,
never ahead. GitHub's lists are paged at its real maximum, 100.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import hf_hub_download

from clip_onnx import integrity, manifest
from clip_onnx.contract import PUBLISHED_PRECISIONS
from clip_onnx.errors import ClipOnnxError
from clip_onnx.hub import download_release
from exporter import pipeline
from exporter.variants import VARIANTS, folder_name, get_variant
from exporter.weights import random_weights
from release import hub as hub_release
from release import table
from release.github import GitHub, observed, published_sums
from release.publish import STEPS, RunArtifacts, publish, published
from release.stage import attempt_artifact, hub_repo, matrix, read_sums
from release.versions import version
from tests.loopback_github import LoopbackGitHub
from tests.loopback_hub import LoopbackHub

ORG, GITHUB_REPO = "clip-onnx-rehearsal", "clip-onnx/rehearsal"
# small enough that the rehearsal's fp32 graphs are published in parts, as a file over 2 GiB would be
PART_BYTES = 4_000_000
SCENARIOS = (
    "re-run failed jobs: one export failed in attempt 1 and passed in attempt 2",
    "re-run the publish job alone",
    "re-run all jobs: every export again, the same bytes",
    "re-run the attestation job alone",
    "an older tag published after a newer one",
    "a second tag published while the first is still being published",
    "a failure at each publication step, each followed by a re-run",
    "full scale: every OpenAI variant in fp32 and fp16, the real names and number of files, tiny bytes",
)
# the full-scale scenario's files: a few bytes each, but the visual data files over FULL_SCALE_PART, so
# that they are split into parts as a file over GitHub's 2 GiB limit would be
FULL_SCALE_BYTES, FULL_SCALE_PART = 40_000, 16_384


class _Release:
    """The doubles, the exports and what has been published, for the scenarios."""

    def __init__(self, hub: LoopbackHub, github: LoopbackGitHub, folders: list[Path], work: Path,
                 log: Callable[[str], None]):
        self.hub, self.double, self.folders, self.work, self.log = hub, github, folders, work, log
        # retries answer at once: the injected failures are meant to reach the caller
        self.github = GitHub(GITHUB_REPO, github.token, api=github.url, sleep=lambda _: None)
        self.variants = sorted({variant for _, variant, _ in self.cells()})
        self.repos = [hub_repo(ORG, v) for v in self.variants]
        self.complete: list[str] = []  # tags whose publication finished
        self._runs = 0

    def cells(self) -> list[tuple[Path, str, str]]:
        """(export folder, variant, precision) of every matrix cell."""
        return [(f, f.name.removesuffix(f"-{f.parent.name}"), f.parent.name) for f in self.folders]

    def run(self, skip: int = 0, attempt: int = 1, run_id: int | None = None) -> int:
        """Upload every cell's export as `attempt` of a new run (or of `run_id`), but the last `skip` cells."""
        if run_id is None:
            self._runs += 1
            run_id = self._runs
        for folder, variant, precision in self.cells()[:len(self.cells()) - skip]:
            self.double.add_artifact(GITHUB_REPO, run_id, attempt_artifact(variant, precision, attempt), folder,
                                     attempt=attempt)
        return run_id

    def publish(self, run_id: int, tag: str, log: Callable[[str], None] | None = None, *,
                variants: list[str] | None = None, part_bytes: int = PART_BYTES,
                pinned: dict | None = None) -> dict[str, str]:
        self.double.create_tag(GITHUB_REPO, tag)
        commits = publish(RunArtifacts(self.github, run_id, variants or self.variants), tag, ORG, self.github,
                          self.work / tag, hub_endpoint=self.hub.url, hub_token=self.hub.token,
                          part_bytes=part_bytes, table=pinned, log=log or self.log)
        self.complete.append(tag)
        return commits

    def check(self, finished: bool = True) -> None:
        """Latest, and every repo's main, at a version between the highest complete and the highest public
        one (of those the repo has a tag of); with `finished`, at both."""
        public = published(self.github)

        def allowed(tags: set[str] | None = None) -> list[str]:
            mine = [t for t in public if tags is None or t in tags]
            low = max((t for t in self.complete if tags is None or t in tags), key=version)
            if finished and low != mine[-1]:
                raise ClipOnnxError(f"{mine[-1]} is public, but its publication never finished")
            return [t for t in mine if version(t) >= version(low)]

        latest = self.github.latest()
        if latest not in allowed():
            raise ClipOnnxError(f"GitHub's Latest is {latest}, not one of {allowed()}")
        for repo in self.repos:
            within = allowed(set(self.hub.tags(repo)))
            if not any(hub_release.main_holds(repo, t, endpoint=self.hub.url, token=self.hub.token) for t in within):
                raise ClipOnnxError(f"{repo}'s main holds none of {within}")
        self.log(f"== Latest and every main at {' or '.join(allowed())}: highest public {public[-1]}, "
                 f"highest complete {max(self.complete, key=version)}")

    def unchanged(self, action: Callable[[], object]) -> None:
        """Run `action`, which must write nothing to either service."""
        before = {repo: self.hub.commits(repo) for repo in self.repos}, self.double.releases(GITHUB_REPO)
        self.double.requests.clear()
        self.hub.clear_requests()
        action()
        writes = [r for r in self.double.requests if r[0] != "GET"] + [
            r for r in self.hub.requests if r[0] == "POST" and ("/commit/" in r[1] or "/tag/" in r[1])]
        after = {repo: self.hub.commits(repo) for repo in self.repos}, self.double.releases(GITHUB_REPO)
        if after != before or writes:
            raise ClipOnnxError(f"a re-run changed something: {writes or 'Hub commits'}")
        self.log("== nothing changed")


def rehearse(out: Path, variants: list[str], precisions: list[str], log: Callable[[str], None] = print) -> None:
    """Run the release into the new folder `out`."""
    out = Path(out)
    if out.exists():
        raise ClipOnnxError(f"{out} already exists; rehearse into a new folder")
    exports = out / "exports"
    log("==== step 1/2: export and verify with random weights, as the matrix jobs do")
    for name in variants:
        for precision in precisions:
            log(f"== export {name} {precision}")
            pipeline.export(random_weights(get_variant(name)), folder_name(name), exports / precision,
                            precision=precision, log=log)
    log("==== step 2/2: re-verify the written folders, as the export jobs' test step does")
    folders = sorted(p.parent for p in exports.glob("*/*/manifest.json"))
    for folder in folders:
        if not pipeline.verify_folder(folder, log=log).passed:
            raise ClipOnnxError(f"{folder} no longer verifies")
    # until the canary records how GitHub lists a re-run's artifacts, the rehearsal plays "listed"
    listed = observed()["earlier_attempts_listed"] is not False
    with LoopbackHub() as hub, LoopbackGitHub(earlier_attempts_listed=listed, page_size=100) as double:
        world = _Release(hub, double, folders, out / "work", log)
        for number, (scenario, play) in enumerate(zip(SCENARIOS, PLAYS), 1):
            log(f"==== scenario {number}/{len(SCENARIOS)}: {scenario}")
            play(world, out)
    log(f"rehearsal passed: {out}")


def _failed_jobs(world: _Release, out: Path) -> None:
    run = world.run(skip=1)
    try:
        world.publish(run, "v0.1.0")
        raise ClipOnnxError("a run missing an export was published")
    except ClipOnnxError as refused:
        if "lists no export artifact" not in str(refused) or world.double.releases(GITHUB_REPO):
            raise
        world.log(f"== refused, nothing created: {refused}")
    folder, variant, precision = world.cells()[-1]
    world.double.add_artifact(GITHUB_REPO, run, attempt_artifact(variant, precision, 2), folder, attempt=2)
    lines: list[str] = []
    commits = world.publish(run, "v0.1.0", log=lambda line: (lines.append(line), world.log(line)))
    fetched = {line.split()[2] for line in lines if line.startswith("artifacts: downloading ")}
    wanted = {attempt_artifact(v, p, 2 if (v, p) == (variant, precision) else 1) for _, v, p in world.cells()}
    if fetched != wanted:
        raise ClipOnnxError(f"published from {sorted(fetched)}, not each cell's newest attempt {sorted(wanted)}")
    _check(world, commits, "v0.1.0", out / "downloads")
    world.check()


def _publish_job_alone(world: _Release, out: Path) -> None:
    world.unchanged(lambda: world.publish(1, "v0.1.0"))
    world.check()


def _all_jobs(world: _Release, out: Path) -> None:
    world.run(attempt=3, run_id=1)
    world.unchanged(lambda: world.publish(1, "v0.1.0"))
    world.check()


def _attestation_alone(world: _Release, out: Path) -> None:
    sums = published_sums(world.github, "v0.1.0")
    if sums != (world.work / "v0.1.0" / "SHA256SUMS").read_bytes():
        raise ClipOnnxError("the published release's SHA256SUMS differs from what publication staged")
    world.log(f"== the attestation job reads {len(sums.splitlines())} lines of SHA256SUMS from the release")
    world.check()


def _older_after_newer(world: _Release, out: Path) -> None:
    world.publish(world.run(), "v0.2.0")
    world.publish(world.run(), "v0.1.1")
    tags = [set(world.hub.tags(repo)) for repo in world.repos]
    if "v0.1.1" not in published(world.github) or not all("v0.1.1" in t for t in tags):
        raise ClipOnnxError("v0.1.1 was not published to both places")
    world.check()  # Latest and main stay at v0.2.0


def _overlapping(world: _Release, out: Path) -> None:
    """v0.3.0 starts first but reaches its last step only after v0.4.0 finished: the worst order."""
    newer_done, failures = threading.Event(), []

    def older_log(line: str) -> None:
        if line.startswith(f"== step {len(STEPS)}/"):
            newer_done.wait(600)
        world.log(f"[v0.3.0] {line}")

    runs = {"v0.3.0": world.run(), "v0.4.0": world.run()}

    def run(tag: str, log: Callable[[str], None], done: threading.Event | None = None) -> None:
        try:
            world.publish(runs[tag], tag, log=log)
        except Exception as error:  # noqa: BLE001 -- reported below, in this thread
            failures.append(error)
        finally:
            if done:
                done.set()

    older = threading.Thread(target=run, args=("v0.3.0", older_log))
    older.start()
    run("v0.4.0", lambda line: world.log(f"[v0.4.0] {line}"), newer_done)
    older.join()
    if failures:
        raise failures[0]
    world.check()


def _each_step_fails(world: _Release, out: Path) -> None:
    run, tag = world.run(), "v0.5.0"
    failures = [
        lambda: world.double.fail("POST", r"/assets$", status=502),
        lambda: world.hub.fail("POST", f"/commit/clip-onnx-{tag}"),
        lambda: world.double.fail("PATCH", r"/releases/\d+$"),
        lambda: world.hub.fail("POST", "/commit/main"),
    ]
    for number, inject in enumerate(failures, 1):
        inject()
        lines: list[str] = []
        try:
            world.publish(run, tag, log=lines.append)
            raise ClipOnnxError(f"publication did not fail at step {number}")
        except ClipOnnxError as error:
            reached = [line for line in lines if line.startswith("== step ")][-1]
            if not reached.startswith(f"== step {number}/"):
                raise ClipOnnxError(f"the failure meant for step {number} stopped {reached!r}: {error}") from None
            world.log(f"== failed in step {number}: {error}")
        world.double.reset_failures()
        world.hub.reset_failures()
        world.check(finished=False)
    world.publish(run, tag)
    world.check()


def _full_scale(world: _Release, out: Path) -> None:
    """Every published variant's folders, made from the first export with each file renamed as that
    variant names it and filled with a few bytes; the release table written from their manifest
    artifacts, as the wheel job writes it; then published against it, every asset checked, and every
    variant downloaded by the table alone (tag and SHA-256), as an installed package downloads it."""
    template = {f.parent.name: f for f in world.folders}
    folders = sorted({cell["folder"] for cell in matrix()["include"]})
    run = world.run(skip=len(world.cells()))  # a new run with none of the small exports
    for variant in (v for v in VARIANTS.values() if v.published):
        for precision, source in sorted(template.items()):
            made = fabricate(source, variant.folder_name, variant.name, out / "full-scale" / precision)
            world.double.add_artifact(GITHUB_REPO, run, attempt_artifact(variant.folder_name, precision, 1), made)
            manifest_artifact = out / "manifests" / attempt_artifact(variant.folder_name, precision, 1, "manifest")
            manifest_artifact.mkdir(parents=True)
            shutil.copy(made / manifest.MANIFEST, manifest_artifact)
    pinned = table.from_exports(table.newest_manifests(out / "manifests"), "v1.0.0", ORG)
    commits = world.publish(run, "v1.0.0", variants=folders, part_bytes=FULL_SCALE_PART, pinned=pinned)
    world.repos += [repo for repo in commits if repo not in world.repos]
    (release,) = [r for r in world.double.releases(GITHUB_REPO) if r["tag_name"] == "v1.0.0"]
    if len(commits) != len(folders):
        raise ClipOnnxError(f"published {len(commits)} Hub repos of {len(folders)}")
    _check(world, commits, "v1.0.0", out / "downloads-full-scale")
    for name, variant in pinned["variants"].items():
        for precision in PUBLISHED_PRECISIONS:
            download_release(name, precision=precision, release=pinned, cache_dir=out / "downloads-by-table",
                             endpoint=world.hub.url)
    world.log(f"== release table: {sum(len(v['files']) for v in pinned['variants'].values())} files of "
              f"{len(pinned['variants'])} variants downloaded by tag and SHA-256 alone")
    card = world.hub.files(hub_repo(ORG, "ViT-B-32"), "main")["README.md"].decode()
    for item in ("base_model: openai/clip-vit-base-patch32", f"{GITHUB_REPO}/releases/tag/v1.0.0",
                 f'Model.from_hub("{hub_repo(ORG, "ViT-B-32")}", revision="{commits[hub_repo(ORG, "ViT-B-32")]}")'):
        if item not in card:
            raise ClipOnnxError(f"the card on {hub_repo(ORG, 'ViT-B-32')}'s main lacks {item!r}")
    world.log(f"== full scale: {len(commits)} Hub repos, {len(release['assets'])} GitHub assets")
    world.check()


def fabricate(source: Path, name: str, variant: str, root: Path) -> Path:
    """A copy of the export folder `source` as variant `variant` (folder and file names `name`), every
    file replaced by a few deterministic bytes, and its manifest to match."""
    data = json.loads((source / "manifest.json").read_text())
    old = data["name"]
    rename = {f: f.replace(old, name, 1) for f in data["files"]}
    folder = root / name
    folder.mkdir(parents=True)
    files = {}
    for original, renamed in rename.items():
        size = FULL_SCALE_BYTES if "_visual" in renamed and renamed.endswith(".data") else 700
        content = (hashlib.sha256(f"{root.name}/{renamed}".encode()).digest() * (size // 32 + 1))[:size]
        (folder / renamed).write_bytes(content)
        files[renamed] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    for graph in data["graphs"].values():
        graph["file"] = rename[graph["file"]]
        graph["files"] = [rename.get(f, f) for f in graph["files"]]
    data.update(name=name, variant=variant, files=files)
    (folder / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    return folder


PLAYS = (_failed_jobs, _publish_job_alone, _all_jobs, _attestation_alone, _older_after_newer, _overlapping,
         _each_step_fails, _full_scale)


def _check(world: _Release, commits: dict[str, str], tag: str, downloads: Path) -> None:
    """Every Hub file at its tag's commit against the variant's manifest, every GitHub asset against
    `SHA256SUMS`, and every split file joined back."""
    hub = world.hub
    checked = 0
    for repo, commit in commits.items():
        for path in hub.files(repo, commit):
            if path.endswith("manifest.json"):
                precision = path.split("/")[0]
                local = Path(hf_hub_download(repo, path, revision=commit, endpoint=hub.url, cache_dir=downloads))
                data = manifest.read(local.parent)
                for name in data["files"]:
                    hf_hub_download(repo, f"{precision}/{name}", revision=commit, endpoint=hub.url,
                                    cache_dir=downloads)
                integrity.check_files(data, local.parent)
                checked += len(data["files"]) + 1
    world.log(f"== hub: {checked} files downloaded at their tag's commit match their manifests")
    _check_assets(world, tag)


def _check_assets(world: _Release, tag: str) -> None:
    """Every GitHub asset of `tag` against its `SHA256SUMS`, and every split file joined back."""
    double = world.double
    (release,) = [r for r in double.releases(GITHUB_REPO) if r["tag_name"] == tag]
    sums = read_sums(double.content(GITHUB_REPO, tag, "SHA256SUMS").decode())
    split = 0
    for joined in {n.rsplit(".part-", 1)[0] for n in sums if ".part-" in n}:
        parts = sorted(n for n in sums if n.startswith(f"{joined}.part-"))
        if _digest(b"".join(double.content(GITHUB_REPO, tag, p) for p in parts)) != sums[joined]:
            raise ClipOnnxError(f"the parts of {joined} do not join to its SHA-256")
        split += 1
    for asset in release["assets"]:
        if asset["name"] != "SHA256SUMS" and _digest(double.content(GITHUB_REPO, tag, asset["name"])) != sums[asset["name"]]:
            raise ClipOnnxError(f"GitHub asset {asset['name']} differs from SHA256SUMS")
    if not split:
        raise ClipOnnxError("no file was published in parts; the rehearsal must exercise split assets")
    world.log(f"== github: {len(release['assets'])} assets match SHA256SUMS; {split} split files join back")


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.rehearsal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: .venv/bin/python -m tests.rehearsal -o /tmp/rehearsal  (a few minutes, no network)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="new folder for everything")
    parser.add_argument("--variants", nargs="+", default=["tiny-ViT", "tiny-RN"], help="default: %(default)s")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16"], help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        rehearse(args.output, args.variants, args.precisions)
    except ClipOnnxError as error:
        print(f"rehearsal: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
