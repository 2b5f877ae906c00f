"""Statistics on synthetic samples with known distributions: intervals, tests, censoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis.power import MAX_N, PRIOR_CV, repeats_to_decide
from harness.analysis.stats import (ALPHA, Sample, compare_samples, makespan_sample,
                                    mannwhitney_decides, median_ci, outlier_indices,
                                    significant, summarize)

TRIALS = 200


def _rate(draw, n_a: int, n_b: int, trials: int = TRIALS) -> float:
    """Fraction of ``trials`` where compare_samples calls a significant difference."""
    rng = np.random.default_rng(7)
    hits = sum(compare_samples(Sample.of(draw(rng, n_a, 0)), Sample.of(draw(rng, n_b, 1)))
               .significant for _ in range(trials))
    return hits / trials


def _normal(shift: float):
    return lambda rng, n, which: rng.normal(10 + shift * which, 1.0, n)


def _lognormal(shift: float):
    return lambda rng, n, which: rng.lognormal(math.log(10) + shift * which, 0.3, n)


def test_median_interval_has_its_real_coverage():
    low, high, coverage = median_ci(np.array([3.0, 1.0, 2.0]))
    assert (low, high) == (1.0, 3.0)
    assert coverage == pytest.approx(0.75)  # [min, max] of 3 values: 1 - 2 * 0.5**3
    # 20 draws from N(0, 1): the 95% interval covers the true median (0) ~95% of the time.
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(TRIALS):
        lo, hi, level = median_ci(rng.normal(0, 1, 20))
        assert level == 0.95
        covered += lo <= 0 <= hi
    assert covered / TRIALS > 0.90


@pytest.mark.parametrize("draw", [_normal(0.0), _lognormal(0.0)], ids=["normal", "lognormal"])
@pytest.mark.parametrize("n", [3, 10])
def test_identical_distributions_are_rarely_called_different(draw, n):
    assert _rate(draw, n, n) <= ALPHA + 0.04


@pytest.mark.parametrize("draw,n,power", [
    (_normal(2.0), 10, 0.8),      # Mann-Whitney: 2 standard deviations, 10 vs 10
    (_normal(8.0), 3, 0.95),      # few repeats: a large effect is still found
    (_lognormal(1.0), 5, 0.8),
], ids=["normal-10", "normal-3", "lognormal-5"])
def test_real_shifts_are_found(draw, n, power):
    assert _rate(draw, n, n, trials=100) >= power


def test_which_rule_decides():
    assert not mannwhitney_decides(3, 3)  # smallest two-sided p is 0.1
    assert not mannwhitney_decides(4, 4)
    assert mannwhitney_decides(4, 5) and mannwhitney_decides(10, 10)
    assert compare_samples(Sample.of([1, 2, 3, 4, 5]), Sample.of([6, 7, 8, 9, 10])).method \
        == "mann-whitney"
    assert compare_samples(Sample.of([1, 2, 3]), Sample.of([6, 7, 8])).method == "bootstrap"


def test_few_repeats_need_a_gap_larger_than_the_noise():
    # Separated but noisy: the gap between medians (0.2) is under the spread (0.5).
    noisy = compare_samples(Sample.of([1.0, 1.2, 1.5]), Sample.of([1.55, 1.7, 2.0]))
    assert not noisy.significant and "spread" in noisy.note
    clear = compare_samples(Sample.of([1.0, 1.01, 1.02]), Sample.of([1.5, 1.51, 1.52]))
    assert clear.significant and clear.ratio == pytest.approx(1.01 / 1.51)
    assert clear.ratio_low < clear.ratio < clear.ratio_high < 1
    overlap = compare_samples(Sample.of([1.0, 1.3, 2.0]), Sample.of([1.2, 1.4, 2.1]))
    assert not overlap.significant and overlap.note == "samples overlap"
    assert not compare_samples(Sample.of([1.0]), Sample.of([5.0])).significant  # one repeat


def test_censored_values_rank_last_and_bound_the_median():
    finished = Sample.of([1.0, 1.1, 1.2])
    timed_out = Sample.of([0.9, 0.95, 1.0], censored=[True, True, True])  # killed at ~1 s
    diff = compare_samples(timed_out, finished)
    assert diff.significant and diff.ratio_bound == ">="  # slower than a mode that finished
    summary = summarize(Sample.of([1.0, 1.1, 5.0], censored=[False, False, True]))
    assert not summary.median_is_bound and summary.median == 1.1
    assert math.isinf(summary.ci_high) and summary.censored == 1
    bound = summarize(Sample.of([1.0, 5.0, 5.0], censored=[False, True, True]))
    assert bound.median_is_bound and bound.median == 5.0


def test_timed_out_cells_are_never_missing():
    cells = pd.DataFrame([
        {"makespan_s": 0.5, "status": "ok", "censored": False},
        {"makespan_s": 2.9, "status": "timeout", "censored": True},
        {"makespan_s": None, "status": "timeout", "censored": False},  # killed before t0
    ])
    sample = makespan_sample(cells, timeout_s=3.0)
    assert list(sample.values) == [0.5, 2.9, 3.0]
    assert list(sample.censored) == [False, True, True]


def test_outliers_are_flagged_not_dropped():
    sample = Sample.of([1.00, 1.01, 1.02, 1.01, 1.03, 1.50])
    assert outlier_indices(sample) == [5]
    summary = summarize(sample)
    assert summary.outliers == [5] and summary.n == 6 and summary.median == pytest.approx(1.015)
    assert outlier_indices(Sample.of([1.0, 1.01, 1.50])) == []  # 3 values: too few to tell
    # Normal noise is rarely flagged: under 10% of 8-value sets.
    rng = np.random.default_rng(3)
    flagged = sum(bool(outlier_indices(Sample.of(rng.normal(10, 1, 8)))) for _ in range(TRIALS))
    assert flagged / TRIALS < 0.10


def test_the_vectorised_rule_is_the_rule_of_compare_samples():
    # The power simulation tests hundreds of pairs at once with significant(); it must call
    # exactly what compare_samples calls, at every size and both rules.
    rng = np.random.default_rng(11)
    for n_a, n_b in [(1, 3), (2, 2), (2, 3), (3, 3), (4, 4), (4, 5), (8, 8)]:
        a = 10 * np.exp(0.2 * rng.standard_normal((60, n_a)))
        b = 13 * np.exp(0.2 * rng.standard_normal((60, n_b)))
        many, _ = significant(a, b, np.ptp(a, axis=-1), np.ptp(b, axis=-1))
        one = [compare_samples(Sample.of(x), Sample.of(y)).significant for x, y in zip(a, b)]
        assert list(many) == one, (n_a, n_b)


def test_repeats_to_decide_means_what_it_says():
    one = repeats_to_decide(2.1, 27.7, [Sample.of([2.1]), Sample.of([27.7])])
    assert one.assumed and one.cv == PRIOR_CV and one.repeats == 3
    assert "assuming 10% run-to-run noise" in one.describe()
    quiet = repeats_to_decide(1.0, 1.5, [Sample.of([0.98, 1.0, 1.02])], have=3)
    noisy = repeats_to_decide(1.0, 1.5, [Sample.of([0.7, 1.0, 1.4])], have=3)
    assert not quiet.assumed and quiet.repeats == 4  # more than the 3 that did not decide
    assert noisy.repeats is not None and noisy.repeats > quiet.repeats
    hopeless = repeats_to_decide(1.0, 1.05, [Sample.of([0.5, 1.0, 1.6])], have=3)
    assert hopeless.repeats is None and f"more than {MAX_N} repeats" in hopeless.describe()
    # Drawn afresh with that many repeats, compare_samples finds the gap about 80% of the time.
    rng = np.random.default_rng(5)
    sigma = math.sqrt(math.log1p(noisy.cv ** 2))
    n = noisy.repeats
    found = sum(compare_samples(Sample.of(1.0 * np.exp(sigma * rng.standard_normal(n))),
                                Sample.of(1.5 * np.exp(sigma * rng.standard_normal(n))))
                .significant for _ in range(TRIALS))
    assert found / TRIALS >= 0.70


def test_a_cell_that_never_started_is_no_value_of_the_median():
    # The postmaster killed before the cell: no makespan at all. Counting it as a 0 s
    # bound gave a median of ">=1.226" below the only real value, 2.453.
    cells = pd.DataFrame([
        {"makespan_s": 2.453, "status": "ok", "censored": False},
        {"makespan_s": None, "status": "crashed", "censored": True},
        {"makespan_s": None, "status": "service-down", "censored": True},
    ])
    sample = makespan_sample(cells, timeout_s=600.0)
    assert list(sample.values) == [2.453]
    assert summarize(sample).median == 2.453 and not summarize(sample).median_is_bound
