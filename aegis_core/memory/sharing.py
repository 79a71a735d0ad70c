"""Sharing one activation arena across models as the policy allows (serial, nested, concurrent),
and :class:`ScenarioMemory`: the one usage path every consumer plans from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from aegis_core.budget import TaskBudget
    from aegis_core.graph.ir import Graph
    from aegis_core.model.scenario import Scenario

from collections.abc import Sequence

from aegis_core.memory.planner import (
    ALIGN,
    ModelPlan,
    ModelUsage,
    SharedPlan,
    _boundaries,
    align,
    peak_high_water,
    peak_live_across,
    plan_model,
    usage_of,
)
from aegis_core.model.errors import InputError
from aegis_core.model.policy import Sharing


def plan_models(usages: Sequence[ModelUsage], mode: str, alignment: int = 1) -> SharedPlan:
    """``serial``: one model at a time (np-edf, np-fp, fifo); ``nested``: lp-edf preemption at
    chunk boundaries by strictly shorter deadlines; ``concurrent``: no sharing."""
    if mode not in set(Sharing):
        raise InputError(
            f"unknown sharing mode {mode!r}; choose one of {', '.join(m.value for m in Sharing)}"
        )
    names = [u.name for u in usages]
    if len(set(names)) != len(names):
        raise InputError("model names must be unique")
    shortest = min((u.deadline_ns for u in usages if u.deadline_ns is not None), default=None)

    def preemptible(u: ModelUsage) -> bool:  # nested: some task may preempt it at a boundary
        return (mode == Sharing.NESTED and bool(_boundaries(u)) and shortest is not None
                and (u.deadline_ns or 0) > shortest)  # fmt: skip

    plans = [plan_model(u, alignment, preemptible=preemptible(u)) for u in usages]
    isolated = sum(align(p.size, alignment) for p in plans)  # each its own aligned arena
    if mode == Sharing.SERIAL:
        bases = {p.name: 0 for p in plans}
        shared = max((p.size for p in plans), default=0)
        bound = max((p.lower_bound for p in plans), default=0)
    elif mode == Sharing.CONCURRENT:
        bases, at = {}, 0
        for p in plans:
            bases[p.name] = at
            at += align(p.size, alignment)
        shared = at - (align(plans[-1].size, alignment) - plans[-1].size if plans else 0)
        bound = sum(p.lower_bound for p in plans)
    else:
        bases, shared, bound = _nested(usages, plans, alignment)
    return SharedPlan(
        mode, tuple(plans), bases, isolated, shared, bound,
        sum(u.weights_bytes for u in usages), sum(u.inputs_bytes for u in usages),
    )  # fmt: skip


def _nested(
    usages: Sequence[ModelUsage], plans: Sequence[ModelPlan], alignment: int = 1
) -> tuple[dict[str, int], int, int]:
    """docs/THEORY.md §sharing, fixed addresses, by decreasing deadline: ``base_j = max over i with
    D_i > D_j of (base_i + max_b H_i(b))`` (a job is preempted only by one of a task with a
    strictly shorter deadline, so preemptions nest); arena ``max_j (base_j + A_j)``. The lower
    bound is the worst nesting of live bytes, a DP in increasing deadline:
    ``W(i) = max(LB_i, max_b L_i(b) + max over D_j < D_i of W(j))``."""
    if any(u.deadline_ns is None for u in usages):
        raise InputError("interleaved sharing needs every model's relative deadline")
    dl = [u.deadline_ns or 0 for u in usages]
    n = len(usages)
    keep = [peak_high_water(usages[i], plans[i]) for i in range(n)]
    live = [peak_live_across(usages[i]) for i in range(n)]
    order = sorted(range(n), key=lambda i: (-dl[i], i))
    base: dict[int, int] = {}
    for pos, j in enumerate(order):
        below = [base[i] + keep[i] for i in order[:pos] if dl[i] > dl[j]]
        base[j] = align(max(below, default=0), alignment)
    shared = max((base[i] + plans[i].size for i in range(n)), default=0)
    worst: dict[int, int] = {}
    for i in reversed(order):
        inner = [worst[j] for j in worst if dl[j] < dl[i]]
        worst[i] = (
            max(plans[i].lower_bound, live[i] + max(inner)) if inner else plans[i].lower_bound
        )
    return {usages[i].name: base[i] for i in range(n)}, shared, max(worst.values(), default=0)


@dataclass(frozen=True)
class ScenarioMemory:
    """The one usage path: each modelled task's tensors as the executor sizes them (kernel
    scratch included), with its chunk chain's real boundaries and its deadline, shared as the
    policy says. The admission gate, the executor's arena, the Perfetto activation counter and
    ``aegis memory`` all plan from it, so they report the same bytes."""

    usages: Mapping[int, ModelUsage]
    """By task index."""
    mode: str
    graphs: Mapping[int, Graph] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        scenario: Scenario,
        budgets: Sequence[TaskBudget] | None = None,
        *,
        indices: Iterable[int] | None = None,
        graphs: Mapping[int, Graph] | None = None,
    ) -> ScenarioMemory:
        """Tasks ``indices`` (default: all) that have a model; tasks without one take no
        device memory. Each task's chunk boundaries come from its budget's chunk chain (the
        only preemption points); without ``budgets``, every op is one (the conservative
        plan). ``graphs`` gives already-built graphs by task index (the executor's)."""
        from aegis_core.graph.zoo import task_graph

        chosen = range(len(scenario.tasks)) if indices is None else indices
        found: dict[int, TaskGraph] = {}
        for i in chosen:
            task = scenario.tasks[i]
            g = (graphs or {}).get(i) or task_graph(scenario, task)
            if g is not None:
                n = None if budgets is None else len(budgets[i].chunks_ns)
                found[i] = TaskGraph(task.name, g, n, task.deadline_ns)
        return cls.of_graphs(found, scenario.policy.sharing)

    @classmethod
    def of_graphs(cls, graphs: Mapping[int, TaskGraph], sharing: str) -> ScenarioMemory:
        """From each task's graph and chunk count (by task index): the executor's entry."""
        usages = {i: _usage_of_task(t) for i, t in graphs.items()}
        return cls(usages, str(sharing), {i: t.graph for i, t in graphs.items()})

    def rechunked(self, chunks: Mapping[int, int]) -> ScenarioMemory:
        """The same tasks with other chunk counts (admission's candidate sets)."""
        usages = dict(self.usages)
        for i, n in chunks.items():
            if i in self.graphs:
                usages[i] = dataclasses.replace(
                    usages[i], boundaries=_chunk_boundaries(self.graphs[i], n)
                )
        return ScenarioMemory(usages, self.mode, self.graphs)

    def plan(self, indices: Iterable[int] | None = None, alignment: int = ALIGN) -> SharedPlan:
        chosen = [self.usages[i] for i in (indices if indices is not None else self.usages)
                  if i in self.usages]  # fmt: skip
        return plan_models(chosen, self.mode, alignment)

    def task_bytes(self, i: int) -> int:
        """A task's own planned device memory: weights, input and its activation arena."""
        if i not in self.usages:
            return 0
        u = self.usages[i]
        return u.weights_bytes + u.inputs_bytes + plan_model(u, ALIGN).size

    def total_bytes(self, indices: Iterable[int]) -> int:
        """Device memory of a set of tasks: their weights and inputs, and the shared arena."""
        p = self.plan(indices)
        return p.weights_bytes + p.inputs_bytes + p.shared_bytes

    def report(self, indices: Iterable[int] | None = None) -> dict[str, Any]:
        """What ``aegis admit --json`` and an executed run's summary report of the plan."""
        p = self.plan(indices)
        return {
            "sharing": p.mode,
            "arena_bytes": p.shared_bytes,
            "weights_bytes": p.weights_bytes,
            "inputs_bytes": p.inputs_bytes,
        }


def _chunk_boundaries(graph: Graph, n: int | None) -> tuple[int, ...] | None:
    """The op indices where chunks 2..n of a job start (None: every op may be one)."""
    return None if n is None else tuple(r.start for r in graph.chunks(n)[1:])


class TaskGraph(NamedTuple):
    """A task's model graph with what its memory plan needs of the task."""

    name: str
    graph: Graph
    n_chunks: int | None
    """How many non-preemptive chunks a job runs as (None: every op may be a boundary)."""
    deadline_ns: int


def _usage_of_task(t: TaskGraph) -> ModelUsage:
    """The one usage function of a task: the executor's sizing, real chunk boundaries."""
    u = usage_of(t.graph, t.name, executor=True)
    return dataclasses.replace(
        u, boundaries=_chunk_boundaries(t.graph, t.n_chunks), deadline_ns=t.deadline_ns
    )
