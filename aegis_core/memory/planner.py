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
    """Bytes live at each op (index 0 .. last op)."""
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


def lower_bound(tensors: Sequence[Usage]) -> int:
    """Peak bytes live at once: no offset plan can be smaller."""
    return max(breadths(tensors), default=0)


def best_fit(order: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """Place tensors in ``order``: each takes the smallest gap between the tensors already
    placed that overlap it in time (best fit), else goes above the highest of them."""
    placed: list[tuple[int, Usage]] = []  # (offset, tensor), kept sorted by offset
    offsets: dict[str, int] = {}
    for t in order:
        best: int | None = None
        best_gap = None
        prev_end = 0
        for off, other in placed:
            if not other.overlaps(t):
                continue
            gap = off - prev_end
            if gap >= t.size and (best_gap is None or gap < best_gap):
                best, best_gap = prev_end, gap
            prev_end = max(prev_end, align(off + other.size, alignment))
        offset = prev_end if best is None else best
        offsets[t.name] = offset
        placed.append((offset, t))
        placed.sort(key=lambda p: p[0])
    return offsets


def greedy_by_size(tensors: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """TFLite's offset planner: best fit, largest tensor first."""
    return best_fit(sorted(tensors, key=lambda t: (-t.size, t.first, t.name)), alignment)


MULTI_ORDERS = (32, 256)
"""Jittered orders tried by :func:`greedy_multi_order`: ``4000 // n`` within these bounds
(small graphs get more tries; a try costs O(n²))."""


def greedy_multi_order(tensors: Sequence[Usage], alignment: int = 1) -> dict[str, int]:
    """Best fit over several orders — by size, by area (size × lifetime), by lifetime, then
    sizes jittered by a random factor (seeded: deterministic), half in [0.7, 1.4], half in
    [0.3, 3] — the smallest arena wins. Greedy by size alone ends up to 40 % above the bound
    on small graphs with skip connections; the best of these orders reaches it on the
    example of docs/THEORY.md §planners and stays within 10 % on the tests' random sets."""
    import random

    orders = [
        sorted(tensors, key=lambda t: (-t.size, t.first, t.name)),
        sorted(tensors, key=lambda t: (-t.size * (t.last - t.first + 1), t.name)),
        sorted(tensors, key=lambda t: (-(t.last - t.first), -t.size, t.name)),
    ]
    lo, hi = MULTI_ORDERS
    tries = max(lo, min(hi, 4000 // max(len(tensors), 1)))
    rng = random.Random(0)
    for k in range(tries):
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
    largest smaller one, which grows), else a new object; objects laid end to end."""
    live: dict[int, list[Usage]] = {}
    for t in tensors:
        for k in range(t.first, t.last + 1):
            live.setdefault(k, []).append(t)
    widths = breadths(tensors)
    objects: list[tuple[int, list[Usage]]] = []  # (size, tensors)
    where: dict[str, int] = {}
    for k in sorted(range(len(widths)), key=lambda k: (-widths[k], k)):
        for t in sorted(live.get(k, []), key=lambda t: (-t.size, t.name)):
            if t.name in where:
                continue
            fits = [i for i, (_, ts) in enumerate(objects) if not any(o.overlaps(t) for o in ts)]
            big = [i for i in fits if objects[i][0] >= t.size]
            if big:
                i = min(big, key=lambda i: (objects[i][0], i))
            elif fits:
                i = max(fits, key=lambda i: (objects[i][0], -i))
            else:
                objects.append((0, []))
                i = len(objects) - 1
            size, ts = objects[i]
            objects[i] = (max(size, t.size), [*ts, t])
            where[t.name] = i
    bases, at = [], 0
    for size, _ in objects:
        bases.append(at)
        at += align(size, alignment)
    return {name: bases[i] for name, i in where.items()}


def arena_size(tensors: Sequence[Usage], offsets: Mapping[str, int]) -> int:
    return max((offsets[t.name] + t.size for t in tensors), default=0)


def verify(tensors: Sequence[Usage], offsets: Mapping[str, int], size: int | None = None) -> None:
    """No two tensors live at the same op share a byte (and all lie inside ``size``);
    InternalError otherwise: a planner bug."""
    by_offset = sorted(tensors, key=lambda t: offsets[t.name])
    for i, a in enumerate(by_offset):
        lo, hi = offsets[a.name], offsets[a.name] + a.size
        if lo < 0 or (size is not None and hi > size):
            raise InternalError(f"tensor {a.name} at [{lo}, {hi}) outside the arena ({size})")
        for b in by_offset[i + 1 :]:
            if offsets[b.name] >= hi:
                break
            if a.overlaps(b) and b.size > 0 and a.size > 0:
                raise InternalError(
                    f"tensors {a.name} and {b.name} are live together and overlap in memory"
                )


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
    bounds = _boundaries(usage)

    def crossing(t: Usage) -> bool:
        return any(t.first < b <= t.last for b in bounds)

    order = sorted(usage.tensors, key=lambda t: (not crossing(t), -t.size, t.first, t.name))
    return best_fit(order, alignment)


def plan_model(usage: ModelUsage, alignment: int = 1, *, preemptible: bool = False) -> ModelPlan:
    """Every planner; the smallest verified plan wins (ties: the first in PLANNERS). A
    ``preemptible`` model (nested sharing) also tries :func:`boundary_first` and picks the
    plan with the lowest high-water mark at its boundaries, then the smallest."""
    tensors = usage.tensors
    sizes: dict[str, int] = {}
    plans: dict[str, dict[str, int]] = {}
    planners: dict[str, Any] = dict(PLANNERS)
    if preemptible:
        planners["boundary-first"] = lambda ts, a: boundary_first(usage, a)
    for name, planner in planners.items():
        offsets = planner(tensors, alignment)
        size = arena_size(tensors, offsets)
        verify(tensors, offsets, size)
        plans[name], sizes[name] = offsets, size

    def keep(name: str) -> int:
        plan = ModelPlan(usage.name, sizes[name], name, plans[name], 0, 0)
        return max((high_water(usage, plan, b) for b in _boundaries(usage)), default=0)

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
