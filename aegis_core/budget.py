"""Task budgets: every per-task timing fact the rest of AegisRT reads, decided once.

A :class:`TaskBudget` is decided from the scenario's literal fields (``wcet_ms``,
``kernels_ms``, ``profile``, ``on_overrun``, ``budget.memory_mb``) by one rule, and passed
forward: admission analyses it, the run plan schedules and replays it, the execution contexts
charge overruns against it, ``aegis check`` simulates it, the executor runs its chunk chain and
the profiler measures it. Nothing downstream re-derives any of it.

The rule (docs/ARCHITECTURE.md, "Budgets"):

1. **WCET.** The declared ``wcet_ms`` when given; else the profile's WCET (``profile:`` or
   ``--profiles``, which replaces the task's ``wcet_ms``); else the sum of ``kernels_ms``.
   A task with none of these has no WCET: a ScenarioError names its field ``wcet_ms``.
2. **Kernel chain** (the preemption points of a chunked policy). The declared ``kernels_ms``
   when they are the WCET's own (no profile in play, or ``wcet_ms`` declared beside them);
   when the WCET comes from a profile, the declared kernels scaled in proportion to it
   (integer ns that sum exactly to the WCET), and :attr:`TaskBudget.note` says so. Without
   ``kernels_ms``, one kernel of the whole WCET.
3. **Chunk chain** (what one job runs as). Under a chunked policy (lp-edf), the chunks that
   admission merged from the kernel chain (:func:`with_chunks`), else the kernel chain
   itself; under every other policy, one chunk of the WCET.
4. **Samples.** The profile's measured execution times (what the simulator and the mock
   backend replay); none without a profile.
5. **Time budget and overrun.** A job's time budget is its WCET: a job whose execution time
   (the sum of its chunks) exceeds it has *overrun*, and ``on_overrun`` says what follows
   (``continue``, or ``skip-next``). Under a chunked policy a chunk that runs past its own
   chunk WCET is a chunk overrun: it breaks the blocking the analysis charged, so it is an
   ``overrun`` record too (action ``chunk``; nothing is skipped for it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aegis_core.model.errors import ScenarioError
from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    from aegis_core.model.policy import Policy
    from aegis_core.model.scenario import Scenario, Task


class WcetFrom(StrEnum):
    """Where a task's WCET came from (step 1 of the rule)."""

    WCET_MS = "wcet_ms"
    PROFILE = "profile"
    KERNELS_MS = "kernels_ms"


SCALED_NOTE = "kernels_ms scaled to the profile's WCET"


@dataclass(frozen=True, slots=True)
class TaskBudget:
    """One task's timing facts (integer ns), decided by the rule above."""

    index: int
    name: str
    wcet_ns: TimeNs
    wcet_from: WcetFrom
    kernels_ns: tuple[TimeNs, ...]
    """The kernel (operator group) WCET chain; sums to ``wcet_ns``."""
    chunks_ns: tuple[TimeNs, ...]
    """The non-preemptive chunks one job runs as; sums to ``wcet_ns``."""
    samples_ns: tuple[TimeNs, ...] | None = None
    on_overrun: str = "continue"
    memory_budget_bytes: int | None = None
    note: str | None = None
    """How the kernel chain was derived when it is not the declared one (e.g. scaled)."""

    @property
    def time_budget_ns(self) -> TimeNs:
        """A job's execution-time budget: its WCET."""
        return self.wcet_ns

    def overran(self, exec_ns: TimeNs) -> bool:
        """Did a job that executed for ``exec_ns`` (the sum of its chunks) overrun?"""
        return exec_ns > self.wcet_ns


def split_in_proportion(total: int, weights: Sequence[int]) -> tuple[int, ...]:
    """``total`` split over ``weights`` in proportion, in integers summing exactly to
    ``total`` (part ``k`` is ``floor(total·W_{≤k}/W) − floor(total·W_{<k}/W)``)."""
    whole = sum(weights)
    if whole <= 0:
        raise ValueError(f"weights must sum to > 0, got {list(weights)}")
    out, before = [], 0
    for w in weights:
        out.append(total * (before + w) // whole - total * before // whole)
        before += w
    return tuple(out)


def _wcet(task: Task, path: str) -> tuple[TimeNs, WcetFrom]:
    if task.wcet_ns is not None:
        return task.wcet_ns, WcetFrom.WCET_MS
    if task.measured is not None:
        return task.measured.wcet_ns, WcetFrom.PROFILE
    if task.kernels_ns is not None:
        return sum(task.kernels_ns), WcetFrom.KERNELS_MS
    raise ScenarioError(
        path,
        "an execution time is needed: give wcet_ms or a profile (aegis profile writes one)",
        task=task.name,
        field="wcet_ms",
    )


def _kernels(
    task: Task, wcet: TimeNs, source: WcetFrom, path: str
) -> tuple[tuple[TimeNs, ...], str | None]:
    declared = task.kernels_ns
    if declared is None:
        return (wcet,), None
    if sum(declared) == wcet:
        return tuple(declared), None
    if source is not WcetFrom.PROFILE:  # a declared wcet_ms beside kernels that disagree
        raise ScenarioError(
            path, f"kernels sum to {sum(declared)} ns, wcet_ms is {wcet} ns",
            task=task.name, field="kernels_ms",
        )  # fmt: skip
    scaled = split_in_proportion(wcet, declared)
    if min(scaled) <= 0:  # a WCET too small to split: the whole job is one kernel
        return (wcet,), f"{SCALED_NOTE}: too small to split, one kernel"
    return scaled, SCALED_NOTE


def task_budget(task: Task, index: int, policy: Policy, path: str = "<memory>") -> TaskBudget:
    """Task number ``index``'s budget under ``policy``, before admission has merged any
    chunks (steps 1-5 of the rule); ``path`` names the scenario file in errors."""
    wcet, source = _wcet(task, path)
    kernels, note = _kernels(task, wcet, source, path)
    return TaskBudget(
        index=index,
        name=task.name,
        wcet_ns=wcet,
        wcet_from=source,
        kernels_ns=kernels,
        chunks_ns=kernels if policy.chunked else (wcet,),
        samples_ns=task.measured.samples_ns if task.measured is not None else None,
        on_overrun=task.on_overrun,
        memory_budget_bytes=task.memory_budget_bytes,
        note=note,
    )


def budgets(scenario: Scenario, policy: Policy | None = None) -> tuple[TaskBudget, ...]:
    """Every task's budget, in list order, under ``policy`` (default: the scenario's); a
    ScenarioError names the first task without a WCET."""
    chosen = policy or scenario.policy
    return tuple(task_budget(t, i, chosen, scenario.path) for i, t in enumerate(scenario.tasks))


def with_chunks(
    budgets: Sequence[TaskBudget], chunks: Sequence[Sequence[TimeNs] | None]
) -> tuple[TaskBudget, ...]:
    """The budgets with admission's chunk chains (step 3); None keeps a task's own chain."""
    out = []
    for b, c in zip(budgets, chunks, strict=True):
        if c is None or tuple(c) == b.chunks_ns:
            out.append(b)
            continue
        if sum(c) != b.wcet_ns:
            raise ValueError(f"{b.name}: chunks {list(c)} do not sum to the WCET {b.wcet_ns}")
        out.append(dataclasses.replace(b, chunks_ns=tuple(c)))
    return tuple(out)


def any_samples(budgets: Sequence[TaskBudget]) -> bool:
    """Does any task replay measured samples?"""
    return any(b.samples_ns for b in budgets)
