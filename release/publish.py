"""Publish a tag, in the one order that leaves nothing half-public:

1. a GitHub draft release with every asset (drafts are invisible to users);
2. each variant's Hugging Face Hub repo: one commit, then the tag;
3. the GitHub release, once GitHub's digest of every asset matches what was staged.

One variant is on disk at a time -- fetch its exports, stage them, upload, free, next -- because all
exports together are far larger than a hosted runner's guaranteed disk. Every step is idempotent:
re-running the same tag completes a draft, skips a Hub tag that already holds these bytes, refuses
one that holds others, and changes nothing once everything is published.
"""

from __future__ import annotations

import shutil
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
from release.stage import PART_BYTES, TAG, artifact_name, hub_repo, stage, sums_text

GB = 1e9
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
    """The export jobs' artifacts of a workflow run (`export-<Name>-<precision>`), fetched one variant at a time."""

    def __init__(self, github: github_release.GitHub, run_id: int):
        self.github, self.run_id = github, run_id
        self._artifacts = github.artifacts(run_id)

    def _of(self, folder: str) -> list[dict]:
        names = {artifact_name(folder, p) for p in PUBLISHED_PRECISIONS}
        return [a for a in self._artifacts if a["name"] in names]

    def variants(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for artifact in self._artifacts:
            for precision in PUBLISHED_PRECISIONS:
                prefix, suffix = "export-", f"-{precision}"
                if artifact["name"].startswith(prefix) and artifact["name"].endswith(suffix):
                    folder = artifact["name"][len(prefix):-len(suffix)]
                    sizes[folder] = sizes.get(folder, 0) + artifact["size_in_bytes"]
        return dict(sorted(sizes.items()))

    def need(self, size: int) -> int:
        # one archive and what it unpacks to, then every unpacked file plus at most one copy in parts
        return 2 * size

    @contextmanager
    def fetch(self, folder: str, into: Path, log: Callable[[str], None]) -> Iterator[Path]:
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        try:
            for artifact in self._of(folder):
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
def _staged(source, folder: str, tag: str, org: str, work: Path, part_bytes: int,
            log: Callable[[str], None]) -> Iterator[tuple[Path, dict]]:
    """One variant fetched and staged under `work`, removed again afterwards."""
    with source.fetch(folder, work / "exports", log) as exports:
        out = work / "staged"
        shutil.rmtree(out, ignore_errors=True)  # what a killed run left
        try:
            release = stage(exports, tag, out, org, variant=folder, part_bytes=part_bytes)
            write_card(out / "hub" / folder, hub_repo(org, folder), tag)
            yield out, release
        finally:
            shutil.rmtree(out, ignore_errors=True)


def publish(source, tag: str, org: str, github: github_release.GitHub | None, work: Path, *,
            hub_endpoint: str | None = None, hub_token: str | None = None, part_bytes: int = PART_BYTES,
            dry_run: bool = False, draft_only: bool = False, log: Callable[[str], None] = print) -> dict[str, str]:
    """Publish every variant `source` holds as `tag`; return Hub repo -> tagged commit (empty in a dry run).
    `draft_only` (the canary) leaves the GitHub release a draft, for a tag GitHub need not have."""
    if not TAG.match(tag):
        raise ClipOnnxError(f"tag {tag!r} is not of the form vX.Y.Z")
    sizes = source.variants()
    if not sizes:
        raise ClipOnnxError("no exports to publish: the run has no export-<Name>-<precision> artifacts")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    check_space(work, {folder: source.need(size) for folder, size in sizes.items()})
    log(f"== publishing {tag}: {', '.join(sizes)}")

    log("== 1/3 GitHub draft release: every asset")
    release = None if dry_run else github.draft(tag, f"clip-onnx {tag}", "Being published; do not use yet.",
                                                require_tag=not draft_only)
    files: list[dict] = []
    exports: list[dict] = []  # one manifest per variant, for the notes' provenance
    for folder in sizes:
        with _staged(source, folder, tag, org, work, part_bytes, log) as (staged, staged_release):
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
    from release import hub  # huggingface_hub: only when something is published, not in a dry run

    log("== 2/3 Hugging Face Hub: each variant's repo, one commit and a tag")
    commits = {}
    for folder in sizes:
        with _staged(source, folder, tag, org, work, part_bytes, log) as (staged, staged_release):
            repo = hub_repo(org, folder)
            known = {entry["hub_path"]: entry["sha256"] for entry in staged_release["files"]}
            commits[repo] = hub.publish(staged / "hub" / folder, tag, repo, known=known, endpoint=hub_endpoint,
                                        token=hub_token, log=log)
            pins = hub.tag_commits(repo, endpoint=hub_endpoint, token=hub_token)
            hub.pin_card(repo, model_card(staged / "hub" / folder, repo, tag, pins), endpoint=hub_endpoint,
                         token=hub_token, log=log)

    notes = release_notes(files, tag, commits, exports)
    if draft_only:
        github.edit(github.release(tag), body=notes)
        log(f"== the canary stops here: {github.repo} {tag} stays a draft; delete it when checked")
        return commits
    log("== 3/3 GitHub release: every asset checked against its digest, then published")
    url = github_release.finish(github, tag, wanted, notes, log)
    log(f"published {tag}: {url}")
    return commits
