"""Publish a tag in `STEPS`' order, so that what users get by default never goes backward: GitHub's
Latest and each Hub repo's `main` move last, only to the highest version whose GitHub release is
public, and never to a lower one (an older tag published after a newer one leaves them alone).

One variant is on disk at a time -- fetch its exports, stage them, upload, free, next -- because all
exports together are far larger than a hosted runner's guaranteed disk. Every step is idempotent:
re-running the same tag completes a draft, skips a Hub tag that already holds these bytes, refuses
one that holds others, and changes nothing once everything is published. The last step reads the
state afresh and converges on it, so publications of two tags that overlap, or run in either order,
still end with Latest and every `main` at the highest published version.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from clip_onnx import manifest
from clip_onnx.contract import PUBLISHED_PRECISIONS
from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from release import github as github_release
from release.cards import manifests, model_card, release_notes, write_card
from release.stage import ARTIFACT, PART_BYTES, hub_repo, stage, sums_text
from release.table import differences
from release.versions import TAG, version

GB = 1e9
# What a publication does, in order; the log names each step and docs/releasing.md lists the same.
STEPS = (
    "GitHub draft release with every asset",
    "each variant's Hub repo: the tag's commit, made off main, checked, then tagged",
    "GitHub release published, made Latest only if no higher version is published",
    "Latest and each variant's Hub main brought to the highest published version",
)
# how often the last step reads the state again after a concurrent publication moved it
CONVERGE_TRIES = 5
# room for what staging writes beside the exports (manifests, cards, SHA256SUMS)
MARGIN = 1 << 30


class LocalExports:
    """`clip-onnx export` folders under one root (a maintainer's machine, the rehearsal)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def variants(self) -> dict[str, int]:
        """Variant folder -> bytes of its exports."""
        sizes: dict[str, int] = {}
        for path in sorted(self.root.glob("**/manifest.json")):
            name = manifest.read(path.parent)["name"]
            sizes[name] = sizes.get(name, 0) + sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file())
        return sizes

    def need(self, size: int) -> int:
        return size  # at most every file copied once into parts; the rest is hard-linked

    @contextmanager
    def fetch(self, folder: str, into: Path, log: Callable[[str], None]) -> Iterator[Path]:
        yield self.root


class RunArtifacts:
    """The export jobs' artifacts of a workflow run (`export-<Name>-<precision>-attempt<N>`), fetched one
    variant at a time. Of each cell the newest attempt is taken, whether or not GitHub also lists the
    artifacts of earlier attempts; two artifacts of the same cell and attempt are refused, and so is a
    missing cell: one of `folders` (default: every variant present) in any published precision."""

    def __init__(self, github: github_release.GitHub, run_id: int, folders: list[str] | None = None):
        self.github, self.run_id = github, run_id
        cells: dict[tuple[str, str], dict[int, list[dict]]] = {}
        for artifact in github.artifacts(run_id):
            if match := ARTIFACT.match(artifact["name"]):
                cell = cells.setdefault((match["folder"], match["precision"]), {})
                cell.setdefault(int(match["attempt"]), []).append(artifact)
        self._chosen: dict[tuple[str, str], dict] = {}
        for (folder, precision), attempts in sorted(cells.items()):
            newest = attempts[max(attempts)]
            if len(newest) > 1:
                raise ClipOnnxError(f"run {run_id} has {len(newest)} artifacts named {newest[0]['name']} (ids "
                                    f"{', '.join(str(a['id']) for a in newest)}); which one to publish is ambiguous: "
                                    f"delete all but one, then re-run the publish job")
            self._chosen[folder, precision] = newest[0]
        missing = [f"{folder} {precision}" for folder in sorted(folders or {f for f, _ in self._chosen})
                   for precision in PUBLISHED_PRECISIONS if (folder, precision) not in self._chosen]
        if missing:
            raise ClipOnnxError(f"run {run_id} lists no export artifact of {', '.join(missing)}; nothing was "
                                f"published: re-run all jobs, so that every export is listed again")

    def artifacts_of(self, folder: str) -> list[dict]:
        return [a for (f, _), a in sorted(self._chosen.items()) if f == folder]

    def variants(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for (folder, _), artifact in sorted(self._chosen.items()):
            sizes[folder] = sizes.get(folder, 0) + artifact["size_in_bytes"]
        return sizes

    def need(self, size: int) -> int:
        # one archive and what it unpacks to, then every unpacked file plus at most one copy in parts
        return 2 * size

    @contextmanager
    def fetch(self, folder: str, into: Path, log: Callable[[str], None]) -> Iterator[Path]:
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        try:
            for artifact in self.artifacts_of(folder):
                log(f"artifacts: downloading {artifact['name']} ({artifact['size_in_bytes'] / GB:.2f} GB)")
                archive = into / f"{artifact['name']}.zip"
                self.github.download(artifact, archive)
                with zipfile.ZipFile(archive) as unpack:
                    unpack.extractall(into / artifact["name"])
                archive.unlink()
            yield into
        finally:
            shutil.rmtree(into, ignore_errors=True)


def check_space(work: Path, needs: dict[str, int]) -> None:
    """Fail before anything is uploaded when the largest variant cannot fit on `work`'s disk."""
    folder = max(needs, key=needs.get)
    free = shutil.disk_usage(work).free
    if free < needs[folder] + MARGIN:
        raise ClipOnnxError(f"{work} has {free / GB:.1f} GB free, and publishing {folder} needs "
                            f"{(needs[folder] + MARGIN) / GB:.1f} GB; free space on that disk or pass --work "
                            f"on a larger one")


@contextmanager
def _staged(source, folder: str, tag: str, org: str, work: Path, part_bytes: int, github_repo: str | None,
            log: Callable[[str], None]) -> Iterator[tuple[Path, dict]]:
    """One variant fetched and staged under `work`, removed again afterwards."""
    with source.fetch(folder, work / "exports", log) as exports:
        out = work / "staged"
        shutil.rmtree(out, ignore_errors=True)  # what a killed run left
        try:
            release = stage(exports, tag, out, org, variant=folder, part_bytes=part_bytes)
            write_card(out / "hub" / folder, hub_repo(org, folder), tag, github_repo)
            yield out, release
        finally:
            shutil.rmtree(out, ignore_errors=True)


def publish(source, tag: str, org: str, github: github_release.GitHub | None, work: Path, *,
            hub_endpoint: str | None = None, hub_token: str | None = None, part_bytes: int = PART_BYTES,
            dry_run: bool = False, draft_only: bool = False, table: dict | None = None,
            log: Callable[[str], None] = print) -> dict[str, str]:
    """Publish every variant `source` holds as `tag`; return Hub repo -> tagged commit (empty in a dry run).
    `draft_only` (the canary) leaves the GitHub release a draft, for a tag GitHub need not have. `table`:
    the release table the packages were built with (`release.table`); each variant is refused, before
    any of its files is uploaded, unless it stages exactly the files the table pins."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    sizes = source.variants()
    if not sizes:
        raise ClipOnnxError("no exports to publish: the run has no export-<Name>-<precision> artifacts")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    check_space(work, {folder: source.need(size) for folder, size in sizes.items()})
    if table is not None and sorted(table["variants"]) != sorted(sizes):
        raise ClipOnnxError(f"the packages pin {', '.join(sorted(table['variants']))}, but the run's exports are of "
                            f"{', '.join(sorted(sizes))}; nothing was published: re-run all jobs")
    log(f"== publishing {tag}: {', '.join(sizes)}")
    github_repo = github.repo if github is not None else None

    def step(number: int) -> None:
        log(f"== step {number}/{len(STEPS)}: {STEPS[number - 1]}")

    if not dry_run:
        from release import hub  # huggingface_hub: only when something is published, not in a dry run

        hub.check_access([hub_repo(org, folder) for folder in sizes], endpoint=hub_endpoint, token=hub_token, log=log)
    step(1)
    release = None if dry_run else github.draft(tag, f"clip-onnx {tag}", "Being published; do not use yet.",
                                                require_tag=not draft_only)
    files: list[dict] = []
    exports: list[dict] = []  # one manifest per variant, for the notes' provenance
    for folder in sizes:
        with _staged(source, folder, tag, org, work, part_bytes, github_repo, log) as (staged, staged_release):
            if table is not None and (found := differences(table, staged_release)):
                raise ClipOnnxError(f"{folder} is not what the packages pin ({'; '.join(found[:3])}); nothing public "
                                    f"was changed: re-run all jobs, so that the packages pin this run's exports")
            files += staged_release["files"]
            exports.append(manifests(staged / "hub" / folder)[0])
            assets = {a["name"]: (staged / "github" / a["name"], a["sha256"])
                      for entry in staged_release["files"] for a in entry["github_assets"]}
            if dry_run:
                for name, (path, digest) in assets.items():
                    log(f"would attach to the GitHub release {tag}: {name}  {path.stat().st_size} bytes  "
                        f"sha256 {digest}")
                for path in sorted(p for p in (staged / "hub" / folder).rglob("*") if p.is_file()):
                    log(f"would upload to {hub_repo(org, folder)}: {path.relative_to(staged / 'hub' / folder)}  "
                        f"{path.stat().st_size} bytes")
            else:
                release = github_release.upload(github, release, assets, log)
    sums = work / "SHA256SUMS"
    sums.write_text(sums_text(files))
    wanted = {a["name"]: a["sha256"] for entry in files for a in entry["github_assets"]}
    wanted[sums.name] = sha256_file(sums)
    if dry_run:
        log(f"would attach to the GitHub release {tag}: {sums.name}  sha256 {wanted[sums.name]}")
        log("dry run: nothing was uploaded")
        return {}
    github_release.upload(github, release, {sums.name: (sums, wanted[sums.name])}, log)

    step(2)
    commits = {}
    for folder in sizes:
        with _staged(source, folder, tag, org, work, part_bytes, github_repo, log) as (staged, staged_release):
            repo = hub_repo(org, folder)
            known = {entry["hub_path"]: entry["sha256"] for entry in staged_release["files"]}
            commits[repo] = hub.publish(staged / "hub" / folder, tag, repo, known=known, endpoint=hub_endpoint,
                                        token=hub_token, log=log)

    notes = release_notes(files, tag, commits, exports)
    if draft_only:
        github.edit(github.release(tag), body=notes)
        log(f"== the canary: {github.repo} {tag} stays a draft (delete it when checked); each scratch Hub "
            f"repo's main is brought to {tag}, as step {len(STEPS)} would")
        for repo in commits:
            _bring_main(repo, tag, hub.tag_commits(repo, endpoint=hub_endpoint, token=hub_token), github.repo,
                        work, hub_endpoint, hub_token, log)
        return commits
    step(3)
    higher = [t for t in published(github) if version(t) > version(tag)]
    url = github_release.finish(github, tag, wanted, notes, log, latest=not higher)
    log(f"published {tag}: {url}")
    step(4)
    converge(github, list(commits), work, hub_endpoint=hub_endpoint, hub_token=hub_token, log=log)
    return commits


def published(github: github_release.GitHub) -> list[str]:
    """Every version whose GitHub release is public, lowest first."""
    return sorted((r["tag_name"] for r in github.releases() if not r["draft"] and TAG.match(r["tag_name"])),
                  key=version)


def converge(github: github_release.GitHub, repos: list[str], work: Path, *, hub_endpoint: str | None = None,
             hub_token: str | None = None, log: Callable[[str], None] = print) -> None:
    """Make GitHub's Latest the highest published version and each of `repos`' `main` hold the highest
    published version it has a tag of. Each is read afresh, so a publication that ran meanwhile is seen."""
    from release import hub

    versions = published(github)
    if versions and github.latest() != versions[-1]:
        github.edit(github.release(versions[-1]), make_latest="true")
        log(f"github: {versions[-1]} made Latest, the highest published version")
    for repo in repos:
        for attempt in range(1, CONVERGE_TRIES + 1):
            tags = hub.tag_commits(repo, endpoint=hub_endpoint, token=hub_token)
            pins = {v: tags[v] for v in published(github) if v in tags}  # a tag still being published: not yet
            if not pins:
                log(f"hub: {repo} has no tag of a published version; main stays as it is")
                break
            try:
                _bring_main(repo, max(pins, key=version), pins, github.repo, work, hub_endpoint, hub_token, log)
                break
            except hub.MainMoved as moved:
                if attempt == CONVERGE_TRIES:
                    raise ClipOnnxError(f"{moved} {attempt} times; re-run the publish job") from None
                log(f"hub: {moved}; reading it again")


def _bring_main(repo: str, tag: str, pins: dict[str, str], github_repo: str, work: Path, hub_endpoint: str | None,
                hub_token: str | None, log: Callable[[str], None]) -> None:
    """One attempt at making `repo`'s main hold `tag`, with the card rendered from that tag's manifests and
    listing `pins` (tag -> commit)."""
    from release import hub

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        folder = hub.manifests_at(repo, pins[tag], Path(scratch), endpoint=hub_endpoint, token=hub_token)
        card = model_card(folder, repo, tag, pins, github_repo)
    hub.advance_main(repo, tag, card, endpoint=hub_endpoint, token=hub_token, log=log)
