"""A sweep's report: a Markdown table per series with the USL fit and the recommendation, and
one figure (throughput and latency from due against concurrency, error rate overlaid)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.sweep import RECOMMEND_WITHIN, SeriesSummary
from harness.analysis.usl import usl
from harness.report.plots import _figure, _log_axis, _png


def _name(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all"


def _ci(pair: list[float] | tuple[float, float]) -> str:
    return f"[{pair[0]:.3g}, {pair[1]:.3g}]"


def fit_text(summary: SeriesSummary, axis: str) -> list[str]:
    """The fit, N*, the onset of errors and the recommendation, one line each."""
    lines = []
    fit = summary.fit
    if fit is None:
        lines.append("- USL fit: fewer than 3 clean points, no fit")
    else:
        tested = max(p.n for p in summary.points)
        if math.isinf(fit.n_star):
            n_star = "infinite (no coherency cost: throughput flattens, never falls)"
        elif fit.n_star < min(p.n for p in summary.points):
            n_star = f"{fit.n_star:.2g}, below the lowest point run: throughput only falls from there"
        elif fit.n_star > 4 * tested:
            n_star = (f"{fit.n_star:.3g}, far beyond the points run (up to {tested}): no peak "
                      "in sight there")
        else:
            n_star = f"{fit.n_star:.1f}"
        # Three points for three parameters: the curve passes through them, and curve_fit
        # has no residual to give intervals from (its covariance is inf or nan).
        bare = not all(math.isfinite(v) for v in (*fit.sigma_ci, *fit.kappa_ci, *fit.lam_ci))
        ci = (lambda pair: "") if bare else (lambda pair: " " + _ci(pair))
        lines += [f"- USL fit on {fit.points} clean points (R² {fit.r2:.3f}): "
                  f"σ (contention) = {fit.sigma:.4f}{ci(fit.sigma_ci)}, "
                  f"κ (coherency) = {fit.kappa:.2e}{ci(fit.kappa_ci)}, "
                  f"λ = {fit.lam:.2f} units/s{ci(fit.lam_ci)}"
                  + (" (no intervals: as many points as parameters; run at least 4 points)"
                     if bare else " (95 % CI)"),
                  f"- N* (peak throughput) = {n_star}; modelled peak {fit.peak:.1f} units/s"]
    onset = summary.error_onset
    lines.append(f"- onset of errors: {axis}={onset}" if onset is not None
                 else "- onset of errors: none in the points run")
    if summary.recommended is not None and summary.best_clean is not None:
        rec, best = summary.recommended, summary.best_clean
        lines.append(f"- **recommended: {axis}={rec.n}** ({rec.label}, {rec.throughput:.1f} units/s): "
                     f"the smallest within {RECOMMEND_WITHIN:.0%} of the best clean throughput "
                     f"({best.throughput:.1f} units/s at {axis}={best.n})")
    else:
        lines.append("- recommended: none (no clean point)")
    return lines


def sweep_markdown(layout: dict[str, Any], summaries: list[SeriesSummary]) -> str:
    """The whole sweep as Markdown."""
    axis = layout["axis"]
    out = [f"# sweep: {layout['executor']} + {layout['policy']}, varying {axis}", ""]
    for summary in summaries:
        out += [f"## {_name(summary.values)}", "",
                f"| {axis} | mode | units/s | run s | latency p50 ms | latency p95 ms | "
                "error rate | peak MB | clean |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for p in summary.points:
            out.append(f"| {p.n} | {p.label} | {p.throughput:.1f} | {p.makespan_s:.2f} | "
                       f"{p.p50_ms:.0f} | {p.p95_ms:.0f} | {p.error_rate:.1%} | "
                       f"{p.memory_mb:.0f} | {'yes' if p.clean else 'no'} |")
        out += ["", *fit_text(summary, axis), ""]
    return "\n".join(out)


def sweep_png(layout: dict[str, Any], summaries: list[SeriesSummary]) -> bytes:
    """Throughput (points and USL curve) and latency p50/p95 against concurrency, each with
    the error rate on a second axis."""
    axis = layout["axis"]
    fig = _figure(10.0, 4.2)
    thr, lat = fig.subplots(1, 2)
    err_axes = [thr.twinx(), lat.twinx()]
    for i, summary in enumerate(summaries):
        colour = f"C{i}"
        ns = np.array([p.n for p in summary.points], dtype=float)
        name = _name(summary.values)
        thr.plot(ns, [p.throughput for p in summary.points], "o", color=colour, label=name)
        if summary.fit is not None:
            grid = np.geomspace(max(1.0, ns.min()), ns.max(), 100)
            thr.plot(grid, usl(grid, summary.fit.lam, summary.fit.sigma, summary.fit.kappa),
                     "-", color=colour, alpha=0.6, label=f"USL σ={summary.fit.sigma:.3f}")
        if summary.recommended is not None:
            thr.axvline(summary.recommended.n, color=colour, ls=":", alpha=0.7)
        lat.plot(ns, [p.p50_ms for p in summary.points], "o-", color=colour, label=f"{name} p50")
        lat.plot(ns, [p.p95_ms for p in summary.points], "s--", color=colour, label=f"{name} p95")
        for ax in err_axes:
            ax.plot(ns, [100 * p.error_rate for p in summary.points], "x:", color="red", alpha=0.6)
    thr.set(xlabel=axis, ylabel="throughput (units/s)", title="throughput (dotted: recommended)")
    lat.set(xlabel=axis, ylabel="latency from due (ms)", title="latency from due")
    for ax in (thr, lat):
        _log_axis(ax.xaxis, ax.set_xscale)
        ax.legend(fontsize=7, loc="upper left")
    for ax in err_axes:
        ax.set_ylabel("error rate % (red x)", color="red")
        ax.set_ylim(0, 105)
    return _png(fig)


def write_sweep_report(run_dir: Path, layout: dict[str, Any],
                       summaries: list[SeriesSummary]) -> list[Path]:
    """sweep.md and sweep.png in the run folder; the paths written."""
    md, png = Path(run_dir) / "sweep.md", Path(run_dir) / "sweep.png"
    md.write_text(sweep_markdown(layout, summaries) + f"\n![sweep]({png.name})\n", encoding="utf-8")
    png.write_bytes(sweep_png(layout, summaries))
    return [md, png]
