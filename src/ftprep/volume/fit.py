"""Learning-curve fit: the inverse power law ``err(n) = a * n^(-b) + c``.

``err`` is ``1 - metric`` when higher is better, else the metric itself; ``c`` is the error the
curve levels off at (the asymptote), ``b`` how fast it gets there. This is the standard model of
learning curves (Mukherjee et al. 2003; Figueroa et al. 2012, "Predicting sample size required
for classification performance"; Hestness et al. 2017, "Deep learning scaling is predictable,
empirically"; Viering & Loog 2022, "The shape of learning curves").

Fit: for each ``c`` on a grid below the smallest mean error the model is linear in log space
(``log(err - c) = log a - b log n``), which gives a robust start; the best one seeds a bounded
least-squares fit (``scipy.optimize.least_squares``) of the relative residuals
``log(model) - log(err)`` (the scatter of a learning curve shrinks with its error; plain
residuals when an error is <= 0). The log-space solution is kept when least squares fails or
fits worse. A bootstrap (within-size resampling of repeats when
every size was measured at least twice, else residual resampling) gives the uncertainty band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

B_BOUNDS = (0.01, 3.0)


class FitError(ValueError):
    """Too few or unusable points to fit a learning curve."""


@dataclass
class PowerLaw:
    a: float
    b: float
    c: float

    def err(self, n: np.ndarray | float) -> np.ndarray:
        return self.a * np.power(np.asarray(n, dtype=float), -self.b) + self.c

    def plateau_n(self, delta: float) -> float:
        """Smallest n where doubling the data lowers the error by less than ``delta``:
        ``a n^-b (1 - 2^-b) < delta``."""
        gain1 = self.a * (1 - 2.0 ** (-self.b))
        if gain1 <= delta:
            return 1.0
        return float((gain1 / delta) ** (1 / self.b))

    def n_for_err(self, target_err: float) -> float | None:
        """Examples needed to reach ``target_err`` (None: below the asymptote)."""
        if target_err <= self.c:
            return None
        if self.a <= 0:
            return 1.0
        return float((self.a / (target_err - self.c)) ** (1 / self.b))


@dataclass
class CurveFit:
    law: PowerLaw
    method: str  # "least_squares" | "log_profile"
    higher_is_better: bool
    n: np.ndarray
    metric: np.ndarray
    rmse: float
    boot: list[PowerLaw] = field(default_factory=list)

    def to_metric(self, err: np.ndarray | float) -> np.ndarray:
        e = np.asarray(err, dtype=float)
        return 1 - e if self.higher_is_better else e

    def to_err(self, metric: float) -> float:
        return 1 - metric if self.higher_is_better else metric

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        return self.to_metric(self.law.err(n))

    def band(self, n: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap interval of the predicted metric at ``n``."""
        if not self.boot:
            p = self.predict(n)
            return p, p
        preds = np.array([self.to_metric(b.err(n)) for b in self.boot])
        lo = np.quantile(preds, (1 - level) / 2, axis=0)
        hi = np.quantile(preds, 1 - (1 - level) / 2, axis=0)
        return lo, hi

    def interval(self, values: list[float | None], level: float) -> list[float | None]:
        """[low, high] of bootstrap values; ``None`` entries (unreachable) count as +inf."""
        if not values:
            return [None, None]
        arr = np.array([math.inf if v is None else v for v in values], dtype=float)
        # order statistics, no interpolation (the values may include +inf)
        lo = float(np.quantile(arr, (1 - level) / 2, method="lower"))
        hi = float(np.quantile(arr, 1 - (1 - level) / 2, method="higher"))
        return [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None]

    def warnings(self) -> list[str]:
        out = []
        if self.law.b <= B_BOUNDS[0] * 1.01:
            out.append(
                "the curve is flat over the measured sizes (b at its lower bound): the asymptote "
                "is not identified; read the plateau level instead"
            )
        if self.law.b >= B_BOUNDS[1] * 0.99:
            out.append("b at its upper bound: the curve drops unusually fast; check the points")
        return out

    def params(self) -> dict[str, Any]:
        return {"a": self.law.a, "b": self.law.b, "c": self.law.c}


def _c_bounds(err: np.ndarray, means: np.ndarray) -> tuple[float, float]:
    hi = float(means.min())
    lo = 0.0 if float(err.min()) >= 0 else hi - 4 * float(np.ptp(err) + abs(hi) + 1e-9)
    return lo, hi


def _profile(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, nr: np.ndarray, er: np.ndarray, c_lo: float
) -> PowerLaw:
    """Best fit over a grid of asymptotes, each a weighted line in log-log space."""
    c_hi = float(y.min())
    span = c_hi - c_lo
    grid = c_lo + span * (1 - np.geomspace(1, 1e-4, 80))
    grid = np.concatenate([[c_lo], grid[(grid > c_lo) & (grid < c_hi)]])
    lx = np.log(x)
    ly = np.log(np.maximum(y[None, :] - grid[:, None], 1e-12))  # (grid, sizes)
    xm = np.average(lx, weights=w)
    ym = ly @ w / w.sum()
    sxx = float(np.sum(w * (lx - xm) ** 2))
    slope = ((ly - ym[:, None]) * (w * (lx - xm))[None, :]).sum(axis=1) / sxx
    b = np.clip(-slope, *B_BOUNDS)
    loga = (ly + b[:, None] * lx[None, :]) @ w / w.sum()
    pred = np.exp(loga)[:, None] * np.power(nr[None, :], -b[:, None]) + grid[:, None]
    k = int(np.argmin(((pred - er[None, :]) ** 2).sum(axis=1)))
    return PowerLaw(float(np.exp(loga[k])), float(b[k]), float(grid[k]))


def fit_power_law(n: np.ndarray, err: np.ndarray) -> tuple[PowerLaw, str]:
    """Fit ``err = a n^-b + c`` to raw points (repeats allowed). Returns the law and the method
    that produced it."""
    from scipy.optimize import least_squares

    n = np.asarray(n, dtype=float)
    err = np.asarray(err, dtype=float)
    sizes = np.unique(n)
    if len(sizes) < 3:
        raise FitError(
            f"a learning curve needs at least 3 distinct training sizes (got {len(sizes)})"
        )
    if np.any(n <= 0) or not np.all(np.isfinite(err)):
        raise FitError("training sizes must be positive and metrics finite")
    means = np.array([err[n == s].mean() for s in sizes])
    counts = np.array([(n == s).sum() for s in sizes], dtype=float)
    c_lo, c_hi = _c_bounds(err, means)
    start = _profile(sizes, means, counts, n, err, c_lo)
    relative = bool(err.min() > 0)
    scale = max(float(np.ptp(err)), 1e-6)

    def resid(p: np.ndarray) -> np.ndarray:
        a, b, c = p
        pred = a * np.power(n, -b) + c
        if relative:  # relative residuals: the noise of a learning curve shrinks with its error
            return np.log(np.maximum(pred, 1e-12)) - np.log(err)
        return (pred - err) / scale

    start_sse = float(np.sum(resid(np.array([start.a, start.b, start.c])) ** 2))

    lo = [0.0, B_BOUNDS[0], c_lo]
    hi = [np.inf, B_BOUNDS[1], c_hi + 1e-12]
    x0 = np.clip([start.a, start.b, start.c], [v + 1e-12 for v in lo[:2]] + [c_lo], hi)
    try:
        r = least_squares(resid, x0, bounds=(lo, hi), method="trf", max_nfev=400)
        law = PowerLaw(float(r.x[0]), float(r.x[1]), float(r.x[2]))
        sse = float(np.sum(resid(r.x) ** 2))
        if r.success and np.all(np.isfinite(r.x)) and sse <= start_sse * (1 + 1e-9):
            return law, "least_squares"
    except (ValueError, np.linalg.LinAlgError):
        pass
    return start, "log_profile"


def fit_curve(
    n: np.ndarray,
    metric: np.ndarray,
    *,
    higher_is_better: bool = True,
    bootstrap: int = 200,
    seed: int = 0,
) -> CurveFit:
    n = np.asarray(n, dtype=float)
    metric = np.asarray(metric, dtype=float)
    err = 1 - metric if higher_is_better else metric
    law, method = fit_power_law(n, err)
    rmse = float(np.sqrt(np.mean((law.err(n) - err) ** 2)))
    fit = CurveFit(law, method, higher_is_better, n, metric, rmse)
    if bootstrap > 0:
        fit.boot = _bootstrap(n, err, law, bootstrap, seed)
    return fit


def _bootstrap(
    n: np.ndarray, err: np.ndarray, law: PowerLaw, reps: int, seed: int
) -> list[PowerLaw]:
    rng = np.random.default_rng(seed)
    sizes = np.unique(n)
    groups = [np.flatnonzero(n == s) for s in sizes]
    repeated = all(len(g) >= 2 for g in groups)
    resid = err - law.err(n)
    resid = resid - resid.mean()
    out: list[PowerLaw] = []
    for _ in range(reps):
        if repeated:
            idx = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
            nb, eb = n[idx], err[idx]
        else:
            nb, eb = n, law.err(n) + rng.choice(resid, size=len(n))
        try:
            out.append(fit_power_law(nb, eb)[0])
        except FitError:
            continue
    return out


def backtest(
    n: np.ndarray, metric: np.ndarray, *, higher_is_better: bool = True
) -> dict[str, float] | None:
    """Fit without the largest size and predict it: how well the curve extrapolates here."""
    n = np.asarray(n, dtype=float)
    metric = np.asarray(metric, dtype=float)
    sizes = np.unique(n)
    if len(sizes) < 4:
        return None
    last = sizes[-1]
    keep = n < last
    f = fit_curve(n[keep], metric[keep], higher_is_better=higher_is_better, bootstrap=0)
    predicted = float(f.predict(last))
    measured = float(metric[n == last].mean())
    return {
        "n": float(last),
        "fitted_up_to_n": float(sizes[-2]),
        "predicted": predicted,
        "measured": measured,
        "abs_error": abs(predicted - measured),
    }
