"""Schedulability analysis for one non-preemptive GPU, in integer nanoseconds.

Pure functions over :class:`ATask` (C, T, D and the non-preemptive chunk structure), following
``shared/reference/theory.md``:

* NP-EDF processor-demand test with blocking (George, Rivierre, Spuri 1996), by full
  enumeration of the test points (:func:`edf_demand_enumerate`, the reference) and by the
  segmented QPA (:func:`edf_demand_qpa`, the fast path): ``dbf(t) + B(t) <= t``.
* NP-EDF per-task worst-case response time (§2.1), also with fixed preemption points (§3.2).
* NP fixed priority response time over every job of the level-i busy period (Davis et al.
  2007, §2.2).
* LP-EDF: the largest tolerable non-preemptive chunk ``Q_k`` (§3.2) and greedy chunking.

Time is continuous by default (``eps=0``): a blocking job costs its full chunk ``C_j``. Pass
``eps=1`` with parameters in ticks to reproduce integer-time results (blocking ``C_j - 1``).
Floors and ceilings are integer operations; utilisation sums are exact fractions.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .budget import TaskBudget, budgets, with_chunks
from .policy import Analysis, fp_priorities
from .scenario import Scenario, Task
from .types import fmt_mib

if TYPE_CHECKING:
    from .memory import ScenarioMemory

INF = math.inf


@dataclass(frozen=True, slots=True)
class ATask:
    """A task as the analysis sees it: WCET ``c``, minimum inter-release ``t``, deadline ``d``.

    ``chunks`` is the chain of non-preemptive chunks of one job (``(c,)`` when fully
    non-preemptive); ``prio`` the np-fp priority (lower = more urgent).
    """

    name: str
    c: int
    t: int
    d: int
    chunks: tuple[int, ...] = ()
    prio: int = 0

    def __post_init__(self) -> None:
        if not self.chunks:
            object.__setattr__(self, "chunks", (self.c,))
        if sum(self.chunks) != self.c or min(self.chunks) <= 0:
            raise ValueError(f"{self.name}: chunks {self.chunks} must be > 0 and sum to {self.c}")
        if self.c <= 0 or self.t <= 0 or self.d <= 0:
            raise ValueError(f"{self.name}: C, T, D must be > 0")

    @property
    def q_max(self) -> int:
        """Longest non-preemptive chunk."""
        return max(self.chunks)

    @property
    def q_last(self) -> int:
        return self.chunks[-1]


def ms(ns: int | float) -> str:
    """``20 ms``, ``33.3 ms``, ``0.000001 ms`` (exact for integer ns)."""
    if ns == INF:
        return "unbounded"
    whole, frac = divmod(int(ns), 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + " ms"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _work(ts: Sequence[ATask]) -> tuple[int, int]:
    """``(W, P)`` with ``U = W / P``, ``P = lcm(T)``: exact utilisation with one division."""
    p = math.lcm(*(x.t for x in ts))
    return sum(x.c * (p // x.t) for x in ts), p


def utilisation(ts: Sequence[ATask]) -> Fraction:
    if not ts:
        return Fraction(0)
    return Fraction(*_work(ts))


def dbf(ts: Sequence[ATask], t: int) -> int:
    """Demand bound: work of jobs that arrive and have their deadline within any ``[0, t]``."""
    return sum((t - x.d) // x.t * x.c + x.c for x in ts if t >= x.d)


def busy_period(ts: Sequence[ATask], blocking: int = 0, cap: int | None = None) -> int | None:
    """Least ``L = blocking + sum ceil(L/T) C`` (None when U > 1, or U = 1 with blocking: no
    fixed point, the busy period never ends).

    With ``cap``, iteration stops once an iterate reaches ``cap`` (the iterates rise to the
    fixed point, so then ``L >= cap``) and returns that iterate: ``min(L, cap)`` is exact."""
    if not ts:
        return 0
    work, period = _work(ts)
    if work > period or (work == period and blocking > 0):
        return None
    length = blocking + sum(x.c for x in ts)
    while cap is None or length < cap:
        nxt = blocking + sum(_ceil_div(length, x.t) * x.c for x in ts)
        if nxt == length:
            return length
        length = nxt
    return length


def testing_bound(ts: Sequence[ATask]) -> int | None:
    """``L = min(L_b, ceil(max(D_max, sum (T-D) U_i / (1-U))))`` (§1.1); None when U > 1.

    Exact integer arithmetic over ``P = lcm(T)``: ``sum (T-D) U_i / (1-U) = S / (P - W)``."""
    work, period = _work(ts)
    if work > period:
        return None
    if work == period:
        return busy_period(ts)
    slack = sum((x.t - x.d) * x.c * (period // x.t) for x in ts)
    la = max(max(x.d for x in ts), _ceil_div(slack, period - work))
    lb = busy_period(ts, cap=la)
    assert lb is not None
    return min(lb, la)


def test_points(ts: Sequence[ATask], upto: int) -> list[int]:
    """Absolute deadlines of the synchronous pattern, ``k*T_i + D_i <= upto``, sorted."""
    pts: set[int] = set()
    for x in ts:
        pts.update(range(x.d, upto + 1, x.t))
    return sorted(pts)


class _Blocking:
    """``B(t) = max{q_j - eps : D_j > t}`` in O(log n), with the blocking task's name."""

    def __init__(self, ts: Sequence[ATask], eps: int, q: Sequence[int] | None = None) -> None:
        q = [x.q_max for x in ts] if q is None else q
        order = sorted(range(len(ts)), key=lambda i: ts[i].d)
        self.deadlines = [ts[i].d for i in order]
        self.best: list[tuple[int, str]] = [(0, "")] * (len(order) + 1)
        for pos in range(len(order) - 1, -1, -1):
            i = order[pos]
            cand = (max(q[i] - eps, 0), ts[i].name)
            self.best[pos] = max(self.best[pos + 1], cand, key=lambda v: v[0])

    def __call__(self, t: int) -> tuple[int, str]:
        return self.best[bisect_right(self.deadlines, t)]


@dataclass(frozen=True, slots=True)
class Violation:
    t: int
    dbf: int
    blocking: int
    blocker: str


@dataclass(frozen=True, slots=True)
class DemandResult:
    """Outcome of a processor-demand test."""

    ok: bool
    utilisation: Fraction
    bound: int | None  # L, the last instant tested (None: U > 1)
    evaluated: int  # demand evaluations
    violation: Violation | None = None
    binding: Violation | None = None  # the point with the least slack (enumeration only)

    @property
    def reason(self) -> str:
        """One line a user can check by hand (times in ms)."""
        if self.bound is None:
            return f"U = {float(self.utilisation):.4f} > 1"
        if self.violation is not None:
            v = self.violation
            who = f" (blocking by {v.blocker})" if v.blocker else ""
            return (
                f"dbf(t) + B(t) = {ms(v.dbf)} + {ms(v.blocking)}{who} = "
                f"{ms(v.dbf + v.blocking)} > t at t = {ms(v.t)}"
            )
        if self.evaluated == 0:
            return (
                f"no absolute deadline falls within L = {ms(self.bound)} (the longest busy "
                f"period): every job completes before its deadline"
            )
        tail = ""
        if self.binding is not None:
            b = self.binding
            who = f" by {b.blocker}" if b.blocker else ""
            tail = (
                f"; binding t = {ms(b.t)}: dbf {ms(b.dbf)} + B {ms(b.blocking)}{who}, "
                f"slack {ms(b.t - b.dbf - b.blocking)}"
            )
        return (
            f"dbf(t) + B(t) <= t at all {self.evaluated} test points up to L = {ms(self.bound)}"
            + tail
        )


def edf_demand_enumerate(
    ts: Sequence[ATask], eps: int = 0, q: Sequence[int] | None = None
) -> DemandResult:
    """The reference: check every test point in ``[0, L]``; reports the first violation.

    ``q`` overrides each task's blocking chunk (default: its longest chunk)."""
    u = utilisation(ts)
    upto = testing_bound(ts)
    if upto is None:
        return DemandResult(False, u, None, 0)
    block = _Blocking(ts, eps, q)
    points = test_points(ts, upto)
    binding: Violation | None = None
    for n, t in enumerate(points, 1):
        demand = dbf(ts, t)
        b, who = block(t)
        here = Violation(t, demand, b, who)
        if demand + b > t:
            return DemandResult(False, u, upto, n, violation=here)
        if binding is None or t - demand - b < binding.t - binding.dbf - binding.blocking:
            binding = here
    return DemandResult(True, u, upto, len(points), binding=binding)


def _largest_point_below(ts: Sequence[ATask], x: int) -> int | None:
    """``max{k*T_i + D_i < x}``, or None."""
    best = None
    for task in ts:
        if x > task.d:
            p = task.d + (x - 1 - task.d) // task.t * task.t
            if best is None or p > best:
                best = p
    return best


def edf_demand_qpa(
    ts: Sequence[ATask], eps: int = 0, q: Sequence[int] | None = None
) -> DemandResult:
    """Segmented QPA (§1.5): exact, visits far fewer points than enumeration.

    ``[0, L]`` is cut where ``B`` changes (at each distinct deadline); inside a segment
    ``B = beta`` is constant and the QPA jump ``t <- dbf(t) + beta`` is safe; a jump never
    crosses the segment's lower edge."""
    u = utilisation(ts)
    upto = testing_bound(ts)
    if upto is None:
        return DemandResult(False, u, None, 0)
    block = _Blocking(ts, eps, q)
    edges = sorted({x.d for x in ts})  # B is constant on [edges[k], edges[k+1])
    d_min = edges[0]
    evaluated = 0
    t = _largest_point_below(ts, upto + 1)
    while t is not None and t >= d_min:
        lo = edges[bisect_right(edges, t) - 1]  # lower edge of t's segment
        beta, who = block(t)
        while True:
            demand = dbf(ts, t)
            evaluated += 1
            h = demand + beta
            if h > t:
                return DemandResult(
                    False, u, upto, evaluated, violation=Violation(t, demand, beta, who)
                )
            nxt = h if h < t else _largest_point_below(ts, t)
            if nxt is None or nxt < lo:
                break
            t = nxt
        t = _largest_point_below(ts, lo)
    return DemandResult(True, u, upto, evaluated)


# ------------------------------------------------------------------------ response times


def edf_offsets(ts: Sequence[ATask], i: int, upto: int) -> list[int]:
    """``A_i = {k*T_j + D_j - D_i} ∩ [0, upto)`` (§2.1)."""
    di = ts[i].d
    offs: set[int] = set()
    for x in ts:
        start = x.d - di
        if start < 0:
            start += _ceil_div(-start, x.t) * x.t
        offs.update(range(start, upto, x.t))
    return sorted(offs)


def edf_response_at(ts: Sequence[ATask], i: int, a: int, eps: int = 0) -> int:
    """``r_i(a)``: response bound of the job of task ``i`` released at offset ``a`` (§2.1, §3.2).

    ``s`` is the latest start of the job's last chunk: blocking by a longer-deadline chunk,
    earlier jobs of ``i``, the job's own earlier chunks, and every job of another task released
    in ``[0, s]`` with an absolute deadline ``<= a + D_i`` (the analysed job loses ties)."""
    me = ts[i]
    abs_d = a + me.d
    blocking = max(
        (max(x.q_max - eps, 0) for j, x in enumerate(ts) if j != i and x.d > abs_d), default=0
    )
    base = blocking + a // me.t * me.c + (me.c - me.q_last)
    others = [
        (x.t, x.c, 1 + (abs_d - x.d) // x.t) for j, x in enumerate(ts) if j != i and x.d <= abs_d
    ]
    s = base
    while True:
        nxt = base + sum(c * min(1 + s // t, cap) for t, c, cap in others)
        if nxt == s:
            break
        s = nxt
    return max(me.c, s + me.q_last - a)


def edf_response_bound(ts: Sequence[ATask], i: int, eps: int = 0) -> tuple[int, int] | None:
    """``(R_i, worst offset a)`` for NP-EDF (or LP-EDF with chunks); None when U > 1.

    Offsets range over ``[0, L_b)``, ``L_b`` the synchronous busy period (§2.1): a busy period
    that starts with a blocking chunk is a busy period of the same task set, so no longer."""
    lb = busy_period(ts)
    if lb is None:
        return None
    best = (0, 0)
    for a in edf_offsets(ts, i, lb):
        r = edf_response_at(ts, i, a, eps)
        if r > best[0]:
            best = (r, a)
    return best


@dataclass(frozen=True, slots=True)
class FpResponse:
    """NP-FP response of one task: the bound, and per job of the level-i busy period."""

    bound: int | float  # INF when the busy period does not end (hep utilisation > 1)
    busy_period: int | float
    jobs: tuple[int, ...] = field(default=())  # R_i(q), q = 0 .. Q_i - 1
    blocking: int = 0


def fp_response(ts: Sequence[ATask], i: int, eps: int = 0) -> FpResponse:
    """Davis, Burns, Bril and Lukkien (2007) for non-preemptive fixed priority (§2.2).

    Tasks with the same priority as ``i`` count as higher priority (sound: the scheduler
    breaks priority ties by release order)."""
    me = ts[i]
    hp = [x for j, x in enumerate(ts) if j != i and x.prio <= me.prio]
    lp = [x for x in ts if x.prio > me.prio]
    blocking = max((max(x.c - eps, 0) for x in lp), default=0)
    hep = [*hp, me]
    busy = busy_period(hep, blocking)
    if busy is None:  # hep utilisation > 1, or = 1 with blocking: the busy period never ends
        return FpResponse(INF, INF, (), blocking)
    jobs = []
    for q in range(_ceil_div(busy, me.t)):
        base = blocking + q * me.c
        w = base + sum(x.c for x in hp)
        while True:
            nxt = base + sum((w // x.t + 1) * x.c for x in hp)
            if nxt == w:
                break
            w = nxt
        jobs.append(w - q * me.t + me.c)
    return FpResponse(max(jobs), busy, tuple(jobs), blocking)


# ------------------------------------------------------------------------ limited preemption


def max_chunk_bounds(ts: Sequence[ATask]) -> list[int | float]:
    """``Q_k = min{t - dbf(t) : t in S, t < D_k}`` (continuous time, §3.2); INF if no point.

    Meaningful when the fully preemptive test passes (U <= 1 and dbf(t) <= t on S)."""
    upto = testing_bound(ts)
    if upto is None:
        return [0] * len(ts)
    pts = test_points(ts, upto)
    slack = [t - dbf(ts, t) for t in pts]
    prefix: list[int] = []
    for s in slack:
        prefix.append(s if not prefix else min(prefix[-1], s))
    out: list[int | float] = []
    for x in ts:
        n = bisect_right(pts, x.d - 1)  # points t < D_k
        out.append(prefix[n - 1] if n else INF)
    return out


def split_chunks(op_wcets: Sequence[int], limit: int | float) -> list[int] | None:
    """Merge consecutive op WCETs greedily into chunks ``<= limit`` (fewest preemption points
    for zero switch cost); None when one op alone exceeds ``limit``."""
    chunks: list[int] = []
    for w in op_wcets:
        if w > limit:
            return None
        if chunks and chunks[-1] + w <= limit:
            chunks[-1] += w
        else:
            chunks.append(w)
    return chunks


def preemptive_edf_ok(ts: Sequence[ATask]) -> bool:
    """Preemptive EDF (the upper reference): the demand test with no blocking."""
    return edf_demand_qpa(ts, q=[0] * len(ts)).ok


# ------------------------------------------------------------------------ scenario admission


@dataclass(frozen=True, slots=True)
class TaskVerdict:
    """Admission decision for one task, with everything needed to re-derive it."""

    name: str
    admitted: bool
    wcet_ns: int | None
    period_ns: int
    deadline_ns: int
    response_bound_ns: int | None
    reason: str
    test: str
    chunks_ns: tuple[int, ...] | None = None
    max_chunk_ns: int | None = None  # lp-edf: Q_k (None: unlimited)
    memory_bytes: int | None = None  # planned device memory (when the scenario sets budgets)
    wcet_from: str = "wcet_ms"
    note: str | None = None  # how the budget's kernel chain was derived (e.g. scaled)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "admitted": self.admitted,
            "wcet_ns": self.wcet_ns,
            "wcet_from": self.wcet_from,
            "period_ns": self.period_ns,
            "deadline_ns": self.deadline_ns,
            "response_bound_ns": self.response_bound_ns,
            "reason": self.reason,
            "test": self.test,
        }
        if self.chunks_ns is not None:
            out["chunks_ns"] = list(self.chunks_ns)
            out["max_chunk_ns"] = self.max_chunk_ns
        if self.memory_bytes is not None:
            out["memory_bytes"] = self.memory_bytes
        if self.note is not None:
            out["note"] = self.note
        return out


PROVENANCE = ("wcet_from", "note")
"""Verdict fields that say where a budget's inputs came from (a profile, scaled kernels): the
trace records the budget itself, so re-running admission on it re-derives everything else."""


@dataclass(frozen=True)
class Admission:
    policy: str
    tasks: tuple[TaskVerdict, ...]
    budgets: tuple[TaskBudget, ...]
    """Every task's budget with the chunk chain admission decided (what a run plan uses)."""
    memory: Mapping[str, int | str] | None = None
    """The admitted tasks' memory plan (sharing, arena, weights and input bytes), when any
    task has a model."""

    @property
    def schedulable(self) -> bool:
        return all(v.admitted for v in self.tasks)

    @property
    def rejected(self) -> frozenset[int]:
        """Indices (scenario list order) of the rejected tasks."""
        return frozenset(i for i, v in enumerate(self.tasks) if not v.admitted)

    def bounds(self) -> dict[str, int | None]:
        return {v.name: v.response_bound_ns for v in self.tasks}

    def chunks(self) -> list[tuple[int, ...] | None]:
        return [v.chunks_ns for v in self.tasks]

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "policy": self.policy,
            "schedulable": self.schedulable,
            "tasks": [v.as_dict() for v in self.tasks],
        }
        if self.memory is not None:
            out["memory"] = dict(self.memory)
        return out


def analysis_task(
    task: Task, budget: TaskBudget, prio: int = 0, chunks: Sequence[int] = ()
) -> ATask:
    """The analysis view of a task and its budget. Release jitter J shortens the minimum
    separation to ``T - J`` (deadlines count from the actual release)."""
    return ATask(
        task.name,
        budget.wcet_ns,
        task.period_ns - task.jitter_ns,
        task.deadline_ns,
        tuple(chunks),
        prio,
    )


def admit(scenario: Scenario, task_budgets: Sequence[TaskBudget] | None = None) -> Admission:
    """Incremental admission in list order: a task is admitted when the analysis of the
    scenario's policy proves that it and every task admitted before it meet their deadlines
    (and, when the scenario sets memory budgets, their planned memory fits)."""
    bs = tuple(task_budgets) if task_budgets is not None else budgets(scenario)
    ctx = _Context(scenario, scenario.tasks, bs)
    test, evaluate = _ANALYSES[scenario.policy.analysis](ctx)
    memory = _memory(scenario, bs)
    verdicts = tuple(_incremental(ctx, test, evaluate, memory if _gated(scenario) else None))
    final = with_chunks(bs, [v.chunks_ns for v in verdicts])
    report = None
    if memory is not None:
        admitted = [i for i, v in enumerate(verdicts) if v.admitted]
        chains = {i: len(final[i].chunks_ns) for i in admitted}
        report = memory.rechunked(chains).report(admitted)
    return Admission(scenario.policy.name, verdicts, final, report)


@dataclass(frozen=True)
class _Context:
    """What every analysis reads: the tasks and their budgets (by task index)."""

    scenario: Scenario
    tasks: Sequence[Task]
    budgets: Sequence[TaskBudget]

    def verdict(self, j: int, admitted: bool, reason: str, test: str, **more: Any) -> TaskVerdict:
        t, b = self.tasks[j], self.budgets[j]
        return TaskVerdict(t.name, admitted, b.wcet_ns, t.period_ns, t.deadline_ns,
                           more.pop("bound", None), reason, test, wcet_from=str(b.wcet_from),
                           note=b.note, **more)  # fmt: skip

    def analysis(self, j: int, prio: int = 0, chunks: Sequence[int] = ()) -> ATask:
        return analysis_task(self.tasks[j], self.budgets[j], prio, chunks)


Evaluation = str | dict[int, TaskVerdict]
"""A rejection reason, or the verdict of every task of the candidate set (by task index)."""
Evaluate = Callable[[list[int]], Evaluation]

MEMORY_TEST = "memory: planned bytes (weights, input, activation arena) against the budgets"


def _gated(scenario: Scenario) -> bool:
    """Does the scenario set a memory budget (``gpu.memory_mb`` or a task's)?"""
    return scenario.gpu_memory_bytes is not None or any(
        t.memory_budget_bytes is not None for t in scenario.tasks
    )


def _memory(scenario: Scenario, bs: Sequence[TaskBudget]) -> ScenarioMemory | None:
    """The scenario's memory (the one usage path), when any task has a model."""
    if not any(t.model for t in scenario.tasks):
        return None
    from .memory import ScenarioMemory

    return ScenarioMemory.of(scenario, bs)


def _memory_reason(
    scenario: Scenario, mem: ScenarioMemory, cand: list[int], verdicts: dict[int, TaskVerdict]
) -> str | None:
    """The memory gate of a candidate set that the analysis admitted (with the chunk chains
    it chose): the newest task's own planned bytes against its budget, and the set's
    (weights, inputs and the activation arena shared as the policy allows) against the
    device's. Returns the rejection reason, or None."""
    i = cand[-1]
    own = mem.task_bytes(i)
    budget = scenario.tasks[i].memory_budget_bytes
    if budget is not None and own > budget:
        return (f"planned memory {mib(own)} (weights, input and activation arena with "
                f"scratch) > its budget {mib(budget)}")  # fmt: skip
    device = scenario.gpu_memory_bytes
    if device is not None:
        mem = mem.rechunked({j: len(v.chunks_ns or (0,)) for j, v in verdicts.items()})
        total = mem.total_bytes(cand)
        if total > device:
            return (f"planned device memory with it {mib(total)} (weights, inputs, shared "
                    f"activation arena) > gpu.memory_mb {mib(device)}")  # fmt: skip
    return None


def mib(n: int) -> str:
    return fmt_mib(n, " MiB")


def _infeasible(ctx: _Context, i: int) -> str | None:
    """A WCET above the relative deadline can never be met (e.g. a profile measured on a
    slower device): rejected whichever way the WCET came."""
    b, t = ctx.budgets[i], ctx.tasks[i]
    if b.wcet_ns <= t.deadline_ns:
        return None
    return (f"WCET {ms(b.wcet_ns)} (from {b.wcet_from}) exceeds the relative deadline "
            f"{ms(t.deadline_ns)}: never feasible")  # fmt: skip


def _incremental(
    ctx: _Context, test: str, evaluate: Evaluate, memory: ScenarioMemory | None = None
) -> list[TaskVerdict]:
    """Admission in list order: task ``i`` joins when ``evaluate`` proves the candidate set
    ``admitted + [i]`` and the memory gate (if any) lets it in; admitted tasks end with the
    verdicts (bounds, chunks) of the final admitted set."""
    admitted: list[int] = []
    verdicts: dict[int, TaskVerdict] = {}
    final: dict[int, TaskVerdict] = {}
    for i in range(len(ctx.tasks)):
        out: Evaluation | None = _infeasible(ctx, i)
        if out is None:
            out = evaluate([*admitted, i])
        if isinstance(out, str):
            verdicts[i] = ctx.verdict(i, False, out, test)
            continue
        why = None if memory is None else _memory_reason(ctx.scenario, memory, [*admitted, i], out)
        if why is not None:
            verdicts[i] = ctx.verdict(i, False, why, MEMORY_TEST)
            continue
        admitted.append(i)
        final = out
    out_verdicts = [final.get(i) or verdicts[i] for i in range(len(ctx.tasks))]
    if memory is None:
        return out_verdicts
    return [dataclasses.replace(v, memory_bytes=memory.task_bytes(i))
            for i, v in enumerate(out_verdicts)]  # fmt: skip


NP_EDF_TEST = "np-edf demand (George-Rivierre-Spuri, segmented QPA)"
NP_FP_TEST = "np-fp response time (Davis-Burns-Bril-Lukkien 2007, every job of the busy period)"
LP_EDF_TEST = "lp-edf demand with chunk blocking (Bertogna-Baruah Q_k, greedy kernel merging)"
NO_TEST = "none"


def _np_edf(ctx: _Context) -> tuple[str, Evaluate]:
    def evaluate(cand: list[int]) -> Evaluation:
        ts = [ctx.analysis(j) for j in cand]
        if not edf_demand_qpa(ts).ok:
            return edf_demand_enumerate(ts).reason  # names the first violating point
        reason = edf_demand_enumerate(ts).reason  # names the binding test point
        bounds = [edf_response_bound(ts, k) for k in range(len(ts))]
        return _edf_verdicts(ctx, cand, ts, bounds, reason, NP_EDF_TEST)

    return NP_EDF_TEST, evaluate


def _edf_verdicts(
    ctx: _Context, cand: list[int], ts: Sequence[ATask],
    bounds: Sequence[tuple[int, int] | None], reason: str, test: str,
    limits: Sequence[int | float] = (),
) -> Evaluation:  # fmt: skip
    for k, b in enumerate(bounds):
        if b is None or b[0] > ts[k].d:
            r = "unbounded" if b is None else ms(b[0])
            return f"response bound of {ts[k].name} {r} > deadline {ms(ts[k].d)}"
    out = {}
    for k, (j, b) in enumerate(zip(cand, bounds, strict=True)):
        assert b is not None
        chunked = {} if not limits else {
            "chunks_ns": ts[k].chunks,
            "max_chunk_ns": None if limits[k] == INF else int(limits[k]),
        }  # fmt: skip
        out[j] = ctx.verdict(j, True, reason, test, bound=b[0], **chunked)
    return out


def _np_fp(ctx: _Context) -> tuple[str, Evaluate]:
    prio = fp_priorities(ctx.tasks)

    def evaluate(cand: list[int]) -> Evaluation:
        ts = [ctx.analysis(j, prio[j]) for j in cand]
        results = [fp_response(ts, k) for k in range(len(ts))]
        for k, r in enumerate(results):
            if r.bound > ts[k].d:
                return _fp_late(ctx.tasks, cand, k, r, prio)
        return {
            j: ctx.verdict(j, True, _fp_reason(r, prio[j]), NP_FP_TEST, bound=int(r.bound))
            for j, r in zip(cand, results, strict=True)
        }

    return NP_FP_TEST, evaluate


def _fp_late(
    tasks: Sequence[Task], cand: list[int], k: int, r: FpResponse, prio: Sequence[int]
) -> str:
    j = cand[k]
    who = "its" if j == cand[-1] else f"{tasks[j].name}'s"
    if r.bound == INF:
        return (
            f"{who} level-{prio[j]} busy period never ends (utilisation > 1, or = 1 with blocking)"
        )
    q = r.jobs.index(int(r.bound))
    return (
        f"{who} response bound {ms(r.bound)} (job {q} of the level-{prio[j]} busy period) "
        f"> deadline {ms(tasks[j].deadline_ns)}"
    )


def _fp_reason(r: FpResponse, prio: int) -> str:
    return (
        f"priority {prio}: R = {ms(r.bound)} <= D, the worst of the {len(r.jobs)} job(s) "
        f"in the level-{prio} busy period ({ms(r.busy_period)}); blocking {ms(r.blocking)}"
    )


def _lp_edf(ctx: _Context) -> tuple[str, Evaluate]:
    def evaluate(cand: list[int]) -> Evaluation:
        plain = [ctx.analysis(j) for j in cand]
        if not preemptive_edf_ok(plain):
            pre = edf_demand_enumerate(plain, q=[0] * len(plain))
            return "fails even fully preemptive: " + pre.reason
        limits = max_chunk_bounds(plain)
        chunked: list[ATask] = []
        for k, j in enumerate(cand):
            kernels = ctx.budgets[j].kernels_ns
            chunks = split_chunks(kernels, limits[k])
            if chunks is None:
                who = "its" if j == cand[-1] else f"{ctx.tasks[j].name}'s"
                return (
                    f"{who} largest kernel {ms(max(kernels))} exceeds the largest tolerable "
                    f"non-preemptive chunk Q = {ms(limits[k])}"
                )
            chunked.append(ctx.analysis(j, chunks=chunks))
        res = edf_demand_enumerate(chunked)
        if not res.ok:
            return res.reason
        bounds = [edf_response_bound(chunked, k) for k in range(len(chunked))]
        return _edf_verdicts(ctx, cand, chunked, bounds, res.reason, LP_EDF_TEST, limits)

    return LP_EDF_TEST, evaluate


def _no_analysis(ctx: _Context) -> tuple[str, Evaluate]:
    reason = f"no admission test for policy {ctx.scenario.policy}: admitted without analysis"

    def evaluate(cand: list[int]) -> Evaluation:
        return {j: ctx.verdict(j, True, reason, NO_TEST) for j in cand}

    return NO_TEST, evaluate


_ANALYSES: dict[Analysis, Callable[[_Context], tuple[str, Evaluate]]] = {
    Analysis.NP_EDF: _np_edf,
    Analysis.NP_FP: _np_fp,
    Analysis.LP_EDF: _lp_edf,
    Analysis.NONE: _no_analysis,
}
"""Each policy's admission analysis, by the :class:`~aegis_core.policy.Analysis` it names."""
