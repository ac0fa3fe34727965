"""The comparison itself can fail, on each of its criteria, in any row of a batch; and the tolerance
table is what it is on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES, Tolerance
from exporter.verify import Report, compare, max_pairwise_cosine, output_scale, row_cosine

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


# Three rows of different sizes against the identity partner (each row's zero-shot decision is its
# argmax). Row 2 is small next to the scale (the largest |value|, 6.0) and a near-tie in its argmax,
# so it can miss one criterion while meeting the other two.
BATCH = np.array([[6.0, 1.0, 0.5], [0.5, 4.0, 1.0], [0.01, 0.0, 0.009999]], dtype=np.float64)


def run_batch(actual: np.ndarray):
    return compare("visual", "unit", [actual.astype(np.float32)], [BATCH.astype(np.float32)], TOLERANCES["fp32"],
                   PARTNER, float(np.abs(BATCH).max()))


def only_row_2(row: list[float]) -> np.ndarray:
    actual = BATCH.copy()
    actual[2] = row
    return actual


def test_a_batch_equal_to_the_reference_passes_every_criterion():
    result = run_batch(BATCH)
    assert result.passed and result.argmax_agrees and result.min_cosine == pytest.approx(1.0)


def test_every_row_of_a_batch_is_judged_not_only_the_first():
    """Row 2 off by 100x the relative tolerance; rows 0 and 1 exact."""
    result = run_batch(only_row_2([0.01, 0.0, 0.009999 + 6.0 * 1e-2]))
    assert not result.passed
    assert result.max_relative_diff > TOLERANCES["fp32"].max_relative


def test_a_row_off_only_in_direction_fails_on_the_cosine():
    """Row 2 turned by about 2.8 degrees: every element within the relative tolerance, its zero-shot
    decision unchanged, only the cosine is wrong."""
    result = run_batch(only_row_2([0.01, 0.0005, 0.009999]))
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative and result.argmax_agrees
    assert result.min_cosine < TOLERANCES["fp32"].min_cosine
    assert not result.passed


def test_a_row_whose_zero_shot_decision_flips_fails_on_agreement():
    """Row 2's near-tie swapped: cosine and relative difference within tolerance, decision flipped."""
    result = run_batch(only_row_2([0.009999, 0.0, 0.01]))
    assert result.min_cosine >= TOLERANCES["fp32"].min_cosine
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative
    assert not result.argmax_agrees and result.argmax_agreement == pytest.approx(2 / 3)
    assert not result.passed


def test_the_tolerance_table_changes_only_on_purpose():
    """Loosening a tolerance must be a deliberate edit of this test too: the table is what "verified" means."""
    assert TOLERANCES == {
        "fp32": Tolerance(min_cosine=0.99999, max_relative=1e-4, min_agreement=1.0),
        "fp16": Tolerance(min_cosine=0.999, max_relative=3e-2, min_agreement=1.0),
        "int8": Tolerance(min_cosine=0.995, max_relative=1e-1, min_agreement=0.75),
    }
    assert MAX_INPUT_COSINE == 0.999


def test_a_difference_exactly_at_the_tolerance_passes():
    """The tolerances are inclusive bounds: cosine 0.0 against a limit of 0.0, relative difference 0.5
    against a limit of 0.5."""
    expected = np.array([[4.0, 0.0], [0.0, 4.0]], dtype=np.float32)
    actual = np.array([[4.0, 2.0], [-2.0, 4.0]], dtype=np.float32)  # each row off by 2.0 = 0.5 * scale
    at_the_limit = Tolerance(min_cosine=float(row_cosine(actual, expected)), max_relative=0.5, min_agreement=1.0)
    assert compare("visual", "unit", [actual], [expected], at_the_limit, np.eye(2, dtype=np.float32), 4.0).passed
    orthogonal = np.array([[0.0, 4.0], [4.0, 0.0]], dtype=np.float32)
    zero_cosine = Tolerance(min_cosine=0.0, max_relative=10.0, min_agreement=0.0)
    assert row_cosine(orthogonal, expected) == 0.0
    assert compare("visual", "unit", [orthogonal], [expected], zero_cosine, np.eye(2, dtype=np.float32), 4.0).passed


def test_a_comparison_records_its_graph_and_input_set():
    result = compare("transformer", "token-layouts", [REF], [REF], TOLERANCES["fp32"], PARTNER, 3.0)
    assert (result.graph, result.input_set) == ("transformer", "token-layouts")


def test_a_logit_row_whose_decision_flips_fails_in_any_row():
    """Forward logits: the decision is each row's own argmax. Row 2 swaps a near-tie; the overall
    largest logit (row 0) does not move."""
    logits = np.array([[20.0, 1.0, 0.0], [0.0, 15.0, 1.0], [5.0, 0.0, 4.999]], dtype=np.float32)
    flipped = logits.copy()
    flipped[2] = [4.999, 0.0, 5.0]
    result = compare("forward", "unit", [flipped, flipped.T], [logits, logits.T], TOLERANCES["fp32"], None, 100.0)
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative
    assert result.argmax_agreement == pytest.approx(2 / 3) and not result.passed


def test_embeddings_are_scaled_by_their_largest_magnitude_and_logits_by_their_bound():
    embeds = [np.array([[0.5, -3.0], [1.0, 2.0]], dtype=np.float32)]
    assert output_scale("visual", embeds, 100.0) == 3.0
    assert output_scale("forward", embeds, 100.0) == 100.0
    assert output_scale("visual", [np.zeros((2, 2), dtype=np.float32)], 100.0) == 1.0


def test_the_closest_pair_of_distinct_inputs_is_measured():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    assert max_pairwise_cosine(embeddings) == pytest.approx(np.sqrt(0.5))
    assert max_pairwise_cosine(np.array([[1.0, 0.0], [5.0, 0.0]])) == pytest.approx(1.0)


def alike_report(actual_rows: np.ndarray, expected_rows: np.ndarray, strict: bool) -> Report:
    """A visual comparison on photos whose reference embeddings are nearly identical (a collapsed model)."""
    scale = float(np.abs(expected_rows).max())
    comparison = compare("visual", "photos", [actual_rows], [expected_rows], TOLERANCES["fp32"], PARTNER, scale)
    alike = max_pairwise_cosine(expected_rows)
    assert alike >= MAX_INPUT_COSINE
    return Report("fp32", TOLERANCES["fp32"], {"photos": alike}, [comparison], strict)


COLLAPSED = np.array([[10.0, 5.0, 3.0]] * 3) + np.array([[0.02, 0.0, -0.01], [-0.01, 0.03, 0.0], [0.0, -0.02, 0.02]])


def test_alike_inputs_fail_a_strict_run_naming_the_distinct_input_criterion():
    report = alike_report(COLLAPSED, COLLAPSED, strict=True)
    assert report.status == "failed" and "distinct-input criterion failed" in report.problem()
    assert "disagrees" not in report.problem()


def test_alike_inputs_are_judged_on_their_input_dependent_part_for_a_checkpoint():
    assert alike_report(COLLAPSED, COLLAPSED, strict=False).status == "passed"
    wrong = COLLAPSED.copy()
    wrong[1] += [0.0, -5e-4, 0.0]  # within the relative tolerance; the row cosine stays 1.0 to 8 places
    report = alike_report(wrong, COLLAPSED, strict=False)
    assert report.comparisons[0].passed, "the absolute criteria cannot see this error"
    assert report.status == "failed" and "input-dependent part of visual on photos" in report.problem()


def test_an_input_dependent_part_below_the_tolerance_is_inconclusive_never_passed():
    constant = np.array([[10.0, 5.0, 3.0]] * 3) + np.array([[1e-6, 0.0, 0.0], [0.0, 1e-6, 0.0], [0.0, 0.0, 0.0]])
    report = alike_report(constant, constant, strict=False)
    assert report.status == "inconclusive" and not report.passed
    assert report.problem().startswith("inconclusive: ") and "disagrees" not in report.problem()
    assert report.to_json()["passed"] is False and report.to_json()["status"] == "inconclusive"


def test_a_failure_names_each_criterion_it_misses():
    result = compare("visual", "unit", [REF * 1.01], [REF], TOLERANCES["fp32"], PARTNER, float(np.abs(REF).max()))
    report = Report("fp32", TOLERANCES["fp32"], {"photos": 0.5}, [result])
    assert report.problem() == (f"onnxruntime disagrees with PyTorch beyond the fp32 tolerance: visual on unit: "
                                f"max relative difference {result.max_relative_diff:.2e} > 0.0001")
