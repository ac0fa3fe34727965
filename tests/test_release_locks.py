"""The release's locked toolchain: every committed lock pinned and hashed, the check that says so able to
fail, and every install in the release workflows going through a lock with --require-hashes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from release import locks

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GOOD = "anyio==4.16.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via httpx2\n"


@pytest.mark.parametrize("name", [n for n, lock in locks.LOCKS.items() if lock.where == "here"])
def test_the_locks_made_here_are_committed_pinned_and_hashed(name):
    assert locks.check(locks.LOCKS[name].path) == []


def test_the_lock_that_only_github_can_make_says_how_when_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "FOLDER", tmp_path)
    (problem,) = locks.check(locks.LOCKS["export"].path)
    assert problem.endswith("export.txt is missing: run `python -m release lock --only export` in the `lock` "
                            "workflow on GitHub and commit the file it uploads")


@pytest.mark.parametrize("text,problem", [
    (GOOD, None),
    ("--index-url https://download.pytorch.org/whl/cpu\n" + GOOD, None),
    ("anyio>=4\n    --hash=sha256:" + "a" * 64 + "\n", "'anyio>=4' is not pinned with =="),
    ("anyio==4.16.0\n", "anyio has no hash"),
    ("anyio==4.16.0 \\\n    --hash=md5:abc\n", "'--hash=md5:abc' is not a sha256 hash of a requirement"),
    ("# nothing\n", "pins nothing"),
], ids=["good", "index-url", "unpinned", "unhashed", "not-sha256", "empty"])
def test_the_check_finds_what_pip_would_refuse(tmp_path, text, problem):
    path = tmp_path / "x.txt"
    path.write_text(text)
    found = locks.check(path)
    assert (found == []) if problem is None else any(f.endswith(problem) for f in found), found


def _installs(workflow: Path) -> list[str]:
    steps = [s for job in yaml.safe_load(workflow.read_text())["jobs"].values() for s in job.get("steps", [])]
    return [line.strip() for s in steps for line in str(s.get("run", "")).splitlines() if "pip install" in line]


@pytest.mark.parametrize("workflow", [w for w in WORKFLOWS if w.name != "ci.yml"], ids=lambda p: p.name)
def test_every_release_install_is_locked_and_hash_checked(workflow):
    """ci.yml runs the README's test command, which installs as a user would; the release's jobs install
    only from a lock, and the project itself without its dependencies."""
    installs = _installs(workflow)
    assert installs, workflow.name
    for line in installs:
        lock = re.fullmatch(r"python -m pip install --require-hashes -r release/locks/(\w+)\.txt", line)
        assert lock or re.fullmatch(r"python -m pip install --no-deps (-e )?\.", line) or line.startswith(
            "python -m pip install --require-hashes --no-deps"), line
        assert lock is None or lock[1] in locks.LOCKS, line
