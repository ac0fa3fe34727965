"""The comparison itself can fail, on each of its criteria."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.tolerances import TOLERANCES
from exporter.verify import compare, row_cosine

REF = np.array([[1.0, 2.0, 3.0], [3.0, -1.0, 0.5]], dtype=np.float32)
PARTNER = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def run(actual: np.ndarray, precision: str = "fp32"):
    return compare("visual", "unit", [actual], [REF], TOLERANCES[precision], PARTNER, float(np.abs(REF).max()))


def test_identical_outputs_pass():
    result = run(REF.copy())
    assert result.passed and result.max_abs_diff == 0 and result.min_cosine == pytest.approx(1.0)


@pytest.mark.parametrize("actual,why", [
    (REF * 1.001, "scaled by 0.1%: cosine 1.0 but beyond the relative tolerance"),
    (REF + np.array([[0.0, 0.0, 0.05], [0.0, 0.0, 0.0]], dtype=np.float32), "one element off"),
    (np.zeros_like(REF), "all zeros"),
    (REF[::-1].copy(), "rows swapped"),
], ids=["scaled", "one-element", "zeros", "swapped"])
def test_wrong_outputs_fail(actual, why):
    assert not run(actual).passed, why


def test_fp16_tolerance_is_looser_but_finite():
    assert run(REF * 1.001, "fp16").passed
    assert not run(REF * 1.1, "fp16").passed


def test_zero_rows_only_match_zero_rows():
    assert row_cosine(np.zeros((1, 3)), np.ones((1, 3))) == 0.0
    assert row_cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0


def test_logits_are_held_to_their_bound_not_a_row_cosine():
    """Near-zero logits (near-orthogonal embeddings) have a poor row cosine under errors far inside
    the bound; errors of a tenth of the bound fail."""
    logits = np.array([[0.3, -0.2, 0.1], [0.05, 0.2, -0.1]], dtype=np.float32)
    bound = 20.0
    drift = np.array([[0.02, 0.03, -0.02], [0.02, -0.01, 0.03]], dtype=np.float32)
    small = compare("forward", "unit", [logits + drift], [logits], TOLERANCES["fp16"], None, bound)
    assert small.min_cosine < TOLERANCES["fp16"].min_cosine and small.passed
    large = compare("forward", "unit", [logits + 2.0], [logits], TOLERANCES["fp16"], None, bound)
    assert not large.passed
