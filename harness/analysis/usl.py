"""The Universal Scalability Law (Gunther): throughput at concurrency N,

    X(N) = lam * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

``sigma`` is contention (the serial fraction: Amdahl's law when ``kappa`` = 0), ``kappa``
coherency (the cost of keeping N parties in step: what bends throughput back down). Peak
throughput sits at ``N* = sqrt((1 - sigma) / kappa)``. Fitted with scipy's ``curve_fit`` on
the clean points only (a point with errors measures a different system).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

KAPPA_NIL = 1e-9  # a fitted coherency below this is no coherency (the optimizer's zero)


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """Throughput at concurrency ``n`` under the USL."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """A fitted USL with 95 % confidence intervals (normal approximation of the covariance)."""

    lam: float
    sigma: float
    kappa: float
    sigma_ci: tuple[float, float]
    kappa_ci: tuple[float, float]
    lam_ci: tuple[float, float]
    points: int
    r2: float

    @property
    def n_star(self) -> float:
        """Concurrency of peak throughput (inf when coherency is nil: Amdahl flattens out)."""
        if self.kappa <= KAPPA_NIL:
            return math.inf
        return math.sqrt(max(0.0, 1 - self.sigma) / self.kappa)

    @property
    def peak(self) -> float:
        """Throughput at N* (the asymptote lam / sigma when N* is infinite)."""
        if math.isinf(self.n_star):
            return self.lam / self.sigma if self.sigma > 0 else math.inf
        return float(usl(np.array([self.n_star]), self.lam, self.sigma, self.kappa)[0])

    def as_dict(self) -> dict[str, float | list[float] | int]:
        return {"lambda": self.lam, "sigma": self.sigma, "kappa": self.kappa,
                "lambda_ci": list(self.lam_ci), "sigma_ci": list(self.sigma_ci),
                "kappa_ci": list(self.kappa_ci), "n_star": self.n_star, "peak": self.peak,
                "points": self.points, "r2": self.r2}


def fit_usl(n: list[float], x: list[float]) -> UslFit | None:
    """Fit the USL to (concurrency, throughput) points; None with fewer than 3 distinct N."""
    from scipy.optimize import OptimizeWarning, curve_fit

    n_arr, x_arr = np.asarray(n, dtype=float), np.asarray(x, dtype=float)
    if len(set(n_arr.tolist())) < 3 or not np.all(np.isfinite(x_arr)):
        return None
    at_one = x_arr[n_arr == n_arr.min()].mean() / n_arr.min()
    # Relative errors (sigma=x): the low-N points, where throughput is small, weigh as much as
    # the plateau, which is where sigma is read.
    with warnings.catch_warnings():  # too few points for a covariance: CIs are nan, said so
        warnings.simplefilter("ignore", OptimizeWarning)
        params, cov = curve_fit(usl, n_arr, x_arr, p0=(at_one, 0.05, 1e-4), sigma=x_arr,
                                bounds=([0, 0, 0], [np.inf, 1, 1]), maxfev=20000)
    errors = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.all(np.isfinite(cov)) else [math.nan] * 3
    ci = [(float(max(0.0, p - 1.96 * e)), float(p + 1.96 * e)) for p, e in zip(params, errors)]
    predicted = usl(n_arr, *params)
    total = float(((x_arr - x_arr.mean()) ** 2).sum())
    r2 = 1 - float(((x_arr - predicted) ** 2).sum()) / total if total > 0 else 1.0
    lam, sigma, kappa = (float(p) for p in params)
    return UslFit(lam, sigma, kappa, ci[1], ci[2], ci[0], len(n_arr), r2)
