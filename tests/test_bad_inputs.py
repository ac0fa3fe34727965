"""The shared table of bad inputs (tests/conformance.py `bad_inputs`) through the Python runtime: each case
raises `ClipOnnxError` of the case's kind, in one line naming the input at fault, and leaves the folder
as it was; the command-line cases exit with their code and one line on stderr. The Rust crate
(rust/tests/bad_inputs.rs) and the Node consumer (examples/node/test/bad-inputs.test.mjs) run the same
table, so the same bad input gives the same kind of error in every language."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clip_onnx.errors import KINDS, ClipOnnxError
from clip_onnx.model import Model
from tests.conformance import COMMITTED, ERROR_KINDS, apply


def folder(case: dict, scratch: Path) -> Path:
    """The case's folder: the export with the case's changes made to a copy, or the path as it is."""
    if case["changes"]:
        return apply(COMMITTED / case["folder"], case["changes"], scratch, COMMITTED)
    return COMMITTED / case["folder"]


def run(case: dict, scratch: Path) -> None:
    """The case's call through the public API, after loading its folder with the SHA-256 check on."""
    model = Model(folder(case, scratch))
    if case["call"] == "encode_image":
        model.encode_image([COMMITTED / path for path in case["images"]])
    elif case["call"] == "encode_text":
        model.encode_text(case["texts"])


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def table() -> list[dict]:
    return json.loads((COMMITTED / "vectors.json").read_text())["bad_inputs"]


def test_the_table_names_the_kinds_the_runtime_raises(table):
    assert ERROR_KINDS == KINDS
    assert {case["kind"] for case in table} == set(KINDS) - {"invalid_input"}


def test_each_api_case_raises_its_kind_in_one_line_naming_the_input(table, tmp_path):
    cases = [case for case in table if case["call"] != "cli"]
    before = snapshot(COMMITTED)
    wrong = {}
    for n, case in enumerate(cases):
        with pytest.raises(ClipOnnxError) as caught:
            run(case, tmp_path / str(n))
        message = str(caught.value)
        if caught.value.kind != case["kind"] or case["names"] not in message or "\n" in message:
            wrong[case["name"]] = (caught.value.kind, message)
    assert not wrong
    assert snapshot(COMMITTED) == before
    print(f"{len(cases)} API cases ran, 0 skipped")


def test_each_command_line_case_exits_with_its_code_and_one_line(table, tmp_path):
    cases = [case for case in table if case["call"] == "cli"]
    wrong = {}
    for n, case in enumerate(cases):
        result = subprocess.run([sys.executable, "-m", "clip_onnx", "classify", *case["images"], "-m",
                                 str(folder(case, tmp_path / str(n))), "--labels", case["labels"], "--top", case["top"]],
                                capture_output=True, text=True, cwd=COMMITTED)
        # the note that the vectors' random weights score nothing is not part of the error
        lines = [line for line in result.stderr.splitlines() if not line.startswith("clip-onnx: note:")]
        # one line; argparse's usage block may precede a usage error's line, as in every argparse program
        one_line = len(lines) == 1 or (case["exit"] == 2 and lines[0].startswith("usage:"))
        if result.returncode != case["exit"] or not one_line or case["names"] not in lines[-1] or result.stdout:
            wrong[case["name"]] = (result.returncode, result.stderr)
    assert not wrong
    print(f"{len(cases)} command-line cases ran, 0 skipped")
