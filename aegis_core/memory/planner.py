"""Memory planning (docs/THEORY.md §lifetimes): tensor lifetimes, per-model arena plans, and one
activation arena shared across models as the scheduling policy allows.

Pure functions on :class:`Usage` records (size, first op, last op: closed intervals). Weights
and graph inputs are persistent (outside the activation arena, reported separately); every
other tensor lives from its producing op to its last reader.

* Per model: the lower bound (peak bytes live at once), naive (no reuse), greedy by size
  with best-fit gaps (TFLite's offset planner), greedy by breadth (shared objects laid end
  to end) and best fit over several tensor orders; the smallest plan wins (ties: the
  first). Every plan is verified: no two tensors live at the same op
  share a byte.
* Across models (:func:`plan_models`): whole-job non-preemptive policies run one model at a
  time, so one region sized for the largest arena serves all; under lp-edf a job can be
  preempted at a chunk boundary only by a job of a task with a strictly shorter relative
  deadline, preemptions nest, and each task gets a fixed base above what the tasks it may
  preempt keep live across their boundaries (docs/THEORY.md §sharing, fixed addresses: CUDA graphs
  need); ``unscheduled`` runs everything at once: no sharing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import InternalError

if TYPE_CHECKING:
    from aegis_core.graph.ir import Graph


ALIGN = 256
"""Offsets are multiples of this (CUDA's allocation granularity for coalesced access)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """One tensor: ``size`` bytes, live from op ``first`` to op ``last`` inclusive."""

    name: str
    size: int
    first: int
    last: int

    def overlaps(self, other: Usage) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ModelUsage:
    name: str
    tensors: tuple[Usage, ...]
    weights_bytes: int = 0
    inputs_bytes: int = 0
    boundaries: tuple[int, ...] | None = None
    """Op indices b where a job may be preempted (between op b - 1 and op b); None: any."""
    deadline_ns: int | None = None


@dataclass(frozen=True)
class ModelPlan:
    """One model's arena: ``offsets[name]`` inside ``[0, size)``."""

    name: str
    size: int
    method: str
    offsets: Mapping[str, int]
    naive: int
    lower_bound: int
    candidates: Mapping[str, int] = field(default_factory=dict)


def align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def ws_key(op_index: int, name: str) -> str:
    """The plan's name for scratch buffer ``name`` of operator ``op_index``."""
    return f"ws:{op_index}:{name}"


EXEC_ITEMSIZE = 4
"""The executor keeps every tensor in float32, whatever a graph file declares."""


def usage_of(graph: Graph, name: str | None = None, *, executor: bool = False) -> ModelUsage:
    """Activation usage records of a model graph (the input and weights are persistent).
    ``executor=True``: as the executor allocates them — every operator's scratch buffers
    (im2col columns, padded inputs, ...) added as tensors live at that operator, and every
    tensor at 4 bytes an element."""
    from aegis_core.graph.scratch import scratch_shapes

    def size(shape: tuple[int, ...], nbytes: int) -> int:
        return math.prod(shape) * EXEC_ITEMSIZE if executor else nbytes

    spans = graph.lifetimes()
    tensors = [
        Usage(t, size(graph.tensors[t].shape, graph.tensors[t].nbytes), first, last)
        for t, (first, last) in spans.items()
        if t != graph.input
    ]
    if executor:
        tensors += [
            Usage(ws_key(i, k), math.prod(shape) * EXEC_ITEMSIZE, i, i)
            for i, op in enumerate(graph.ops)
            for k, shape in scratch_shapes(op, graph).items()
        ]
    inp = graph.tensors[graph.input]
    weights = sum(size(t.shape, t.nbytes) for t in graph.tensors.values() if t.role == "weight")
    return ModelUsage(name or graph.name, tuple(tensors), weights, size(inp.shape, inp.nbytes))


def breadths(tensors: Sequence[Usage]) -> list[int]:
    """Bytes live at each op (index 0 .. last op): a list as long as the last op index, for
    graphs (whose ops are few); the planners work on :func:`_ranks` instead."""
    if not tensors:
        return []
    n = max(t.last for t in tensors) + 1
    diff = [0] * (n + 1)
    for t in tensors:
        diff[t.first] += t.size
        diff[t.last + 1] -= t.size
    out, run = [], 0
    for d in diff[:n]:
        run += d
        out.append(run)
    return out


def _ranks(tensors: Sequence[Usage]) -> tuple[list[int], list[int], int]:
    """Each tensor's ``first`` and ``last`` as ranks among every first and last: the same
    overlaps, every live set of the ops kept (that of an op between two ranks is a subset of
    the one at the rank below it), sized by the number of tensors, not by op indices."""
    points = sorted({t.first for t in tensors} | {t.last for t in tensors})
    rank = {v: i for i, v in enumerate(points)}
    return [rank[t.first] for t in tensors], [rank[t.last] for t in tensors], len(points)


def _rank_breadths(tensors: Sequence[Usage], first: Sequence[int], last: Sequence[int],
                   points: int) -> list[int]:  # fmt: skip
    """Bytes live at each rank (:func:`_ranks`)."""
    diff = [0] * (points + 1)
    for t, a, b in zip(tensors, first, last, strict=True):
        diff[a] += t.size
        diff[b + 1] -= t.size
    out, run = [], 0
    for d in diff[:points]:
        run += d
        out.append(run)
    return out


def lower_bound(tensors: Sequence[Usage]) -> int:
    """Peak bytes live at once: no offset plan can be smaller (O(n log n) in the tensors,
    whatever their op indices)."""
    return max(_rank_breadths(tensors, *_ranks(tensors)), default=0)


def overlap_pairs(tensors: Sequence[Usage]) -> int:
    """How many pairs of tensors are live at a common op (O(n log n)): the work of one best-fit
    pass is about ``n + 2 ×`` this."""
    import bisect

    firsts = sorted(t.first for t in tensors)
    lasts = sorted(t.last for t in tensors)
    n = len(tensors)
    apart = sum(bisect.bisect_left(lasts, t.first) + n - bisect.bisect_right(firsts, t.last)
                for t in tensors)  # fmt: skip
    return (n * (n - 1) - apart) // 2


PLAN_WORK = 1_000_000
"""The most tensor visits a model's plan spends on best-fit passes (one pass visits about
``n + 2 ×`` the overlapping pairs, :func:`_pass_work`): greedy by size takes one,
:func:`greedy_multi_order` the passes left (fewer jittered orders; none of it when its three
fixed orders do not fit), and a model whose one pass would cost more (thousands of tensors
live at once) is planned by :func:`skyline_by_size` alone, in O(n log n). Bounded by counts,
not time: the same file gets the same plan on any machine."""


def _pass_work(tensors: Sequence[Usage]) -> int:
    return len(tensors) + 2 * overlap_pairs(tensors)


class _Placed:
    """The tensors placed so far, found by time: a segment tree over the ranks holding each
    interval at its canonical nodes (who is live at rank r: the nodes from r's leaf up), and
    the tensors by first rank (who starts inside a window)."""

    def __init__(self, points: int) -> None:
        self.size = 1
        while self.size < points:
            self.size *= 2
        self.nodes: list[list[int]] = [[] for _ in range(2 * self.size)]
        self.starts: list[list[int]] = [[] for _ in range(points)]

    def add(self, i: int, a: int, b: int) -> None:
        self.starts[a].append(i)
        lo, hi = a + self.size, b + self.size + 1
        while lo < hi:
            if lo & 1:
                self.nodes[lo].append(i)
                lo += 1
            if hi & 1:
                hi -= 1
                self.nodes[hi].append(i)
            lo //= 2
            hi //= 2

    def overlapping(self, a: int, b: int) -> list[int]:
        """Every placed tensor live at some rank in ``[a, b]``, each once."""
        out: list[int] = []
        k = a + self.size
        while k:
            out += self.nodes[k]
            k //= 2
        for r in range(a + 1, b + 1):
            out += self.starts[r]
        return out


def best_fit(order: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """Place tensors in ``order``: each takes the smallest gap between the tensors already
    placed that overlap it in time (best fit), else goes above the highest of them. The
    placed tensors are found by time (:class:`_Placed`): O(n log n + overlapping pairs)."""
    first, last, points = _ranks(order)
    placed = _Placed(points)
    at: list[int] = []  # offset of the i-th tensor placed
    offsets: dict[str, int] = {}
    for i, t in enumerate(order):
        best: int | None = None
        best_gap = None
        prev_end = 0
        for off, j in sorted([(at[j], j) for j in placed.overlapping(first[i], last[i])]):
            gap = off - prev_end
            if gap >= t.size and (best_gap is None or gap < best_gap):
                best, best_gap = prev_end, gap
            end = off + order[j].size
            if alignment > 1:
                end = align(end, alignment)
            if end > prev_end:
                prev_end = end
        offset = prev_end if best is None else best
        offsets[t.name] = offset
        at.append(offset)
        placed.add(i, first[i], last[i])
    return offsets


def greedy_by_size(tensors: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """TFLite's offset planner: best fit, largest tensor first."""
    return best_fit(_by_size(tensors), alignment)


def _by_size(tensors: Sequence[Usage]) -> list[Usage]:
    return sorted(tensors, key=lambda t: (-t.size, t.first, t.name))


def skyline_by_size(tensors: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """Largest tensor first, each on top of the highest tensor placed that overlaps it in
    time (no gaps reused): a range-max / range-assign segment tree over the ranks, O(n log
    n). The planner of models too dense for best fit (:data:`PLAN_WORK`)."""
    order = _by_size(tensors)
    first, last, points = _ranks(order)
    sky = _Skyline(points)
    offsets: dict[str, int] = {}
    for t, a, b in zip(order, first, last, strict=True):
        offset = sky.top(a, b)
        offsets[t.name] = offset
        sky.raise_to(a, b, align(offset + t.size, alignment))
    return offsets


class _Skyline:
    """Heights over ranks: ``top(a, b)`` the highest in ``[a, b]``, ``raise_to(a, b, h)`` sets
    them all to ``h`` (never lower than they were: ``h`` is above ``top``)."""

    def __init__(self, points: int) -> None:
        self.n = max(points, 1)
        self.high = [0] * (4 * self.n)
        self.lazy: list[int | None] = [None] * (4 * self.n)

    def _push(self, k: int) -> None:
        h = self.lazy[k]
        if h is not None:
            for c in (2 * k, 2 * k + 1):
                self.high[c], self.lazy[c] = h, h
            self.lazy[k] = None

    def top(self, a: int, b: int, k: int = 1, lo: int = 0, hi: int | None = None) -> int:
        hi = self.n - 1 if hi is None else hi
        if b < lo or hi < a:
            return 0
        if a <= lo and hi <= b:
            return self.high[k]
        self._push(k)
        mid = (lo + hi) // 2
        return max(self.top(a, b, 2 * k, lo, mid), self.top(a, b, 2 * k + 1, mid + 1, hi))

    def raise_to(self, a: int, b: int, h: int, k: int = 1, lo: int = 0,
                 hi: int | None = None) -> None:  # fmt: skip
        hi = self.n - 1 if hi is None else hi
        if b < lo or hi < a:
            return
        if a <= lo and hi <= b:
            self.high[k], self.lazy[k] = h, h
            return
        self._push(k)
        mid = (lo + hi) // 2
        self.raise_to(a, b, h, 2 * k, lo, mid)
        self.raise_to(a, b, h, 2 * k + 1, mid + 1, hi)
        self.high[k] = max(self.high[2 * k], self.high[2 * k + 1])


MULTI_ORDERS = (32, 256)
"""Jittered orders tried by :func:`greedy_multi_order`: ``4000 // n`` within these bounds
(small graphs get more tries), fewer when :data:`PLAN_WORK` would be exceeded."""


def _tries(tensors: Sequence[Usage], work: int) -> int:
    """Jittered orders: :data:`MULTI_ORDERS`, within the passes :data:`PLAN_WORK` leaves
    after greedy by size and the three fixed orders."""
    lo, hi = MULTI_ORDERS
    tries = max(lo, min(hi, 4000 // max(len(tensors), 1)))
    return max(0, min(tries, PLAN_WORK // max(work, 1) - 4))


def greedy_multi_order(
    tensors: Sequence[Usage], alignment: int = 1, work: int | None = None
) -> dict[str, int]:
    """Best fit over several orders — by size, by area (size × lifetime), by lifetime, then
    sizes jittered by a random factor (seeded: deterministic), half in [0.7, 1.4], half in
    [0.3, 3] — the smallest arena wins. Greedy by size alone ends up to 40 % above the bound
    on small graphs with skip connections; the best of these orders reaches it on the
    example of docs/THEORY.md §planners and stays within 10 % on the tests' random sets.
    ``work``: one pass's (:func:`_pass_work`, computed when not given) sets how many jittered
    orders fit in :data:`PLAN_WORK`."""
    import random

    orders = [
        _by_size(tensors),
        sorted(tensors, key=lambda t: (-t.size * (t.last - t.first + 1), t.name)),
        sorted(tensors, key=lambda t: (-(t.last - t.first), -t.size, t.name)),
    ]
    rng = random.Random(0)
    for k in range(_tries(tensors, _pass_work(tensors) if work is None else work)):
        a, b = (0.7, 1.4) if k % 2 == 0 else (0.3, 3.0)
        jitter = {t.name: rng.uniform(a, b) for t in tensors}
        orders.append(sorted(tensors, key=lambda t: (-t.size * jitter[t.name], t.name)))
    best: dict[str, int] = {}
    best_size = -1
    for order in orders:
        plan = best_fit(order, alignment)
        size = arena_size(tensors, plan)
        if best_size < 0 or size < best_size:
            best, best_size = plan, size
    return best


def greedy_by_breadth(tensors: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """TFLite's shared-object planner: ops in decreasing breadth, their live tensors in
    decreasing size, each into the best compatible object (the smallest that fits, else the
    largest smaller one, which grows), else a new object; objects laid end to end. Over the
    ranks of :func:`_ranks` (the same plan as over the ops: an op between two ranks adds no
    tensor the rank below it has not placed)."""
    import bisect

    first, last, points = _ranks(tensors)
    live: dict[int, list[int]] = {}
    for i, (a, b) in enumerate(zip(first, last, strict=True)):
        for k in range(a, b + 1):
            live.setdefault(k, []).append(i)
    widths = _rank_breadths(tensors, first, last, points)
    sizes: list[int] = []
    starts: list[list[int]] = []  # per object: its tensors' first and last ranks, in time
    ends: list[list[int]] = []  # order (they never overlap: both lists sorted)
    where: dict[str, int] = {}

    def free(o: int, a: int, b: int) -> bool:  # no tensor of object o overlaps [a, b]
        k = bisect.bisect_left(starts[o], a)
        return (k == len(starts[o]) or starts[o][k] > b) and (k == 0 or ends[o][k - 1] < a)

    for k in sorted(range(points), key=lambda k: (-widths[k], k)):
        for i in sorted(live.get(k, []), key=lambda i: (-tensors[i].size, tensors[i].name)):
            t = tensors[i]
            if t.name in where:
                continue
            fits = [o for o in range(len(sizes)) if free(o, first[i], last[i])]
            big = [o for o in fits if sizes[o] >= t.size]
            if big:
                o = min(big, key=lambda o: (sizes[o], o))
            elif fits:
                o = max(fits, key=lambda o: (sizes[o], -o))
            else:
                sizes.append(0)
                starts.append([])
                ends.append([])
                o = len(sizes) - 1
            sizes[o] = max(sizes[o], t.size)
            k = bisect.bisect_left(starts[o], first[i])
            starts[o].insert(k, first[i])
            ends[o].insert(k, last[i])
            where[t.name] = o
    bases, at = [], 0
    for size in sizes:
        bases.append(at)
        at += align(size, alignment)
    return {name: bases[o] for name, o in where.items()}


def arena_size(tensors: Sequence[Usage], offsets: Mapping[str, int]) -> int:
    return max((offsets[t.name] + t.size for t in tensors), default=0)


def verify(tensors: Sequence[Usage], offsets: Mapping[str, int], size: int | None = None) -> None:
    """No two tensors live at the same op share a byte (and all lie inside ``size``);
    InternalError otherwise: a planner bug. A sweep over time keeping the live tensors' byte
    ranges sorted (pairwise apart, so a new one need only be checked against its two
    neighbours): O(n log n) plus the list's moves."""
    import bisect

    for t in tensors:
        lo, hi = offsets[t.name], offsets[t.name] + t.size
        if lo < 0 or (size is not None and hi > size):
            raise InternalError(f"tensor {t.name} at [{lo}, {hi}) outside the arena ({size})")
    events = sorted(
        [(t.first, 1, i) for i, t in enumerate(tensors) if t.size > 0]
        + [(t.last, 2, i) for i, t in enumerate(tensors) if t.size > 0]
    )  # at one op: arrivals (1) before departures (2): tensors live at that op meet
    los: list[int] = []
    names: list[int] = []
    for _, kind, i in events:
        t = tensors[i]
        lo = offsets[t.name]
        k = bisect.bisect_right(los, lo)
        if kind == 2:
            del los[k - 1], names[k - 1]
            continue
        for j in (k - 1, k):
            if 0 <= j < len(los):
                o = tensors[names[j]]
                if los[j] < lo + t.size and lo < los[j] + o.size:
                    raise InternalError(
                        f"tensors {o.name} and {t.name} are live together and overlap in memory"
                    )
        los.insert(k, lo)
        names.insert(k, i)


PLANNERS = {
    "greedy-by-size": greedy_by_size,
    "greedy-by-breadth": greedy_by_breadth,
    "greedy-multi-order": greedy_multi_order,
}


def boundary_first(usage: ModelUsage, alignment: int = 1) -> dict[str, int]:
    """Best fit with the tensors that stay live across a preemption point placed first (at
    the bottom), then the rest by size: a low high-water mark at the boundaries, for nested
    sharing (docs/THEORY.md §sharing: tensors that live across the allowed boundaries
    go to low offsets)."""
    crossing = _crossing(usage)
    order = sorted(usage.tensors, key=lambda t: (not crossing[t.name], -t.size, t.first, t.name))
    return best_fit(order, alignment)


def plan_model(usage: ModelUsage, alignment: int = 1, *, preemptible: bool = False) -> ModelPlan:
    """Every planner; the smallest verified plan wins (ties: the first in PLANNERS). A
    ``preemptible`` model (nested sharing) also tries :func:`boundary_first` and picks the
    plan with the lowest high-water mark at its boundaries, then the smallest. A model too
    dense for best fit within :data:`PLAN_WORK` gets :func:`skyline_by_size` alone."""
    tensors = usage.tensors
    sizes: dict[str, int] = {}
    plans: dict[str, dict[str, int]] = {}
    work = _pass_work(tensors)
    planners: dict[str, Any] = dict(PLANNERS)
    planners["greedy-multi-order"] = lambda ts, a: greedy_multi_order(ts, a, work)
    if PLAN_WORK // max(work, 1) < 4:  # not its three fixed orders after greedy by size
        del planners["greedy-multi-order"]
    if preemptible:
        planners["boundary-first"] = lambda ts, a: boundary_first(usage, a)
    if work > PLAN_WORK:
        planners = {"skyline-by-size": skyline_by_size}
    for name, planner in planners.items():
        offsets = planner(tensors, alignment)
        size = arena_size(tensors, offsets)
        verify(tensors, offsets, size)
        plans[name], sizes[name] = offsets, size

    def keep(name: str) -> int:
        plan = ModelPlan(usage.name, sizes[name], name, plans[name], 0, 0)
        return peak_high_water(usage, plan)

    order = list(planners)
    if preemptible:
        best = min(order, key=lambda n: (keep(n), sizes[n], order.index(n)))
    else:
        best = min(order, key=lambda n: (sizes[n], order.index(n)))
    return ModelPlan(
        usage.name,
        sizes[best],
        best,
        plans[best],
        naive=sum(t.size for t in tensors),
        lower_bound=lower_bound(tensors),
        candidates=sizes,
    )


def high_water(usage: ModelUsage, plan: ModelPlan, boundary: int) -> int:
    """H(b): the top of the tensors that stay live across boundary b (between ops b-1, b)."""
    return max(
        (plan.offsets[t.name] + t.size for t in usage.tensors if t.first < boundary <= t.last),
        default=0,
    )


def live_across(usage: ModelUsage, boundary: int) -> int:
    return sum(t.size for t in usage.tensors if t.first < boundary <= t.last)


def _crossed(usage: ModelUsage) -> tuple[list[int], list[tuple[int, int]]]:
    """The boundaries, sorted, and per tensor the index range ``[lo, hi)`` of those it stays
    live across (``first < b <= last``): O(n log b), by bisection."""
    import bisect

    bounds = sorted(_boundaries(usage))
    spans = [(bisect.bisect_right(bounds, t.first), bisect.bisect_right(bounds, t.last))
             for t in usage.tensors]  # fmt: skip
    return bounds, spans


def _crossing(usage: ModelUsage) -> dict[str, bool]:
    """Does each tensor stay live across some boundary?"""
    _, spans = _crossed(usage)
    return {t.name: lo < hi for t, (lo, hi) in zip(usage.tensors, spans, strict=True)}


def peak_high_water(usage: ModelUsage, plan: ModelPlan) -> int:
    """``max_b H(b)`` (:func:`high_water`) in O(n log b): the top of the tensors that cross
    any boundary."""
    crossing = _crossing(usage)
    return max((plan.offsets[t.name] + t.size for t in usage.tensors if crossing[t.name]),
               default=0)  # fmt: skip


def peak_live_across(usage: ModelUsage) -> int:
    """``max_b`` :func:`live_across` in O(n log b + b): a difference array over the
    boundaries."""
    bounds, spans = _crossed(usage)
    diff = [0] * (len(bounds) + 1)
    for t, (lo, hi) in zip(usage.tensors, spans, strict=True):
        if lo < hi:
            diff[lo] += t.size
            diff[hi] -= t.size
    best = run = 0
    for d in diff[: len(bounds)]:
        run += d
        best = max(best, run)
    return best


def _boundaries(usage: ModelUsage) -> list[int]:
    if usage.boundaries is not None:
        return list(usage.boundaries)
    n = max((t.last for t in usage.tensors), default=0) + 1
    return list(range(1, n))


@dataclass(frozen=True)
class SharedPlan:
    """The cross-model plan: ``bases[model]`` inside one arena of ``shared_bytes``."""

    mode: str
    models: tuple[ModelPlan, ...]
    bases: Mapping[str, int]
    isolated_bytes: int
    shared_bytes: int
    lower_bound_bytes: int
    weights_bytes: int
    inputs_bytes: int

    @property
    def reduction(self) -> float:
        return 1.0 - self.shared_bytes / self.isolated_bytes if self.isolated_bytes else 0.0

    def as_dict(
        self, usages: Sequence[ModelUsage] = (), assignments: bool = False
    ) -> dict[str, Any]:
        """The ``aegis memory --json`` object (docs/CONTRACTS.md §memory-json)."""
        models = []
        for plan in self.models:
            entry: dict[str, Any] = {
                "name": plan.name,
                "naive_bytes": plan.naive,
                "planned_bytes": plan.size,
                "lower_bound_bytes": plan.lower_bound,
                "method": plan.method,
                "candidates": dict(plan.candidates),
                "base": self.bases[plan.name],
            }
            if assignments:
                base = self.bases[plan.name]
                sizes = {t.name: t.size for u in usages if u.name == plan.name for t in u.tensors}
                entry["assignments"] = [
                    {"tensor": n, "offset": base + off, "size": sizes[n]}
                    for n, off in sorted(plan.offsets.items(), key=lambda kv: (kv[1], kv[0]))
                ]
            models.append(entry)
        return {
            "isolated_bytes": self.isolated_bytes,
            "shared_bytes": self.shared_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "reduction": round(self.reduction, 6),
            "weights_bytes": self.weights_bytes,
            "inputs_bytes": self.inputs_bytes,
            "mode": self.mode,
            "models": models,
        }
