"""The release's locked toolchain: every committed lock pinned and hashed, and the check that says so able
to fail. That every workflow install goes through a lock: tests/test_workflows.py."""

from __future__ import annotations

import pytest

from release import locks

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
