"""What the release checks before its 18 export jobs, with the credentials publication will use, so a
bad token or a taken tag is found in a minute instead of after hours of exports.

- the tag: of the form vX.Y.Z and equal to the version in `pyproject.toml` (PyPI publishes that);
- the locks: every job's requirements pinned and hashed;
- GitHub: the token may create releases (a draft is made and deleted again), and the tag is new or a
  draft left by an interrupted run (resumable);
- the Hub: the token may write to each variant's repo, and no repo has the tag already, unless it is a
  resumable run whose GitHub draft lists the same bytes in `SHA256SUMS`.
"""

from __future__ import annotations

import hashlib
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from clip_onnx.errors import ClipOnnxError
from release import locks
from release.cards import LICENSE_ASSET
from release.github import GitHub
from release.stage import asset_name, hub_repo, read_sums
from release.versions import TAG

WRITE_ROLES = {"admin", "write", "contributor"}  # roles in an org whose members may push to its repos


def project_version() -> str:
    return tomllib.loads((locks.ROOT / "pyproject.toml").read_text())["project"]["version"]


def can_write(whoami: dict, repo_id: str) -> bool:
    """Whether the token `whoami` (the Hub's /api/whoami-v2 answer) describes may push to `repo_id`."""
    owner = repo_id.split("/")[0]
    token = whoami.get("auth", {}).get("accessToken", {})
    member = owner == whoami.get("name") or any(
        org["name"] == owner and org.get("roleInOrg") in WRITE_ROLES for org in whoami.get("orgs", []))
    if token.get("role") == "write":
        return member
    if token.get("role") == "fineGrained":
        return member and any(scope["entity"]["name"] in (owner, repo_id) and "repo.write" in scope["permissions"]
                              for scope in token.get("fineGrained", {}).get("scoped", []))
    return False


def _github(github: GitHub, tag: str) -> tuple[list[str], dict | None]:
    problems = []
    release = github.release(tag)
    if release is not None and not release["draft"]:
        problems.append(f"{github.repo} has already published {tag}: release a new version")
    try:  # a draft never creates its tag, so this one touches nothing users see
        probe = github.json("POST", f"repos/{github.repo}/releases",
                            {"tag_name": f"{tag}-preflight", "name": "clip-onnx preflight", "draft": True})
        github.request("DELETE", f"repos/{github.repo}/releases/{probe['id']}")
    except ClipOnnxError as error:
        problems.append(f"the GitHub token may not create releases in {github.repo}: {error}")
    return problems, release


def _sums(github: GitHub, draft: dict | None) -> dict[str, str]:
    """Name -> SHA-256 from an interrupted run's draft `SHA256SUMS`; empty when there is none."""
    asset = next((a for a in (draft or {}).get("assets", []) if a["name"] == "SHA256SUMS"), None)
    if asset is None:
        return {}
    return read_sums(github.asset_bytes(asset).decode())


def _hub_tag(api: HfApi, repo: str, folder: str, tag: str, sums: dict[str, str]) -> list[str]:
    """Why `repo`'s existing `tag` is not this release's, judged against the draft's `SHA256SUMS`."""
    if not sums:
        return [f"{repo} already has tag {tag}, and GitHub has no draft of {tag} listing its files: "
                f"a published tag is never moved, release a new version"]
    wrong = []
    with tempfile.TemporaryDirectory() as cache:
        for entry in api.list_repo_tree(repo, revision=tag, recursive=True):
            path = entry.path
            if path in (".gitattributes", "README.md") or not hasattr(entry, "size"):
                continue
            asset = LICENSE_ASSET if path == "LICENSE" else asset_name(folder, *path.split("/", 1))
            if entry.lfs is not None:
                digest = entry.lfs.sha256
            else:  # small files: the Hub records only git's id, so hash the bytes
                local = hf_hub_download(repo, path, revision=tag, endpoint=api.endpoint, token=api.token,
                                        cache_dir=cache)
                digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            if sums.get(asset) != digest:
                wrong.append(path)
    return [f"{repo} already has tag {tag} with files the draft's SHA256SUMS does not list: {', '.join(wrong)}; "
            f"a published tag is never moved, release a new version"] if wrong else []


def _hub(api: HfApi, org: str, folders: list[str], tag: str, sums: dict[str, str]) -> list[str]:
    try:
        whoami = api.whoami()
    except HfHubHTTPError as error:
        return [f"HF_TOKEN is not accepted by the Hub ({' '.join(str(error).split())[:200]}): set the secret"]
    problems = []
    role = whoami.get("auth", {}).get("accessToken", {}).get("role")
    for folder in folders:
        repo = hub_repo(org, folder)
        if not can_write(whoami, repo):
            problems.append(f"HF_TOKEN (user {whoami.get('name')}, role {role}) may not write to {repo}: "
                            f"give it write access to {org}")
        try:
            tags = {ref.name for ref in api.list_repo_refs(repo).tags}
        except RepositoryNotFoundError:
            continue  # publication creates it
        if tag in tags:
            problems += _hub_tag(api, repo, folder, tag, sums)
    return problems


def preflight(tag: str, org: str, github: GitHub, folders: list[str], *, hub_endpoint: str | None = None,
              hub_token: str | None = None, log: Callable[[str], None] = print) -> None:
    """Raise one error listing every problem; log what was checked."""
    problems = [] if TAG.match(tag) else [f"tag {tag!r} is not of the form vX.Y.Z"]
    if tag != f"v{project_version()}":
        problems.append(f"tag {tag} is not pyproject.toml's version {project_version()}: PyPI publishes that "
                        f"version, so set `version = \"{tag.removeprefix('v')}\"` and tag again")
    for lock in locks.LOCKS.values():
        problems += locks.check(lock.path)
    found, release = _github(github, tag)
    problems += found
    resumable = release if release is not None and release["draft"] else None
    problems += _hub(HfApi(endpoint=hub_endpoint, token=hub_token), org, folders, tag, _sums(github, resumable))
    for problem in problems:
        log(f"preflight: {problem}")
    if problems:
        raise ClipOnnxError(f"preflight found {len(problems)} problem(s), listed above; nothing was exported")
    log(f"preflight: {tag} can be released: {'a resumable draft' if resumable else 'new'}; both tokens may write "
        f"to GitHub {github.repo} and the {len(folders)} Hub repos of {org}")
