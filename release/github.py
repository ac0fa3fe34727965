"""Publish a staged release as a GitHub Release, through the `gh` command-line tool.

The release is created as a draft, its assets are uploaded, GitHub's own SHA-256 digest of every
asset is compared with `SHA256SUMS`, and only then is it published: consumers never see a release
with missing or wrong files. Safe to re-run: a published release whose assets all match is left
alone, missing assets of a draft are added and broken ones (a failed upload leaves an asset that is
not `uploaded`) replaced; a published release with other bytes is refused, never altered.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from clip_onnx.errors import ClipOnnxError, first_problem
from clip_onnx.integrity import sha256_file


def wanted_assets(staged: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((Path(staged) / "github").iterdir()) if p.is_file()}


def checksums(staged: Path) -> dict[str, str]:
    """Asset name -> SHA-256: from `SHA256SUMS`, plus that file's own."""
    sums_file = Path(staged) / "github" / "SHA256SUMS"
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in sums_file.read_text().splitlines())}
    sums[sums_file.name] = sha256_file(sums_file)
    return sums


MISSING, EXTRA = "is missing", "is not part of this release"


def mismatches(existing: list[dict], wanted: dict[str, str]) -> dict[str, str]:
    """Asset name -> how the `existing` assets (as GitHub's API describes them) differ from `wanted`
    (name -> SHA-256)."""
    have = {asset["name"]: asset for asset in existing}
    wrong = {name: EXTRA for name in sorted(set(have) - set(wanted))}
    for name, digest in wanted.items():
        asset = have.get(name)
        if asset is None:
            wrong[name] = MISSING
        elif asset.get("state") != "uploaded":
            wrong[name] = "was not fully uploaded"
        elif asset.get("digest") != f"sha256:{digest}":
            wrong[name] = f"has digest {asset.get('digest')}, not sha256:{digest}"
    return wrong


def plan(existing: list[dict], wanted: dict[str, str], draft: bool) -> tuple[list[str], list[str]]:
    """(assets to upload, assets to replace) to make a release hold exactly `wanted`.
    A published release is never altered; a draft's foreign assets are left for a person to judge."""
    wrong = mismatches(existing, wanted)
    if wrong and not draft:
        raise ClipOnnxError(f"the published release differs from this one ({first_problem(wrong)}); "
                            f"a published release is never altered: release a new version")
    extra = [name for name, reason in wrong.items() if reason == EXTRA]
    if extra:
        raise ClipOnnxError(f"the draft release has assets this release does not: {', '.join(extra)}; delete them "
                            f"or the draft, then re-run")
    return ([name for name, reason in wrong.items() if reason == MISSING],
            [name for name, reason in wrong.items() if reason != MISSING])


def _gh(*args: str) -> str:
    try:
        result = subprocess.run(["gh", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise ClipOnnxError("the GitHub CLI `gh` is not installed (https://cli.github.com)") from None
    if result.returncode != 0:
        raise ClipOnnxError(f"gh {args[0]} {args[1] if len(args) > 1 else ''} failed: {result.stderr.strip()}")
    return result.stdout


def find_release(repo: str, tag: str) -> dict | None:
    """The release of `tag`, drafts included (the by-tag endpoint does not see drafts)."""
    pages = json.loads(_gh("api", "--paginate", "--slurp", f"repos/{repo}/releases?per_page=100"))
    return next((r for page in pages for r in page if r["tag_name"] == tag), None)


def publish(staged: Path, repo: str, tag: str, log: Callable[[str], None] = print) -> str:
    """Publish `staged/github` as the release of `tag` in `repo` (OWNER/NAME); return its URL."""
    files, sums = wanted_assets(staged), checksums(staged)
    release = find_release(repo, tag)
    if release is None:
        _gh("release", "create", tag, "--repo", repo, "--draft", "--verify-tag", "--title", f"clip-onnx {tag}",
            "--notes-file", str(Path(staged) / "RELEASE_NOTES.md"))
        release = find_release(repo, tag)
        if release is None:
            raise ClipOnnxError(f"gh created the draft release {tag} in {repo} but GitHub does not list it; re-run")
    upload, replace = plan(release["assets"], sums, release["draft"])
    for name in [*upload, *replace]:
        log(f"github: uploading {name} ({files[name].stat().st_size / 1e6:.1f} MB)")
        _gh("release", "upload", tag, str(files[name]), "--repo", repo, *(["--clobber"] if name in replace else []))
    release = find_release(repo, tag)
    wrong = mismatches(release["assets"], sums)
    if wrong:
        raise ClipOnnxError(f"after the upload GitHub reports {first_problem(wrong)}; "
                            f"the release stays a draft, re-run")
    if release["draft"]:
        _gh("release", "edit", tag, "--repo", repo, "--draft=false")
        log(f"github: published {repo} {tag} with {len(sums)} assets")
    else:
        log(f"github: {repo} {tag} is already published with these {len(sums)} assets; nothing to do")
    return release["html_url"]
