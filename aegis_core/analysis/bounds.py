"""Schedulability analysis for one non-preemptive GPU, in integer nanoseconds.

Pure functions over :class:`ATask` (C, T, D and the non-preemptive chunk structure), following
``docs/THEORY.md`` (sections cited below):

* NP-EDF processor-demand test with blocking (George, Rivierre, Spuri 1996), by full
  enumeration of the test points (:func:`edf_demand_enumerate`, the reference) and by the
  segmented QPA (:func:`edf_demand_qpa`, the fast path): ``dbf(t) + B(t) <= t``.
* NP-EDF per-task worst-case response time (§edf-response), also with chunks (§lp-edf).
* NP fixed priority response time over every job of the level-i busy period (Davis et al.
  2007, §np-fp).
* LP-EDF: the largest tolerable non-preemptive chunk ``Q_k`` (§lp-edf) and greedy chunking.

Time is continuous by default (``eps=0``): every bound is the supremum over continuous-time
release patterns. A blocking job costs its full chunk ``C_j``; since it started *before* the
critical instant, the analysed job may start just before a release at its start time ``s``, so
with a blocker charged the interfering releases are counted in ``[0, s)``, without one in
``[0, s]`` (docs/THEORY.md §edf-response, the ε → 0 limit). Pass ``eps=1`` with parameters in
ticks to reproduce integer-time results (blocking ``C_j - 1``, releases in ``[0, s]``).
``closed=True`` counts ``[0, s]`` with the full blocking as well: the earlier, one-job-too-
pessimistic analysis (kept to measure what the exact one gains, ``benchmarks/bench_exact.py``).

Two kinds of release jitter (docs/THEORY.md §jitter): ``ATask.j`` is jitter in the sense of
Davis et al. (2007): a job's deadline and response count from its release ``r``, but the
scheduler may see it as late as ``r + j`` (the host's release lag); ``ATask.burst`` is the
scenario's jitter: each release may come up to ``burst`` late against a grid ``T`` apart, and
carries its own deadline, so ``k`` consecutive gaps sum to at least ``k T - burst``.
Floors and ceilings are integer operations; utilisation sums are exact fractions.

Every function that iterates takes an optional :class:`Effort`: a budget of *analysis points*
(one evaluation of a demand or response sum at one instant, or one test point or offset
listed). Spending past the budget raises :class:`Exhausted`, which admission turns into a
rejection ("not proved within N points"): the analysis never runs unbounded, and the same
input always spends the same points on any machine (docs/THEORY.md §budget).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from aegis_core.model.errors import AegisError
from aegis_core.model.types import fmt_count

INF = math.inf

MAX_POINTS = 500_000
"""The default analysis budget of one admission (:class:`Effort`), in points."""


class Exhausted(AegisError):
    """The analysis budget ran out before the test could prove or refute the set (raised
    inside the analysis only: admission makes it a rejection with that reason)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"not proved within {fmt_count(limit, 'analysis point')}")


@dataclass(slots=True)
class Effort:
    """A budget of analysis points, spent as the analysis goes (None: unlimited). A charge
    past the limit is refused whole and uses the budget up (``spent == limit``): every later
    charge is refused too."""

    limit: int | None = None
    spent: int = 0

    def charge(self, n: int = 1) -> None:
        if self.limit is not None and self.spent + n > self.limit:
            self.spent = self.limit
            raise Exhausted(self.limit)
        self.spent += n

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.spent, 0)


def _effort(effort: Effort | None) -> Effort:
    return Effort() if effort is None else effort


@dataclass(frozen=True, slots=True)
class ATask:
    """A task as the analysis sees it: WCET ``c``, minimum inter-release ``t``, deadline ``d``.

    ``chunks`` is the chain of non-preemptive chunks of one job (``(c,)`` when fully
    non-preemptive); ``prio`` the np-fp priority (lower = more urgent); ``j`` the release
    jitter: each job may become visible to the scheduler up to ``j`` after its release (which
    carries the deadline); ``burst`` the arrival jitter: any ``k`` consecutive gaps between
    releases sum to at least ``k t - burst`` (``t``: the minimum separation without jitter).
    """

    name: str
    c: int
    t: int
    d: int
    chunks: tuple[int, ...] = ()
    prio: int = 0
    j: int = 0
    burst: int = 0

    def __post_init__(self) -> None:
        if not self.chunks:
            object.__setattr__(self, "chunks", (self.c,))
        if sum(self.chunks) != self.c or min(self.chunks) <= 0:
            raise ValueError(f"{self.name}: chunks {self.chunks} must be > 0 and sum to {self.c}")
        if self.c <= 0 or self.t <= 0 or self.d <= 0:
            raise ValueError(f"{self.name}: C, T, D must be > 0")
        if self.j < 0 or self.burst < 0:
            raise ValueError(f"{self.name}: jitter must be >= 0")

    @property
    def q_max(self) -> int:
        """Longest non-preemptive chunk."""
        return max(self.chunks)

    @property
    def q_last(self) -> int:
        return self.chunks[-1]

    @property
    def blocks_below(self) -> int:
        """A job of this task can block a window ``[0, x)`` of jobs due by ``x`` (started
        before it, due after it) only when ``x < blocks_below``: ``D``, and ``D - J`` when
        ``J + burst <= T``, since then a task that blocks has no job of its own due by ``x``
        (docs/THEORY.md §jitter)."""
        return self.d - self.j if self.j + self.burst <= self.t else self.d

    def count(self, x: int, open_end: bool = False) -> int:
        """Most releases of this task in ``[-J, x]`` (``[-J, x)`` with ``open_end``)."""
        return releases_in(x + self.j, self.t, open_end, self.burst)


def ms(ns: int | float) -> str:
    """``20 ms``, ``33.3 ms``, ``0.000001 ms`` (exact for integer ns)."""
    if ns == INF:
        return "unbounded"
    whole, frac = divmod(int(ns), 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + " ms"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def releases_in(x: int, t: int, open_end: bool = False, burst: int = 0) -> int:
    """Most releases, ``k`` gaps spanning at least ``k t - burst``, in ``[0, x]`` (``[0, x)``
    with ``open_end``): the count of interfering jobs (integer arithmetic: ``[0, x)`` holds
    ``ceil((x + burst)/t)``, ``[0, x]`` holds ``floor((x + burst)/t) + 1``)."""
    if open_end:
        return 0 if x <= 0 else (x + burst - 1) // t + 1
    return 0 if x < 0 else (x + burst) // t + 1


def _work(ts: Sequence[ATask]) -> tuple[int, int]:
    """``(W, P)`` with ``U = W / P``, ``P = lcm(T)``: exact utilisation with one division."""
    p = math.lcm(*(x.t for x in ts))
    return sum(x.c * (p // x.t) for x in ts), p


def utilisation(ts: Sequence[ATask]) -> Fraction:
    if not ts:
        return Fraction(0)
    return Fraction(*_work(ts))


def dbf(ts: Sequence[ATask], t: int) -> int:
    """Demand bound: work of jobs visible from 0 on with their deadline by ``t``: releases in
    ``[-J, t - D]``, ``(⌊(t + J + burst - D)/T⌋ + 1)·C`` each for ``t >= D - J``."""
    return sum(x.count(t - x.d) * x.c for x in ts)


def busy_period(
    ts: Sequence[ATask], blocking: int = 0, cap: int | None = None, effort: Effort | None = None
) -> int | None:
    """Least ``L = blocking + sum ceil((L + J + burst)/T) C`` (None when U > 1, or U = 1 with
    blocking or jitter: no fixed point, the busy period never ends).

    With ``cap``, iteration stops once an iterate reaches ``cap`` (the iterates rise to the
    fixed point, so then ``L >= cap``) and returns that iterate: ``min(L, cap)`` is exact."""
    if not ts:
        return 0
    work, period = _work(ts)
    if work > period or (work == period and (blocking > 0 or any(x.j + x.burst for x in ts))):
        return None
    length = blocking + sum(x.c for x in ts)
    effort = _effort(effort)
    while cap is None or length < cap:
        effort.charge()
        nxt = blocking + sum(x.count(length, open_end=True) * x.c for x in ts)
        if nxt == length:
            return length
        length = nxt
    return length


def testing_bound(ts: Sequence[ATask], effort: Effort | None = None) -> int | None:
    """``L = min(L_b, ceil(max(D_max, sum (T-D+J+burst) U_i / (1-U))))`` (docs/THEORY.md
    §interval); exact integer arithmetic over ``P = lcm(T)``: the sum is ``S / (P - W)``."""
    work, period = _work(ts)
    if work > period:
        return None
    if work == period:
        return busy_period(ts, effort=effort)
    slack = sum((x.t - x.d + x.j + x.burst) * x.c * (period // x.t) for x in ts)
    la = max(max(x.d for x in ts), _ceil_div(slack, period - work))
    lb = busy_period(ts, cap=la, effort=effort)
    assert lb is not None
    return min(lb, la)


def test_points(ts: Sequence[ATask], upto: int, effort: Effort | None = None) -> list[int]:
    """Where ``dbf`` steps, positive and ``<= upto``, sorted: ``D_i - J_i`` and
    ``D_i - J_i - burst_i + k T_i`` beyond it (``k T_i > burst_i``; without jitter
    ``k T_i + D_i``). Their number is charged to ``effort`` before they are listed."""
    _effort(effort).charge(count_test_points(ts, upto))
    pts: set[int] = set()
    for x in ts:
        first, start = _steps(x)
        if first > 0:
            pts.add(first)
        pts.update(range(start, upto + 1, x.t))
    return sorted(p for p in pts if p <= upto)


def count_test_points(ts: Sequence[ATask], upto: int) -> int:
    """How many steps :func:`test_points` lists up to ``upto`` (at most; shared steps of two
    tasks count twice), without listing them."""
    n = 0
    for x in ts:
        first, start = _steps(x)
        n += int(0 < first <= upto) + (0 if start > upto else (upto - start) // x.t + 1)
    return n


def _steps(x: ATask) -> tuple[int, int]:
    """``(D - J, p)``: the first step of ``x``'s demand, and the first positive step of the
    progression ``D - J - burst + k T`` after it."""
    first = x.d - x.j
    p = first - x.burst + (x.burst // x.t + 1) * x.t
    if p <= 0:
        p += (-p // x.t + 1) * x.t
    return first, p


def _first_point(x: ATask) -> int:
    """The least positive step of ``x``'s demand."""
    first, p = _steps(x)
    return first if first > 0 else p


class _Blocking:
    """``B(t) = max{q_j - eps : D_j > t}`` in O(log n), with the blocking task's name (with
    jitter: ``D_j - J_j > t``, :attr:`ATask.blocks_below`)."""

    def __init__(self, ts: Sequence[ATask], eps: int, q: Sequence[int] | None = None) -> None:
        q = [x.q_max for x in ts] if q is None else q
        order = sorted(range(len(ts)), key=lambda i: ts[i].blocks_below)
        self.deadlines = [ts[i].blocks_below for i in order]
        self.best: list[tuple[int, str]] = [(0, "")] * (len(order) + 1)
        for pos in range(len(order) - 1, -1, -1):
            i = order[pos]
            cand = (max(q[i] - eps, 0), ts[i].name)
            self.best[pos] = max(self.best[pos + 1], cand, key=lambda v: v[0])

    def __call__(self, t: int) -> tuple[int, str]:
        return self.best[bisect_right(self.deadlines, t)]


def demand_steps(
    ts: Sequence[ATask], upto: int, eps: int = 0, q: Sequence[int] | None = None
) -> list[tuple[int, int, int]]:
    """``(t, dbf(t), B(t))`` at every point of ``[d_min, upto]`` where ``dbf`` or ``B`` steps
    (``d_min``: the first test point): ``dbf(t) + B(t)`` holds its value from each point to
    the next, the step function the demand test compares with ``t`` (for plots)."""
    block = _Blocking(ts, eps, q)
    d_min = min(_first_point(x) for x in ts)
    edges = {x.blocks_below for x in ts if d_min < x.blocks_below <= upto}
    points = sorted({d_min, *test_points(ts, upto), *edges})
    return [(t, dbf(ts, t), block(t)[0]) for t in points if t <= upto]


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
    exhaustive: bool = True  # every test point evaluated (False: QPA's jumps)

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
        if not self.exhaustive:
            return (
                f"dbf(t) + B(t) <= t up to L = {ms(self.bound)}, proved by segmented QPA at "
                f"{fmt_count(self.evaluated, 'point')}"
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
            f"dbf(t) + B(t) <= t at {'all ' if self.evaluated > 1 else ''}"
            f"{fmt_count(self.evaluated, 'test point')} up to L = {ms(self.bound)}" + tail
        )


def edf_demand_enumerate(
    ts: Sequence[ATask], eps: int = 0, q: Sequence[int] | None = None,
    effort: Effort | None = None,
) -> DemandResult:  # fmt: skip
    """The reference: check every test point in ``[0, L]``; reports the first violation.

    ``q`` overrides each task's blocking chunk (default: its longest chunk)."""
    u = utilisation(ts)
    upto = testing_bound(ts, effort)
    if upto is None:
        return DemandResult(False, u, None, 0)
    block = _Blocking(ts, eps, q)
    points = test_points(ts, upto, effort)
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
    """The largest positive test point ``< x``, or None."""
    best = None
    for task in ts:
        first, start = _steps(task)
        p = start + (x - 1 - start) // task.t * task.t if x > start else None
        if p is None and 0 < first < x:
            p = first
        if p is not None and (best is None or p > best):
            best = p
    return best


def edf_demand_qpa(
    ts: Sequence[ATask], eps: int = 0, q: Sequence[int] | None = None,
    effort: Effort | None = None,
) -> DemandResult:  # fmt: skip
    """Segmented QPA (docs/THEORY.md §qpa): exact, visits far fewer points than enumeration.

    ``[0, L]`` is cut where ``B`` changes (at each distinct deadline); inside a segment
    ``B = beta`` is constant and the QPA jump ``t <- dbf(t) + beta`` is safe; a jump never
    crosses the segment's lower edge."""
    u = utilisation(ts)
    effort = _effort(effort)
    upto = testing_bound(ts, effort)
    if upto is None:
        return DemandResult(False, u, None, 0)
    block = _Blocking(ts, eps, q)
    d_min = min(_first_point(x) for x in ts)
    edges = sorted({x.blocks_below for x in ts} | {d_min})  # B constant on [edges[k], edges[k+1])
    evaluated = 0
    t = _largest_point_below(ts, upto + 1)
    while t is not None and t >= d_min:
        lo = edges[bisect_right(edges, t) - 1]  # lower edge of t's segment
        beta, who = block(t)
        while True:
            effort.charge()
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
    return DemandResult(True, u, upto, evaluated, exhaustive=False)


# ------------------------------------------------------------------------ response times


def edf_offsets(ts: Sequence[ATask], i: int, upto: int, effort: Effort | None = None) -> list[int]:
    """``A_i`` (docs/THEORY.md §edf-response): the release offsets ``a`` in ``[-J_i, upto)`` of
    ``i``'s job where ``r_i(a)`` can step up: where another task's count of jobs due by
    ``a + D_i`` grows (``D_j - J_j - D_i``, then ``k T_j`` after ``D_j - J_j - burst_j - D_i``),
    a blocker drops out (``blocks_below_j - D_i``) or one more earlier job of ``i`` fits
    (``k T_i - J_i - burst_i``); and ``-J_i``. Between two of them ``r_i`` falls as ``a``
    grows. Without jitter: ``{k T_j + D_j - D_i} ∩ [0, upto)``. Their number is charged to
    ``effort`` before they are listed."""
    me = ts[i]
    lo = -me.j
    offs: set[int] = {lo}
    starts = [_offset_start(ts, i, k) for k in range(len(ts))]
    _effort(effort).charge(
        sum(max(_ceil_div(upto - s, x.t), 0) for s, x in zip(starts, ts, strict=True))
    )
    for k, x in enumerate(ts):
        if k != i:
            for extra in (x.d - x.j - me.d, x.blocks_below - me.d):
                if lo <= extra < upto:
                    offs.add(extra)
        offs.update(range(starts[k], upto, x.t))
    return sorted(offs)


def _offset_start(ts: Sequence[ATask], i: int, k: int) -> int:
    """The first offset ``>= -J_i`` of task ``k``'s progression in ``A_i``."""
    me, x = ts[i], ts[k]
    lo = -me.j
    if k == i:
        start = -me.j - me.burst + me.t
    else:
        first = x.d - x.j - me.d
        start = first - x.burst + (x.burst // x.t + 1) * x.t
    if start < lo:
        start += _ceil_div(lo - start, x.t) * x.t
    return start


def edf_response_at(
    ts: Sequence[ATask], i: int, a: int, eps: int = 0, *, closed: bool = False,
    effort: Effort | None = None,
) -> int:  # fmt: skip
    """``r_i(a)``: bound of ``i``'s job released at offset ``a >= -J_i`` (docs/THEORY.md
    §edf-response), counted from its release.

    ``s`` is the latest start of the job's last chunk: blocking by a longer-deadline chunk,
    earlier jobs of ``i``, the job's own earlier chunks, and every job of another task visible
    by ``s`` (released in ``[-J, s]``; in ``[-J, s)`` when a blocker is charged in continuous
    time) with an absolute deadline ``<= a + D_i`` (the analysed job loses ties)."""
    me = ts[i]
    abs_d = a + me.d
    blocking = max(
        (max(x.q_max - eps, 0) for j, x in enumerate(ts) if j != i and x.blocks_below > abs_d),
        default=0,
    )
    open_end = blocking > 0 and eps == 0 and not closed
    earlier = (a + me.j + me.burst) // me.t  # i's jobs released in [-J_i, a)
    base = blocking + earlier * me.c + (me.c - me.q_last)
    # ATask.count inlined (the hot loop): releases in [-J, s] (open: [-J, s)) number
    # (s + J + burst - open) // T + 1 when s + J > -1 (open: > 0), else none
    shift, floor = (1, 0) if open_end else (0, -1)
    others = [(x.c, x.t, x.j, x.j + x.burst - shift, cap) for k, x in enumerate(ts)
              if k != i and (cap := x.count(abs_d - x.d)) > 0]  # fmt: skip
    s = base
    effort = _effort(effort)
    while True:
        effort.charge()
        nxt = base + sum(
            c * min((s + jb) // t + 1, cap) for c, t, j, jb, cap in others if s + j > floor
        )
        if nxt == s:
            break
        s = nxt
    return max(me.c, s + me.q_last - a)


def edf_response_bound(
    ts: Sequence[ATask], i: int, eps: int = 0, *, closed: bool = False,
    effort: Effort | None = None,
) -> tuple[int, int] | None:  # fmt: skip
    """``(R_i, worst offset a)`` for NP-EDF (or LP-EDF with chunks); None when U > 1 (or the
    busy period does not end); the least worst offset on ties.

    Offsets lie in ``[-J_i, L_b)``, ``L_b`` the synchronous busy period (docs/THEORY.md
    §busy-period): one that starts with a blocking chunk is a busy period of the same task set,
    so no longer."""
    lb = busy_period(ts, effort=effort)
    if lb is None:
        return None
    best: tuple[int, int] | None = None
    for a in edf_offsets(ts, i, lb, effort):
        r = edf_response_at(ts, i, a, eps, closed=closed, effort=effort)
        if best is None or r > best[0]:
            best = (r, a)
    assert best is not None  # -J_i is always an offset
    return best


@dataclass(frozen=True, slots=True)
class FpResponse:
    """NP-FP response of one task: the bound, and per job of the level-i busy period."""

    bound: int | float  # INF when the busy period does not end (hep utilisation > 1)
    busy_period: int | float
    jobs: tuple[int, ...] = field(default=())  # R_i(q), q = 0 .. Q_i - 1
    blocking: int = 0


def fp_response(
    ts: Sequence[ATask], i: int, eps: int = 0, *, closed: bool = False,
    effort: Effort | None = None,
) -> FpResponse:  # fmt: skip
    """Davis, Burns, Bril and Lukkien (2007), non-preemptive fixed priority (docs/THEORY.md §np-fp):
    ``R_i(q) = J_i + w_i(q) - max(0, q T_i - burst_i) + C_i`` over the ``Q_i`` jobs of the
    level-i busy period (Davis's ``J + w - q T + C`` when ``burst = 0``).

    Higher-priority releases count in ``[-J, w]``, or ``[-J, w)`` when a lower-priority blocker
    is charged in continuous time. Tasks with the same priority as ``i`` count as higher
    priority (sound: the scheduler breaks priority ties by release order)."""
    me = ts[i]
    hp = [x for j, x in enumerate(ts) if j != i and x.prio <= me.prio]
    lp = [x for x in ts if x.prio > me.prio]
    blocking = max((max(x.c - eps, 0) for x in lp), default=0)
    open_end = blocking > 0 and eps == 0 and not closed
    hep = [*hp, me]
    effort = _effort(effort)
    busy = busy_period(hep, blocking, effort=effort)
    if busy is None:  # hep utilisation > 1, or = 1 with blocking: the busy period never ends
        return FpResponse(INF, INF, (), blocking)
    jobs = []
    for q in range(me.count(int(busy), open_end=True)):  # i's releases in [-J_i, busy)
        base = blocking + q * me.c
        w = base + sum(x.c for x in hp)
        while True:
            effort.charge()
            nxt = base + sum(x.count(w, open_end) * x.c for x in hp)
            if nxt == w:
                break
            w = nxt
        # job q is released no earlier than -J_i + max(0, q T_i - burst_i)
        jobs.append(me.j + w - max(0, q * me.t - me.burst) + me.c)
    return FpResponse(max(jobs), busy, tuple(jobs), blocking)


# ------------------------------------------------------------------------ limited preemption


def max_chunk_bounds(ts: Sequence[ATask], effort: Effort | None = None) -> list[int | float]:
    """``Q_k = min{t - dbf(t) : t in S, t < D_k}`` (continuous, docs/THEORY.md §lp-edf); INF: none.

    Meaningful when the fully preemptive test passes (U <= 1 and dbf(t) <= t on S)."""
    upto = testing_bound(ts, effort)
    if upto is None:
        return [0] * len(ts)
    pts = test_points(ts, upto, effort)
    slack = [t - dbf(ts, t) for t in pts]
    prefix: list[int] = []
    for s in slack:
        prefix.append(s if not prefix else min(prefix[-1], s))
    out: list[int | float] = []
    for x in ts:
        n = bisect_right(pts, x.blocks_below - 1)  # points t < D_k (D_k - J_k)
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


def preemptive_edf_ok(ts: Sequence[ATask], effort: Effort | None = None) -> bool:
    """Preemptive EDF (the upper reference): the demand test with no blocking."""
    return edf_demand_qpa(ts, q=[0] * len(ts), effort=effort).ok
