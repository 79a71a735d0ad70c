"""Admission of a scenario: its budgets, analysed in list order under the policy's analysis (the
bounds of :mod:`aegis_core.analysis.bounds`), with the memory gate; one :class:`TaskVerdict` per
task with everything needed to re-derive it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegis_core.budget import TaskBudget, WcetFrom, budgets, with_chunks
from aegis_core.model.errors import InputError
from aegis_core.model.policy import Analysis, fp_priorities
from aegis_core.model.scenario import Scenario, Task
from aegis_core.model.types import fmt_count, fmt_mib

if TYPE_CHECKING:
    from aegis_core.memory.sharing import ScenarioMemory
    from aegis_core.model.overheads import Overheads
from aegis_core.analysis.bounds import (
    INF,
    MAX_POINTS,
    ATask,
    DemandResult,
    Effort,
    Exhausted,
    FpResponse,
    count_test_points,
    edf_demand_enumerate,
    edf_demand_qpa,
    edf_response_bound,
    fp_response,
    max_chunk_bounds,
    ms,
    split_chunks,
)
from aegis_core.analysis.charging import charge, charged_wcet


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
    charged_ns: int | None = None  # C': the WCET with host overheads charged (None: none)
    overheads_ns: Mapping[str, int] | None = None  # the overhead bounds charged, by figure
    profile: str | None = None  # the profile file the WCET came from (wcet_from "profile")

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
        if self.profile is not None:
            out["profile"] = self.profile
        if self.overheads_ns is not None:
            out["charged_wcet_ns"] = self.charged_ns
            out["overheads_ns"] = dict(self.overheads_ns)
        return out


PROVENANCE = ("wcet_from", "note", "profile")
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
    overheads: Overheads | None = None
    """The host overheads the analysis charged (None: an ideal host)."""
    effort: Effort | None = None
    """The analysis budget and the points the verdicts spent of it."""
    wording: Effort | None = None
    """The points the reasons' wording spent (a pool of its own, as large: the wording never
    changes a verdict, docs/THEORY.md §budget)."""

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
        if self.overheads is not None:
            o = self.overheads
            out["overheads"] = {"source": o.label, "bounds_ns": o.bounds(),
                                "per_dispatch_ns": o.per_dispatch_ns}  # fmt: skip
        if self.effort is not None:
            words = None if self.wording is None else self.wording.spent
            out["analysis_points"] = {"budget": self.effort.limit, "spent": self.effort.spent,
                                      "spent_on_reasons": words}  # fmt: skip
        return out


def analysis_task(
    task: Task, budget: TaskBudget, prio: int = 0, chunks: Sequence[int] = ()
) -> ATask:
    """The analysis view of a task and its budget. The scenario's release jitter ``J`` (each
    release up to ``J`` after its nominal time, its deadline counting from the actual release)
    is the analysis's arrival jitter ``burst`` on the period ``T``: ``k`` consecutive gaps
    span at least ``k T - J`` (docs/THEORY.md §jitter). ``j`` (the scheduler seeing a release
    late) stays 0: host overheads are charged on top of this view."""
    return ATask(
        task.name,
        budget.wcet_ns,
        task.period_ns,
        task.deadline_ns,
        tuple(chunks),
        prio,
        burst=task.jitter_ns,
    )


def admit(scenario: Scenario, task_budgets: Sequence[TaskBudget] | None = None) -> Admission:
    """Incremental admission in list order: a task is admitted when the analysis of the
    scenario's policy proves that it and every task admitted before it meet their deadlines
    (and, when the scenario sets memory budgets, their planned memory fits)."""
    bs = tuple(task_budgets) if task_budgets is not None else budgets(scenario)
    points = analysis_budget(scenario)
    effort, wording = Effort(points), Effort(points)
    ctx = _Context(scenario, scenario.tasks, bs, effort, wording, scenario.overheads)
    test, evaluate = _ANALYSES[scenario.policy.analysis](ctx)
    memory = _memory(scenario, bs)
    verdicts = tuple(_incremental(ctx, test, evaluate, memory if _gated(scenario) else None))
    final = with_chunks(bs, [v.chunks_ns for v in verdicts])
    report = None
    if memory is not None:
        admitted = [i for i, v in enumerate(verdicts) if v.admitted]
        chains = {i: len(final[i].chunks_ns) for i in admitted}
        report = memory.rechunked(chains).report(admitted)
    return Admission(
        scenario.policy.name, verdicts, final, report, scenario.overheads, effort, wording
    )


def analysis_budget(scenario: Scenario) -> int:
    """The points one admission of ``scenario`` may spend (``analysis_points``, else
    :data:`~aegis_core.analysis.bounds.MAX_POINTS`)."""
    return MAX_POINTS if scenario.analysis_points is None else scenario.analysis_points


@dataclass(frozen=True)
class _Context:
    """What every analysis reads: the tasks and their budgets (by task index)."""

    scenario: Scenario
    tasks: Sequence[Task]
    budgets: Sequence[TaskBudget]
    effort: Effort
    wording: Effort
    overheads: Overheads | None = None

    def verdict(self, j: int, admitted: bool, reason: str, test: str, **more: Any) -> TaskVerdict:
        t, b, o = self.tasks[j], self.budgets[j], self.overheads
        chain = more.get("chunks_ns") or (None if self.scenario.policy.chunked else b.chunks_ns)
        v = TaskVerdict(t.name, admitted, b.wcet_ns, t.period_ns, t.deadline_ns,
                        more.pop("bound", None), reason, test, wcet_from=str(b.wcet_from),
                        note=b.note, profile=_profile_of(t, b), **more)  # fmt: skip
        if o is None:
            return v
        charged = None if chain is None else charged_wcet(b.wcet_ns, len(chain), o)
        return dataclasses.replace(v, charged_ns=charged, overheads_ns=o.bounds())

    def analysis(self, j: int, prio: int = 0, chunks: Sequence[int] = ()) -> ATask:
        """Task ``j`` as the analysis sees it, with the host overheads charged."""
        return charge(analysis_task(self.tasks[j], self.budgets[j], prio, chunks), self.overheads)

    @property
    def per_dispatch_ns(self) -> int:
        return 0 if self.overheads is None else self.overheads.per_dispatch_ns


def _profile_of(task: Task, budget: TaskBudget) -> str | None:
    return task.profile if budget.wcet_from is WcetFrom.PROFILE else None


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
    """The scenario's memory (the one usage path), when any task has a model. Without memory
    budgets it is only reported: a graph that cannot be built here leaves it out."""
    if not any(t.model for t in scenario.tasks):
        return None
    from aegis_core.memory.sharing import ScenarioMemory

    try:
        return ScenarioMemory.of(scenario, bs)
    except InputError:
        if _gated(scenario):
            raise
        return None


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
    return (f"WCET {ms(b.wcet_ns)} exceeds the relative deadline "
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
            out = _within_budget(evaluate, [*admitted, i])
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


def _within_budget(evaluate: Evaluate, cand: list[int]) -> Evaluation:
    """``evaluate(cand)``, or the rejection reason when the analysis budget runs out first
    (rejecting is safe: the set is only not proved)."""
    try:
        return evaluate(cand)
    except Exhausted as exc:
        return (
            f"{exc}: not proved schedulable within the analysis budget (raise it with "
            f"analysis_points: or --max-points)"
        )


NP_EDF_TEST = "np-edf demand (George-Rivierre-Spuri, segmented QPA)"
NP_FP_TEST = "np-fp response time (Davis-Burns-Bril-Lukkien 2007, every job of the busy period)"
LP_EDF_TEST = "lp-edf demand with chunk blocking (Bertogna-Baruah Q_k, greedy kernel merging)"
NO_TEST = "none"


def _np_edf(ctx: _Context) -> tuple[str, Evaluate]:
    def evaluate(cand: list[int]) -> Evaluation:
        ts = [ctx.analysis(j) for j in cand]
        e = ctx.effort
        qpa = edf_demand_qpa(ts, effort=e)
        reason = _demand_reason(ts, qpa, ctx.wording)
        if not qpa.ok:
            return reason
        bounds = [edf_response_bound(ts, k, effort=e) for k in range(len(ts))]
        return _edf_verdicts(ctx, cand, ts, bounds, reason, NP_EDF_TEST)

    return NP_EDF_TEST, evaluate


def _demand_reason(
    ts: Sequence[ATask], qpa: DemandResult, wording: Effort, q: Sequence[int] | None = None
) -> str:
    """The demand test's reason: by enumeration (the first violating point, or the binding
    one) while the wording pool lasts, else QPA's own. The pool is not the verdicts' budget:
    how a reason is worded never changes a verdict."""
    left = wording.left
    if qpa.bound is None or (left is not None and count_test_points(ts, qpa.bound) > left):
        return qpa.reason
    try:
        return edf_demand_enumerate(ts, q=q, effort=wording).reason
    except Exhausted:
        return qpa.reason


def _edf_verdicts(
    ctx: _Context, cand: list[int], ts: Sequence[ATask],
    bounds: Sequence[tuple[int, int] | None], reason: str, test: str,
    limits: Sequence[int | float] = (), chains: Sequence[tuple[int, ...]] = (),
) -> Evaluation:  # fmt: skip
    for k, b in enumerate(bounds):
        if b is None or b[0] > ts[k].d:
            r = "unbounded" if b is None else ms(b[0])
            return f"response bound of {ts[k].name} {r} > deadline {ms(ts[k].d)}"
    out = {}
    for k, (j, b) in enumerate(zip(cand, bounds, strict=True)):
        assert b is not None
        chunked = {} if not limits else {
            "chunks_ns": chains[k],
            "max_chunk_ns": None if limits[k] == INF else int(limits[k]),
        }  # fmt: skip
        out[j] = ctx.verdict(j, True, reason, test, bound=b[0], **chunked)
    return out


def _np_fp(ctx: _Context) -> tuple[str, Evaluate]:
    prio = fp_priorities(ctx.tasks)

    def evaluate(cand: list[int]) -> Evaluation:
        ts = [ctx.analysis(j, prio[j]) for j in cand]
        results = [fp_response(ts, k, effort=ctx.effort) for k in range(len(ts))]
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
        f"priority {prio}: R = {ms(r.bound)} <= D, the worst of the "
        f"{fmt_count(len(r.jobs), 'job')} in the level-{prio} busy period "
        f"({ms(r.busy_period)}); blocking {ms(r.blocking)}"
    )


def _lp_edf(ctx: _Context) -> tuple[str, Evaluate]:
    def evaluate(cand: list[int]) -> Evaluation:
        plain = [ctx.analysis(j) for j in cand]
        e = ctx.effort
        free = [0] * len(plain)  # no blocking: fully preemptive
        pre = edf_demand_qpa(plain, q=free, effort=e)
        if not pre.ok:
            return "fails even fully preemptive: " + _demand_reason(plain, pre, ctx.wording, free)
        limits = max_chunk_bounds(plain, e)
        chunked: list[ATask] = []
        chains: list[tuple[int, ...]] = []
        extra = ctx.per_dispatch_ns  # each chunk is one more dispatch: charged, it must fit Q
        for k, j in enumerate(cand):
            kernels = ctx.budgets[j].kernels_ns
            chunks = split_chunks(kernels, limits[k] - extra)
            if chunks is None:
                who = "its" if j == cand[-1] else f"{ctx.tasks[j].name}'s"
                charged = f" + {ms(extra)} host overheads" if extra else ""
                return (
                    f"{who} largest kernel {ms(max(kernels))}{charged} exceeds the largest "
                    f"tolerable non-preemptive chunk Q = {ms(limits[k])}"
                )
            chains.append(tuple(chunks))
            chunked.append(ctx.analysis(j, chunks=chunks))
        res = edf_demand_enumerate(chunked, effort=e)
        if not res.ok:
            return res.reason
        bounds = [edf_response_bound(chunked, k, effort=e) for k in range(len(chunked))]
        return _edf_verdicts(ctx, cand, chunked, bounds, res.reason, LP_EDF_TEST, limits, chains)

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
"""Each policy's admission analysis, by the :class:`~aegis_core.model.policy.Analysis` it names."""
