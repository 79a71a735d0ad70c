"""The executor's activation arena: every task's activations and kernel scratch buffers as
views into one buffer, at the offsets the core's memory planner chose.

:func:`layout` plans it (``aegis_core.memory``, with each operator's scratch buffers added as
tensors live at that operator only): whole-job non-preemptive policies run one model at a
time, so the models overlap in one region; lp-edf stacks a task above what the tasks it may
preempt keep live across their chunk boundaries; ``unscheduled`` gives every model its own
region. Weights and the graph input stay in buffers of their own. A backend allocates the
arena once (:class:`Placement` hands out the views) and the kernels never allocate.
:func:`check` (debug mode) verifies, from the views' real addresses, that no two tensors that
can be live at the same time share a byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aegis_core.memory.planner import ALIGN, ModelUsage, SharedPlan, Usage
from aegis_core.memory.sharing import ScenarioMemory, TaskGraph
from aegis_core.model.errors import InternalError
from aegis_core.model.policy import Policy, Sharing, get_policy

from .backends.base import TaskWork


@dataclass(frozen=True)
class Layout:
    """Where each task's planned buffers lie in the arena: ``offsets[task][key]``."""

    plan: SharedPlan
    offsets: Mapping[int, Mapping[str, int]]
    usages: Mapping[int, ModelUsage]

    @property
    def nbytes(self) -> int:
        return self.plan.shared_bytes

    def report(self) -> dict[str, Any]:
        return {
            "sharing": self.plan.mode,
            "arena_bytes": self.plan.shared_bytes,
            "isolated_bytes": self.plan.isolated_bytes,
            "lower_bound_bytes": self.plan.lower_bound_bytes,
            "reduction": round(self.plan.reduction, 6),
        }


def layout(work: Sequence[TaskWork], policy: Policy | str, deadlines: Sequence[int]) -> Layout:
    """Plan the arena of every task with a model (rejected tasks carry none) through the
    core's one usage path (:class:`~aegis_core.memory.sharing.ScenarioMemory`), each task cut into
    the chunks it runs as."""
    graphs = {w.index: TaskGraph(w.name, w.graph, len(w.ranges), deadlines[w.index])
              for w in work if w.graph is not None}  # fmt: skip
    memory = ScenarioMemory.of_graphs(graphs, get_policy(policy).sharing)
    usages = memory.usages
    plan = memory.plan()
    plans = {p.name: p for p in plan.models}
    offsets = {
        i: {k: plan.bases[u.name] + off for k, off in plans[u.name].offsets.items()}
        for i, u in usages.items()
    }
    return Layout(plan, offsets, usages)


class Placement:
    """Views of one task's planned buffers in the arena ``buffer`` (a 1-D uint8 array of the
    backend's library); keys the plan does not hold (weights, the input) return None."""

    def __init__(self, buffer: Any, offsets: Mapping[str, int], float32: Any) -> None:
        self.buffer = buffer
        self.offsets = offsets
        self.float32 = float32

    def view(self, key: str, shape: tuple[int, ...]) -> Any | None:
        off = self.offsets.get(key)
        if off is None:
            return None
        n = math.prod(shape) * 4
        return self.buffer[off : off + n].view(self.float32).reshape(shape)


def address(a: Any) -> int:
    """The first byte of an array (numpy or cupy)."""
    data = getattr(a, "data", None)
    ptr = getattr(data, "ptr", None)
    return int(ptr) if ptr is not None else int(a.__array_interface__["data"][0])


def check(lay: Layout, graphs: Mapping[int, Any]) -> int:
    """Debug mode: from the real addresses of each task's views (``CompiledGraph.addresses``),
    no two buffers that can be live together overlap — within a task, by their lifetimes;
    across tasks, unless the sharing mode runs them one at a time. Returns the number of
    buffers checked; InternalError names the first overlap."""
    spans: list[tuple[int, int, int, Usage]] = []  # (start, end, task, usage)
    for i, u in lay.usages.items():
        where = graphs[i].addresses
        for t in u.tensors:
            start = where[t.name]
            spans.append((start, start + t.size, i, t))
    spans.sort(key=lambda s: s[0])
    for n, (_start, end, i, t) in enumerate(spans):
        for start2, _end2, j, t2 in spans[n + 1 :]:
            if start2 >= end:
                break
            if t.size == 0 or t2.size == 0:
                continue
            if _together(lay, i, t, j, t2):
                raise InternalError(
                    f"arena overlap: {lay.usages[i].name}:{t.name} and "
                    f"{lay.usages[j].name}:{t2.name} can be live together"
                )
    return len(spans)


def _together(lay: Layout, i: int, t: Usage, j: int, t2: Usage) -> bool:
    if i == j:
        return t.overlaps(t2)
    mode = lay.plan.mode
    if mode == Sharing.CONCURRENT:
        return True
    if mode == Sharing.SERIAL:
        return False
    ui, uj = lay.usages[i], lay.usages[j]
    di, dj = ui.deadline_ns or 0, uj.deadline_ns or 0
    if di == dj:
        return False  # equal deadlines never preempt each other
    low, kept = (ui, t) if di > dj else (uj, t2)  # low: the task that can be preempted
    return any(kept.first < b <= kept.last for b in low.boundaries or ())


def arena_buffer(xp: Any, nbytes: int) -> Any:
    """A 1-D uint8 buffer of at least ``nbytes`` whose first byte is ALIGN-aligned."""
    raw = xp.empty(max(nbytes, 1) + ALIGN, dtype=xp.uint8)
    skip = (-address(raw)) % ALIGN
    return raw[skip : skip + max(nbytes, 1)]
