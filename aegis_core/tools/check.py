"""``aegis check``: simulate the analysis's critical release patterns and random sporadic runs,
and compare every simulated response with its analytical bound.

A simulated response above its bound is a bug in the analysis or the simulator. Otherwise the
ratio bound / worst simulated response shows how tight the bound is.

Critical patterns (docs/THEORY.md §worst-case), one simulation each, all periodic at the
minimum separation ``T - J``:

* np-edf / lp-edf, for each admitted task ``i`` and its worst offsets ``a``: the task with the
  longest chunk among those whose deadline is later than ``a + D_i`` starts at 0; every other
  task is released 1 ns later; ``i`` at ``1 ns + a`` and last in list order (it loses ties).
* np-fp, for each admitted task ``i``: the longest lower-priority task starts at 0, every
  higher-or-equal-priority task 1 ns later, ``i`` last in list order.

Random runs: the admitted tasks with random offsets and sporadic arrivals (seeded).

The bounds assume adversarial tie-breaking among equal absolute deadlines; the scheduler breaks
such ties by release time, so a job released later with the same deadline never goes first,
and a bound built on that case can stay a little above every simulated response.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aegis_core.analysis.admission import Admission, admit, analysis_task
from aegis_core.analysis.bounds import ATask, busy_period, edf_offsets, edf_response_at, ms
from aegis_core.budget import TaskBudget
from aegis_core.model.errors import InputError
from aegis_core.model.policy import Patterns, fp_priorities
from aegis_core.model.scenario import Arrival, Scenario, Task
from aegis_core.model.status import JobStatus
from aegis_core.run.engine import Engine, load_engine
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan, WcetModel
from aegis_core.run.scheduler import Scheduler

EPS = 1  # ns: "just before" in a simulated critical pattern


@dataclass(frozen=True)
class CheckRow:
    name: str
    bound_ns: int
    worst_sim_ns: int
    worst_run: str

    @property
    def ok(self) -> bool:
        return self.worst_sim_ns <= self.bound_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bound_ns": self.bound_ns,
            "worst_sim_ns": self.worst_sim_ns,
            "ratio": round(self.bound_ns / self.worst_sim_ns, 4) if self.worst_sim_ns else None,
            "worst_run": self.worst_run,
        }


@dataclass(frozen=True)
class CheckResult:
    policy: str
    rows: tuple[CheckRow, ...]
    runs: int

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "policy": self.policy,
            "runs": self.runs,
            "tasks": [r.as_dict() for r in self.rows],
        }


def _pattern(
    tasks: Sequence[Task], analysed: int, early: int | None, offset: int, label: str
) -> tuple[str, list[Task]]:
    """Periodic at ``T - J``; ``early`` at 0, the rest at EPS, ``analysed`` last at EPS+offset."""
    out = []
    for j, t in enumerate(tasks):
        if j == analysed:
            continue
        start = 0 if j == early else EPS
        out.append(_periodic(t, start))
    out.append(_periodic(tasks[analysed], EPS + offset))
    return label, out


def _periodic(t: Task, offset: int) -> Task:
    return dataclasses.replace(
        t,
        arrival=Arrival.PERIODIC,
        period_ns=t.period_ns - t.jitter_ns,
        jitter_ns=0,
        offset_ns=offset,
    )


def edf_patterns(
    tasks: Sequence[Task], budgets: Sequence[TaskBudget], per_task: int = 3
) -> list[tuple[str, list[Task]]]:
    ts = [analysis_task(t, b, chunks=b.chunks_ns) for t, b in zip(tasks, budgets, strict=True)]
    horizon = busy_period(ts) or 0  # the offsets edf_response_bound searches
    out = []
    for i, task in enumerate(tasks):
        offsets = edf_offsets(ts, i, horizon)
        worst = sorted(offsets, key=lambda a: -edf_response_at(ts, i, a))[:per_task]
        for a in sorted({0, *worst}):
            later = [j for j, x in enumerate(ts) if j != i and x.d > a + ts[i].d]
            early = max(later, key=lambda j: ts[j].q_max, default=None)
            out.append(_pattern(tasks, i, early, a, f"critical {task.name} a={ms(a)}"))
    return out


def fp_patterns(
    tasks: Sequence[Task], budgets: Sequence[TaskBudget]
) -> list[tuple[str, list[Task]]]:
    prio = fp_priorities(tasks)
    out = []
    for i, task in enumerate(tasks):
        lower = [j for j in range(len(tasks)) if prio[j] > prio[i]]
        early = max(lower, key=lambda j: budgets[j].wcet_ns, default=None)
        fixed = [dataclasses.replace(t, priority=p) for t, p in zip(tasks, prio, strict=True)]
        out.append(_pattern(fixed, i, early, 0, f"critical {task.name}"))
    return out


def random_runs(tasks: Sequence[Task], runs: int, seed: int) -> list[tuple[str, list[Task]]]:
    rng = random.Random(seed)
    out = []
    for n in range(runs):
        variant = [
            dataclasses.replace(
                t,
                arrival=Arrival.SPORADIC,
                slack_ns=rng.randint(0, t.period_ns),
                offset_ns=rng.randint(0, t.period_ns),
            )
            for t in tasks
        ]
        out.append((f"random #{n}", variant))
    return out


def _simulate(
    scenario: Scenario,
    tasks: list[Task],
    budgets: dict[str, TaskBudget],
    horizon: int,
    seed: int,
    engine: Callable[[], Engine],
) -> dict[str, int]:
    """One simulation of a variant of the admitted tasks, every job at its WCET in the chunk
    chain admission decided."""
    variant = dataclasses.replace(scenario, tasks=tuple(tasks), duration_ns=horizon, seed=seed)
    chosen = tuple(dataclasses.replace(budgets[t.name], index=i) for i, t in enumerate(tasks))
    plan = RunPlan.build(variant, exec_time=WcetModel.of(chosen))
    plan = dataclasses.replace(plan, budgets=chosen)
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, engine())
    worst: dict[str, int] = {}
    for j in scheduler.jobs:
        if j.status is JobStatus.COMPLETED and j.response_ns is not None:
            worst[j.task] = max(worst.get(j.task, 0), j.response_ns)
    return worst


def check(
    scenario: Scenario,
    *,
    runs: int = 20,
    engine: str = "sim",
    admission: Admission | None = None,
) -> CheckResult:
    """Simulate the critical patterns and ``runs`` random sporadic runs of the admitted tasks."""
    policy = scenario.policy
    if policy.patterns is Patterns.NONE:
        raise InputError(f"{scenario.path}: no analysis for policy {policy}: nothing to check")
    admission = admission or admit(scenario)
    keep = [i for i, v in enumerate(admission.tasks) if v.admitted]
    tasks = [scenario.tasks[i] for i in keep]
    chosen = [admission.budgets[i] for i in keep]
    by_name = {b.name: b for b in chosen}
    bounds = {admission.tasks[i].name: admission.tasks[i].response_bound_ns for i in keep}
    if not tasks:
        return CheckResult(policy.name, (), 0)
    ts: list[ATask] = [analysis_task(t, b, chunks=b.chunks_ns)
                       for t, b in zip(tasks, chosen, strict=True)]  # fmt: skip
    busy = busy_period(ts) or 0
    longest = max(t.period_ns for t in tasks)
    patterns = (edf_patterns(tasks, chosen) if policy.patterns is Patterns.EDF
                else fp_patterns(tasks, chosen))  # fmt: skip
    sims = [(label, v, 3 * busy + 2 * longest) for label, v in patterns]
    horizon = min(scenario.duration_ns, max(20 * longest, 4 * busy))
    sims += [(label, v, horizon) for label, v in random_runs(tasks, runs, scenario.seed)]
    factory = lambda: load_engine(engine)  # noqa: E731
    worst: dict[str, tuple[int, str]] = {t.name: (0, "") for t in tasks}
    for n, (label, variant, span) in enumerate(sims):
        for name, r in _simulate(
            scenario, variant, by_name, span, scenario.seed + n, factory
        ).items():
            if r > worst[name][0]:
                worst[name] = (r, label)
    rows = []
    for t in tasks:
        bound = bounds[t.name]
        assert bound is not None
        rows.append(CheckRow(t.name, bound, *worst[t.name]))
    return CheckResult(policy.name, tuple(rows), len(sims))
