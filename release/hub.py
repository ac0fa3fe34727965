"""Publish one variant's staged folder to its own Hugging Face Hub repo: one commit, then a tag.

Safe to re-run. A tag that already holds exactly these files is left alone, one that holds anything
else is refused, naming the files that differ (a published tag never moves). Files already on `main`
with the same content are not sent again, files on `main` that the release does not have are deleted
in the same commit, so the tag holds exactly the release. The commit is created only after every
large file is uploaded (through Xet where `hf_xet` is installed, as on huggingface.co, else git-LFS),
so a failed upload leaves no commit and can simply be retried. Before tagging, the Hub's own record
of every file (LFS SHA-256, or git blob id for small files) is compared with the staged hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from clip_onnx.errors import ClipOnnxError
from release.problems import first_problem
from clip_onnx.integrity import sha256_file

BRANCH = "main"


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
    with _errors(repo_id, f"{tag} was not tagged"):
        return _publish(hub_files(root, known or {}), tag, repo_id, HfApi(endpoint=endpoint, token=token), log)


def tag_commits(repo_id: str, *, endpoint: str | None = None, token: str | None = None) -> dict[str, str]:
    """Tag -> the commit it points at."""
    with _errors(repo_id, "nothing was changed"):
        return {ref.name: ref.target_commit for ref in HfApi(endpoint=endpoint, token=token).list_repo_refs(repo_id).tags}


def pin_card(repo_id: str, card: str, *, endpoint: str | None = None, token: str | None = None,
             log: Callable[[str], None] = print) -> None:
    """Make `card` the README.md on `main` (the card visitors see, which lists each tag's commit) unless it
    already is; tags keep the card they were published with."""
    api, content = HfApi(endpoint=endpoint, token=token), card.encode()
    with _errors(repo_id, "the tags are in place; re-run to pin them on the card"):
        head = next(ref.target_commit for ref in api.list_repo_refs(repo_id).branches if ref.name == BRANCH)
        infos = api.get_paths_info(repo_id, ["README.md"], revision=head)
        if infos and infos[0].blob_id == _blob_id(content):
            log(f"hub: {repo_id}@{BRANCH}'s card already pins every tag")
            return
        api.create_commit(repo_id, [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=content)],
                          commit_message="clip-onnx: the card pins each tag's commit", revision=BRANCH,
                          parent_commit=head)
        log(f"hub: {repo_id}@{BRANCH}'s card pins each tag's commit")


@contextmanager
def _errors(repo_id: str, state: str) -> Iterator[None]:
    """The client's and hf_xet's failures as one line that names the repo and says what to do."""
    try:
        yield
    except HfHubHTTPError as error:
        raise ClipOnnxError(f"Hugging Face Hub, {repo_id}: {_line(error)}; {state}, re-run to retry") from None
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


def _publish(files: list[HubFile], tag: str, repo_id: str, api: HfApi, log: Callable[[str], None]) -> str:
    api.create_repo(repo_id, exist_ok=True)
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
        log(f"hub: {repo_id}@{tag} already holds these {len(files)} files; nothing to do")
        return tags[tag]
    head = next((ref.target_commit for ref in refs.branches if ref.name == BRANCH), None)
    if head is None:
        changed, stale = files, []
    else:
        outdated = differences(api, repo_id, head, files)
        changed = [f for f in files if f.path_in_repo in outdated]
        stale = [p for p in api.list_repo_files(repo_id, revision=head) if p not in wanted and p != ".gitattributes"]
    if changed or stale:
        log(f"hub: committing {len(changed)} files ({sum(f.size for f in changed) / 1e9:.2f} GB), "
            f"deleting {len(stale)} to {repo_id}")
        operations = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)) for f in changed]
        operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
        commit = api.create_commit(repo_id, operations, commit_message=f"clip-onnx {tag}", revision=BRANCH,
                                   parent_commit=head)
        head = commit.oid
    else:
        log(f"hub: {repo_id}@{BRANCH} already holds these files; tagging it")
    wrong = differences(api, repo_id, head, files)
    if wrong:
        raise ClipOnnxError(f"after the upload the Hub reports {first_problem(wrong)}; "
                            f"{tag} was not tagged, re-run to retry")
    api.create_tag(repo_id, tag=tag, revision=head, tag_message=f"clip-onnx {tag}")
    log(f"hub: tagged {repo_id}@{tag} = {head}")
    return head
