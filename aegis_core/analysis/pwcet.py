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
6. **Trust checks** (a profile repeated on the same machine must agree, or say why not):
   *too few samples* (``n < min_samples`` = 30); *drift* (block medians over collection order
   span more than ``drift_tolerance`` = 10 % and differ at ``alpha``, Kruskal–Wallis); *a
   second mode* (a kernel density with a valley at most ``mode_valley`` = 0.5 of the lower
   peak, ``mode_fraction`` = 10 % of the samples or more on each side). Each, failed, makes
   the result ``supported = False`` with a warning; :attr:`WcetEstimate.reason` names the
   failed checks in one line.

``converged``: the rule's estimate moved less than ``tolerance`` (relative) over the last
``window`` samples (see :func:`trajectory`) *and* the samples do not drift (rule 6): a stable
estimate over drifting data is not converged. :class:`Convergence` discards a start-up
transient (:func:`transient`: a significant change point in the first half, the rest free of
drift) once and samples on. Converging is not being right (docs/THEORY.md §pwcet-example,
lesson 4): more samples of the same kind would not change the answer much.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aegis_core.model.errors import InputError, quote, shorten
from aegis_core.model.profile import EXCEEDANCES, MIN_SAMPLES, p_key
from aegis_core.model.types import fmt_count

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
    """Fewer samples than this: the result is ``supported = False`` (too few samples)."""
    max_samples: int = 100
    drift_blocks: int = 5
    """Drift check: the sample is cut, in collection order, into this many blocks (at most one
    per 10 samples, at least 2)."""
    drift_tolerance: float = 0.1
    """Drift check: block medians spanning more than this (relative) and differing
    significantly (Kruskal-Wallis at ``alpha``) are a drift."""
    mode_fraction: float = 0.1
    """Second-mode check: the smaller mode holds at least this fraction of the samples..."""
    mode_valley: float = 0.5
    """...and the density between the modes falls to at most this fraction of the lower peak."""
    max_transient: float = 0.5
    """``Convergence`` discards a start-up transient of at most this fraction of the samples."""

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
            "drift_blocks": self.drift_blocks >= 2,
            "drift_tolerance": self.drift_tolerance >= 0,
            "mode_fraction": 0 < self.mode_fraction < 0.5,
            "mode_valley": 0 < self.mode_valley < 1,
            "max_transient": 0 <= self.max_transient < 1,
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

    @property
    def reason(self) -> str:
        """Why the result is not supported, in one line (``""`` when it is)."""
        return reason(self.checks)

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
            "reason": self.reason,
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
    return Check("runs", pv >= alpha, z, pv, fmt_count(runs, "run"))


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


def enough_samples(n: int, s: Settings) -> Check:
    """At least ``min_samples``: fewer leave the tail fit and the other checks without power."""
    return Check(
        "samples", n >= s.min_samples, float(n), None, f"{n} samples, need {s.min_samples}"
    )


def drift(x: np.ndarray, s: Settings) -> Check:
    """Identical distribution over collection order: cut the sample into ``b`` consecutive
    blocks (``drift_blocks``, at most one per 10 samples, at least 2); a drift is block medians
    spanning more than ``drift_tolerance`` of the lowest *and* differing significantly
    (Kruskal-Wallis at ``alpha``). Catches a trend, a level shift and a passing slow phase."""
    from scipy.stats import kruskal

    if np.ptp(x) == 0:
        return Check("drift", None, detail="all samples equal")
    b = max(2, min(s.drift_blocks, x.size // 10))
    parts = np.array_split(x, b)
    med = np.array([float(np.median(part)) for part in parts])
    pv = float(kruskal(*parts).pvalue)
    rel = float(med.max() / med.min() - 1)
    detail = (f"medians of {b} blocks in collection order "
              f"{', '.join(f'{m / 1e6:.3f}' for m in med)} ms: +{rel:.0%}")  # fmt: skip
    return Check("drift", not (pv < s.alpha and rel > s.drift_tolerance), rel, pv, detail)


def second_mode(x: np.ndarray, s: Settings) -> Check:
    """Unimodality: a Gaussian kernel density (Silverman's bandwidth, which over-smooths a
    mixture: a conservative test) on a 256-point grid; a second mode is a valley whose density
    is at most ``mode_valley`` of the lower of the highest peaks on either side, with at least
    ``mode_fraction`` of the samples on each side. ``statistic``: the deepest such valley's
    ratio (1.0 when there is none)."""
    from scipy.stats import gaussian_kde

    sd = float(x.std(ddof=1))
    q1, q3 = np.quantile(x, [0.25, 0.75])
    h = 0.9 * min(sd, float(q3 - q1) / 1.34) * x.size ** (-0.2)
    if h <= 0:
        return Check("second-mode", None, detail="no spread")
    grid = np.linspace(float(x.min()), float(x.max()), 256)
    dens = gaussian_kde(x, bw_method=h / sd)(grid)
    best: tuple[float, float, float] | None = None  # (valley ratio, minority fraction, where)
    for i in range(1, grid.size - 1):
        if not dens[i] < dens[i - 1] or not dens[i] <= dens[i + 1]:
            continue
        ratio = float(dens[i] / min(dens[:i].max(), dens[i + 1 :].max()))
        below = float(np.mean(x < grid[i]))
        minority = min(below, 1 - below)
        if (
            ratio <= s.mode_valley
            and minority >= s.mode_fraction
            and (best is None or ratio < best[0])
        ):
            best = (ratio, below, float(grid[i]))
    if best is None:
        return Check("second-mode", True, 1.0, None, "one mode")
    ratio, below, at = best
    return Check(
        "second-mode", False, ratio, None,
        f"{below:.0%} of the samples below {at / 1e6:.3f} ms, {1 - below:.0%} above; the "
        f"density between them falls to {ratio:.2f} of the lower peak",
    )  # fmt: skip


def host_load(share: float | None, limit: float) -> Check:
    """The host was busy with other work while the samples were taken: ``share`` of its CPU
    time went to other processes (None: unknown). Timings then depend on that load (on a 2-vCPU
    VM one CPU-bound neighbour made mobilenet_v2 1.6x slower), so a repeat would not agree:
    passed iff ``share < limit``."""
    if share is None:
        return Check("host-load", None, detail="CPU use of other processes unknown")
    return Check("host-load", share < limit, share, None,
                 f"other processes used {share:.0%} of the CPUs (limit {limit:.0%})")  # fmt: skip


def with_check(est: WcetEstimate, check: Check) -> WcetEstimate:
    """``est`` with one more check (a condition of the measurement, not of the sample): its
    warning added and ``supported`` false when it failed."""
    from dataclasses import replace

    failed = check.passed is False
    warnings = (*est.warnings, f"{_WHY[check.name]}: {check.detail}") if failed else est.warnings
    return replace(est, checks=(*est.checks, check), warnings=warnings,
                   supported=est.supported and not failed)  # fmt: skip


def transient(x: np.ndarray, s: Settings) -> int:
    """Length of a start-up transient in ``x`` (collection order), 0 when there is none:
    Pettitt's change point ``c`` (``U_t = 2 Σ_{i≤t} r_i − t(n + 1)`` over the ranks,
    ``p ≈ 2 exp(−6K²/(n³ + n²))`` for ``K = max |U_t|``), when significant at ``alpha``, in the
    first ``max_transient`` of the sample, with at least ``min_samples`` after it, and the
    rest ``x[c:]`` free of drift."""
    from scipy.stats import rankdata

    n = x.size
    if n < 2 or np.ptp(x) == 0:
        return 0
    r = rankdata(x)
    u = 2 * np.cumsum(r)[:-1] - np.arange(1, n) * (n + 1)
    t = int(np.argmax(np.abs(u)))
    k, c = float(abs(u[t])), t + 1
    pv = min(1.0, 2 * math.exp(-6 * k * k / (n**3 + n**2)))
    if pv >= s.alpha or c > s.max_transient * n or n - c < s.min_samples:
        return 0
    return c if drift(x[c:], s).passed is not False else 0


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
              tail_cv(tail), heldout_fit(x, s), enough_samples(x.size, s), drift(x, s),
              second_mode(x, s))  # fmt: skip
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
        converged=x.size >= s.min_samples and is_stable(traj, s) and checks[6].passed is not False,
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
    "samples": "too few samples for the tail fit and the checks",
    "drift": "drift: the samples' level moves over collection order (block medians, "
    "Kruskal-Wallis)",
    "second-mode": "a second mode: the samples fall into two separate groups (kernel density)",
    "host-load": "the machine was busy while profiling: the timings depend on that load",
}

REASONS = {
    "ljung-box": "serially correlated",
    "runs": "not independent",
    "ks-halves": "halves differ",
    "tail-cv": "heavy tail",
    "held-out-fit": "tail does not fit",
    "samples": "too few samples",
    "drift": "drift",
    "second-mode": "a second mode",
    "host-load": "machine busy",
}
"""Each check's short name in a one-line reason (:attr:`WcetEstimate.reason`)."""


def reason(checks: Iterable[Check] | Iterable[Mapping[str, Any]]) -> str:
    """One line: why a result is not supported (its failed checks' short names, in check
    order), ``""`` when every check passed or could not run. Takes checks or their dicts (a
    profile's)."""
    failed = []
    for c in checks:
        name, passed = (c.name, c.passed) if isinstance(c, Check) else (c["name"], c["passed"])
        if passed is False:
            failed.append(REASONS.get(name, name))
    return ", ".join(failed)


def _warnings(n: int, p: float, s: Settings, checks: Sequence[Check]) -> list[str]:
    out = [f"{_WHY[c.name]}: {c.detail} (p = {c.pvalue:.3g})" if c.name == "drift"
           else f"{_WHY[c.name]}: {c.detail}" if c.name in ("samples", "second-mode")
           else f"{_WHY[c.name]} (p = {c.pvalue:.3g})" if c.pvalue is not None
           else f"{_WHY[c.name]} (statistic {c.statistic:.3g})"
           for c in checks if c.passed is False]  # fmt: skip
    need = samples_needed(p, s.free_alpha)
    if n < need:
        out.append(
            f"{n} samples < {need} for a distribution-free bound at {p:g}: the tail is "
            f"extrapolated, floored at the max observed + {s.margin:.0%}"
        )
    return out


SAMPLES_FILE_LIMIT = 64 << 20
"""64 MiB: the largest durations file ``aegis wcet`` reads (some 6 million lines)."""


def read_samples(path: str) -> np.ndarray:
    """A file of durations in ns, one per line (blank lines and ``#`` comments skipped;
    ``-``: standard input), read bounded (:data:`SAMPLES_FILE_LIMIT`, a regular file); an
    InputError names the file and line of anything else: not a number, not finite, not > 0,
    or past :data:`~aegis_core.model.types.MAX_TIME_NS`."""
    from aegis_core.graph.ir import read_bounded
    from aegis_core.model.types import MAX_TIME_NS, MAX_TIME_TEXT

    try:
        text = read_bounded(path, SAMPLES_FILE_LIMIT, "durations file").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text: not a durations file") from None
    values: list[float] = []
    for i, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        shown = quote(item)
        try:
            v: float = _number(item)
        except ValueError:
            raise InputError(f"{path}: line {i}: not a number: {shown}") from None
        if v != v or item.lstrip("+-").lower().startswith("inf") or v <= 0:  # nan, inf
            raise InputError(f"{path}: line {i}: a duration must be a finite number > 0 ns, "
                             f"got {shown}")  # fmt: skip
        if v > MAX_TIME_NS:
            raise InputError(f"{path}: line {i}: {shorten(item)} ns is past the limit of "
                             f"{MAX_TIME_TEXT}")  # fmt: skip
        values.append(v)
    try:
        return as_samples(values)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _number(item: str) -> float:
    """An integer literal exactly (a limit is compared in whole ns), anything else a float
    (written plainly: Python's ``1_000`` is no number of a durations file)."""
    if "_" in item:
        raise ValueError(item)
    try:
        return int(item)
    except ValueError:
        return float(item)


def unit_warning(x: np.ndarray) -> str | None:
    """Why the durations look like another unit than ns (a file of milliseconds), or None:
    every value below 1000 (1 µs, shorter than one kernel launch), or values with
    fractions (a timer's ns are whole)."""
    if float(x.max()) < 1000:
        return (f"every value is below 1000 (max {float(x.max()):g}): they look like "
                "milliseconds or microseconds; the file is read as ns")  # fmt: skip
    if bool(np.any(x != np.floor(x))):
        return ("values have fractions: they look like milliseconds or microseconds; the file "
                "is read as ns")  # fmt: skip
    return None


class Convergence:
    """Feeds samples one at a time and says when to stop (module docstring): ``add`` returns
    True once ``min_samples`` are in, the estimate is stable and the samples do not drift, or
    once ``max_samples`` are kept. A stable estimate over drifting samples is not converged:
    when the drift is a start-up transient (:func:`transient`), its samples are moved to
    ``discarded`` once, and sampling goes on from the rest."""

    def __init__(self, exceedance: float = 1e-3, settings: Settings | None = None) -> None:
        self.p = exceedance
        self.s = settings or Settings()
        self.samples: list[float] = []
        self.discarded: list[float] = []
        self.history: list[float] = []
        self.converged = False

    def add(self, value: float) -> bool:
        s = self.s
        self.samples.append(float(value))
        n = len(self.samples)
        if n >= MIN_SAMPLES:
            self.history.append(bound(np.sort(np.asarray(self.samples)), self.p, s)[0])
        drifting = False
        if n >= s.min_samples:
            drifting = drift(np.asarray(self.samples), s).passed is False
            c = transient(np.asarray(self.samples), s) if drifting and not self.discarded else 0
            if c:
                self.discarded, self.samples = self.samples[:c], self.samples[c:]
                self.history = trajectory(np.asarray(self.samples), self.p, s, MIN_SAMPLES)
                drifting = drift(np.asarray(self.samples), s).passed is False
        stable = len(self.samples) >= s.min_samples and is_stable(self.history, s)
        self.converged = stable and not drifting
        return self.converged or len(self.samples) >= s.max_samples
