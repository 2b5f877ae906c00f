"""How many repeats per mode would decide a difference the data cannot decide yet.

The verdict is inconclusive when a mode is observed faster than the would-be choice by at
least ``--min-gain`` but the difference is not significant. To say how many repeats would
settle it, this module simulates the harness's own significance rule
(:func:`harness.analysis.stats.significant`: Mann-Whitney U from 4 vs 5 repeats, the
few-repeats no-overlap rule below) on made-up samples:

* **Noise.** Each simulated makespan is the mode's observed median times a log-normal factor
  whose coefficient of variation is the *pooled* CV of the observed samples (the per-sample
  CVs, sample standard deviation over mean, pooled with weights n - 1). Log-normal because a
  neighbour's load only ever adds time and a makespan is never negative; its median is the
  observed median exactly, so the simulated ratio of medians is the observed one.
* **One repeat shows no spread.** When no sample has two values, the CV is the documented
  prior ``PRIOR_CV`` (10%: repeated makespans of the shipped scenarios on a shared 2-core
  machine vary by a few percent up to about 10%), and the verdict says the estimate rests
  on that assumption.
* **Power.** For n repeats per mode, ``RESAMPLES`` simulated pairs (fixed seed: the same run
  renders the same advice) are tested; the power is the fraction where the faster mode is
  found significantly faster. The answer is the smallest n from ``MIN_N`` (and above the
  repeats already run: those did not decide) up to ``MAX_N`` with power >= ``POWER``. Common
  random numbers (every n uses the first n columns of one draw) keep the power close to
  monotone in n, so one check at ``MAX_N`` first says when no n in range is enough.

Significance decides the verdict either way (a significant gain at or over --min-gain wins,
a significant smaller one leaves the simpler mode), so this is the number of repeats after
which the same comparison is unlikely to be inconclusive again. It is conservative: a new
run can also decide by observing a gain under --min-gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from harness.analysis.stats import Sample, significant

PRIOR_CV = 0.10
POWER = 0.80
MIN_N, MAX_N = 3, 30
RESAMPLES = 400
SEED = 20240602


@dataclass
class RepeatsEstimate:
    """Repeats per mode that would decide (None: more than ``MAX_N``), and the noise used."""

    repeats: int | None
    cv: float
    assumed: bool    # True: the CV is PRIOR_CV (no sample had two values)

    def describe(self) -> str:
        """The advice as one clause, with the noise it assumes."""
        noise = (f"assuming {self.cv:.0%} run-to-run noise as one repeat shows no spread"
                 if self.assumed else f"at the observed noise (pooled CV {self.cv:.1%})")
        if self.repeats is None:
            return (f"more than {MAX_N} repeats per mode would be needed {noise}: reduce the "
                    "noise (a quieter machine, a larger workload) before repeating")
        return (f"about {self.repeats} repeats per mode would decide (run --repeat "
                f"{self.repeats}), {noise}")


def pooled_cv(samples: Iterable[Sample]) -> float | None:
    """Coefficient of variation pooled over the samples with 2+ uncensored values."""
    num = den = 0.0
    for sample in samples:
        finite = sample.finite
        if len(finite) < 2 or np.mean(finite) <= 0:
            continue
        cv = float(np.std(finite, ddof=1) / np.mean(finite))
        num += (len(finite) - 1) * cv ** 2
        den += len(finite) - 1
    return math.sqrt(num / den) if den else None


def _power(fast: np.ndarray, slow: np.ndarray) -> float:
    sig, _ = significant(fast, slow, np.ptp(fast, axis=-1), np.ptp(slow, axis=-1))
    faster = np.median(fast, axis=-1) < np.median(slow, axis=-1)
    return float(np.mean(sig & faster))


def repeats_to_decide(fast_median: float, slow_median: float, samples: Iterable[Sample],
                      have: int = 1) -> RepeatsEstimate:
    """Repeats per mode at which a mode with ``fast_median`` is shown faster than one with
    ``slow_median`` with power ``POWER`` (module docstring); ``samples``: the observed ones,
    for the noise; ``have``: the repeats per mode already run."""
    observed = pooled_cv(samples)
    cv = PRIOR_CV if observed is None else max(observed, 1e-3)  # all equal: still some noise
    sigma = math.sqrt(math.log1p(cv ** 2))  # log-normal with this coefficient of variation
    rng = np.random.default_rng(SEED)
    noise_fast = np.exp(sigma * rng.standard_normal((RESAMPLES, MAX_N)))
    noise_slow = np.exp(sigma * rng.standard_normal((RESAMPLES, MAX_N)))

    def power(n: int) -> float:
        return _power(fast_median * noise_fast[:, :n], slow_median * noise_slow[:, :n])

    first = max(MIN_N, have + 1)
    if first > MAX_N or power(MAX_N) < POWER:
        return RepeatsEstimate(None, cv, observed is None)
    repeats = next(n for n in range(first, MAX_N + 1) if power(n) >= POWER)
    return RepeatsEstimate(repeats, cv, observed is None)
