"""Sweep specs (docs/CONTRACTS.md §sweep-spec): YAML in, a frozen :class:`Spec` out; the points
of its axes; and the evaluation of one generated task set under each test, as dataset rows.

A spec is read as a scenario is (:func:`aegis_core.model.scenario.read_yaml`: a size cap, the
bounded strict loader); every bad input is a :class:`SpecError` naming the file and the field,
``FILE: field 'axes.utilization[3]': must be ...``, on one line. Every set's seed derives from
(spec seed, point, set) alone (:func:`set_seed`), so the rows never depend on which worker ran
them or when; ``analysis_ns`` is the only measured, non-deterministic column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from aegis_core.analysis import generators
from aegis_core.analysis.admission import Admission, admit, analysis_budget, analysis_task
from aegis_core.analysis.bounds import ATask, Effort, Exhausted, preemptive_edf_ok
from aegis_core.analysis.charging import charge
from aegis_core.budget import budgets
from aegis_core.model.errors import InputError, ScenarioError, quote, shorten, show_path
from aegis_core.model.files import is_int
from aegis_core.model.policy import Policy, get_policy
from aegis_core.model.scenario import (
    _NAME_RE,
    MAX_INT64,
    MAX_NAME,
    Scenario,
    _closest,
    read_yaml,
)
from aegis_core.model.types import MAX_TIME_NS, ms_to_ns


class SpecError(InputError):
    """A sweep spec is invalid: ``FILE: field 'F': message`` (exit 2)."""

    def __init__(self, path: str, message: str, field: str | None = None) -> None:
        self.path, self.field, self.reason = path, field, message
        where = [show_path(path), *([f"field '{shorten(field, 80)}'"] if field else [])]
        super().__init__(": ".join([*where, message]))


# ------------------------------------------------------------------------------ the limits

MAX_SETS_PER_POINT = 10**6
MAX_POINTS = 100_000
"""The most points (the product of the axes' lengths) a spec may have."""
MAX_AXIS_VALUES = 1_000
MAX_N = 1_000
"""The most tasks in one generated set."""
MAX_KERNELS = 10_000
MAX_CHECK_RUNS = 1_000
MAX_BATCH = 100_000

# ------------------------------------------------------------------------------ the tests


@dataclass(frozen=True, slots=True)
class Test:
    """A schedulability test a sweep applies to each set: the admission of a scheduling
    ``policy``, or (``policy`` None) an analysis-only reference."""

    name: str
    policy: Policy | None


TESTS: dict[str, Test] = {
    t.name: t
    for t in (
        Test("np-edf", get_policy("np-edf")),
        Test("np-fp", get_policy("np-fp")),
        Test("lp-edf", get_policy("lp-edf")),
        Test("p-edf", None),  # preemptive EDF, processor demand: the upper reference curve
    )
}
"""Every test by name (the ``tests:`` field; the dataset's ``policy`` column)."""

ADMISSION, CHECK, SIM = "admission", "check", "sim"
STAGES = (ADMISSION, CHECK, SIM)
"""What ``run:`` may ask for, per set; admission always runs."""

DEFAULT_BATCH = {ADMISSION: 50, SIM: 4, CHECK: 2}
"""Sets per Dask task by the costliest stage run, measured (n = 5-10, U = 0.5-0.9: some 10 ms
a set for admission, 0.2 s with a sim, 0.4 s with check): each task some 0.2-1 s of work."""

# ------------------------------------------------------------------------------ the axes

PARAMS = ("n", "utilization", "utilization_method", "cap", "period_kind", "period_ns",
          "grain_ns", "deadline_kind", "deadline_x", "jitter_frac", "kernels",
          "models")  # fmt: skip
"""The generator parameters (``SetParams`` fields) a spec may set, in the order of the points'
product (the first varies slowest). What a spec leaves out takes ``SetParams``'s default;
``SetParams`` decides which values are valid (its kinds, ranges and limits)."""

BLAME = {"cap": "utilization", "grain_ns": "period_ns"}
"""The parameter a spec's error names when ``SetParams`` refuses one the spec did not set
(``cap``'s default: the utilisation is above ``n``)."""


class _Ctx:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(self.path, message, where)

    def number(self, v: Any, where: str, lo: float, hi: float, *, open_lo: bool = False,
               open_hi: bool = False) -> float:  # fmt: skip
        """A finite number in ``[lo, hi]`` (``open_lo``, ``open_hi``: the bound excluded)."""
        ok = not isinstance(v, bool) and isinstance(v, int | float)
        ok = ok and not (isinstance(v, int) and abs(v) > 1 << 62) and math.isfinite(v)
        if ok and (lo < v if open_lo else lo <= v) and (v < hi if open_hi else v <= hi):
            return float(v)
        bottom = f"> {lo:g}" if open_lo else f">= {lo:g}"
        top = f"< {hi:g}" if open_hi else f"<= {hi:g}"
        raise self.fail(where, f"must be a number {bottom} and {top}, got {quote(v)}")

    def integer(self, v: Any, where: str, lo: int, hi: int) -> int:
        if is_int(v) and lo <= v <= hi:
            return int(v)
        raise self.fail(where, f"must be an integer >= {lo} and <= {hi}, got {quote(v)}")

    def text(self, v: Any, where: str) -> str:
        """A name, checked against its vocabulary by ``SetParams``."""
        if isinstance(v, str) and 0 < len(v) <= 60:
            return v
        raise self.fail(where, f"must be a name, got {quote(v)}")

    def choice(self, v: Any, where: str, allowed: Sequence[str]) -> str:
        if isinstance(v, str) and v in allowed:
            return v
        raise self.fail(where, f"must be one of {', '.join(allowed)}, got {quote(v)}")

    def pair(self, v: Any, where: str, read: Callable[[Any, str], int]) -> tuple[int, int]:
        if not isinstance(v, list) or len(v) != 2:
            raise self.fail(where, f"must be a [lo, hi] pair, got {quote(v)}")
        lo, hi = read(v[0], f"{where}[0]"), read(v[1], f"{where}[1]")
        if lo > hi:
            raise self.fail(where, f"lo must be <= hi, got {quote(v)}")
        return lo, hi

    def keys(self, data: Mapping[Any, Any], allowed: Sequence[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                hint = _closest(str(key), frozenset(allowed))
                extra = f" (did you mean '{hint}'?)" if hint else ""
                raise self.fail(f"{prefix}{shorten(str(key))}",
                                f"unknown key{extra}; allowed: {', '.join(allowed)}")  # fmt: skip


def _ns(c: _Ctx, v: Any, where: str) -> int:
    return c.integer(v, where, 1, MAX_TIME_NS)


def _ms(c: _Ctx, v: Any, where: str) -> int:
    ns = ms_to_ns(c.number(v, where, 0, MAX_TIME_NS / 1e6))
    if ns < 1:
        raise c.fail(where, f"must be at least 1 ns, got {quote(v)}")
    return ns


def _kernels(c: _Ctx, v: Any, where: str) -> tuple[int, int] | None:
    if v is None or v == "none":
        return None
    return c.pair(v, where, lambda x, w: c.integer(x, w, 1, MAX_KERNELS))


def _models(c: _Ctx, v: Any, where: str) -> tuple[str, ...] | None:
    if v is None or v == "none":
        return None
    if not isinstance(v, list) or not v or len(v) > MAX_N:
        raise c.fail(where, f"must be a non-empty list of model names or none, got {quote(v)}")
    return tuple(c.text(m, f"{where}[{i}]") for i, m in enumerate(v))


_Read = Callable[[_Ctx, Any, str], Any]

KEYS: dict[str, tuple[str, _Read]] = {
    "utilization": ("utilization", lambda c, v, w: c.number(v, w, 0, MAX_N, open_lo=True)),
    "n": ("n", lambda c, v, w: c.integer(v, w, 1, MAX_N)),
    "utilization_method": (
        "utilization_method", lambda c, v, w: c.text(v, w)),
    "cap": ("cap", lambda c, v, w: c.number(v, w, 0, 1, open_lo=True)),
    "period_kind": ("period_kind", lambda c, v, w: c.text(v, w)),
    "period_ns": ("period_ns", lambda c, v, w: c.pair(v, w, lambda x, y: _ns(c, x, y))),
    "period_ms": ("period_ns", lambda c, v, w: c.pair(v, w, lambda x, y: _ms(c, x, y))),
    "grain_ns": ("grain_ns", lambda c, v, w: c.integer(v, w, 1, MAX_TIME_NS)),
    "deadline_kind": ("deadline_kind", lambda c, v, w: c.text(v, w)),
    "deadline_x": ("deadline_x", lambda c, v, w: c.number(v, w, 0, 1_000)),
    "jitter": ("jitter_frac", lambda c, v, w: c.number(v, w, 0, 1, open_hi=True)),
    "chunking": ("kernels", _kernels),
    "models": ("models", _models),
}  # fmt: skip
"""Each key ``axes:`` and ``fixed:`` may give: the generator parameter it sets and its reader."""


@dataclass(frozen=True)
class Params(Mapping[str, Any]):
    """A point's generator parameters: a frozen, hashable, picklable mapping in
    :data:`PARAMS` order (the ``SetParams`` fields less ``policy``)."""

    pairs: tuple[tuple[str, Any], ...]

    def __getitem__(self, key: str) -> Any:
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class Point:
    """One combination of the axes' values: its place in :func:`points` and the parameters."""

    index: int
    params: Params


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    sets_per_point: int
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    """Generator parameter -> its values, in :data:`PARAMS` order."""
    fixed: Params
    """The generator parameters given under ``fixed:`` (the others: ``SetParams``'s default)."""
    tests: tuple[str, ...]
    run: tuple[str, ...]
    """The stages run per set, in :data:`STAGES` order (``admission`` always first)."""
    check_runs: int = 5
    batch: int = DEFAULT_BATCH[ADMISSION]
    analysis_points: int | None = None
    path: str = "<memory>"
    source_sha256: str = ""


_TOP = ("name", "seed", "sets_per_point", "axes", "fixed", "tests", "run", "check_runs", "batch",
        "analysis_points")  # fmt: skip


def load_spec(path: str | Path) -> Spec:
    """Read and validate a sweep spec YAML file."""
    p = str(path)
    try:
        data, source = read_yaml(p, "sweep spec")
    except ScenarioError as exc:
        raise SpecError(p, exc.reason) from None
    spec = parse_spec(data, p)
    return dataclasses.replace(spec, source_sha256=hashlib.sha256(source).hexdigest())


def parse_spec(data: Any, path: str = "<memory>") -> Spec:
    """Validate an already-parsed spec document (a mapping)."""
    c = _Ctx(path)
    if not isinstance(data, Mapping):
        raise SpecError(path, f"the document must be a mapping with 'axes', got {quote(data)}")
    c.keys(data, _TOP, "")
    name = data.get("name", "sweep")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise c.fail("name", f"must match [a-z0-9_-]+, at most {MAX_NAME} characters, got "
                     f"{quote(name)}")  # fmt: skip
    axes, fixed = _axes(c, data.get("axes")), _fixed(c, data.get("fixed"))
    _no_overlap(c, axes, fixed)
    run = _run(c, data.get("run", ADMISSION))
    spec = Spec(
        name=name,
        seed=c.integer(data.get("seed", 0), "seed", 0, MAX_INT64),
        sets_per_point=c.integer(
            data.get("sets_per_point", 100), "sets_per_point", 1, MAX_SETS_PER_POINT
        ),
        axes=tuple((KEYS[k][0], v) for k, v in axes.items()),
        fixed=Params(tuple(_fixed_params(c, axes, fixed))),
        tests=_tests(c, data.get("tests", list(TESTS))),
        run=run,
        check_runs=c.integer(data.get("check_runs", 5), "check_runs", 0, MAX_CHECK_RUNS),
        batch=c.integer(data.get("batch", _default_batch(run)), "batch", 1, MAX_BATCH),
        analysis_points=_optional_points(c, data.get("analysis_points")),
        path=path,
    )
    _check_points(c, spec, axes, fixed)
    return spec


def _default_batch(run: Sequence[str]) -> int:
    return min(DEFAULT_BATCH[s] for s in run)


def _axes(c: _Ctx, raw: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, Mapping) or not raw:
        raise c.fail("axes", f"must be a mapping of axis -> list of values, got {quote(raw)}")
    c.keys(raw, tuple(KEYS), "axes.")
    out: dict[str, tuple[Any, ...]] = {}
    for key in sorted(raw, key=lambda k: PARAMS.index(KEYS[k][0])):
        values = raw[key]
        where = f"axes.{key}"
        if not isinstance(values, list) or not values or len(values) > MAX_AXIS_VALUES:
            raise c.fail(where, f"must be a non-empty list of at most {MAX_AXIS_VALUES} values, "
                         f"got {quote(values)}")  # fmt: skip
        read = [KEYS[key][1](c, v, f"{where}[{i}]") for i, v in enumerate(values)]
        for i, v in enumerate(read):
            if v in read[:i]:
                raise c.fail(f"{where}[{i}]", f"duplicate of {where}[{read.index(v)}]")
        out[key] = tuple(read)
    if math.prod(len(v) for v in out.values()) > MAX_POINTS:
        raise c.fail("axes", f"the axes make more than {MAX_POINTS} points")
    return out


def _fixed(c: _Ctx, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise c.fail("fixed", f"must be a mapping of parameter -> value, got {quote(raw)}")
    c.keys(raw, tuple(KEYS), "fixed.")
    return {k: KEYS[k][1](c, v, f"fixed.{k}") for k, v in raw.items()}


def _no_overlap(c: _Ctx, axes: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Each generator parameter is set once: by one key, as an axis or fixed."""
    seen: dict[str, str] = {}
    for where, key in [*(("axes", k) for k in axes), *(("fixed", k) for k in fixed)]:
        param = KEYS[key][0]
        if param in seen:
            raise c.fail(f"{where}.{key}", f"{seen[param]} sets it already: give one")
        seen[param] = f"{where}.{key}"


def _fixed_params(
    c: _Ctx, axes: Mapping[str, Any], fixed: Mapping[str, Any]
) -> Iterator[tuple[str, Any]]:
    """The parameters ``fixed:`` gives, in :data:`PARAMS` order (``n`` and ``utilization``
    are required, as an axis or fixed)."""
    given = {KEYS[k][0]: v for k, v in fixed.items()}
    varied = {KEYS[k][0] for k in axes}
    for param in PARAMS:
        if param in given:
            yield param, given[param]
        elif param in ("n", "utilization") and param not in varied:
            raise c.fail(f"axes.{param}", "is required (as an axis or under fixed)")


def _run(c: _Ctx, raw: Any) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise c.fail("run", f"must be one of {', '.join(STAGES)} or a list of them, got "
                     f"{quote(raw)}")  # fmt: skip
    where = "run" if isinstance(raw, str) else "run[{}]"
    chosen = {c.choice(v, where.format(i), STAGES) for i, v in enumerate(items)}
    return tuple(s for s in STAGES if s in chosen or s == ADMISSION)


def _tests(c: _Ctx, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise c.fail("tests", f"must be a non-empty list of {', '.join(TESTS)}, got {quote(raw)}")
    out = [c.choice(v, f"tests[{i}]", tuple(TESTS)) for i, v in enumerate(raw)]
    for i, v in enumerate(out):
        if v in out[:i]:
            raise c.fail(f"tests[{i}]", f"duplicate of tests[{out.index(v)}]")
    return tuple(out)


def _optional_points(c: _Ctx, raw: Any) -> int | None:
    return None if raw is None else c.integer(raw, "analysis_points", 1, MAX_INT64)


def _check_points(c: _Ctx, spec: Spec, axes: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Each point's parameters are valid ``SetParams``; else the error names where the spec
    gave the value ``SetParams`` refused (or, one it did not set, :data:`BLAME`'s)."""

    def where(param: str, p: Params) -> str:
        if param not in p and param in BLAME:
            param = BLAME[param]
        key = next((k for k in axes if KEYS[k][0] == param), None)
        if key is not None:
            return f"axes.{key}[{axes[key].index(p[param])}]"
        key = next((k for k in fixed if KEYS[k][0] == param), None)
        return f"fixed.{key}" if key is not None else param

    for point in points(spec):
        try:
            set_params(spec, point)
        except generators.ParamsError as exc:
            raise c.fail(where(exc.field, point.params), exc.reason) from None


def with_sets_per_point(spec: Spec, count: int) -> Spec:
    """``--sets-per-point N``: the spec with another count (an InputError past the limits)."""
    if not is_int(count) or not 1 <= count <= MAX_SETS_PER_POINT:
        raise InputError(f"--sets-per-point: must be an integer >= 1 and <= "
                         f"{MAX_SETS_PER_POINT}, got {quote(count)}")  # fmt: skip
    return dataclasses.replace(spec, sets_per_point=count)


# ------------------------------------------------------------------------------ points, seeds


def points(spec: Spec) -> list[Point]:
    """The cartesian product of the axes in :data:`PARAMS` order, each axis's values in the
    order written, the last axis varying fastest; index 0, 1, ..."""
    names = [k for k, _ in spec.axes]
    out = []
    for i, combo in enumerate(itertools.product(*(v for _, v in spec.axes))):
        given = dict(zip(names, combo, strict=True)) | dict(spec.fixed)
        out.append(Point(i, Params(tuple((k, given[k]) for k in PARAMS if k in given))))
    return out


def set_seed(spec_seed: int, point: int, index: int) -> int:
    """The seed of set ``index`` of point ``point``: the first 8 bytes of
    ``sha256(b"aegis-sweep/1:<spec_seed>:<point>:<index>")`` as a big-endian integer, shifted
    right once (63 bits: it fits int64). Independent of workers, batches and order."""
    digest = hashlib.sha256(f"aegis-sweep/1:{spec_seed}:{point}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def generation_policy(spec: Spec) -> Policy:
    """The policy sets are generated under: a chunked one when a test is (the kernel chains
    are kept, and every other test reads their sum as the WCET), else the first test's."""
    chosen = [p for t in spec.tests if (p := TESTS[t].policy) is not None]
    return next((p for p in chosen if p.chunked), chosen[0] if chosen else get_policy("np-edf"))


def set_params(spec: Spec, point: Point) -> Any:
    """The point's ``SetParams`` under :func:`generation_policy` (a ``ParamsError`` names
    the ``SetParams`` field it refuses)."""
    return generators.SetParams(**point.params, policy=generation_policy(spec).name)


def generate(spec: Spec, point: Point, set_index: int) -> Scenario:
    """Set ``set_index`` of ``point``: a runnable scenario, the same for the same arguments."""
    seed = set_seed(spec.seed, point.index, set_index)
    made: Scenario = generators.make_set(set_params(spec, point), seed)
    points_ = spec.analysis_points if spec.analysis_points is not None else made.analysis_points
    return dataclasses.replace(made, name=f"{spec.name}-p{point.index}-s{set_index}", seed=seed,
                               analysis_points=points_)  # fmt: skip


def dump(spec: Spec, point_index: int, set_index: int) -> Scenario:
    """``aegis sweep --dump``: the scenario of one set (an InputError out of range)."""
    pts = points(spec)
    if not is_int(point_index) or not 0 <= point_index < len(pts):
        raise InputError(f"--dump: point {quote(point_index)} is out of range: the spec has "
                         f"{len(pts)} points (0 to {len(pts) - 1})")  # fmt: skip
    if not is_int(set_index) or not 0 <= set_index < spec.sets_per_point:
        raise InputError(f"--dump: set {quote(set_index)} is out of range: the spec has "
                         f"{spec.sets_per_point} sets a point")  # fmt: skip
    return generate(spec, pts[point_index], set_index)


# ------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Row:
    """One dataset row: one set under one test (:func:`columns` lists them)."""

    point: int
    set: int
    seed: int
    n: int
    utilization: float
    utilization_actual: float
    policy: str
    schedulable: bool
    analysis_points: int
    analysis_ns: int
    params: tuple[tuple[str, Any], ...]
    """The generator parameters, flattened (:func:`param_columns`)."""
    extra: tuple[tuple[str, Any], ...] = ()
    """What ``run:`` added: ``max_bound_over_sim``, ``check_ok`` (check), ``misses`` (sim)."""

    def as_dict(self) -> dict[str, Any]:
        base = {c: getattr(self, c) for c in BASE_COLUMNS}
        return base | dict(self.params) | dict(self.extra)


BASE_COLUMNS = ("point", "set", "seed", "n", "utilization", "utilization_actual", "policy",
                "schedulable", "analysis_points", "analysis_ns")  # fmt: skip
PARAM_COLUMNS = ("utilization_method", "cap", "period_kind", "period_lo_ns", "period_hi_ns",
                 "grain_ns", "deadline_kind", "deadline_x", "jitter_frac", "kernels_lo",
                 "kernels_hi", "models")  # fmt: skip
STAGE_COLUMNS = {CHECK: ("max_bound_over_sim", "check_ok"), SIM: ("misses",)}


def columns(spec: Spec) -> tuple[str, ...]:
    """The dataset's columns for ``spec``, in order."""
    extra = [c for s in spec.run for c in STAGE_COLUMNS.get(s, ())]
    return (*BASE_COLUMNS, *PARAM_COLUMNS, *extra)


def param_columns(params: Any) -> tuple[tuple[str, Any], ...]:
    """A set's ``SetParams`` as columns, the values in force (the deadline parameter ``x``;
    ranges as lo/hi, null without chunking; models joined by commas, null: none)."""
    k, m = params.kernels, params.models
    kernels = k if k is not None else (None, None)
    values = (params.utilization_method, params.cap, params.period_kind, *params.period_ns,
              params.grain_ns, params.deadline_kind, params.x, params.jitter_frac, *kernels,
              None if m is None else ",".join(m))  # fmt: skip
    return tuple(zip(PARAM_COLUMNS, values, strict=True))


def _view(scenario: Scenario) -> list[ATask]:
    """The analysis tasks of ``scenario`` (host overheads charged), list order."""
    bs = budgets(scenario)
    return [charge(analysis_task(t, b), scenario.overheads)
            for t, b in zip(scenario.tasks, bs, strict=True)]  # fmt: skip


def preemptive_edf(scenario: Scenario) -> tuple[bool, int]:
    """The ``p-edf`` test: preemptive EDF's exact processor-demand test (U <= 1 and
    ``dbf(t) <= t`` at every absolute deadline up to L, by QPA), within the scenario's
    analysis budget (exhausted: not schedulable). The verdict and the points spent."""
    effort = Effort(analysis_budget(scenario))
    try:
        ok = preemptive_edf_ok(_view(scenario), effort)
    except Exhausted:
        ok = False
    return ok, effort.spent


def _check(spec: Spec, scenario: Scenario, admission: Admission) -> tuple[float | None, bool]:
    """``aegis check`` of the set: max over its admitted tasks of bound / worst simulated
    response (None: nothing simulated), and whether no response passed its bound."""
    from aegis_core.tools.check import check

    result = check(scenario, runs=spec.check_runs, admission=admission)
    ratios = [r.bound_ns / r.worst_sim_ns for r in result.rows if r.worst_sim_ns]
    return (max(ratios) if ratios else None), result.ok


def _misses(scenario: Scenario, admission: Admission) -> int:
    """Deadline misses in one simulation of the scenario's horizon, every task run (no
    rejection enforced), every job at its WCET."""
    from aegis_core.run.engine import load_engine
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.scheduler import Scheduler

    plan = RunPlan.build(scenario, admission=admission, enforce=False)
    scheduler = Scheduler.for_plan(plan, retain=False)
    run(plan, scheduler, load_engine("sim"))
    return scheduler.missed


def _extra(spec: Spec, tested: tuple[Scenario, Admission] | None) -> list[Any]:
    """The stage columns' values for the set as admitted (None: an analysis-only test)."""
    out: list[Any] = []
    if CHECK in spec.run:
        out += (None, None) if tested is None else _check(spec, *tested)
    if SIM in spec.run:
        out.append(None if tested is None else _misses(*tested))
    return out


def _test(spec: Spec, scenario: Scenario, test: Test) -> tuple[bool, int, int, list[Any]]:
    """One test of the set: schedulable, points spent, ns measured, the stage columns."""
    if test.policy is None:
        start = time.perf_counter_ns()
        ok, spent = preemptive_edf(scenario)
        return ok, spent, time.perf_counter_ns() - start, _extra(spec, None)
    chosen = dataclasses.replace(scenario, policy=test.policy)
    start = time.perf_counter_ns()
    adm = admit(chosen)
    elapsed = time.perf_counter_ns() - start
    spent = adm.effort.spent if adm.effort is not None else 0
    return adm.schedulable, spent, elapsed, _extra(spec, (chosen, adm))


def evaluate(spec: Spec, point: Point, set_index: int) -> list[Row]:
    """Generate set ``set_index`` of ``point`` once, then one row per test of the spec."""
    scenario = generate(spec, point, set_index)
    u = sum((Fraction(x.c, x.t) for x in _view(scenario)), Fraction(0))
    params = param_columns(set_params(spec, point))
    stage = [c for s in spec.run for c in STAGE_COLUMNS.get(s, ())]
    rows = []
    for name in spec.tests:
        ok, spent, ns, extra = _test(spec, scenario, TESTS[name])
        rows.append(Row(point.index, set_index, scenario.seed, point.params["n"],
                        float(point.params["utilization"]), float(u), name, ok, spent, ns,
                        params, tuple(zip(stage, extra, strict=True))))  # fmt: skip
    return rows


def evaluate_batch(spec: Spec, point: Point, set_indices: Sequence[int]) -> list[Row]:
    """:func:`evaluate` of each set, in order."""
    return [row for i in set_indices for row in evaluate(spec, point, i)]
