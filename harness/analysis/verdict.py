"""The verdict: which mode to use, with the reasons a design review can check.

Every mode ends ``recommended``, ``inconclusive``, ``slower`` or ``discarded``; the verdict's
``outcome`` is ``recommended`` (one mode), ``inconclusive`` (the data cannot decide) or
``none`` (every mode was discarded). The analysis never names a mode: how simple a mode is
and which one is the baseline come from the comparison table.

1. **Discard** every mode that did not finish cleanly: a cell ended other than ``ok``
   (timeout, memory-exceeded, crashed, interrupted, service-down, parent-died,
   harness-error); a cell measured below the scenario's bound (efficiency above 1 is a
   harness error, never a result); verify failed; more units failed than ``--error-budget``
   allows; the p99 latency from due is over ``--p99-budget``; peak memory (PSS) is over
   ``--max-memory``.
2. **Choose.** Start from the simplest clean mode (lowest ``simplicity``; of equal
   simplicity, fewer workers; then the lower median). While some clean mode *beats* the
   choice, move to the simplest such mode. A mode
   beats another when it is significantly faster (:func:`harness.analysis.stats
   .compare_samples`) **and** faster by at least ``--min-gain`` (ratio of medians minus 1).
   So a more complex mode has to earn its complexity, and a smaller gain leaves the simpler
   one. Medians fall at every move, so the walk ends.
3. **Inconclusive.** A clean mode still observed faster than the choice by at least
   ``--min-gain`` is, by step 2, not significantly faster: the data cannot decide. No mode is
   recommended; the summary names the leading candidates with their observed ratio and the
   repeats per mode that would decide (:mod:`harness.analysis.power`).
4. **The guarantee.** A final, separate check never lets the verdict recommend X while a
   clean mode's median is at least ``GUARANTEE_RATIO`` (1.5x) faster than X: such a verdict
   becomes inconclusive. Step 3 already covers it up to ``--min-gain`` 50%; the check keeps
   it true whatever the budgets, and whatever later edits do to steps 2-3.

Warnings: the over-optimization warning flags a mode whose gain over the run's *baseline* is
under ``--min-gain`` while it adds failed units, tail latency or memory; fewer than
``FEW_REPEATS`` repeats; a recommended mode that is unverified (the scenario has no checks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from harness.analysis.budgets import Budgets, budget_reasons, check_metric_budgets
from harness.analysis.frames import cells_frame, samples_frame, units_frame
from harness.analysis.power import repeats_to_decide
from harness.analysis.results import ModeResult, mode_results
from harness.analysis.stats import ALPHA, Difference, compare_samples
from harness.analysis.table import comparison_table
from harness.records import RunData

__all__ = ["Analysis", "Budgets", "ModeResult", "Verdict", "analyze", "baseline_of", "decide",
           "headline", "mode_results"]

# "Adds tail latency or memory": more than this fraction over the baseline's (noise margin).
ADDS_MARGIN = 0.10
FEW_REPEATS = 3
GUARANTEE_RATIO = 1.5
INCONCLUSIVE = "inconclusive: "  # the summary's prefix when the data cannot decide
CELL_STATUS_WORDS = {"timeout": "timed out", "memory-exceeded": "exceeded --max-memory",
                     "crashed": "crashed", "interrupted": "was interrupted",
                     "service-down": "met a service that was down",
                     "parent-died": "lost the observing parent",
                     "harness-error": "hit a harness error"}


@dataclass
class Verdict:
    """The recommendation (a mode label, or None), with reasons per mode and warnings."""

    recommended: str | None
    outcome: str                        # recommended | inconclusive | none
    summary: str
    status: dict[str, str]              # label -> recommended|inconclusive|slower|discarded
    reasons: dict[str, list[str]]
    warnings: list[str]
    budgets: Budgets

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "budgets": asdict(self.budgets)}


def headline(verdict: dict[str, Any]) -> tuple[str, str]:
    """``(title, detail)`` of a verdict dict, for every renderer: "Recommended: X" and its
    reasons, "Inconclusive" and what would decide, or the summary when nothing is left."""
    chosen = verdict.get("recommended")
    if chosen:
        return f"Recommended: {chosen}", "; ".join(verdict["reasons"].get(chosen, []))
    summary = verdict["summary"]
    if verdict.get("outcome") == "inconclusive":
        return "Inconclusive", summary.removeprefix(INCONCLUSIVE)
    return summary[:1].upper() + summary[1:], ""


def _key(r: ModeResult) -> tuple[float, int, float]:
    """Simplest first (of one kind, fewer workers is simpler: what a sweep recommends too);
    among equally simple modes, the faster."""
    return r.simplicity, r.workers, r.median if not math.isnan(r.median) else math.inf


def _simpler(chosen: ModeResult, m: ModeResult) -> str:
    """Why ``chosen`` stays ahead of ``m`` although ``m`` was not shown slower."""
    if (chosen.simplicity, chosen.workers) < (m.simplicity, m.workers):
        fewer = " (fewer workers)" if chosen.simplicity == m.simplicity else ""
        return f"{chosen.label} is simpler{fewer}"
    if (chosen.simplicity, chosen.workers) == (m.simplicity, m.workers):
        return f"{chosen.label} is as simple and its median is lower"
    return f"{chosen.label} is shown significantly faster than a simpler mode"


def _gain(fast: ModeResult, slow: ModeResult) -> float:
    """How much faster ``fast`` is than ``slow``: ratio of medians minus 1."""
    return slow.median / fast.median - 1 if fast.median > 0 else math.inf


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


class _Pairs:
    """:func:`compare_samples` of pairs of modes, each computed once (a bootstrap each)."""

    def __init__(self) -> None:
        self._done: dict[tuple[int, int], Difference] = {}

    def diff(self, a: ModeResult, b: ModeResult) -> Difference:
        key = (id(a), id(b))
        if key not in self._done:
            self._done[key] = compare_samples(a.sample, b.sample)
        return self._done[key]

    def beats(self, a: ModeResult, b: ModeResult, min_gain: float) -> bool:
        """Is ``a`` significantly faster than ``b``, and by at least ``min_gain``?"""
        return (a.median < b.median and _gain(a, b) >= min_gain
                and self.diff(a, b).significant)


def _cell_reasons(r: ModeResult) -> list[str]:
    cells = sum(r.statuses.values()) or len(r.sample)
    out = []
    for status, count in r.statuses.items():
        if status != "ok" and count:
            why = CELL_STATUS_WORDS.get(status, f"ended {status!r}")
            out.append(f"{why} in {count} of {cells} cells (makespan censored: "
                       f">= {r.sample.values.max():.3f} s)" if len(r.sample) else
                       f"{why} in {count} of {cells} cells")
    finite = r.sample.finite
    # The bound assumes every unit ran: a mode whose units failed may end sooner, which is
    # its failed units' finding, not a harness error (the runner flags a complete cell).
    checkable = not math.isnan(r.bound_s) and r.failed_units == 0
    below = finite[finite < r.bound_s] if checkable else finite[:0]
    errors = max(r.harness_errors, len(below))
    if errors:  # efficiency above 1: the measurement is wrong, whatever it says
        where = (f"measured {below.min():.3f} s below its bound {r.bound_s:.3f} s" if len(below)
                 else "measured below the scenario's bound")
        out.append(f"harness error: {where} in {errors} of {cells} cells (efficiency above 1 "
                   "is a harness bug, never a result)")
    if len(r.sample) == 0:
        out.append("no counted cells")
    return out


def baseline_of(results: list[ModeResult]) -> ModeResult | None:
    """The run's reference mode: the one the table flags, else the simplest, clean or not."""
    pool = [r for r in results if r.baseline] or results
    return min(pool, key=_key) if pool else None


def _over_optimization(results: list[ModeResult], budgets: Budgets,
                       eligible: list[ModeResult]) -> list[str]:
    base = baseline_of(results)
    if base is None or not len(base.sample) or base.sample.censored.any():
        return []  # a censored baseline has no median to measure a gain against
    warnings = []
    for r in eligible:
        if r is base or not r.median:
            continue
        gain = _gain(r, base)
        if gain >= budgets.min_gain:
            continue
        adds = []
        if r.failed_units > base.failed_units:
            adds.append(f"{r.failed_units - base.failed_units} more failed units")
        if r.p99_ms > base.p99_ms * (1 + ADDS_MARGIN):
            adds.append(f"p99 latency {r.p99_ms:.1f} ms vs {base.p99_ms:.1f} ms")
        if r.memory_peak_mb > base.memory_peak_mb * (1 + ADDS_MARGIN):
            adds.append(f"peak memory (PSS) {r.memory_peak_mb:.0f} MB vs "
                        f"{base.memory_peak_mb:.0f} MB")
        if adds:
            warnings.append(f"over-optimization: {r.label} runs at {gain + 1:.2f}x "
                            f"{base.label}'s speed (gain {gain:+.0%}, under --min-gain "
                            f"{budgets.min_gain:.0%}) while adding " + ", ".join(adds))
    return warnings


def _choose(eligible: list[ModeResult], budgets: Budgets, pairs: _Pairs) -> list[ModeResult]:
    """The walk of rule 2: the simplest clean mode, then each simplest mode that beats the
    previous choice; the last is the choice."""
    order = sorted(eligible, key=_key)
    chain = [order[0]]
    while True:
        better = next((m for m in order if pairs.beats(m, chain[-1], budgets.min_gain)), None)
        if better is None:
            return chain
        chain.append(better)


def _compared(m: ModeResult, chosen: ModeResult, budgets: Budgets, pairs: _Pairs) -> str:
    """Why a clean mode is not the choice (it is not a leading candidate either)."""
    d = pairs.diff(m, chosen)
    why = _simpler(chosen, m)
    if m.median < chosen.median:  # faster, by less than --min-gain (else it would lead)
        return (f"{_gain(m, chosen):.0%} faster than {chosen.label}, under --min-gain "
                f"{budgets.min_gain:.0%}, and {why}; time ratio {d.describe()}")
    if d.significant:
        return f"significantly slower than {chosen.label}: time ratio {d.describe()}"
    return (f"slower than {chosen.label}, not significantly, and {why}; time ratio "
            f"{d.describe()}")


def _chosen_reasons(chain: list[ModeResult], eligible: list[ModeResult],
                    budgets: Budgets, pairs: _Pairs) -> list[str]:
    chosen, out = chain[-1], []
    if len(chain) > 1:
        prev = chain[-2]
        out.append(f"significantly faster than {prev.label}: {_times(prev.median / chosen.median)}"
                   f" its speed (gain {_gain(chosen, prev):.0%}, at least --min-gain "
                   f"{budgets.min_gain:.0%}); time ratio {pairs.diff(chosen, prev).describe()}")
    if chosen is min(eligible, key=lambda r: r.median):
        out.append(f"fastest that finished cleanly: median {chosen.median:.3f} s")
    else:
        out.append(f"median {chosen.median:.3f} s; no clean mode is significantly faster by "
                   f"at least --min-gain {budgets.min_gain:.0%}")
    return out


def _undecided(d: Difference, budgets: Budgets) -> str:
    """Why an observed gain did not decide, in a few words."""
    if d.significant:  # only the guarantee makes a significant gain a leading one
        return (f"significant, but under --min-gain {budgets.min_gain:.0%}; no mode is "
                f"recommended while a clean one is {GUARANTEE_RATIO:g}x faster: lower "
                f"--min-gain to decide; time ratio {d.describe()}")
    n = f"n={d.n_a} vs {d.n_b}"
    if min(d.n_a, d.n_b) < 2:
        return f"{n}: one repeat cannot show a difference"
    if d.method == "mann-whitney":
        return f"{n}: Mann-Whitney p={d.p_value:.2g}, not under {ALPHA:g}"
    return f"{n}: {d.note or 'not significant'}"


def _inconclusive(chosen: ModeResult, leaders: list[ModeResult], budgets: Budgets,
                  pairs: _Pairs, status: dict[str, str], reasons: dict[str, list[str]]) -> str:
    """Mark the leading candidates inconclusive; the summary with the repeats that decide."""
    parts, estimates = [], []
    for m in leaders:
        d = pairs.diff(m, chosen)
        observed = f"observed {_times(chosen.median / m.median)} faster than {chosen.label}"
        parts.append(f"{m.label} {observed} ({_undecided(d, budgets)})")
        status[m.label] = "inconclusive"
        if d.significant:
            reasons[m.label].append(f"{observed}: {_undecided(d, budgets)}")
            continue
        estimate = repeats_to_decide(m.median, chosen.median, [m.sample, chosen.sample],
                                     have=min(len(m.sample), len(chosen.sample)))
        estimates.append(estimate)
        reasons[m.label].append(f"{observed}, not significantly: {estimate.describe()}; "
                                f"time ratio {d.describe()}")
    status[chosen.label] = "inconclusive"
    reasons[chosen.label].append(
        f"would be recommended (median {chosen.median:.3f} s), but "
        + ", ".join(m.label for m in leaders) + " ran faster by at least --min-gain "
        f"{budgets.min_gain:.0%} and the data cannot tell whether the gain is real")
    if estimates:  # the estimate that asks for the most repeats decides them all
        worst = max(estimates, key=lambda e: math.inf if e.repeats is None else e.repeats)
        parts.append(worst.describe())
    return INCONCLUSIVE + "; ".join(parts)


def _verdict(chain: list[ModeResult], leaders: list[ModeResult], eligible: list[ModeResult],
             budgets: Budgets, pairs: _Pairs, base: tuple[dict[str, str],
                                                           dict[str, list[str]]]) -> Verdict:
    """Statuses and reasons of every clean mode, around the choice (or the candidates)."""
    status, reasons = dict(base[0]), {k: list(v) for k, v in base[1].items()}
    chosen = chain[-1]
    for m in eligible:
        if m is not chosen and m not in leaders:
            status[m.label] = "slower"
            reasons[m.label].append(_compared(m, chosen, budgets, pairs))
    if leaders:
        summary = _inconclusive(chosen, leaders, budgets, pairs, status, reasons)
        chosen_label, outcome = None, "inconclusive"
    else:
        status[chosen.label] = "recommended"
        reasons[chosen.label] += _chosen_reasons(chain, eligible, budgets, pairs)
        summary = f"recommended: {chosen.label} ({'; '.join(reasons[chosen.label])})"
        chosen_label, outcome = chosen.label, "recommended"
    status = {label: status[label] for label in reasons}  # in table order
    return Verdict(chosen_label, outcome, summary, status, reasons, [], budgets)


def _much_faster(label: str | None, eligible: list[ModeResult]) -> list[ModeResult]:
    """Clean modes at least ``GUARANTEE_RATIO`` faster than the recommended one."""
    chosen = next((r for r in eligible if r.label == label), None)
    if chosen is None:
        return []
    return [m for m in eligible if m is not chosen
            and (m.median <= 0 or chosen.median / m.median >= GUARANTEE_RATIO)]


def decide(results: list[ModeResult], budgets: Budgets) -> Verdict:
    """Apply the verdict rules (module docstring) to per-mode results."""
    status: dict[str, str] = {}
    reasons: dict[str, list[str]] = {r.label: [] for r in results}
    eligible = []
    for r in results:
        why = _cell_reasons(r) + budget_reasons(r, budgets)
        if why:
            status[r.label], reasons[r.label] = "discarded", why
        else:
            eligible.append(r)
    warnings = _over_optimization(results, budgets, eligible)
    if any(0 < len(r.sample) < FEW_REPEATS for r in results):
        warnings.append(f"fewer than {FEW_REPEATS} repeats per mode: only very large "
                        "differences can be significant; run --repeat 5 or more")
    if not eligible:
        return Verdict(None, "none", "no mode can be recommended: every mode was discarded",
                       status, reasons, warnings, budgets)
    pairs = _Pairs()
    chain = _choose(eligible, budgets, pairs)
    leaders = [m for m in eligible if m.median < chain[-1].median
               and _gain(m, chain[-1]) >= budgets.min_gain]
    verdict = _verdict(chain, leaders, eligible, budgets, pairs, (status, reasons))
    # The guarantee, checked on the verdict itself: never "recommended: X" while a clean
    # mode is GUARANTEE_RATIO faster than X.
    much_faster = _much_faster(verdict.recommended, eligible)
    if much_faster:
        verdict = _verdict(chain, much_faster, eligible, budgets, pairs, (status, reasons))
    verdict.warnings = warnings
    chosen = next((r for r in eligible if r.label == verdict.recommended), None)
    if chosen is not None and chosen.verify_ok is None:
        verdict.warnings.append(f"{chosen.label} is unverified: the scenario has no checks, "
                                "so correctness was not measured")
    return verdict


@dataclass
class Analysis:
    """A loaded run with every derived frame, its comparison table and its verdict."""

    run: RunData
    units: pd.DataFrame
    samples: pd.DataFrame
    cells: pd.DataFrame
    table: pd.DataFrame
    verdict: Verdict


def analyze(run: RunData, **budget_overrides: Any) -> Analysis:
    """Frames, table and verdict of a run; budgets from run.json unless overridden."""
    units = units_frame(run)
    samples = samples_frame(run)
    cells = cells_frame(run, samples, units)
    table = comparison_table(run, cells, units)
    budgets = Budgets.from_run(run.run, **budget_overrides)
    check_metric_budgets(budgets, table.attrs.get("metrics", []))
    timeout_s = (run.run.get("config") or {}).get("timeout_s")
    results = mode_results(cells, table, timeout_s) if not table.empty else []
    return Analysis(run, units, samples, cells, table, decide(results, budgets))
