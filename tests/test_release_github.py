"""What the GitHub Release step uploads, given what GitHub already holds: re-runs repeat nothing,
repair a draft, and never alter a published release."""

from __future__ import annotations

import hashlib

import pytest

from clip_onnx.errors import ClipOnnxError
from release.github import checksums, mismatches, plan

WANTED = {"a.onnx": "aa" * 32, "b.onnx": "bb" * 32, "SHA256SUMS": "cc" * 32}


def asset(name: str, digest: str | None = None, state: str = "uploaded") -> dict:
    return {"name": name, "state": state, "digest": f"sha256:{digest or WANTED[name]}"}


def test_new_release_uploads_everything():
    assert plan([], WANTED, draft=True) == (list(WANTED), [])


def test_complete_release_needs_nothing_whether_draft_or_published():
    complete = [asset(n) for n in WANTED]
    assert mismatches(complete, WANTED) == {}
    assert plan(complete, WANTED, draft=True) == ([], [])
    assert plan(complete, WANTED, draft=False) == ([], [])


def test_interrupted_draft_gets_the_rest_and_its_broken_asset_replaced():
    existing = [asset("a.onnx"), asset("b.onnx", state="starter")]
    assert plan(existing, WANTED, draft=True) == (["SHA256SUMS"], ["b.onnx"])


def test_draft_with_other_bytes_is_replaced():
    assert plan([asset("a.onnx", "ff" * 32)], WANTED, draft=True) == (["b.onnx", "SHA256SUMS"], ["a.onnx"])


@pytest.mark.parametrize("existing,reason", [
    ([asset("a.onnx"), asset("b.onnx")], "missing"),
    ([asset("a.onnx", "ff" * 32), asset("b.onnx"), asset("SHA256SUMS")], "digest"),
    ([asset(n) for n in WANTED] + [{"name": "old.onnx", "state": "uploaded", "digest": None}], "not part"),
], ids=["missing", "other-bytes", "extra"])
def test_published_release_that_differs_is_refused(existing, reason):
    with pytest.raises(ClipOnnxError, match="never altered") as error:
        plan(existing, WANTED, draft=False)
    assert reason in str(error.value)


def test_draft_with_foreign_assets_is_left_to_a_person():
    foreign = [{"name": n, "state": "uploaded", "digest": None} for n in ("old.onnx", "older.onnx")]
    with pytest.raises(ClipOnnxError, match="assets this release does not: old.onnx, older.onnx; delete them"):
        plan(foreign, WANTED, draft=True)


def test_mismatches_say_what_is_wrong_with_each_asset():
    existing = [asset("a.onnx", state="starter"), asset("b.onnx", "ff" * 32)]
    assert mismatches(existing, WANTED) == {
        "a.onnx": "was not fully uploaded",
        "b.onnx": f"has digest sha256:{'ff' * 32}, not sha256:{'bb' * 32}",
        "SHA256SUMS": "is missing",
    }


def test_checksums_are_read_from_sha256sums_plus_its_own(tmp_path):
    (tmp_path / "github").mkdir()
    sums = tmp_path / "github" / "SHA256SUMS"
    sums.write_text(f"{'aa' * 32}  a.onnx\n{'bb' * 32}  b c.onnx\n")
    assert checksums(tmp_path) == {"a.onnx": "aa" * 32, "b c.onnx": "bb" * 32,
                                   "SHA256SUMS": hashlib.sha256(sums.read_bytes()).hexdigest()}
