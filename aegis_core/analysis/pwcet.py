"""Statistical WCET: a pWCET from measured execution times (docs/THEORY.md §pwcet).

Pure functions over a sample of durations (ns, collection order). Every estimator of docs/THEORY.md
§pwcet is here; :func:`estimate` applies the documented rule below and says how far
the data support its number.

The rule (``Settings`` holds every constant; ``p`` is the per-run exceedance probability):

1. **Tail model: exponential, upper confidence.** The top ``k = clamp(0.4 n, 10, 200)``
   samples above the threshold ``u`` (the next order statistic) give excesses ``y``. The tail
   is taken as exponential (MBPTA-CV, ξ = 0) with its scale at the ``confidence`` (0.975)
   upper limit, ``σ_U = 2k·ȳ / χ²_{2k}(1 − confidence)``, so
   ``pWCET(p) = u + σ_U · ln(k / (n p))``. The upper limit is what buys coverage from ~100
   samples: the point estimate ȳ covers the true quantile only about half the time.
2. **Floor: max observed + margin** (20 %), while ``n`` is below the distribution-free count
   ``ln α / ln(1 − p)`` (2 995 at 10⁻³). A mode rarer than about 1/n may be absent from the
   sample; the floor is the stated assumption that such a mode adds at most ``margin`` to the
   slowest run seen.
3. **Heavier than exponential.** If the excesses' CV lies above the MBPTA-CV band
   ``1 + 1.96/√k`` (a rare slow mode shows up exactly so), a GPD is fitted to the excesses and
   its estimate is taken when larger, unless its shape ξ exceeds ``MAX_XI`` = 0.5 (then no
   extrapolation is credible: the rule keeps rules 1-2 and says so); either way the result is
   flagged ``supported = False``.
4. **Distribution-free.** Once ``n`` reaches the count of rule 2, the observed maximum is
   itself a (1 − α) bound, and the estimate is never below it.
5. **Checks**: independence (Ljung–Box, runs test), identical distribution (KS between the
   halves), fit on held-out samples (even-indexed samples fit the tail, odd-indexed ones test
   it: one-sided KS against a heavier tail). A failed check is a warning and makes the result
   ``supported = False``: the number is printed, never silently.

``converged``: the rule's estimate moved less than ``tolerance`` (relative) over the last
``window`` samples (see :func:`trajectory`). Converging is not being right (docs/THEORY.md
§pwcet-example, lesson 4): more samples of the same kind would not change the answer much.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aegis_core.model.errors import InputError
from aegis_core.model.profile import EXCEEDANCES, MIN_SAMPLES, p_key

MAX_XI = 0.5
"""Rule 3: a GPD whose shape is above this (infinite variance) is not extrapolated from."""


@dataclass(frozen=True)
class Settings:
    """Every constant of the rule (module docstring), with its default."""

    confidence: float = 0.975
    """Upper confidence level of the exponential tail's scale."""
    margin: float = 0.2
    """Floor: max observed × (1 + margin) while the sample is too small to be distribution-free."""
    tail_fraction: float = 0.4
    min_tail: int = 10
    max_tail: int = 200
    alpha: float = 0.01
    """Significance level of the independence, identity and fit checks."""
    free_alpha: float = 0.05
    """Confidence 1 − free_alpha of the distribution-free order-statistic bound."""
    tolerance: float = 0.05
    """Convergence: relative range of the estimate over the last ``window`` samples."""
    window: int = 10
    min_samples: int = 30
    max_samples: int = 100

    def __post_init__(self) -> None:
        checks = {
            "confidence": 0.5 <= self.confidence < 1,
            "margin": self.margin >= 0,
            "tail_fraction": 0 < self.tail_fraction < 1,
            "min_tail": 3 <= self.min_tail <= self.max_tail,
            "alpha": 0 < self.alpha < 1,
            "free_alpha": 0 < self.free_alpha < 1,
            "tolerance": self.tolerance > 0,
            "window": self.window >= 1,
            "min_samples": MIN_SAMPLES <= self.min_samples <= self.max_samples,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"WCET setting {name} = {getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class Check:
    """One applicability check: ``passed`` is None when it could not run (``detail`` says why)."""

    name: str
    passed: bool | None
    statistic: float | None = None
    pvalue: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Candidate:
    """One estimator's answer at the exceedance; ``wcet_ns`` None when it cannot answer."""

    method: str
    wcet_ns: int | None
    note: str = ""


@dataclass(frozen=True)
class WcetEstimate:
    wcet_ns: int
    exceedance: float
    method: str
    n: int
    converged: bool
    supported: bool
    warnings: tuple[str, ...]
    pwcet: dict[str, int]
    checks: tuple[Check, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    stats: dict[str, float] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    def as_dict(self) -> dict[str, Any]:
        """The ``aegis wcet --json`` object (docs/CONTRACTS.md §wcet-json; its keys first)."""
        return {
            "wcet_ns": self.wcet_ns,
            "exceedance": self.exceedance,
            "method": self.method,
            "n": self.n,
            "converged": self.converged,
            "warnings": list(self.warnings),
            "supported": self.supported,
            "pwcet": dict(self.pwcet),
            "samples_needed_distribution_free": samples_needed(
                self.exceedance, self.settings.free_alpha
            ),
            "stats": dict(self.stats),
            "checks": [asdict(c) for c in self.checks],
            "candidates": [asdict(c) for c in self.candidates],
            "settings": asdict(self.settings),
        }


def as_samples(values: Iterable[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if x.ndim != 1:
        raise InputError(f"samples must be one-dimensional, got shape {x.shape}")
    if x.size < MIN_SAMPLES:
        raise InputError(f"a WCET estimate needs at least {MIN_SAMPLES} samples, got {x.size}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise InputError("samples must be finite durations > 0 ns")
    return x


# ----------------------------------------------------------------------------- estimators


def samples_needed(p: float, alpha: float = 0.05) -> int:
    """Distribution-free (docs/THEORY.md §pwcet): max of n i.i.d. runs bounds the (1 − p)-quantile
    with confidence 1 − alpha iff n ≥ ln α / ln(1 − p)."""
    return math.ceil(math.log(alpha) / math.log1p(-p))


def max_margin(x: np.ndarray, margin: float = 0.2) -> float:
    """Max observed × (1 + margin): engineering practice, no probability attached."""
    return float(x.max()) * (1.0 + margin)


def gauss_k(p: float) -> float:
    from scipy.stats import norm

    return float(norm.isf(p))


def cantelli_k(p: float) -> float:
    """Distribution-free one-sided Chebyshev: P(X − μ ≥ kσ) ≤ 1/(1 + k²)."""
    return math.sqrt(1.0 / p - 1.0)


def mean_ksigma(x: np.ndarray, p: float, *, cantelli: bool = False) -> float:
    k = cantelli_k(p) if cantelli else gauss_k(p)
    return float(x.mean() + k * x.std(ddof=1))


def order_statistic_confidence(n: int, p: float) -> float:
    """Confidence that the max of n i.i.d. runs is ≥ the (1 − p)-quantile: 1 − (1 − p)^n."""
    return -math.expm1(n * math.log1p(-p))


def tail_size(n: int, s: Settings) -> int:
    return max(min(round(s.tail_fraction * n), s.max_tail, n - 1), min(s.min_tail, n - 1))


@dataclass(frozen=True)
class Tail:
    """The top ``k`` samples' excesses over ``u`` (a sorted sample's order statistic)."""

    u: float
    k: int
    n: int
    mean: float
    cv: float
    excesses: np.ndarray

    @classmethod
    def of(cls, xs: np.ndarray, s: Settings) -> Tail:
        n = xs.size
        k = tail_size(n, s)
        u = float(xs[n - k - 1])
        y = xs[n - k :] - u
        mean = float(y.mean())
        cv = float(y.std(ddof=1) / mean) if mean > 0 else 0.0
        return cls(u, k, n, mean, cv, y)

    def heavier_band(self) -> float:
        """MBPTA-CV: CV above 1 + 1.96/√k means a tail heavier than exponential."""
        return 1.0 + 1.96 / math.sqrt(self.k)


def _chi2_lower(confidence: float, dof: int) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(1.0 - confidence, dof))


def exp_tail(tail: Tail, p: float, confidence: float | None = None) -> float:
    """Exponential tail: ``u + σ·ln(k/(n p))``; σ the mean excess, or its upper confidence
    limit ``2kȳ/χ²_{2k}(1 − confidence)`` when ``confidence`` is given."""
    scale = tail.mean
    if confidence is not None:
        scale = 2 * tail.k * tail.mean / _chi2_lower(confidence, 2 * tail.k)
    return tail.u + scale * max(math.log(tail.k / (tail.n * p)), 0.0)


def gpd_fit(tail: Tail) -> tuple[float, float] | None:
    """GPD shape ξ (scipy's c = +ξ) and scale fitted to the excesses; None without spread."""
    from scipy.stats import genpareto

    if tail.mean <= 0:
        return None
    c, _, scale = genpareto.fit(tail.excesses, floc=0)
    return float(c), float(scale)


def gpd_pot(tail: Tail, p: float, fit: tuple[float, float] | None = None) -> float | None:
    """Peaks over threshold, GPD; None where it does not apply (p ≥ k/n, or no spread)."""
    from scipy.stats import genpareto

    fit = fit or gpd_fit(tail)
    if fit is None or p >= tail.k / tail.n:
        return None
    value = tail.u + float(genpareto.isf(p * tail.n / tail.k, fit[0], 0, fit[1]))
    return value if math.isfinite(value) else None


def block_maxima(x: np.ndarray, block: int) -> np.ndarray:
    m = x.size // block
    return np.asarray(x[: m * block].reshape(m, block).max(axis=1))


def _block_p(p: float, block: int) -> float:
    """Per-run exceedance p → per-block ``1 − (1 − p)^b``."""
    return -math.expm1(block * math.log1p(-p))


def gumbel_bm(x: np.ndarray, p: float, block: int = 10) -> float | None:
    """Block maxima, Gumbel (original MBPTA); None with fewer than 10 blocks."""
    from scipy.stats import gumbel_r

    maxima = block_maxima(x, block)
    if maxima.size < 10 or np.ptp(maxima) == 0:
        return None
    loc, scale = gumbel_r.fit(maxima)
    return float(gumbel_r.isf(_block_p(p, block), loc, scale))


def gev_bm(x: np.ndarray, p: float, block: int = 10) -> float | None:
    """Block maxima, GEV (scipy's c = −ξ); None with fewer than 20 blocks."""
    from scipy.stats import genextreme

    maxima = block_maxima(x, block)
    if maxima.size < 20 or np.ptp(maxima) == 0:
        return None
    c, loc, scale = genextreme.fit(maxima)
    value = float(genextreme.isf(_block_p(p, block), c, loc, scale))
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------- checks


def ljung_box(x: np.ndarray, lags: int | None = None, alpha: float = 0.01) -> Check:
    """Q = n(n+2) Σ ρ̂_k²/(n − k) against χ²_h (no serial correlation under H0)."""
    from scipy.stats import chi2

    n = x.size
    h = lags or max(1, min(20, n // 5))
    d = x - x.mean()
    denom = float(d @ d)
    if denom == 0:
        return Check("ljung-box", None, detail="all samples equal")
    rho = np.array([float(d[:-k] @ d[k:]) / denom for k in range(1, h + 1)])
    q = float(n * (n + 2) * np.sum(rho**2 / (n - np.arange(1, h + 1))))
    pv = float(chi2.sf(q, h))
    return Check("ljung-box", pv >= alpha, q, pv, f"{h} lags")


def runs_test(x: np.ndarray, alpha: float = 0.01) -> Check:
    """Wald–Wolfowitz runs above/below the median (samples equal to it are dropped)."""
    from scipy.stats import norm

    med = float(np.median(x))
    above = x[x != med] > med
    n1, n2 = int(above.sum()), int((~above).sum())
    if n1 == 0 or n2 == 0:
        return Check("runs", None, detail="no samples on one side of the median")
    runs = 1 + int(np.count_nonzero(above[1:] != above[:-1]))
    big_n = n1 + n2
    mean = 2 * n1 * n2 / big_n + 1
    var = 2 * n1 * n2 * (2 * n1 * n2 - big_n) / (big_n**2 * (big_n - 1))
    if var <= 0:
        return Check("runs", None, detail="too few samples")
    z = (runs - mean) / math.sqrt(var)
    pv = float(2 * norm.sf(abs(z)))
    return Check("runs", pv >= alpha, z, pv, f"{runs} runs")


def ks_halves(x: np.ndarray, alpha: float = 0.01) -> Check:
    """Identical distribution: two-sample KS between the first and second halves."""
    from scipy.stats import ks_2samp

    half = x.size // 2
    r = ks_2samp(x[:half], x[half:])
    pv = float(r.pvalue)
    return Check("ks-halves", pv >= alpha, float(r.statistic), pv)


def tail_cv(tail: Tail) -> Check:
    """MBPTA-CV: excesses' CV within ``1 + 1.96/√k`` (exponential or lighter)."""
    if tail.mean <= 0:
        return Check("tail-cv", None, detail="no spread in the tail")
    band = tail.heavier_band()
    return Check(
        "tail-cv", tail.cv <= band, tail.cv, None, f"k = {tail.k}, exponential band <= {band:.3f}"
    )


def heldout_fit(x: np.ndarray, s: Settings) -> Check:
    """Fit the exponential tail on even-indexed samples; test the odd-indexed excesses over
    its threshold against it (one-sided KS: are they heavier than the fit?)."""
    from scipy.stats import kstest

    train, test = np.sort(x[0::2]), x[1::2]
    tail = Tail.of(train, s)
    y = test[test > tail.u] - tail.u
    if tail.mean <= 0 or y.size < 5:
        return Check("held-out-fit", None, detail=f"{y.size} held-out excesses (need 5)")
    r = kstest(y, "expon", args=(0, tail.mean), alternative="less")
    pv = float(r.pvalue)
    return Check("held-out-fit", pv >= s.alpha, float(r.statistic), pv, f"{y.size} excesses")


# ----------------------------------------------------------------------------- the rule


def bound(xs: np.ndarray, p: float, s: Settings, tail: Tail | None = None) -> tuple[float, str]:
    """Rules 1, 2 and 4 on a sorted sample: the estimate and the method that set it."""
    tail = tail or Tail.of(xs, s)
    value, method = exp_tail(tail, p, s.confidence), "exp-tail"
    n = xs.size
    if n < samples_needed(p, s.free_alpha):
        floor = float(xs[-1]) * (1.0 + s.margin)
        if floor > value:
            value, method = floor, f"max+{s.margin:.0%}"
    elif float(xs[-1]) > value:
        value, method = float(xs[-1]), "order-statistic"
    return value, method


def trajectory(x: np.ndarray, p: float, s: Settings, start: int | None = None) -> list[float]:
    """The rule's estimate (rules 1, 2, 4) after each sample from ``start`` (default
    ``min_samples``) to ``len(x)``: the sequence convergence is judged on."""
    first = max(MIN_SAMPLES, s.min_samples if start is None else start)
    return [bound(np.sort(x[:m]), p, s)[0] for m in range(first, x.size + 1)]


def is_stable(values: Sequence[float], s: Settings) -> bool:
    """The last ``window + 1`` estimates span at most ``tolerance`` of the last one."""
    if len(values) < s.window + 1:
        return False
    w = values[-(s.window + 1) :]
    return (max(w) - min(w)) <= s.tolerance * w[-1]


def summary_stats(x: np.ndarray) -> dict[str, float]:
    mean = float(x.mean())
    sd = float(x.std(ddof=1))
    return {
        "min": float(x.min()),
        "p50": float(np.median(x)),
        "p99": float(np.quantile(x, 0.99)),
        "max": float(x.max()),
        "mean": mean,
        "sd": sd,
        "cv": sd / mean,
    }


def _candidates(
    x: np.ndarray, xs: np.ndarray, p: float, s: Settings, tail: Tail
) -> list[Candidate]:
    def c(method: str, value: float | None, note: str = "") -> Candidate:
        return Candidate(method, None if value is None else math.ceil(value), note)

    need = samples_needed(p, s.free_alpha)
    conf = order_statistic_confidence(x.size, p)
    return [
        c(f"max+{s.margin:.0%}", max_margin(x, s.margin), "no probabilistic meaning"),
        c("mean+gauss-k-sigma", mean_ksigma(x, p), f"k = {gauss_k(p):.3f}"),
        c("mean+cantelli-k-sigma", mean_ksigma(x, p, cantelli=True), f"k = {cantelli_k(p):.1f}"),
        c("order-statistic", float(xs[-1]),
          f"the max bounds the quantile with confidence {conf:.3g} (n >= {need} for "
          f"{1 - s.free_alpha:.0%})"),
        c("exp-tail-point", exp_tail(tail, p), f"u = {tail.u:.0f}, mean excess {tail.mean:.0f}"),
        c("exp-tail", exp_tail(tail, p, s.confidence), f"scale at {s.confidence:.1%} upper limit"),
        c("gumbel-bm", gumbel_bm(x, p), "blocks of 10; needs 10 blocks"),
        c("gev-bm", gev_bm(x, p), "blocks of 10; needs 20 blocks"),
        c("gpd-pot", gpd_pot(tail, p), f"top {tail.k}"),
    ]  # fmt: skip


def _at(
    xs: np.ndarray, p: float, s: Settings, tail: Tail, gpd: tuple[float, float] | None
) -> tuple[float, str]:
    value, method = bound(xs, p, s, tail)
    if gpd is not None:
        g = gpd_pot(tail, p, gpd)
        if g is not None and g > value:
            value, method = g, "gpd-pot"
    return value, method


def estimate(
    samples: Iterable[float] | np.ndarray,
    exceedance: float = 1e-3,
    settings: Settings | None = None,
    *,
    candidates: bool = True,
) -> WcetEstimate:
    """The rule's pWCET at ``exceedance`` with its checks, candidates and pWCET table.
    ``candidates=False`` skips the estimators the rule does not use (faster)."""
    s = settings or Settings()
    if not 0 < exceedance < 1:
        raise InputError(f"exceedance must lie in (0, 1), got {exceedance}")
    x = as_samples(samples)
    xs = np.sort(x)
    tail = Tail.of(xs, s)
    checks = (ljung_box(x, alpha=s.alpha), runs_test(x, s.alpha), ks_halves(x, s.alpha),
              tail_cv(tail), heldout_fit(x, s))  # fmt: skip
    warnings = _warnings(x.size, exceedance, s, checks)
    gpd = gpd_fit(tail) if checks[3].passed is False else None
    if gpd is not None and gpd[0] > MAX_XI:
        warnings.append(
            f"GPD shape xi = {gpd[0]:.2f} > {MAX_XI}: too heavy a tail to extrapolate from "
            f"{tail.k} excesses; the number is the exponential-tail bound, not supported"
        )
        gpd = None
    value, method = _at(xs, exceedance, s, tail, gpd)
    table = {p_key(p): math.ceil(_at(xs, p, s, tail, gpd)[0]) for p in EXCEEDANCES}
    traj = trajectory(x, exceedance, s, start=max(MIN_SAMPLES, x.size - s.window))
    return WcetEstimate(
        wcet_ns=math.ceil(value),
        exceedance=exceedance,
        method=method,
        n=x.size,
        converged=x.size >= s.min_samples and is_stable(traj, s),
        supported=not any(c.passed is False for c in checks),
        warnings=tuple(warnings),
        pwcet=table,
        checks=checks,
        candidates=tuple(_candidates(x, xs, exceedance, s, tail)) if candidates else (),
        stats=summary_stats(x),
        settings=s,
    )


_WHY = {
    "ljung-box": "samples are serially correlated (Ljung-Box): not independent",
    "runs": "too few or too many runs around the median: not independent",
    "ks-halves": "first and second halves differ (KS): not identically distributed",
    "tail-cv": "tail heavier than exponential (MBPTA-CV band): a rare slow mode or a "
    "heavy tail; the bound is model-sensitive (GPD)",
    "held-out-fit": "held-out samples exceed the fitted tail (KS): the tail model does not fit",
}


def _warnings(n: int, p: float, s: Settings, checks: Sequence[Check]) -> list[str]:
    out = [f"{_WHY[c.name]} (p = {c.pvalue:.3g})" if c.pvalue is not None
           else f"{_WHY[c.name]} (statistic {c.statistic:.3g})"
           for c in checks if c.passed is False]  # fmt: skip
    need = samples_needed(p, s.free_alpha)
    if n < need:
        out.append(
            f"{n} samples < {need} for a distribution-free bound at {p:g}: the tail is "
            f"extrapolated, floored at the max observed + {s.margin:.0%}"
        )
    return out


def read_samples(path: str) -> np.ndarray:
    """A file of durations in ns, one per line (blank lines and ``#`` comments skipped); an
    InputError names the file and line of anything else."""
    from aegis_core.model.files import read_text

    text = read_text(path)
    values: list[float] = []
    for i, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            v = float(item)
        except ValueError:
            raise InputError(f"{path}: line {i}: not a number: {item!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"{path}: line {i}: a duration must be a finite number > 0 ns")
        values.append(v)
    try:
        return as_samples(values)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


class Convergence:
    """Feeds samples one at a time and says when to stop (module docstring): ``add`` returns
    True once ``min_samples`` are in and the estimate is stable, or ``max_samples`` are in."""

    def __init__(self, exceedance: float = 1e-3, settings: Settings | None = None) -> None:
        self.p = exceedance
        self.s = settings or Settings()
        self.samples: list[float] = []
        self.history: list[float] = []
        self.converged = False

    def add(self, value: float) -> bool:
        self.samples.append(float(value))
        n = len(self.samples)
        if n >= MIN_SAMPLES:
            self.history.append(bound(np.sort(np.asarray(self.samples)), self.p, self.s)[0])
        if n >= self.s.min_samples and is_stable(self.history, self.s):
            self.converged = True
        return self.converged or n >= self.s.max_samples
