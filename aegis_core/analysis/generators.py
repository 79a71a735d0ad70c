"""Task-set generators for sweeps (docs/THEORY.md §taskgen): utilisations (UUniFast-discard,
RandFixedSum), periods (log-uniform, uniform, harmonic), deadlines (implicit, constrained,
arbitrary), release jitter, kernel chains, and DNN-shaped sets drawn from the builtin zoo.

Pure and seeded: every draw comes from one ``random.Random``, times are integer ns, and
:func:`make_set` turns :class:`SetParams` and a seed into a runnable scenario (the same seed
gives the same scenario, bit for bit). :func:`scenario_yaml` writes one back as YAML that
:func:`~aegis_core.model.scenario.load_scenario` reads to an equal scenario."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from aegis_core.analysis.bounds import ATask
from aegis_core.analysis.taskgen import scenario_of, split_evenly_random, uunifast
from aegis_core.budget import split_in_proportion
from aegis_core.model.errors import InputError, quote, show_path
from aegis_core.model.files import user_file
from aegis_core.model.policy import get_policy
from aegis_core.model.profile import Profile, load_profile
from aegis_core.model.scenario import Arrival, Scenario, Task, check_times
from aegis_core.model.types import NS_PER_MS, TimeNs, ms_to_ns

UTILIZATION_METHODS = ("uunifast-discard", "randfixedsum")
PERIOD_KINDS = ("log-uniform", "uniform", "harmonic")
DEADLINE_KINDS = ("implicit", "constrained", "arbitrary")

DEFAULT_X = {"implicit": 0.0, "constrained": 0.0, "arbitrary": 2.0}
"""The deadline parameter x of each kind when none is given: constrained ``D ~ U[C, T]``,
arbitrary ``D ~ U[C, 2T]`` (implicit deadlines ignore x)."""

MAX_DISCARDS = 10_000
"""The most vectors UUniFast-discard draws before it gives up (U too close to n·cap)."""

MAX_TASKS = 1_000
MAX_KERNELS = 1_000
MAX_PERIOD_NS: TimeNs = 10**12
"""The longest period (1000 s): every time of a set then stays exact as decimal ms (at most
15 significant digits) and far below the scenario's int64 limit."""
MAX_DEADLINE_X = 100.0


class ParamsError(InputError):
    """Bad generator parameters: names the :class:`SetParams` field (``field``) and why
    (``reason``), so a sweep spec can name its own field instead."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}")


# ------------------------------------------------------------------------------ utilisations


def _check_sum(n: int, total: float, cap: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TASKS:
        raise ParamsError("n", f"must be an integer in [1, {MAX_TASKS}], got {quote(n)}")
    if not _finite(total) or total <= 0:
        raise ParamsError("utilization", f"must be a finite number > 0, got {quote(total)}")
    if not _finite(cap) or not 0 < cap <= 1:
        raise ParamsError("cap", f"must lie in (0, 1], got {quote(cap)}")
    if total > n * cap:
        raise ParamsError(
            "cap", f"{cap!r} is below utilization/n = {total / n!r}: no set sums to {total!r}"
        )


def decimal(v: float) -> Fraction:
    """A parameter as the decimal it is written as (``0.7`` is 7/10, not the binary float
    just below it), as :func:`~aegis_core.model.types.ms_to_ns` reads ms."""
    return Fraction(repr(v)) if isinstance(v, float) else Fraction(v)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def uunifast_discard(n: int, total: float, rng: random.Random, cap: float = 1.0) -> list[float]:
    """UUniFast vectors (uniform on the simplex ``sum u_i = total``) drawn until every
    ``u_i <= cap``: uniform on the capped simplex. At most :data:`MAX_DISCARDS` draws."""
    _check_sum(n, total, cap)
    for _ in range(MAX_DISCARDS):
        us = uunifast(n, total, rng)
        if max(us) <= cap:
            return us
    raise ParamsError(
        "utilization_method",
        f"uunifast-discard found no vector with every u <= {cap!r} in {MAX_DISCARDS} draws "
        f"(utilization {total!r} is close to n*cap = {n * cap!r}): use randfixedsum",
    )


def randfixedsum(n: int, total: float, rng: random.Random, cap: float = 1.0) -> list[float]:
    """``n`` values uniform on ``{0 <= u_i <= cap, sum u_i = total}``: Stafford's
    RandFixedSum (as Emberson, Stafford and Davis use it for task sets) on the unit cube with
    sum ``total / cap``, scaled by ``cap``."""
    _check_sum(n, total, cap)
    s = min(float(n), total / cap)  # total <= n * cap, but the quotient may round above n
    return [min(cap, max(0.0, v * cap)) for v in _stafford(n, s, rng)]


def _stafford(n: int, s: float, rng: random.Random) -> list[float]:
    """A point uniform on ``{x in [0, 1]^n, sum x = s}``, ``0 < s <= n``. The cube's slice
    is cut into simplices; a table of their relative volumes (``w``, kept near the float
    maximum against underflow) gives, dimension by dimension, the probability ``t`` of
    stepping to the next unit layer; a uniform point of the chosen simplex is then built
    coordinate by coordinate, and the coordinates shuffled."""
    if n == 1:
        return [s]
    k = min(int(s), n - 1)  # the slice lies between layers k and k + 1
    s1 = [s - (k - i) for i in range(n)]
    s2 = [(k + n - i) - s for i in range(n)]
    w = [[0.0] * (n + 1) for _ in range(n)]
    w[0][1] = 1.7976931348623157e308  # float max: the volumes shrink by 1/i per dimension
    t = [[0.0] * n for _ in range(n - 1)]
    tiny = 2.2250738585072014e-308
    for i in range(2, n + 1):
        for j in range(1, i + 1):
            a = w[i - 2][j] * s1[j - 1] / i
            b = w[i - 2][j - 1] * s2[n - i + j - 1] / i
            w[i - 1][j] = a + b
            whole = w[i - 1][j] + tiny
            t[i - 2][j - 1] = b / whole if s2[n - i + j - 1] > s1[j - 1] else 1 - a / whole
    x = [0.0] * n
    rest, col, acc, scale = s, k + 1, 0.0, 1.0
    for i in range(n - 1, 0, -1):
        step = 1 if rng.random() <= t[i - 1][col - 1] else 0
        sx = rng.random() ** (1 / i)
        acc += (1 - sx) * scale * rest / (i + 1)
        scale *= sx
        x[n - i - 1] = acc + scale * step
        rest -= step
        col -= step
    x[n - 1] = acc + scale * rest
    rng.shuffle(x)
    return x


UTILIZATIONS = {"uunifast-discard": uunifast_discard, "randfixedsum": randfixedsum}


# ---------------------------------------------------------------------- periods, deadlines


def _grain_range(lo_ns: int, hi_ns: int, grain_ns: int) -> tuple[int, int]:
    """The multiples ``m`` of the grain with ``lo <= m * grain <= hi``, as ``(m_lo, m_hi)``."""
    m_lo, m_hi = -(-lo_ns // grain_ns), hi_ns // grain_ns
    if m_lo > m_hi:
        raise ParamsError("grain_ns", f"no multiple of {grain_ns} ns lies in the period range "
                          f"[{lo_ns}, {hi_ns}] ns")  # fmt: skip
    return m_lo, m_hi


def periods(
    kind: str, n: int, rng: random.Random, lo_ns: int, hi_ns: int, grain_ns: int
) -> list[int]:
    """``n`` periods in ``[lo_ns, hi_ns]``, each a multiple of ``grain_ns``.

    ``log-uniform``: ``exp(U(ln a, ln(b + g)))`` floored to the grain (a, b the smallest and
    largest grain multiples in the range), so each order of magnitude weighs the same;
    ``uniform``: a grain multiple uniform in the range; ``harmonic``: ``a * 2**k`` with ``k``
    uniform over the powers that stay in the range (each period divides the longer ones)."""
    m_lo, m_hi = _grain_range(lo_ns, hi_ns, grain_ns)
    if kind == "log-uniform":
        lo, hi = math.log(m_lo), math.log(m_hi + 1)
        return [min(m_hi, max(m_lo, int(math.exp(rng.uniform(lo, hi))))) * grain_ns
                for _ in range(n)]  # fmt: skip
    if kind == "uniform":
        return [rng.randint(m_lo, m_hi) * grain_ns for _ in range(n)]
    if kind == "harmonic":
        top = (m_hi // m_lo).bit_length() - 1  # the largest k with m_lo * 2**k <= m_hi
        return [m_lo * grain_ns << rng.randint(0, top) for _ in range(n)]
    raise ParamsError("period_kind", f"must be one of {', '.join(PERIOD_KINDS)}, got {quote(kind)}")


def deadline(kind: str, c: int, t: int, rng: random.Random, x: float) -> int:
    """A relative deadline ``>= c`` for WCET ``c`` and period ``t`` (``c <= t``), in ns.

    ``implicit``: ``D = T``; ``constrained`` (``0 <= x <= 1``): ``D`` uniform on the integers
    of ``[C + x (T - C), T]``; ``arbitrary`` (``x >= 1``): uniform on ``[C, x T]`` (``x``
    read as its decimal)."""
    if kind == "implicit":
        return t
    if kind == "constrained":
        return rng.randint(c + math.ceil(decimal(x) * (t - c)), t)
    if kind == "arbitrary":
        return rng.randint(c, max(c, math.floor(decimal(x) * t)))
    raise ParamsError(
        "deadline_kind", f"must be one of {', '.join(DEADLINE_KINDS)}, got {quote(kind)}"
    )


def jitter(t: int, frac: float) -> int:
    """The release jitter ``floor(frac * T)`` ns (``0 <= frac < 1``, so always below ``T``;
    ``frac`` read as its decimal)."""
    return math.floor(decimal(frac) * t)


def wcet(u: float, t: int) -> int:
    """``C = max(1, ceil(u T))`` ns, computed exactly (``u`` as the fraction it is)."""
    return max(1, math.ceil(Fraction(u) * t))


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SetParams:
    """How one random set is drawn (docs/THEORY.md §taskgen). Invalid values raise
    :class:`ParamsError` naming the field."""

    n: int = 5
    utilization: float = 0.5
    """The set's total utilisation ``sum C_i / T_i`` before ``C`` is rounded up to a ns."""
    utilization_method: str = "uunifast-discard"
    cap: float = 1.0
    """The largest utilisation of one task."""
    period_kind: str = "log-uniform"
    period_ns: tuple[int, int] = (10 * NS_PER_MS, 100 * NS_PER_MS)
    grain_ns: int = 100_000
    deadline_kind: str = "implicit"
    deadline_x: float | None = None
    """The deadline parameter x (None: the kind's :data:`DEFAULT_X`)."""
    jitter_frac: float = 0.0
    """Each task's release jitter as a fraction of its period (0: none)."""
    kernels: tuple[int, int] | None = None
    """Each job a chain of a random number of kernels in ``[lo, hi]`` (None: one kernel,
    or with ``models`` one per operator)."""
    models: tuple[str, ...] | None = None
    """DNN-shaped: each task runs a model drawn from these builtin zoo models, its kernel
    chain the model's operators' FLOPs scaled to its WCET."""
    profiles: str | None = None
    """DNN-shaped with measured WCETs: a folder of ``<model>.json`` profiles (``aegis
    profile``, batch 1) of every model. Each task's WCET is then its model's profile WCET
    (the simulator replays its samples) and its period ``T = ceil(C / u)`` on the grain
    (``period_kind`` and ``period_ns`` are not used)."""
    policy: str = "np-edf"

    def __post_init__(self) -> None:
        for key in ("period_ns", "kernels", "models"):  # a list (as YAML gives) as a tuple
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))
        _check_sum(self.n, self.utilization, self.cap)
        _member("utilization_method", self.utilization_method, UTILIZATION_METHODS)
        _member("period_kind", self.period_kind, PERIOD_KINDS)
        _member("deadline_kind", self.deadline_kind, DEADLINE_KINDS)
        lo, hi = _int_range("period_ns", self.period_ns, 1, MAX_PERIOD_NS)
        if not _int(self.grain_ns) or not 1 <= self.grain_ns <= MAX_PERIOD_NS:
            raise ParamsError("grain_ns", f"must be an integer in [1, {MAX_PERIOD_NS}], got "
                              f"{quote(self.grain_ns)}")  # fmt: skip
        _grain_range(lo, hi, self.grain_ns)
        self._check_x()
        if not _finite(self.jitter_frac) or not 0 <= self.jitter_frac < 1:
            raise ParamsError("jitter_frac", f"must lie in [0, 1), got {quote(self.jitter_frac)}")
        if self.kernels is not None:
            _int_range("kernels", self.kernels, 1, MAX_KERNELS)
        self._check_models()
        self._check_profiles()
        try:
            get_policy(self.policy)
        except InputError as exc:
            raise ParamsError("policy", str(exc)) from None

    @property
    def x(self) -> float:
        """The deadline parameter in force."""
        return DEFAULT_X[self.deadline_kind] if self.deadline_x is None else self.deadline_x

    def _check_x(self) -> None:
        x = self.deadline_x
        if x is None:
            return
        lo, hi = (1.0, MAX_DEADLINE_X) if self.deadline_kind == "arbitrary" else (0.0, 1.0)
        if not _finite(x) or not lo <= x <= hi:
            raise ParamsError("deadline_x", f"must lie in [{lo:g}, {hi:g}] for "
                              f"{self.deadline_kind} deadlines, got {quote(x)}")  # fmt: skip

    def _check_models(self) -> None:
        if self.models is None:
            return
        from aegis_core.graph.zoo import MODELS

        if not isinstance(self.models, tuple) or not self.models:
            raise ParamsError("models", f"must be a non-empty tuple of model names, got "
                              f"{quote(self.models)}")  # fmt: skip
        for m in self.models:
            if m not in MODELS:
                raise ParamsError("models", f"unknown model {quote(m)}; builtin models: "
                                  f"{', '.join(sorted(MODELS))}")  # fmt: skip

    def _check_profiles(self) -> None:
        if self.profiles is None:
            return
        if not isinstance(self.profiles, str) or not self.profiles:
            raise ParamsError("profiles", f"must name a folder, got {quote(self.profiles)}")
        if self.models is None:
            raise ParamsError("profiles", "needs models (the profiles of which models?)")
        for m in self.models:
            model_profile(self.profiles, m)


def profile_path(folder: str, model: str) -> str:
    """Where the profile of ``model`` lies in ``folder``: ``<folder>/<model>.json``, absolute."""
    return str(Path(folder).absolute() / f"{model}.json")


@cache
def model_profile(folder: str, model: str) -> Profile:
    """The batch-1 profile of builtin ``model`` in ``folder`` (read once a process); a
    ParamsError for ``profiles`` names the file and what is wrong with it."""
    from aegis_core.graph.zoo import MODELS

    path = profile_path(folder, model)
    try:
        prof = load_profile(user_file(path, "profile file"))
    except InputError as exc:
        raise ParamsError("profiles", str(exc)) from None
    if prof.model is not None and Path(prof.model).name != model:
        raise ParamsError("profiles", f"{show_path(path)} measured model {quote(prof.model)}, "
                          f"not {quote(model)}")  # fmt: skip
    shape = tuple(prof.input_shape) if prof.input_shape else MODELS[model]
    if prof.batch != 1 or shape != MODELS[model]:
        raise ParamsError("profiles", f"{show_path(path)} measured batch {prof.batch}, input "
                          f"shape {list(shape)}: a set runs batch 1 at the model's default "
                          f"{list(MODELS[model])}")  # fmt: skip
    if prof.wcet_ns > MAX_PERIOD_NS:
        raise ParamsError("profiles", f"{show_path(path)}: WCET {prof.wcet_ns} ns is above the "
                          f"longest period, {MAX_PERIOD_NS} ns")  # fmt: skip
    return prof


def profiled_period(c: int, u: float, grain_ns: int) -> int:
    """The period that gives WCET ``c`` the utilisation ``u``: ``ceil(c / u)`` rounded up to
    the grain (so ``c / T <= u``), at most :data:`MAX_PERIOD_NS` (on the grain)."""
    m = math.ceil(Fraction(c) / Fraction(u) / grain_ns) if u > 0 else MAX_PERIOD_NS
    return min(m, MAX_PERIOD_NS // grain_ns) * grain_ns


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _member(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamsError(field, f"must be one of {', '.join(allowed)}, got {quote(value)}")


def _int_range(field: str, value: Any, least: int, most: int) -> tuple[int, int]:
    ok = isinstance(value, tuple) and len(value) == 2 and all(_int(v) for v in value)
    if not ok or not least <= value[0] <= value[1] <= most:
        raise ParamsError(field, f"must be a pair (lo, hi) of integers with {least} <= lo <= "
                          f"hi <= {most}, got {quote(value)}")  # fmt: skip
    return value[0], value[1]


# ------------------------------------------------------------------------------------ sets


@cache
def model_flops(name: str) -> tuple[int, ...]:
    """The builtin model's operators' FLOPs, in execution order (each at least 1: an operator
    that computes nothing still takes time)."""
    from aegis_core.graph.zoo import build_model

    return tuple(max(1, op.flops) for op in build_model(name).ops)


def model_chain(c: int, flops: Sequence[int], groups: int) -> tuple[int, ...]:
    """WCET ``c`` ns as a kernel chain shaped like a model: its operators in ``groups``
    consecutive groups of about equal operator count, ``c`` split over the groups in
    proportion to their FLOPs (integers summing to ``c``; parts that round to 0 dropped)."""
    m = len(flops)
    g = max(1, min(groups, m))
    weights = [sum(flops[k * m // g : (k + 1) * m // g]) for k in range(g)]
    return tuple(p for p in split_in_proportion(c, weights) if p > 0)


def _chain(params: SetParams, c: int, model: str | None, rng: random.Random) -> tuple[int, ...]:
    if model is not None:
        flops = model_flops(model)
        groups = len(flops) if params.kernels is None else rng.randint(*params.kernels)
        return model_chain(c, flops, groups)
    if params.kernels is None:
        return (c,)
    return tuple(split_evenly_random(c, rng.randint(*params.kernels), rng))


def make_set(params: SetParams, seed: int) -> Scenario:
    """One random set as a runnable scenario named ``set-<seed>`` (its ``seed`` the set's).

    Draws, in this order from ``random.Random(seed)``: the utilisations, the models
    (DNN-shaped sets), the periods (none with profiles: derived), then per task its deadline
    and kernel chain. ``C = max(1, ceil(u T))`` (with profiles: the profile's WCET); the
    policy's scenario (:func:`~aegis_core.analysis.taskgen.scenario_of`): a chunked policy
    runs the kernel chain, np-fp priorities are deadline-monotonic."""
    if not _int(seed) or not 0 <= seed < 1 << 63:
        raise ParamsError("seed", f"must be an integer in [0, 2**63), got {quote(seed)}")
    rng = random.Random(seed)
    n = params.n
    us = UTILIZATIONS[params.utilization_method](n, params.utilization, rng, params.cap)
    models = [rng.choice(params.models) for _ in us] if params.models else [None] * n
    if params.profiles is not None:
        profs = [model_profile(params.profiles, str(m)) for m in models]
        cs = [p.wcet_ns for p in profs]
        ts = [profiled_period(c, u, params.grain_ns) for c, u in zip(cs, us, strict=True)]
    else:
        ts = periods(params.period_kind, n, rng, *params.period_ns, params.grain_ns)
        cs = [wcet(u, t) for u, t in zip(us, ts, strict=True)]
    tasks = []
    for i, (c, t, model) in enumerate(zip(cs, ts, models, strict=True)):
        d = deadline(params.deadline_kind, c, t, rng, params.x)
        chunks = _chain(params, c, model, rng)
        tasks.append(ATask(f"t{i}", c, t, d, chunks, burst=jitter(t, params.jitter_frac)))
    scenario = scenario_of(tasks, params.policy, name=f"set-{seed}")
    shaped = tuple(_shaped(params, t, m) for t, m in zip(scenario.tasks, models, strict=True))
    return check_times(dataclasses.replace(scenario, tasks=shaped, seed=seed))


def _shaped(params: SetParams, task: Task, model: str | None) -> Task:
    """``task`` running ``model``; with profiles, its WCET is the profile's (no ``wcet_ms``)."""
    if model is None or params.profiles is None:
        return dataclasses.replace(task, model=model)
    prof = model_profile(params.profiles, model)
    return dataclasses.replace(task, model=model, wcet_ns=None, profile=prof.path, measured=prof)


# ------------------------------------------------------------------------------------ YAML


def _ms(ns: int) -> int | float:
    """``ns`` as the ms value a scenario file writes: an integer when whole, else the float
    whose decimal text :func:`~aegis_core.model.types.ms_to_ns` reads back to ``ns``."""
    if ns % NS_PER_MS == 0:
        return ns // NS_PER_MS
    value = ns / NS_PER_MS
    if ms_to_ns(value) != ns:
        raise ValueError(f"{ns} ns has no exact decimal ms float")
    return value


def _task_yaml(t: Task) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name}
    if t.model is not None:
        out["model"] = t.model
    if t.batch != 1:
        out["batch"] = t.batch
    if t.input_shape is not None:
        out["input_shape"] = list(t.input_shape)
    out["period_ms"] = _ms(t.period_ns)
    out["deadline_ms"] = _ms(t.deadline_ns)
    if t.wcet_ns is not None:
        out["wcet_ms"] = _ms(t.wcet_ns)
    if t.kernels_ns is not None:
        out["kernels_ms"] = [_ms(k) for k in t.kernels_ns]
    if t.profile is not None:
        out["profile"] = t.profile
    if t.arrival is not Arrival.PERIODIC:
        out["arrival"] = t.arrival.value
    if t.slack_ns != t.period_ns // 2:  # the loader's default
        out["slack_ms"] = _ms(t.slack_ns)
    for key, ns in (("offset_ms", t.offset_ns), ("jitter_ms", t.jitter_ns)):
        if ns:
            out[key] = _ms(ns)
    if t.priority is not None:
        out["priority"] = t.priority
    if t.memory_budget_bytes is not None:
        out["budget"] = {"memory_mb": t.memory_budget_bytes / (1 << 20)}
    if t.on_overrun != "continue":
        out["on_overrun"] = t.on_overrun
    return out


def scenario_yaml(scenario: Scenario) -> str:
    """``scenario`` as scenario-file YAML (docs/CONTRACTS.md §scenario) that
    :func:`~aegis_core.model.scenario.load_scenario` reads back to an equal scenario (but for
    its ``path`` and ``source_sha256``). A scenario with host overheads (a file of their
    own) is refused with ValueError."""
    import yaml

    if scenario.overheads is not None:
        raise ValueError("a scenario with host overheads names their file: not written here")
    doc: dict[str, Any] = {
        "name": scenario.name,
        "policy": scenario.policy.name,
        "duration_ms": _ms(scenario.duration_ns),
        "seed": scenario.seed,
    }
    if scenario.gpu_memory_bytes is not None:
        doc["gpu"] = {"memory_mb": scenario.gpu_memory_bytes / (1 << 20)}
    if scenario.analysis_points is not None:
        doc["analysis_points"] = scenario.analysis_points
    doc["tasks"] = [_task_yaml(t) for t in scenario.tasks]
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100))
