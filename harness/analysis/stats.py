"""Statistics over repeats: medians with distribution-free intervals, significance, outliers.

Makespans are few (typically 3-10 repeats per mode) and not normally distributed (a
neighbour's load only ever adds time), so everything here is nonparametric:

* **Median and its interval.** The confidence interval of the median is the order-statistic
  (binomial) interval from :func:`scipy.stats.quantile_test`. It exists at 95% only from 6
  repeats; below that the widest interval, [min, max], is reported with the coverage it
  really has (1 - 2 * 0.5**n: 75% for 3 repeats) instead of pretending to be 95%.
* **Censoring.** A cell that timed out, crashed or was killed never finished, so its
  recorded makespan (or the timeout when none was recorded) is only a lower bound. It is
  kept, never dropped: ranks treat it as +inf (within one run every finished cell ended
  before the timeout, and a cell that never finishes is slower than one that does: "the
  fastest workflow is the one that finishes"), and a median or interval bound that depends
  on a censored value is reported as a lower bound (``median_is_bound``) or as unknown (inf).
* **Outliers** are flagged, never removed, from 6 repeats on, by the modified z-score
  |x - median| / (1.4826 MAD) > 5 (Iglewicz and Hoaglin's score; their usual 3.5 flags
  something in 15-20% of 5-10 normal values, so a table would cry wolf; at 5 it is 4-7%).
  Below 6 repeats the MAD is too unstable to tell an outlier from noise. Censored values
  are marked censored instead.
* **Significance of a difference between two modes.** With enough repeats, a two-sided
  Mann-Whitney U test (:func:`scipy.stats.mannwhitneyu`) at ``ALPHA`` = 0.05. It is used when
  the exact test could call a difference significant even with one pair of values out of
  order (4 / C(n_a + n_b, n_a) <= ALPHA: 4 vs 5 repeats and more). Below that, and at 3 vs 3
  in particular, ranks cannot decide at all (the smallest two-sided p is 0.1), so the
  difference is called significant only when (1) the percentile-bootstrap interval of the
  ratio of medians (:func:`scipy.stats.bootstrap`) excludes 1, which at these sizes means the
  samples do not overlap, and (2) the medians differ by more than the larger of the two
  samples' ranges (times 2 at 2 vs 3 and more, times 3 at 2 vs 2), i.e. the effect is large
  relative to the noise. Simulated on identical normal, log-normal and exponential samples,
  this rule calls 3.0-4.5% of pairs significant at 3 vs 3, 2.1-2.3% at 2 vs 3 and 3.3-3.6%
  at 2 vs 2 (all under ALPHA); at 3 vs 3 it detects a shift of 5 standard deviations 98% of
  the time. A single repeat can never show a significant difference. The rule is one
  function, :func:`significant`, that also tests many simulated pairs at once (the verdict's
  estimate of the repeats that would decide, :mod:`harness.analysis.power`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
OUTLIER_Z = 5.0          # modified z-score threshold (see the module docstring)
OUTLIER_MIN_N = 6
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601  # fixed: the same run folder always renders the same report


@dataclass(eq=False)
class Sample:
    """Measurements of one mode: ``values`` as recorded; ``censored`` marks lower bounds."""

    values: np.ndarray
    censored: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        if self.censored is None:
            self.censored = np.zeros(len(self.values), dtype=bool)
        self.censored = np.asarray(self.censored, dtype=bool)

    @classmethod
    def of(cls, values: Iterable[float], censored: Iterable[bool] | None = None) -> "Sample":
        values = list(values)
        return cls(np.array(values, dtype=float),
                   None if censored is None else np.array(list(censored), dtype=bool))

    def __len__(self) -> int:
        return len(self.values)

    @property
    def ranked(self) -> np.ndarray:
        """Values with censored ones at +inf: the order that rank statistics use."""
        return np.where(self.censored, np.inf, self.values)

    @property
    def finite(self) -> np.ndarray:
        """The uncensored values."""
        return self.values[~self.censored]


@dataclass
class Summary:
    """Median of a sample with its interval, censoring and outliers."""

    n: int
    median: float              # of the recorded values; a lower bound when median_is_bound
    median_is_bound: bool      # a censored value decides the median: the true one is higher
    ci_low: float
    ci_high: float             # inf when the upper order statistic is censored
    coverage: float            # the interval's real confidence level (0.75 at 3 repeats)
    censored: int
    outliers: list[int]        # indices into the sample, flagged and kept



def median_ci(ranked: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Order-statistic interval of the median: ``(low, high, coverage)``.

    Uses :func:`scipy.stats.quantile_test`; when the requested level is out of reach
    (fewer than 6 values at 95%) it returns [min, max] with the coverage it really has."""
    x = np.sort(np.asarray(ranked, dtype=float))
    n = len(x)
    if n < 2:
        return math.nan, math.nan, 0.0  # one value says nothing about where the median is
    try:
        # The interval does not depend on the hypothesised quantile q: any finite value does.
        interval = stats.quantile_test(x, q=0.0, p=0.5).confidence_interval(confidence)
        low, high = float(interval.low), float(interval.high)
    except (ValueError, FloatingPointError):
        low = high = math.nan
    if not (math.isnan(low) or math.isnan(high)):
        return low, high, confidence
    # Out of reach: the widest interval [x(1), x(n)] covers the median with 1 - 2 * 0.5**n.
    return float(x[0]), float(x[-1]), float(1 - 2 * stats.binom.cdf(0, n, 0.5))


def outlier_indices(sample: Sample, threshold: float = OUTLIER_Z) -> list[int]:
    """Indices of uncensored values whose modified z-score exceeds ``threshold``."""
    finite = sample.finite
    if len(finite) < OUTLIER_MIN_N:
        return []
    med = float(np.median(finite))
    mad = float(stats.median_abs_deviation(finite, scale="normal"))
    if mad == 0:
        return []  # at least half the values are identical: no scale to judge by
    z = np.abs(sample.values - med) / mad
    return [int(i) for i in np.flatnonzero((z > threshold) & ~sample.censored)]


def _median_is_bound(sample: Sample) -> bool:
    """Does a censored value decide the median (so the true median is higher)?"""
    n = len(sample)
    if n == 0:
        return False
    order = np.argsort(sample.ranked, kind="stable")
    middle = {order[(n - 1) // 2], order[n // 2]}  # the order statistics the median uses
    return any(sample.censored[i] for i in middle)


def summarize(sample: Sample, confidence: float = CONFIDENCE) -> Summary:
    """Median, its interval (real coverage), censoring and outlier flags of one sample."""
    n = len(sample)
    if n == 0:
        return Summary(0, math.nan, False, math.nan, math.nan, 0.0, 0, [])
    ranked = sample.ranked
    median_is_bound = _median_is_bound(sample)
    # The median of the recorded values is a lower bound of the true median (the median is
    # monotone in every value); it is exact when no censored value decides it.
    median = float(np.median(sample.values))
    low, high, coverage = median_ci(ranked, confidence)
    if math.isinf(low):  # more than the lower interval end is censored
        low = float(np.min(sample.values[sample.censored]))
    return Summary(n, median, median_is_bound, low, high, coverage,
                   int(sample.censored.sum()), outlier_indices(sample))


@dataclass
class Difference:
    """How sample ``a`` compares with sample ``b`` (ratio of medians, a / b)."""

    ratio: float                   # median(a) / median(b); > 1: a is slower
    ratio_low: float | None        # bootstrap interval of the ratio (None when censored)
    ratio_high: float | None
    p_value: float | None          # Mann-Whitney p; None where the bootstrap rule decides
    method: str                    # "mann-whitney" | "bootstrap" | "none"
    significant: bool
    n_a: int
    n_b: int
    note: str = ""
    ratio_bound: str = ""          # ">=" / "<=": a censored median makes the ratio a bound

    def describe(self) -> str:
        """One line: ratio, interval with its confidence level, and test (say "significant"
        or not around it)."""
        ratio = self.ratio_bound + ("inf" if math.isinf(self.ratio) else f"{self.ratio:.2f}x")
        interval = (f", {CONFIDENCE:.0%} bootstrap interval [{self.ratio_low:.2f}, "
                    f"{self.ratio_high:.2f}]"
                    if self.ratio_low is not None and self.ratio_high is not None else "")
        test = (f"two-sided Mann-Whitney p={self.p_value:.3g}, alpha {ALPHA:g}"
                if self.method == "mann-whitney" and self.p_value is not None
                else {"bootstrap": "few-repeats rule"}.get(self.method, "no test"))
        note = f"; {self.note}" if self.note else ""
        return f"{ratio}{interval} ({test}, n={self.n_a} vs {self.n_b}{note})"


def mannwhitney_decides(n_a: int, n_b: int, alpha: float = ALPHA) -> bool:
    """Whether the exact Mann-Whitney test can call a difference significant with one pair
    out of order (otherwise it hinges on complete separation, or cannot decide at all)."""
    return n_a > 0 and n_b > 0 and 4 / math.comb(n_a + n_b, n_a) <= alpha


def _ratio_interval(a: Sample, b: Sample) -> tuple[float | None, float | None]:
    """Percentile-bootstrap interval of median(a) / median(b); None with censored values."""
    if a.censored.any() or b.censored.any() or len(a) < 2 or len(b) < 2:
        return None, None
    if np.median(b.values) <= 0:
        return None, None

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.bootstrap((a.values, b.values), ratio, n_resamples=BOOTSTRAP_RESAMPLES,
                                 vectorized=True, method="percentile",
                                 confidence_level=CONFIDENCE,
                                 rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)


def spread_factor(n_a: int, n_b: int) -> float | None:
    """How many times the larger sample range the medians must differ by, for the few-repeats
    rule; None when one sample has a single value (no spread to judge the noise by)."""
    if min(n_a, n_b) < 2:
        return None
    if min(n_a, n_b) >= 3:
        return 1.0
    return 3.0 if n_a + n_b == 4 else 2.0


def _spread(sample: Sample) -> float:
    finite = sample.finite
    return float(np.ptp(finite)) if len(finite) > 1 else 0.0


def significant(ra: np.ndarray, rb: np.ndarray, spread_a: Any, spread_b: Any,
                alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray | None]:
    """The significance rule of :func:`compare_samples` over the last axis: ``(significant,
    Mann-Whitney p or None)``.

    ``ra``/``rb`` are ranked values (censored ones at +inf), one pair of samples per row when
    2-D (the power simulation of :mod:`harness.analysis.power` tests hundreds at once); the
    spreads are the ranges of the uncensored values. The bootstrap check that
    :func:`compare_samples` adds on top never changes the answer on uncensored samples (a
    resampled median stays within its sample's range, so the percentile interval of the
    ratio excludes 1 exactly when the samples do not overlap), so it is left out here."""
    n_a, n_b = ra.shape[-1], rb.shape[-1]
    if mannwhitney_decides(n_a, n_b, alpha):
        p = np.asarray(stats.mannwhitneyu(ra, rb, alternative="two-sided", axis=-1).pvalue)
        return p < alpha, p
    factor = spread_factor(n_a, n_b)
    if factor is None:
        return np.zeros(ra.shape[:-1], dtype=bool), None
    # Few repeats: no overlap (ranks with censored values at +inf decide it) and a gap
    # between medians larger than either sample's own spread.
    apart = (ra.max(axis=-1) < rb.min(axis=-1)) | (rb.max(axis=-1) < ra.min(axis=-1))
    with np.errstate(invalid="ignore"):  # inf - inf: both medians censored, never large
        gap = np.abs(np.median(ra, axis=-1) - np.median(rb, axis=-1))
        large = gap > factor * np.maximum(spread_a, spread_b)
    return apart & large, None


def compare_samples(a: Sample, b: Sample, alpha: float = ALPHA) -> Difference:
    """Is ``a`` different from ``b``? See the module docstring for the rule and its reasons."""
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return Difference(math.nan, None, None, None, "none", False, n_a, n_b, "no data")
    ra, rb = a.ranked, b.ranked
    # The ratio of recorded medians; a censored median makes it a bound (see ratio_bound).
    rec_a, rec_b = float(np.median(a.values)), float(np.median(b.values))
    ratio = rec_a / rec_b if rec_b > 0 else (math.inf if rec_a > 0 else 1.0)
    bound_a, bound_b = _median_is_bound(a), _median_is_bound(b)
    ratio_bound = "" if bound_a == bound_b else (">=" if bound_a else "<=")
    low, high = _ratio_interval(a, b)
    note = "censored values ranked last" if a.censored.any() or b.censored.any() else ""
    sig, p = significant(ra, rb, _spread(a), _spread(b), alpha)
    if p is not None:
        return Difference(ratio, low, high, float(p), "mann-whitney", bool(sig), n_a, n_b,
                          note, ratio_bound)
    factor = spread_factor(n_a, n_b)
    if factor is None:
        return Difference(ratio, low, high, None, "none", False, n_a, n_b,
                          "one repeat: no spread to judge the noise by", ratio_bound)
    sig = bool(sig) and (low is None or high is None or high < 1 or low > 1)
    if not sig and not note:
        apart = ra.max() < rb.min() or rb.max() < ra.min()
        note = f"gap under {factor:g}x the larger spread" if apart else "samples overlap"
    return Difference(ratio, low, high, None, "bootstrap", sig, n_a, n_b, note, ratio_bound)


def never_started(row: Any) -> bool:
    """A cell with no makespan at all (its setup failed, a service was down, it was killed
    before t0): it measured nothing, not even a lower bound."""
    makespan = getattr(row, "makespan_s", None)
    return makespan is None or (isinstance(makespan, float) and math.isnan(makespan))


def makespan_sample(cells: Any, timeout_s: float | None = None) -> Sample:
    """The makespans of some cells (a cells frame) as a censored sample, in frame order.

    A cell that did not end ``ok`` (timeout, crashed, interrupted, service-down,
    parent-died) is censored at its recorded makespan: a lower bound, ranked last, never a
    value of a median or a speedup. One that timed out before t0 is censored at the timeout
    (it is slower than any cell that ran). Any other cell that never started is left out
    altogether (a 0 s "bound" would pull the median below every real value); the table
    counts it among the censored cells, so no ratio is computed from that mode either."""
    values, censored = [], []
    for row in cells.itertuples(index=False):
        makespan = getattr(row, "makespan_s", None)
        if never_started(row):
            if getattr(row, "status", "") != "timeout" or not timeout_s:
                continue
            makespan = timeout_s  # it ran out of time before t0: slower than any that ran
        failed = getattr(row, "status", "ok") != "ok" or bool(getattr(row, "censored", False))
        values.append(float(makespan))
        censored.append(failed)
    return Sample.of(values, censored)
