"""``aegis check``: simulate the analysis's critical release patterns and random sporadic runs,
and compare every simulated response with its analytical bound.

A simulated response above its bound is a bug in the analysis or the simulator. Otherwise the
ratio bound / worst simulated response shows how tight the bound is. Without release jitter
every np-edf, lp-edf and np-fp bound is the supremum of the responses of its critical pattern,
so the pattern's worst response lies within 1 ns below it (docs/THEORY.md §worst-case).

Critical patterns (docs/THEORY.md §worst-case), one simulation each. They run on a half-ns grid
(every time multiplied by :data:`SCALE`, responses divided back and rounded down) so that a
blocker can start half a ns before the critical instant *and* the analysed job can lose its
deadline ties by half a ns: together one ns, the gap between the bound and the pattern.

* np-edf / lp-edf, for each admitted task ``i`` and its worst offsets ``a``: the task with the
  longest chunk among those whose deadline is later than ``a + D_i`` runs that chunk from half
  a ns before the critical instant ``c`` (released earlier by the chunks before it); every
  other task is released at ``c``; ``i``'s job at ``c + a`` plus half a ns (its earlier jobs
  ``T_i`` apart before it), so every job due at ``a + D_i`` goes first.
* np-fp, for each admitted task ``i``: the longest lower-priority task starts half a ns before
  ``c``, every higher-or-equal-priority task and ``i`` (last in list order) at ``c``.

Then at the minimum separation ``T``; a task with release jitter ``J`` is released at ``c``
(its nominal release ``J`` earlier, delayed by ``J``) and then ``T - J`` later and every ``T``
(on time). Random runs: the admitted tasks with random offsets and sporadic arrivals (seeded).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from aegis_core.analysis.admission import Admission, admit, analysis_task
from aegis_core.analysis.bounds import (
    ATask,
    busy_period,
    edf_offsets,
    edf_response_at,
    fp_response,
    ms,
)
from aegis_core.analysis.charging import charged_budget
from aegis_core.budget import TaskBudget
from aegis_core.model.errors import InputError
from aegis_core.model.policy import Patterns, fp_priorities
from aegis_core.model.scenario import Arrival, Scenario, Task
from aegis_core.model.status import JobStatus
from aegis_core.model.types import fmt_count
from aegis_core.run.engine import Engine, load_engine
from aegis_core.run.events import Release
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan, WcetModel
from aegis_core.run.scheduler import Scheduler
from aegis_core.tools.progress import steps

SCALE = 2
"""Critical patterns run with every time multiplied by this: one scaled ns is half a ns."""
EPS = 1
"""Scaled ns: "just before" (a blocker's head start) and "just after" (the analysed job)."""


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


@dataclass(frozen=True)
class Pattern:
    """One critical release pattern in scaled ns: the variant's tasks (the analysed one last)
    and each one's release times, below ``horizon``."""

    label: str
    order: tuple[int, ...]  # task indices (admitted-task order), the analysed one last
    releases: tuple[tuple[int, ...], ...]  # per entry of ``order``
    horizon: int


def _train(first: int, at: ATask, horizon: int) -> list[int]:
    """Released at ``first`` (nominally ``J`` earlier, delayed by ``J``), then on time."""
    step = at.t * SCALE
    nxt = first - at.burst * SCALE + step
    return [first, *range(nxt, horizon, step)] if first < horizon else []


def _lead(at: ATask, start: int) -> int:
    """Release time that makes ``at``'s longest chunk start at ``start`` (its earlier chunks
    run alone just before)."""
    longest = at.chunks.index(at.q_max)
    return start - sum(at.chunks[:longest]) * SCALE


def _tie_after(ts: Sequence[ATask], i: int, a: int) -> bool:
    """In ``i``'s pattern at offset ``a``, is a job of another task due with ``i``'s job but
    released after it, by the latest start of ``i``'s last chunk (the scheduler would break
    that tie in ``i``'s favour)?"""
    me = ts[i]
    start = edf_response_at(ts, i, a) + a - me.q_last
    for j, x in enumerate(ts):
        v = a + me.d - x.d + x.burst  # its k-th release is due with i's job when v = k T_x
        if j != i and v >= x.t and v % x.t == 0 and a < v - x.burst <= start:
            return True
    return False


def edf_patterns(ts: Sequence[ATask], per_task: int = 3) -> list[Pattern]:
    """The np-edf / lp-edf patterns of ``ts`` (the admitted set's analysis tasks): per task,
    the least offset and the ``per_task`` offsets with the largest ``r_i(a)``."""
    horizon_offsets = busy_period(ts) or 0  # the offsets edf_response_bound searches
    out = []
    for i, me in enumerate(ts):
        offsets = edf_offsets(ts, i, horizon_offsets)
        worst = sorted(offsets, key=lambda a: (-edf_response_at(ts, i, a), a))[:per_task]
        for a in sorted({offsets[0], *worst}):
            later = [j for j, x in enumerate(ts) if j != i and x.blocks_below > a + me.d]
            early = max(later, key=lambda j: ts[j].q_max, default=None)
            c = 0 if early is None else EPS - _lead(ts[early], 0)  # its lead fits before c
            late = EPS if _tie_after(ts, i, a) else 0  # lose the ties by half a ns
            mine = c + late + (a + me.d) * SCALE  # i's absolute deadline
            horizon = mine + 1  # a job released after i's deadline cannot delay it
            releases = []
            order = [j for j in range(len(ts)) if j != i] + [i]
            for j in order[:-1]:
                first = _lead(ts[j], c - EPS) if j == early else c
                releases.append(tuple(_train(first, ts[j], horizon)))
            earlier = (a + me.burst) // me.t  # i's jobs before the analysed one
            step = me.t * SCALE
            after = c + late + (a - earlier * me.t) * SCALE  # i's releases T apart from here
            mine_r = [after + me.burst * SCALE] if earlier else []  # gap T - J, then T
            mine_r += range(after + step if earlier else after, horizon, step)
            releases.append(tuple(r for r in mine_r if r < horizon))
            label = f"critical {me.name} a={ms(a)}"
            out.append(Pattern(label, tuple(order), tuple(releases), horizon))
    return out


def fp_patterns(ts: Sequence[ATask]) -> list[Pattern]:
    """The np-fp patterns of ``ts`` (priorities set): one per task, its level-i busy period."""
    out = []
    fallback = 3 * (busy_period(ts) or 0) + 2 * max(x.t for x in ts)
    for i, me in enumerate(ts):
        lower = [j for j, x in enumerate(ts) if x.prio > me.prio]
        early = max(lower, key=lambda j: ts[j].c, default=None)
        c = 0 if early is None else EPS
        busy = fp_response(ts, i).busy_period
        span = fallback if busy == float("inf") else int(busy)
        horizon = c + span * SCALE + 1
        order = [j for j in range(len(ts)) if j != i] + [i]
        releases = tuple(tuple(_train(c - EPS if j == early else c, ts[j], horizon)) for j in order)
        out.append(Pattern(f"critical {me.name}", tuple(order), releases, horizon))
    return out


def _scaled(
    t: Task, b: TaskBudget, index: int, k: int, prio: int | None
) -> tuple[Task, TaskBudget]:
    task = dataclasses.replace(
        t,
        period_ns=t.period_ns * k,
        deadline_ns=t.deadline_ns * k,
        wcet_ns=None if t.wcet_ns is None else t.wcet_ns * k,
        kernels_ns=None if t.kernels_ns is None else tuple(x * k for x in t.kernels_ns),
        offset_ns=0, jitter_ns=0, slack_ns=0, arrival=Arrival.PERIODIC, priority=prio,
    )  # fmt: skip
    budget = dataclasses.replace(
        b, index=index, wcet_ns=b.wcet_ns * k, samples_ns=None,
        kernels_ns=tuple(x * k for x in b.kernels_ns), chunks_ns=tuple(x * k for x in b.chunks_ns),
    )  # fmt: skip
    return task, budget


def simulate_pattern(
    scenario: Scenario,
    tasks: Sequence[Task],
    budgets: Sequence[TaskBudget],
    pattern: Pattern,
    engine: Engine,
    priorities: Sequence[int] | None = None,
) -> dict[str, int]:
    """Run one critical pattern (every job at its WCET, in its budget's chunks); the worst
    response per task in real ns (scaled responses halved, rounded down)."""
    pairs = [
        _scaled(tasks[j], budgets[j], n, SCALE, None if priorities is None else priorities[j])
        for n, j in enumerate(pattern.order)
    ]
    variant = dataclasses.replace(
        scenario, tasks=tuple(t for t, _ in pairs), duration_ns=pattern.horizon
    )
    chosen = tuple(b for _, b in pairs)
    planned = sorted(
        Release(r, n, k) for n, rs in enumerate(pattern.releases) for k, r in enumerate(rs)
    )
    plan = RunPlan(
        scenario=variant,
        policy=scenario.policy,
        releases=planned,
        exec_time=WcetModel.of(chosen),
        budgets=chosen,
    )
    return {name: r // SCALE for name, r in _worst(plan, engine).items()}


def _worst(plan: RunPlan, engine: Engine) -> dict[str, int]:
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, engine)
    worst: dict[str, int] = {}
    for j in scheduler.jobs:
        if j.status is JobStatus.COMPLETED and j.response_ns is not None:
            worst[j.task] = max(worst.get(j.task, 0), j.response_ns)
    return worst


def critical_patterns(
    scenario: Scenario, tasks: Sequence[Task], budgets: Sequence[TaskBudget]
) -> tuple[list[Pattern], list[int] | None]:
    """The critical patterns of the admitted ``tasks`` under the scenario's policy, and the
    np-fp priorities they run with (None for EDF)."""
    if scenario.policy.patterns is Patterns.EDF:
        ts = [analysis_task(t, b, chunks=b.chunks_ns) for t, b in zip(tasks, budgets, strict=True)]
        return edf_patterns(ts), None
    prio = fp_priorities(tasks)
    ts = [analysis_task(t, b, p) for t, b, p in zip(tasks, budgets, prio, strict=True)]
    return fp_patterns(ts), prio


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
    engine: Engine,
) -> dict[str, int]:
    """One simulation of a variant of the admitted tasks, every job at its WCET in the chunk
    chain admission decided."""
    variant = dataclasses.replace(scenario, tasks=tuple(tasks), duration_ns=horizon, seed=seed)
    chosen = tuple(dataclasses.replace(budgets[t.name], index=i) for i, t in enumerate(tasks))
    plan = RunPlan.build(variant, exec_time=WcetModel.of(chosen))
    return _worst(dataclasses.replace(plan, budgets=chosen), engine)


def check(
    scenario: Scenario,
    *,
    runs: int = 20,
    engine: str | Callable[[], Engine] = "sim",
    admission: Admission | None = None,
    critical: bool = True,
    progress: TextIO | None = None,
) -> CheckResult:
    """Simulate the critical patterns (unless not ``critical``) and ``runs`` random sporadic
    runs of the admitted tasks (``engine``: a registered engine's name, or an engine factory).
    With host overheads every chunk runs for its charged length (the slot held from the
    decision to the seen completion); the release lag is not simulated, so a lagged bound is
    checked for safety, not reached. ``progress``: where to draw the simulations done."""
    policy = scenario.policy
    if policy.patterns is Patterns.NONE:
        raise InputError(f"{scenario.path}: no analysis for policy {policy}: nothing to check")
    admission = admission or admit(scenario)
    keep = [i for i, v in enumerate(admission.tasks) if v.admitted]
    tasks = [scenario.tasks[i] for i in keep]
    chosen = [charged_budget(admission.budgets[i], scenario.overheads) for i in keep]
    scenario = dataclasses.replace(scenario, overheads=None)  # charged in the budgets instead
    by_name = {b.name: b for b in chosen}
    bounds = {admission.tasks[i].name: admission.tasks[i].response_bound_ns for i in keep}
    if not tasks:
        return CheckResult(policy.name, (), 0)
    factory = engine if callable(engine) else lambda: load_engine(engine)
    worst: dict[str, tuple[int, str]] = {t.name: (0, "") for t in tasks}

    def keep_worst(label: str, got: dict[str, int]) -> None:
        for name, r in got.items():
            if r > worst[name][0]:
                worst[name] = (r, label)

    patterns, prio = critical_patterns(scenario, tasks, chosen) if critical else ([], None)
    bar = steps(progress, len(patterns) + runs, "simulations", "check")
    done = 0

    def shown(label: str, got: dict[str, int]) -> None:
        nonlocal done
        keep_worst(label, got)
        done += 1
        if bar is not None:
            above = sum(worst[t.name][0] > (bounds[t.name] or 0) for t in tasks)
            bar.show(done, f"{label}, {fmt_count(above, 'task')} above their bound")

    try:
        for p in patterns:
            shown(p.label, simulate_pattern(scenario, tasks, chosen, p, factory(), prio))
        ts = [analysis_task(t, b) for t, b in zip(tasks, chosen, strict=True)]
        busy = busy_period(ts) or 0
        longest = max(t.period_ns for t in tasks)
        horizon = min(scenario.duration_ns, max(20 * longest, 4 * busy))
        for n, (label, variant) in enumerate(random_runs(tasks, runs, scenario.seed)):
            shown(label, _simulate(scenario, variant, by_name, horizon, scenario.seed + n,
                                   factory()))  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for t in tasks:
        bound = bounds[t.name]
        assert bound is not None
        rows.append(CheckRow(t.name, bound, *worst[t.name]))
    return CheckResult(policy.name, tuple(rows), len(patterns) + runs)
