"""The pass rule: a report's verdict (what the manifest records, what `verify`'s exit code and staging
read) fails on each criterion alone, in any row of a batch, on any one input set among passing ones;
and the tolerance table is what it is on purpose. Every test judges through `Report`, the one place
that decides."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.tolerances import MAX_INPUT_COSINE, TOLERANCES, Tolerance
from exporter.verify import Comparison, Report, compare, max_pairwise_cosine, output_scale, row_cosine

REF = np.array([[1.0, 2.0, 3.0], [3.0, -1.0, 0.5]], dtype=np.float32)
PARTNER = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
DISTINCT = {"photos": 0.5, "captions": 0.5}  # distinct inputs: the strict criteria alone decide


def judged(*comparisons: Comparison, precision: str = "fp32", tolerance: Tolerance | None = None) -> Report:
    return Report(precision, tolerance or TOLERANCES[precision], DISTINCT, list(comparisons))


def run(actual: np.ndarray, precision: str = "fp32", input_set: str = "unit") -> Report:
    return judged(compare("visual", input_set, [actual], [REF], PARTNER, float(np.abs(REF).max())), precision=precision)


def missed(report: Report) -> set[str]:
    """Every criterion any comparison of the report misses, once the verdict says "failed"."""
    assert report.status == "failed" and not report.passed
    return {criterion for c in report.comparisons for criterion in report.misses(c)}


def test_identical_outputs_pass():
    report = run(REF.copy())
    assert report.status == "passed" and report.passed
    assert report.comparisons[0].max_abs_diff == 0 and report.comparisons[0].min_cosine == pytest.approx(1.0)
    assert report.to_json()["comparisons"][0]["misses"] == [] and report.to_json()["status"] == "passed"


@pytest.mark.parametrize("actual,why", [
    (REF * 1.001, "scaled by 0.1%: cosine 1.0 but beyond the relative tolerance"),
    (REF + np.array([[0.0, 0.0, 0.05], [0.0, 0.0, 0.0]], dtype=np.float32), "one element off"),
    (np.zeros_like(REF), "all zeros"),
    (REF[::-1].copy(), "rows swapped"),
], ids=["scaled", "one-element", "zeros", "swapped"])
def test_wrong_outputs_fail(actual, why):
    assert missed(run(actual)), why


def test_fp16_tolerance_is_looser_but_finite():
    assert run(REF * 1.001, "fp16").status == "passed"
    assert missed(run(REF * 1.1, "fp16")) == {"relative"}


def test_zero_rows_only_match_zero_rows():
    assert row_cosine(np.zeros((1, 3)), np.ones((1, 3))) == 0.0
    assert row_cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0


def test_logits_are_held_to_their_bound_not_a_row_cosine():
    """Near-zero logits (near-orthogonal embeddings) have a poor row cosine under errors far inside
    the bound; errors of a tenth of the bound fail."""
    logits = np.array([[0.3, -0.2, 0.1], [0.05, 0.2, -0.1]], dtype=np.float32)
    bound = 20.0
    drift = np.array([[0.02, 0.03, -0.02], [0.02, -0.01, 0.03]], dtype=np.float32)
    small = compare("forward", "unit", [logits + drift], [logits], None, bound)
    assert small.min_cosine < TOLERANCES["fp16"].min_cosine and judged(small, precision="fp16").status == "passed"
    large = compare("forward", "unit", [logits + 2.0], [logits], None, bound)
    assert missed(judged(large, precision="fp16")) == {"relative"}


# Three rows of different sizes against the identity partner (each row's zero-shot decision is its
# argmax). Row 2 is small next to the scale (the largest |value|, 6.0) and a near-tie in its argmax,
# so it can miss one criterion while meeting the other two.
BATCH = np.array([[6.0, 1.0, 0.5], [0.5, 4.0, 1.0], [0.01, 0.0, 0.009999]], dtype=np.float64)


def run_batch(actual: np.ndarray, input_set: str = "unit") -> Comparison:
    return compare("visual", input_set, [actual.astype(np.float32)], [BATCH.astype(np.float32)], PARTNER,
                   float(np.abs(BATCH).max()))


def only_row_2(row: list[float]) -> np.ndarray:
    actual = BATCH.copy()
    actual[2] = row
    return actual


def test_a_batch_equal_to_the_reference_passes_every_criterion():
    result = run_batch(BATCH)
    assert judged(result).status == "passed" and result.argmax_agrees and result.min_cosine == pytest.approx(1.0)


def test_every_row_of_a_batch_is_judged_not_only_the_first():
    """Row 2 off by 100x the relative tolerance; rows 0 and 1 exact."""
    result = run_batch(only_row_2([0.01, 0.0, 0.009999 + 6.0 * 1e-2]))
    assert "relative" in missed(judged(result))
    assert result.max_relative_diff > TOLERANCES["fp32"].max_relative


def test_a_row_off_only_in_direction_fails_on_the_cosine():
    """Row 2 turned by about 2.8 degrees: every element within the relative tolerance, its zero-shot
    decision unchanged, only the cosine is wrong."""
    result = run_batch(only_row_2([0.01, 0.0005, 0.009999]))
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative and result.argmax_agrees
    assert result.min_cosine < TOLERANCES["fp32"].min_cosine
    report = judged(result)
    assert missed(report) == {"cosine"} and report.problem().endswith(f"cosine {result.min_cosine:.7f} < 0.99999")


def test_a_row_whose_zero_shot_decision_flips_fails_on_agreement():
    """Row 2's near-tie swapped: cosine and relative difference within tolerance, decision flipped."""
    result = run_batch(only_row_2([0.009999, 0.0, 0.01]))
    assert result.min_cosine >= TOLERANCES["fp32"].min_cosine
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative
    assert not result.argmax_agrees and result.argmax_agreement == pytest.approx(2 / 3)
    report = judged(result)
    assert missed(report) == {"agreement"} and report.problem().endswith("zero-shot agreement 67% < 100%")
    assert report.to_json()["comparisons"][0]["misses"] == ["agreement"]


@pytest.mark.parametrize("bad", [1, 2, 3])
def test_one_failing_input_set_among_passing_ones_fails_the_verdict(bad):
    """Four input sets, three exact: whichever one misses decides the verdict, and is the one named."""
    sets = ["single", "photos", "synthetic", "token-layouts"]
    comparisons = [run_batch(only_row_2([0.01, 0.0005, 0.009999]) if i == bad else BATCH, name)
                   for i, name in enumerate(sets)]
    report = judged(*comparisons)
    assert missed(report) == {"cosine"}
    assert f"visual on {sets[bad]}: cosine" in report.problem()
    assert [c["misses"] for c in report.to_json()["comparisons"]] == [["cosine"] if i == bad else [] for i in range(4)]


def test_a_logit_graph_is_not_held_to_a_row_cosine_but_an_embedding_graph_is():
    """The same measurements: cosine below the limit, everything else exact. Logits pass, embeddings fail."""
    measured = dict(input_set="unit", max_abs_diff=0.0, max_relative_diff=0.0, min_cosine=0.5, argmax_agrees=True,
                    argmax_agreement=1.0)
    assert judged(Comparison("forward", **measured)).status == "passed"
    assert missed(judged(Comparison("visual", **measured))) == {"cosine"}
    assert missed(judged(Comparison("transformer", **measured))) == {"cosine"}


@pytest.mark.parametrize("criterion,change", [
    ("cosine", dict(min_cosine=0.99998)), ("relative", dict(max_relative_diff=1.1e-4)),
    ("agreement", dict(argmax_agreement=0.99, argmax_agrees=False)),
])
def test_each_criterion_missed_alone_fails_the_verdict(criterion, change):
    """Measurements just past one fp32 limit, every other criterion met; and just at the limits, passed."""
    at_limits = dict(input_set="photos", max_abs_diff=1e-4, max_relative_diff=1e-4, min_cosine=0.99999,
                     argmax_agrees=True, argmax_agreement=1.0)
    assert judged(Comparison("visual", **at_limits)).status == "passed"
    report = judged(Comparison("visual", **{**at_limits, **change}))
    assert missed(report) == {criterion}


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
    assert judged(compare("visual", "unit", [actual], [expected], np.eye(2, dtype=np.float32), 4.0),
                  tolerance=at_the_limit).status == "passed"
    orthogonal = np.array([[0.0, 4.0], [4.0, 0.0]], dtype=np.float32)
    zero_cosine = Tolerance(min_cosine=0.0, max_relative=10.0, min_agreement=0.0)
    assert row_cosine(orthogonal, expected) == 0.0
    assert judged(compare("visual", "unit", [orthogonal], [expected], np.eye(2, dtype=np.float32), 4.0),
                  tolerance=zero_cosine).status == "passed"


def test_a_comparison_records_its_graph_and_input_set():
    result = compare("transformer", "token-layouts", [REF], [REF], PARTNER, 3.0)
    assert (result.graph, result.input_set) == ("transformer", "token-layouts")


def test_a_logit_row_whose_decision_flips_fails_in_any_row():
    """Forward logits: the decision is each row's own argmax. Row 2 swaps a near-tie; the overall
    largest logit (row 0) does not move."""
    logits = np.array([[20.0, 1.0, 0.0], [0.0, 15.0, 1.0], [5.0, 0.0, 4.999]], dtype=np.float32)
    flipped = logits.copy()
    flipped[2] = [4.999, 0.0, 5.0]
    result = compare("forward", "unit", [flipped, flipped.T], [logits, logits.T], None, 100.0)
    assert result.max_relative_diff <= TOLERANCES["fp32"].max_relative
    assert result.argmax_agreement == pytest.approx(2 / 3) and missed(judged(result)) == {"agreement"}


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
    comparison = compare("visual", "photos", [actual_rows], [expected_rows], PARTNER, scale)
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
    assert report.misses(report.comparisons[0]) == {}, "the absolute criteria cannot see this error"
    assert report.status == "failed" and "input-dependent part of visual on photos" in report.problem()


def test_an_input_dependent_part_below_the_tolerance_is_inconclusive_never_passed():
    constant = np.array([[10.0, 5.0, 3.0]] * 3) + np.array([[1e-6, 0.0, 0.0], [0.0, 1e-6, 0.0], [0.0, 0.0, 0.0]])
    report = alike_report(constant, constant, strict=False)
    assert report.status == "inconclusive" and not report.passed
    assert report.problem().startswith("inconclusive: ") and "disagrees" not in report.problem()
    assert report.to_json()["passed"] is False and report.to_json()["status"] == "inconclusive"


def test_a_failure_names_each_criterion_it_misses():
    result = compare("visual", "unit", [REF * 1.01], [REF], PARTNER, float(np.abs(REF).max()))
    report = judged(result)
    assert report.problem() == (f"onnxruntime disagrees with PyTorch beyond the fp32 tolerance: visual on unit: "
                                f"max relative difference {result.max_relative_diff:.2e} > 0.0001")


def test_agreement_is_waived_only_for_a_checkpoint_whose_partner_inputs_are_alike():
    """A visual graph's zero-shot choices are made against the captions' embeddings: near-identical
    captions make them ties. Then, and only for a checkpoint (not strict), agreement does not count."""
    flipped = Comparison("visual", "photos", 0.0, 0.0, 1.0, False, 0.5, centered_scale=0.5, centered_min_cosine=1.0)
    captions_alike = {"photos": 0.5, "captions": 0.9995}
    photos_alike = {"photos": 0.9995, "captions": 0.5}
    checkpoint = Report("fp32", TOLERANCES["fp32"], captions_alike, [flipped], strict=False)
    assert checkpoint.misses(flipped) == {} and checkpoint.status == "passed"
    assert set(Report("fp32", TOLERANCES["fp32"], photos_alike, [flipped], strict=False).misses(flipped)) == {"agreement"}
    assert set(Report("fp32", TOLERANCES["fp32"], captions_alike, [flipped], strict=True).misses(flipped)) == {"agreement"}


def test_the_input_dependent_part_is_measured_on_embedding_batches_of_two_or_more_rows():
    two = np.array([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32)
    assert compare("visual", "unit", [two], [two], PARTNER[:2, :2], 3.0).centered_min_cosine == pytest.approx(1.0)
    one = compare("visual", "single", [two[:1]], [two[:1]], PARTNER[:2, :2], 3.0)
    assert one.centered_scale is None and one.centered_min_cosine is None
    logits = compare("forward", "unit", [two, two.T], [two, two.T], None, 100.0)
    assert logits.centered_scale is None and logits.centered_min_cosine is None


def test_the_input_dependent_part_is_relative_to_the_output_scale():
    """Rows that differ by 5e-4 around a mean of magnitude 10: 5e-5 of the scale, within fp32's 1e-4, so
    too small to judge; the same rows judged in absolute terms would have 'passed'."""
    near = np.array([[10.0, 5.0, 3.0]] * 3) + np.array([[5e-4, 0.0, 0.0], [0.0, 5e-4, 0.0], [0.0, 0.0, 5e-4]])
    report = alike_report(near, near, strict=False)
    assert report.comparisons[0].centered_scale == pytest.approx(5e-4 * 2 / 3 / 10, rel=1e-3)
    assert report.status == "inconclusive"


def test_the_input_dependent_bounds_are_inclusive():
    """A centred part exactly at the relative tolerance is too small to judge; a centred cosine exactly
    at the limit passes."""
    fp32 = TOLERANCES["fp32"]
    at_scale = Comparison("visual", "photos", 0.0, 0.0, 1.0, True, 1.0, centered_scale=fp32.max_relative,
                          centered_min_cosine=1.0)
    at_cosine = Comparison("visual", "photos", 0.0, 0.0, 1.0, True, 1.0, centered_scale=0.5,
                           centered_min_cosine=fp32.min_cosine)
    alike = {"photos": 0.9995, "captions": 0.5}
    assert Report("fp32", fp32, alike, [at_scale], strict=False).status == "inconclusive"
    assert Report("fp32", fp32, alike, [at_cosine], strict=False).status == "passed"


def test_a_single_row_set_does_not_decide_a_checkpoints_verdict():
    """The single-image set has no input-dependent part; beside a judged photos set it changes nothing."""
    single = compare("visual", "single", [COLLAPSED[:1]], [COLLAPSED[:1]], PARTNER, float(np.abs(COLLAPSED).max()))
    photos = alike_report(COLLAPSED, COLLAPSED, strict=False).comparisons[0]
    report = Report("fp32", TOLERANCES["fp32"], {"photos": max_pairwise_cosine(COLLAPSED)}, [single, photos], strict=False)
    assert report.status == "passed"


def test_a_failure_and_an_inconclusive_verdict_name_every_criterion_and_every_alike_input():
    result = compare("visual", "unit", [REF[::-1].copy()], [REF], PARTNER, float(np.abs(REF).max()))
    report = judged(result)
    misses = report.misses(result)
    assert set(misses) == {"cosine", "relative", "agreement"}
    assert report.problem().endswith(f"visual on unit: {misses['cosine']}, {misses['relative']}, {misses['agreement']}")
    both = Report("fp32", TOLERANCES["fp32"], {"photos": 0.9991, "captions": 0.9995},
                  [compare("visual", "photos", [REF], [REF], PARTNER, 3.0)], strict=True)
    assert ("different photos give embeddings with cosine 0.99910 >= 0.999, different captions give embeddings "
            "with cosine 0.99950 >= 0.999") in both.problem()
    constant = np.array([[10.0, 5.0, 3.0]] * 3) + np.array([[1e-6, 0.0, 0.0], [0.0, 1e-6, 0.0], [0.0, 0.0, 0.0]])
    inconclusive = alike_report(constant, constant, strict=False)
    assert inconclusive.problem().startswith(f"inconclusive: different photos give embeddings with cosine "
                                             f"{inconclusive.discrimination['photos']:.5f} >= 0.999, and ")


def test_the_manifest_record_is_the_whole_report():
    result = compare("visual", "photos", [REF], [REF], PARTNER, 3.0)
    record = judged(result).to_json()
    assert record == {
        "passed": True, "status": "passed", "precision": "fp32",
        "tolerance": {"min_cosine": 0.99999, "max_relative": 1e-4, "min_agreement": 1.0},
        "reference": "PyTorch float32 (clip.model.CLIP)", "distinct_inputs_required": True,
        "discrimination_max_cosine": {"photos": 0.5, "captions": 0.5, "limit": MAX_INPUT_COSINE},
        "comparisons": [{"graph": "visual", "input_set": "photos", "max_abs_diff": 0.0, "max_relative_diff": 0.0,
                         "min_cosine": pytest.approx(1.0), "argmax_agrees": True, "argmax_agreement": 1.0,
                         "centered_scale": result.centered_scale, "centered_min_cosine": pytest.approx(1.0),
                         "misses": []}],
    }
    failed = judged(compare("visual", "photos", [REF * 1.01], [REF], PARTNER, 3.0)).to_json()
    assert failed["passed"] is False and failed["status"] == "failed" and failed["comparisons"][0]["misses"] == ["relative"]
