"""What the release checks before its 18 export jobs, with the credentials publication will use, so a
bad token, a missing pin or a taken tag is found in a minute instead of after hours of exports. Every
problem is listed, one line each, naming the bad input and what to do:

- the tag: of the form vX.Y.Z and every package's version (`release/packages.py`: the wheel, the crates,
  the npm package);
- the packages' names: each registry's name is free or records this repository as its source, and npm's
  and crates.io's exist already (their first publication is a maintainer's, with a token);
- the locks: every job's requirements pinned and hashed;
- the weights: each exported variant has a pin in `exporter/weight_pins.json` (a 40-hex Hub commit id,
  SHA-256 and size; `python -m release pin-weights` writes them), and the Hub holds exactly those bytes
  (its LFS SHA-256 and size of the pinned file at the pinned commit);
- the Hub organisation: named (the repository variable HF_ORG), never empty;
- GitHub: the token may create releases (a draft is made and deleted again), and the tag is new or a
  draft left by an interrupted run (resumable);
- the Hub: the release may write to each variant's repo. With HF_TOKEN: its user owns the namespace or
  has the role `write` or `admin` in the org (a `contributor` may write only to repos it created, so it
  is accepted only for a repo that does not exist yet), and a fine-grained token has `repo.write` on the
  org or the repo. Keyless (`release/hub_auth.py`): each repo exists, and the token the Hub exchanges for
  this job's OIDC token makes a branch there and deletes it. And no repo has the tag already, unless it
  is a resumable run whose GitHub draft lists the same bytes in `SHA256SUMS`.

The registries' trusted publishers are not checked: PyPI, npm and crates.io offer no public API to read
them, so only the publishing jobs (and, for PyPI, the canary's TestPyPI upload) can prove them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from exporter import hub_weights
from exporter.hub_weights import HubPin
from exporter.variants import VARIANTS
from release import hub, hub_auth, locks, packages
from release.cards import LICENSE_ASSET
from release.github import GitHub
from release.stage import HF_ORG_HELP, asset_name, hub_repo, read_sums
from release.versions import TAG

# Roles in an org whose members may push to every repo of it. A `contributor` may create repos but
# write only to those it created, which the Hub's API does not tell: `CREATE_ROLES`.
WRITE_ROLES = {"admin", "write"}
CREATE_ROLES = WRITE_ROLES | {"contributor"}
COMMIT = re.compile(r"[0-9a-f]{40}")


def org_role(whoami: dict, org: str) -> str | None:
    """The token's user's role in `org` (`roleInOrg` of the whoami answer); None when not a member."""
    return next((o.get("roleInOrg") for o in whoami.get("orgs", []) if o["name"] == org), None)


def can_write(whoami: dict, repo_id: str, exists: bool = True) -> bool:
    """Whether the token `whoami` (the Hub's /api/whoami-v2 answer) describes may push to `repo_id`,
    which `exists` already or is to be created by publication."""
    owner = repo_id.split("/")[0]
    token = whoami.get("auth", {}).get("accessToken", {})
    member = owner == whoami.get("name") or org_role(whoami, owner) in (WRITE_ROLES if exists else CREATE_ROLES)
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
                digest = sha256_file(Path(local))
            if sums.get(asset) != digest:
                wrong.append(path)
    return [f"{repo} already has tag {tag} with files the draft's SHA256SUMS does not list: {', '.join(wrong)}; "
            f"a published tag is never moved, release a new version"] if wrong else []


def _hub(api: HfApi, org: str, folders: list[str], tag: str, sums: dict[str, str]) -> list[str]:
    keyless = hub_auth.keyless(api.token)
    if not keyless:
        try:
            whoami = api.whoami()
        except HfHubHTTPError as error:
            return [f"HF_TOKEN is not accepted by the Hub ({' '.join(str(error).split())[:200]}): set the secret"]
    problems = []
    for folder in folders:
        repo = hub_repo(org, folder)
        try:
            tags = {ref.name for ref in api.list_repo_refs(repo).tags}
        except RepositoryNotFoundError:
            tags = None  # publication creates it
        if keyless:
            problems += _keyless_write(api, repo, tag, exists=tags is not None)
        else:
            problems += _token_write(whoami, org, repo, exists=tags is not None)
        if tags is not None and tag in tags:
            problems += _hub_tag(api, repo, folder, tag, sums)
    return problems


def _token_write(whoami: dict, org: str, repo: str, exists: bool) -> list[str]:
    """Why HF_TOKEN (`whoami`) may not write to `repo`."""
    user, role = whoami.get("name"), whoami.get("auth", {}).get("accessToken", {}).get("role")
    if can_write(whoami, repo, exists=exists):
        return []
    if exists and org_role(whoami, org) == "contributor" and can_write(whoami, repo, exists=False):
        return [f"HF_TOKEN's user {user} is a contributor in {org}, who may write only to repos it "
                f"created, and {repo} exists: give {user} the `write` role in {org}"]
    return [f"HF_TOKEN (user {user}, role {role}) may not write to {repo}: give it write access to {org}"]


def _keyless_write(api: HfApi, repo: str, tag: str, exists: bool) -> list[str]:
    """Why this job's keyless token may not write to `repo`: proven by making a branch and deleting it."""
    if not exists:
        return [hub_auth.cannot_create([repo])]
    try:
        hub.probe_write(repo, f"clip-onnx-preflight-{tag}", endpoint=api.endpoint, token=api.token)
    except ClipOnnxError as error:
        return [str(error)]
    return []


def _pins(api: HfApi, folders: list[str], pins: dict[str, HubPin]) -> list[str]:
    """Why the exports of `folders` could not fetch their pinned weights: unpinned, or other bytes on the Hub."""
    names = {v.folder_name: v.name for v in VARIANTS.values()}
    order = {name: i for i, name in enumerate(VARIANTS)}  # the variant table's order, not the folders'
    problems, unpinned = [], []
    for name in sorted((names.get(f, f) for f in folders), key=lambda n: (order.get(n, len(order)), n)):
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{name} has no entry in exporter/weight_pins.json: add its Hub repo and file, then run "
                            f"`python -m release pin-weights --variants {name}` and commit the result")
        elif not pin.pinned:
            unpinned.append(name)
        elif not COMMIT.fullmatch(pin.revision):
            problems.append(f"{name}'s pinned revision {pin.revision!r} in exporter/weight_pins.json is not a full "
                            f"40-hex commit id: run `python -m release pin-weights --variants {name}` and commit the "
                            f"result")
        else:
            problems += _pin_on_hub(api, name, pin)
    if unpinned:
        problems.insert(0, f"exporter/weight_pins.json pins no weights (revision, sha256, bytes) for "
                           f"{', '.join(unpinned)}: run `python -m release pin-weights` with network and commit "
                           f"the result")
    return problems


def _pin_on_hub(api: HfApi, name: str, pin: HubPin) -> list[str]:
    """Why the Hub's record of `pin.file` at `pin.revision` is not the pin's SHA-256 and size."""
    where = f"{pin.repo}@{pin.revision}"
    again = f"pin it again with `python -m release pin-weights --variants {name}` and commit the result"
    try:
        infos = api.get_paths_info(pin.repo, [pin.file], revision=pin.revision)
    except RevisionNotFoundError:
        return [f"{name}'s pinned commit {pin.revision} does not exist in the Hub repo {pin.repo}: {again}"]
    except RepositoryNotFoundError:
        return [f"{name}'s pinned Hub repo {pin.repo} does not exist (or HF_TOKEN may not read it): fix its `repo` "
                f"in exporter/weight_pins.json, then {again}"]
    except (HfHubHTTPError, OSError) as error:
        return [f"{name}'s pin {where} could not be checked ({' '.join(str(error).split())[:200]}): run preflight "
                f"again"]
    info = next((i for i in infos if i.path == pin.file and hasattr(i, "size")), None)
    if info is None:
        return [f"{name}'s pinned file {pin.file} is not in {where}: {again}"]
    if info.lfs is not None:
        sha256 = info.lfs.sha256
    else:  # a regular file: the Hub records only git's id, so hash the bytes
        with tempfile.TemporaryDirectory() as cache:
            local = hf_hub_download(pin.repo, pin.file, revision=pin.revision, endpoint=api.endpoint, token=api.token,
                                    cache_dir=cache)
            sha256 = sha256_file(Path(local))
    differs = ([f"SHA-256 {sha256}, not the pinned {pin.sha256}"] if sha256 != pin.sha256 else []) + (
        [f"{info.size} bytes, not the pinned {pin.bytes}"] if info.size != pin.bytes else [])
    return [f"{name}'s {pin.file} at {where} has {' and '.join(differs)}: {again}"] if differs else []


def preflight(tag: str, org: str, github: GitHub, folders: list[str], *, hub_endpoint: str | None = None,
              hub_token: str | None = None, pins: dict[str, HubPin] | None = None,
              log: Callable[[str], None] = print) -> None:
    """Raise one error listing every problem; log what was checked. `folders` are the exported variants'
    folders (`release.stage.matrix()`); `pins` are the weight pins by variant name (default:
    `exporter/weight_pins.json`)."""
    problems = [] if TAG.match(tag) else [f"tag {tag!r} is not of the form vX.Y.Z"]
    problems += packages.problems(tag, github.repo)
    for lock in locks.LOCKS.values():
        problems += locks.check(lock.path)
    api = HfApi(endpoint=hub_endpoint, token=hub_token)
    problems += _pins(api, folders, hub_weights.pins() if pins is None else pins)
    found, release = _github(github, tag)
    problems += found
    resumable = release if release is not None and release["draft"] else None
    if not (org or "").strip():
        problems.append(f"the Hub organisation of the variants' repos is empty: {HF_ORG_HELP}")
    else:
        problems += _hub(api, org, folders, tag, _sums(github, resumable))
    for problem in problems:
        log(f"preflight: {problem}")
    if problems:
        raise ClipOnnxError(f"preflight found {len(problems)} problem(s), listed above; nothing was exported")
    log(f"preflight: {tag} can be released: {'a resumable draft' if resumable else 'new'}; both tokens may write "
        f"to GitHub {github.repo} and the {len(folders)} Hub repos of {org}; every variant's pinned weights are on "
        f"the Hub")
