"""The release's locked toolchain: one hashed requirements file per job, so a rebuild months later
installs the same bytes, and `pip install --require-hashes` refuses anything else.

`python -m release lock` writes every lock with `uv pip compile --generate-hashes` for the runners'
Python and platform. The export lock takes torch's CPU wheels from PyTorch's own index, which only
GitHub's runners reach: the `lock` workflow runs the command there and uploads the files for a
maintainer to commit. `check` is what the tests and the preflight job hold every lock to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from clip_onnx.errors import ClipOnnxError

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "release" / "locks"
PYTHON, PLATFORM = "3.11", "x86_64-manylinux_2_28"  # ubuntu-latest's setup-python 3.11
TORCH_CPU = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Lock:
    name: str
    sources: tuple[str, ...]  # what `uv pip compile` reads, relative to the repository root
    options: tuple[str, ...] = ()
    where: str = "here"  # or "github": only a GitHub runner reaches its index

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.name}.txt"


LOCKS = {lock.name: lock for lock in [
    Lock("publish", ("release/locks/publish.in",)),
    Lock("build", ("release/locks/build.in",)),
    Lock("lock", ("release/locks/lock.in",)),
    # every export job's install: the project's test extra (export + pytest) with CPU torch
    Lock("export", ("pyproject.toml",), ("--extra", "test", "--index-url", TORCH_CPU, "--extra-index-url",
                                         "https://pypi.org/simple", "--index-strategy", "unsafe-best-match",
                                         "--emit-index-url"), where="github"),
]}

REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}")
INDEX = re.compile(r"^--(extra-)?index-url https://\S+$")  # where pip finds CPU torch


def check(path: Path) -> list[str]:
    """What makes `path` unfit for `pip install --require-hashes`: unpinned or unhashed requirements, or
    none at all. Empty when it is fit."""
    if not path.is_file():
        where = LOCKS[path.stem].where if path.stem in LOCKS else "here"
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        return [f"{shown} is missing: run `python -m release lock --only {path.stem}`"
                + (" in the `lock` workflow on GitHub and commit the file it uploads" if where == "github" else "")]
    problems, entries = [], []  # entries: [name, number of hashes]
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.split("#")[0].strip():
            continue  # blank, or a comment such as uv's "# via ..."
        if line[0].isspace():
            if HASH.match(line) and entries:
                entries[-1][1] += 1
            else:
                problems.append(f"{path.name}:{number}: {line.strip()!r} is not a sha256 hash of a requirement")
        elif INDEX.match(line):
            continue
        elif match := REQUIREMENT.match(line):
            entries.append([match["name"], 0])
        else:
            problems.append(f"{path.name}:{number}: {line.strip()!r} is not pinned with ==")
    problems += [f"{path.name}: {name} has no hash" for name, hashes in entries if not hashes]
    if not entries and not problems:
        problems.append(f"{path.name} pins nothing")
    return problems


def write(names: list[str]) -> list[Path]:
    """Run `uv pip compile` for each named lock; return the files written."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists() and not shutil.which("uv"):
        raise ClipOnnxError("`uv` is not installed: pip install uv")
    written = []
    for name in names:
        lock = LOCKS[name]
        command = [uv, "pip", "compile", *lock.sources, *lock.options, "--generate-hashes", "--no-header",
                   "--python-version", PYTHON, "--python-platform", PLATFORM, "-o", str(lock.path)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise ClipOnnxError(f"locking {name} failed: {' '.join(result.stderr.split())[-500:]}")
        problems = check(lock.path)
        if problems:
            raise ClipOnnxError(f"the {name} lock uv wrote is unfit: {problems[0]}")
        written.append(lock.path)
    return written
