"""What ``aegis memory`` reads and shows of a plan: tensor-usage files, the table, the PNG."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from aegis_core.model.errors import InputError
from aegis_core.model.types import fmt_mib as _mib

if TYPE_CHECKING:
    from aegis_core.budget import TaskBudget
    from aegis_core.graph.ir import Graph
    from aegis_core.model.scenario import Scenario
from aegis_core.memory.planner import ALIGN, ModelUsage, SharedPlan, Usage, plan_model, usage_of
from aegis_core.memory.sharing import plan_models


def usages_from_json(data: Any, path: str) -> tuple[list[ModelUsage], bool]:
    """The tensor-usage file (docs/CONTRACTS.md §memory-json); InputError names file and field."""
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise InputError(f"{path}: expected an object with a 'models' list")
    interleave = data.get("interleave", False)
    if not isinstance(interleave, bool):
        raise InputError(f"{path}: field 'interleave' must be true or false")
    out = []
    for i, m in enumerate(data["models"]):
        where = f"{path}: models[{i}]"
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            raise InputError(f"{where}: needs a 'name' (string) and 'tensors'")
        if not isinstance(m.get("tensors"), list):
            raise InputError(f"{where} ({m['name']}): field 'tensors' must be a list")
        out.append(ModelUsage(m["name"], tuple(_usage(t, f"{where}.tensors[{k}]")
                                                for k, t in enumerate(m["tensors"]))))  # fmt: skip
        names = [t.name for t in out[-1].tensors]
        if len(set(names)) != len(names):
            raise InputError(f"{where} ({m['name']}): tensor names must be unique")
    return out, interleave


def _usage(t: Any, where: str) -> Usage:
    if not isinstance(t, Mapping):
        raise InputError(f"{where}: must be an object with name, size, first, last")
    for key in ("size", "first", "last"):
        v = t.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise InputError(f"{where}: field '{key}' must be an integer >= 0, got {v!r}")
    if not isinstance(t.get("name"), str):
        raise InputError(f"{where}: field 'name' must be a string")
    if t["first"] > t["last"]:
        raise InputError(f"{where}: first ({t['first']}) is after last ({t['last']})")
    return Usage(t["name"], t["size"], t["first"], t["last"])


# ----------------------------------------------------------------------------- scenarios


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


def format_plan(plan: SharedPlan) -> str:
    """The readable table of ``aegis memory``."""
    lines = [
        f"memory plan · {plan.mode} sharing · {len(plan.models)} models",
        f"{'model':<16} {'naive MiB':>10} {'planned MiB':>12} {'lower bound':>12} "
        f"{'base MiB':>9}  method",
    ]
    for p in plan.models:
        lines.append(
            f"{p.name:<16} {_mib(p.naive):>10} {_mib(p.size):>12} {_mib(p.lower_bound):>12} "
            f"{_mib(plan.bases[p.name]):>9}  {p.method}"
        )
    gap = plan.shared_bytes / plan.lower_bound_bytes - 1 if plan.lower_bound_bytes else 0.0
    lines += [
        f"activations and kernel scratch: isolated {_mib(plan.isolated_bytes)} MiB, shared "
        f"{_mib(plan.shared_bytes)} MiB, lower bound {_mib(plan.lower_bound_bytes)} MiB; "
        f"reduction {plan.reduction:.1%}, {gap:.1%} above the lower bound",
        f"persistent (not shared): weights {_mib(plan.weights_bytes)} MiB, inputs "
        f"{_mib(plan.inputs_bytes)} MiB",
    ]
    return "\n".join(lines)


def plot_plan(plan: SharedPlan, usages: Sequence[ModelUsage], path: str) -> None:
    """The arena layout as a PNG: per model, each tensor a rectangle (op index × offset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    by = {u.name: u for u in usages}
    fig, axes = plt.subplots(1, len(plan.models), figsize=(4 * max(len(plan.models), 1), 4),
                             squeeze=False)  # fmt: skip
    for ax, p in zip(axes[0], plan.models, strict=True):
        base = plan.bases[p.name]
        n = max((t.last for t in by[p.name].tensors), default=0) + 1
        for t in by[p.name].tensors:
            y = (base + p.offsets[t.name]) / (1 << 20)
            ax.add_patch(Rectangle((t.first, y), t.last - t.first + 1, t.size / (1 << 20),
                                   alpha=0.6, edgecolor="k", linewidth=0.3))  # fmt: skip
        ax.set_xlim(0, n)
        ax.set_ylim(0, plan.shared_bytes / (1 << 20) or 1)
        ax.axhline(plan.shared_bytes / (1 << 20), color="r", linewidth=0.8)
        ax.set_title(f"{p.name} ({p.method})", fontsize=9)
        ax.set_xlabel("op index")
        ax.set_ylabel("offset (MiB)")
    fig.suptitle(f"{plan.mode} sharing: {_mib(plan.shared_bytes)} MiB shared vs "
                 f"{_mib(plan.isolated_bytes)} MiB isolated")  # fmt: skip
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
