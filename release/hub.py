"""One variant's Hugging Face Hub repo: a tag's commit made off `main`, then `main` moved to it later.

`publish` makes the tag's commit on a staging branch (`clip-onnx-<tag>`, started from `main`), checks
the Hub's own record of every file (LFS SHA-256, or git blob id for small files) against the staged
hashes, tags it and deletes the branch: `main` is untouched, so what a visitor gets by default never
holds a version whose GitHub release is not public yet. Safe to re-run: a tag that already holds
exactly these files is left alone, one that holds anything else is refused, naming the files that
differ (a published tag never moves). Files the branch already holds are not sent again, files it
holds that the release does not have are deleted in the same commit. The commit is created only after
every large file is uploaded (through Xet where `hf_xet` is installed, as on huggingface.co, else
git-LFS), so a failed upload leaves no commit and can simply be retried.

`advance_main` later makes `main` hold a published tag's files (the Hub has no way to move a branch to
a commit): one new commit of server-side copies from the tag, with the card that pins every tag, made
only if `main` has not moved since it was read (`parent_commit`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, OIDCError
from huggingface_hub.hf_api import RepoFile

from clip_onnx.errors import ClipOnnxError
from clip_onnx.integrity import sha256_file
from release import hub_auth
from release.problems import first_problem

BRANCH = "main"
CARD = "README.md"
# the branch a tag's commit is made on; deleted once the tag holds it
STAGING = "clip-onnx-{tag}"


@dataclass(frozen=True)
class HubFile:
    path_in_repo: str
    local: Path
    sha256: str
    size: int


def git_blob_id(path: Path) -> str:
    """The id git (and the Hub, for files not stored in LFS) gives a file's content."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def hub_files(root: Path, known: dict[str, str]) -> list[HubFile]:
    """Every file under `root`, hashed once: `known` (path in repo -> SHA-256) has most hashes already."""
    root = Path(root)
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        files.append(HubFile(name, path, known.get(name) or sha256_file(path), path.stat().st_size))
    return files


def differences(api: HfApi, repo_id: str, revision: str, files: list[HubFile]) -> dict[str, str]:
    """Path -> what the Hub's record at `revision` gets wrong about it: missing, other size or hash."""
    infos = {info.path: info for info in api.get_paths_info(repo_id, [f.path_in_repo for f in files], revision=revision)}
    wrong = {}
    for f in files:
        info = infos.get(f.path_in_repo)
        if info is None:
            wrong[f.path_in_repo] = "is missing"
        elif info.size != f.size:
            wrong[f.path_in_repo] = f"has {info.size} bytes, not {f.size}"
        elif info.lfs is not None and info.lfs.sha256 != f.sha256:
            wrong[f.path_in_repo] = f"has SHA-256 {info.lfs.sha256}, not {f.sha256}"
        elif info.lfs is None and info.blob_id != git_blob_id(f.local):
            wrong[f.path_in_repo] = f"has other content (git blob {info.blob_id})"
    return wrong


def publish(root: Path, tag: str, repo_id: str, *, known: dict[str, str] | None = None, endpoint: str | None = None,
            token: str | None = None, log: Callable[[str], None] = print) -> str:
    """Publish the files under `root` (a staged `hub/<Name>` folder) to `repo_id` as `tag`; return the
    tagged commit. `known`: path in repo -> SHA-256, from the release manifest."""
    with _errors(repo_id, f"{tag} was not tagged"), hub_auth.writing_to(repo_id, token):
        return _publish(hub_files(root, known or {}), tag, repo_id, HfApi(endpoint=endpoint, token=token), log,
                        create=not hub_auth.keyless(token))


def check_access(repos: list[str], *, endpoint: str | None = None, token: str | None = None,
                 log: Callable[[str], None] = print) -> None:
    """Before anything is uploaded: say how this process writes to the Hub and, keyless, refuse when a repo
    does not exist yet (an exchanged token cannot create one)."""
    if not (hub_auth.has_token(token) or hub_auth.keyless(token)):
        raise ClipOnnxError(f"no Hub credentials: set {hub_auth.TOKEN}, or run in a GitHub Actions job with "
                            f"`id-token: write` (docs/releasing.md, 'Hub credentials'); nothing was published")
    log(f"hub: writing as {hub_auth.described(token)}")
    if hub_auth.keyless(token):
        api = HfApi(endpoint=endpoint, token=token)
        with _errors(", ".join(repos), "nothing was published"):
            missing = [repo for repo in repos if not api.repo_exists(repo)]
        if missing:
            raise ClipOnnxError(f"{hub_auth.cannot_create(missing)}; nothing was published")


def probe_write(repo_id: str, branch: str, *, endpoint: str | None = None, token: str | None = None) -> None:
    """Prove that this process may write to `repo_id` (keyless: with the token exchanged for it) by making
    `branch` and deleting it: no commit, nothing a visitor sees."""
    api = HfApi(endpoint=endpoint, token=token)
    with _errors(repo_id, "nothing was changed"), hub_auth.writing_to(repo_id, token):
        api.create_branch(repo_id, branch=branch, exist_ok=True)
        api.delete_branch(repo_id, branch=branch)


def tag_commits(repo_id: str, *, endpoint: str | None = None, token: str | None = None) -> dict[str, str]:
    """Tag -> the commit it points at."""
    with _errors(repo_id, "nothing was changed"):
        return {ref.name: ref.target_commit for ref in HfApi(endpoint=endpoint, token=token).list_repo_refs(repo_id).tags}


# How the Hub refuses a commit whose `parent_commit` is no longer the branch's head: huggingface_hub
# documents the refusal, not its status; `check_stale_parent` (run by the canary) asserts this one.
STALE_PARENT = 412


class MainMoved(ClipOnnxError):
    """`main` got a commit between reading it and committing on it; read it again and retry."""


def tree(api: HfApi, repo_id: str, revision: str) -> dict[str, str]:
    """Path -> git blob id of every file at `revision` (the blob id of an LFS file names its pointer,
    so it changes with the content), except `.gitattributes`, which every repo has."""
    return {entry.path: entry.blob_id for entry in api.list_repo_tree(repo_id, revision=revision, recursive=True)
            if isinstance(entry, RepoFile) and entry.path != ".gitattributes"}


def main_holds(repo_id: str, tag: str, *, endpoint: str | None = None, token: str | None = None) -> bool:
    """Whether `main` holds exactly `tag`'s files (its card aside, which pins every tag)."""
    api = HfApi(endpoint=endpoint, token=token)
    with _errors(repo_id, "nothing was changed"):
        main, tagged = tree(api, repo_id, BRANCH), tree(api, repo_id, tag)
    return {p: b for p, b in main.items() if p != CARD} == {p: b for p, b in tagged.items() if p != CARD}


def manifests_at(repo_id: str, revision: str, into: Path, *, endpoint: str | None = None,
                 token: str | None = None) -> Path:
    """Every `<precision>/manifest.json` of `revision` under `into` (what a card is rendered from)."""
    api = HfApi(endpoint=endpoint, token=token)
    with _errors(repo_id, "nothing was changed"):
        for path in tree(api, repo_id, revision):
            if path.endswith("/manifest.json"):
                hf_hub_download(repo_id, path, revision=revision, local_dir=into, endpoint=endpoint, token=token)
    return Path(into)


def advance_main(repo_id: str, tag: str, card: str, *, endpoint: str | None = None, token: str | None = None,
                 log: Callable[[str], None] = print) -> bool:
    """Make `main` hold `tag`'s files and `card` as its README.md, in one commit of server-side copies
    (nothing is uploaded again) that the Hub refuses if `main` moved since it was read (`MainMoved`).
    Return whether a commit was made."""
    api, content = HfApi(endpoint=endpoint, token=token), card.encode()
    with _errors(repo_id, f"{BRANCH} was not moved"), hub_auth.writing_to(repo_id, token):
        refs = api.list_repo_refs(repo_id)
        head = next(ref.target_commit for ref in refs.branches if ref.name == BRANCH)
        source = next(ref.target_commit for ref in refs.tags if ref.name == tag)
        have, want = tree(api, repo_id, head), tree(api, repo_id, source)
        operations: list = [CommitOperationCopy(src_path_in_repo=p, path_in_repo=p, src_revision=source)
                            for p, blob in want.items() if p != CARD and have.get(p) != blob]
        operations += [CommitOperationDelete(path_in_repo=p) for p in have if p not in want and p != CARD]
        if have.get(CARD) != _blob_id(content):
            operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=content))
        if not operations:
            log(f"hub: {repo_id}@{BRANCH} already holds {tag}")
            return False
        try:
            api.create_commit(repo_id, operations, commit_message=f"clip-onnx: {BRANCH} holds {tag}",
                              revision=BRANCH, parent_commit=head)
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == STALE_PARENT:
                raise MainMoved(f"{repo_id}@{BRANCH} moved while it was being brought to {tag}") from None
            raise
    log(f"hub: {repo_id}@{BRANCH} holds {tag} ({len(operations)} of its files copied, deleted or rewritten)")
    return True


def check_stale_parent(repo_id: str, *, endpoint: str | None = None, token: str | None = None,
                       log: Callable[[str], None] = print) -> None:
    """Make two commits on `repo_id`'s main from the same parent (a scratch repo: the canary's) and check
    that the Hub refuses the second with `STALE_PARENT`, as `advance_main` expects."""
    api = HfApi(endpoint=endpoint, token=token)
    head = next(ref.target_commit for ref in api.list_repo_refs(repo_id).branches if ref.name == BRANCH)
    with hub_auth.writing_to(repo_id, token):
        for attempt in ("first", "second"):
            try:
                api.create_commit(repo_id, [CommitOperationAdd(path_in_repo="canary.txt",
                                                               path_or_fileobj=f"{attempt} {head}".encode())],
                                  commit_message=f"clip-onnx canary: {attempt} commit on {head[:12]}",
                                  revision=BRANCH, parent_commit=head)
            except HfHubHTTPError as error:
                status = error.response.status_code if error.response is not None else None
                if attempt == "second" and status == STALE_PARENT:
                    log(f"hub: {repo_id} refuses a stale parent_commit with {status}, as advance_main expects")
                    return
                raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: the {attempt} commit on {head} was answered "
                                    f"{status} ({_line(error)}); advance_main expects only the second refused, with "
                                    f"{STALE_PARENT}: change release/hub.py's STALE_PARENT") from None
    raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: a commit with a stale parent_commit was accepted; "
                        f"advance_main could overwrite a main that moved")


@contextmanager
def _errors(repo_id: str, state: str) -> Iterator[None]:
    """The client's and hf_xet's failures as one line that names the repo and says what to do."""
    try:
        yield
    except HfHubHTTPError as error:
        if error.response is not None and urlsplit(str(error.response.request.url)).path.endswith(hub_auth.EXCHANGE):
            raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: no keyless token ({_line(error)}); {state}. To fix it, "
                                f"{hub_auth.SETUP}") from None
        raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: {_line(error)}; {state}, re-run to retry") from None
    except OIDCError as error:  # HF_OIDC_RESOURCE set where GitHub offers no OIDC token
        raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: {_line(error)}; {state}") from None
    except ValueError as error:
        if not isinstance(error.__cause__, HfHubHTTPError):
            raise
        # create_commit sends a README.md to the Hub's validate-yaml first and raises its refusal as a ValueError
        raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: the model card's metadata is refused ({_line(error)}); "
                            f"{state}. Fix release/cards.py") from None
    except RuntimeError as error:  # how huggingface_hub reports a failed LFS upload
        raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: {_line(error)} ({_line(error.__cause__)}); nothing was "
                            f"committed or tagged, re-run to retry") from None
    except OSError as error:  # hf_xet's errors (XetAuthenticationError, network errors) are all OSErrors
        raise ClipOnnxError(f"Hugging Face Hub: uploading to {repo_id} failed ({type(error).__name__}: "
                            f"{_line(error)}); nothing was committed or tagged. Check that HF_TOKEN may write to "
                            f"{repo_id}, then re-run") from None


def _line(error: BaseException | None) -> str:
    """An error's message on one line: the Hub's and hf_xet's messages span several."""
    return " ".join(str(error).split())


def _publish(files: list[HubFile], tag: str, repo_id: str, api: HfApi, log: Callable[[str], None],
             create: bool = True) -> str:
    if create:
        api.create_repo(repo_id, exist_ok=True)
    elif not api.repo_exists(repo_id):
        raise ClipOnnxError(f"{hub_auth.cannot_create([repo_id])}; nothing was committed or tagged")
    refs = api.list_repo_refs(repo_id)
    tags = {ref.name: ref.target_commit for ref in refs.tags}
    wanted = {f.path_in_repo for f in files}
    if tag in tags:
        wrong = differences(api, repo_id, tag, files)
        wrong |= {p: "is not part of this release" for p in api.list_repo_files(repo_id, revision=tags[tag])
                  if p not in wanted and p != ".gitattributes"}
        if wrong:
            raise ClipOnnxError(f"{repo_id} already has tag {tag} with other files: "
                                f"{'; '.join(f'{path} {why}' for path, why in wrong.items())}; "
                                f"a published tag is never moved: release a new version")
        if STAGING.format(tag=tag) in {ref.name for ref in refs.branches}:  # a run stopped after tagging
            api.delete_branch(repo_id, branch=STAGING.format(tag=tag))
        log(f"hub: {repo_id}@{tag} already holds these {len(files)} files; nothing to do")
        return tags[tag]
    branches = {ref.name: ref.target_commit for ref in refs.branches}
    branch = STAGING.format(tag=tag)
    if branch not in branches:  # started from main, so that files main already holds are not sent again
        api.create_branch(repo_id, branch=branch, revision=branches[BRANCH])
        branches[branch] = branches[BRANCH]
    head = branches[branch]
    outdated = differences(api, repo_id, head, files)
    changed = [f for f in files if f.path_in_repo in outdated]
    stale = [p for p in api.list_repo_files(repo_id, revision=head) if p not in wanted and p != ".gitattributes"]
    if changed or stale:
        log(f"hub: committing {len(changed)} files ({sum(f.size for f in changed) / 1e9:.2f} GB), "
            f"deleting {len(stale)} to {repo_id}@{branch}")
        operations = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)) for f in changed]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        commit = api.create_commit(repo_id, operations, commit_message=f"clip-onnx {tag}", revision=branch,
                                   parent_commit=head)
        head = commit.oid
    else:
        log(f"hub: {repo_id}@{branch} already holds these files; tagging it")
    wrong = differences(api, repo_id, head, files)
    if wrong:
        raise ClipOnnxError(f"after the upload the Hub reports {first_problem(wrong)}; "
                            f"{tag} was not tagged, re-run to retry")
    api.create_tag(repo_id, tag=tag, revision=head, tag_message=f"clip-onnx {tag}")
    api.delete_branch(repo_id, branch=branch)
    log(f"hub: tagged {repo_id}@{tag} = {head}; {BRANCH} is unchanged")
    return head
