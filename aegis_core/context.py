"""Execution contexts: one per task, holding its resource budget and what happened to it.

A :class:`ResourceBudget` is what admission granted a task: device memory (its planned bytes
must fit ``memory_bytes``; checked by admission, :func:`aegis_core.admission.memory_gate`) and
execution time (its WCET: a job that runs longer has *overrun*). The scheduler owns one
:class:`ExecutionContext` per task: on an overrun it writes an ``overrun`` trace record and
applies the task's ``on_overrun`` setting — ``continue``, or ``skip-next`` (the task's next
job is dropped unrun, a ``skip`` record, so the time it would take goes to the other tasks).
A job whose kernels fault fails alone; the context counts it and the other contexts go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .types import TimeNs

if TYPE_CHECKING:
    from .scenario import Task

ON_OVERRUN = ("continue", "skip-next")


@dataclass(frozen=True, slots=True)
class ResourceBudget:
    """Memory bytes (None: unlimited) and execution time per job (the WCET; None: unknown)."""

    memory_bytes: int | None
    time_ns: TimeNs | None
    on_overrun: str = "continue"

    @classmethod
    def of(cls, task: Task) -> ResourceBudget:
        return cls(task.memory_budget_bytes, task.wcet_ns, task.on_overrun)


class ExecutionContext:
    """One task's budget and the events charged to it during a run."""

    __slots__ = ("budget", "faults", "index", "overruns", "skipped", "task")

    def __init__(self, index: int, task: str, budget: ResourceBudget) -> None:
        self.index = index
        self.task = task
        self.budget = budget
        self.overruns = 0
        self.skipped = 0
        self.faults = 0

    def over_budget(self, exec_ns: TimeNs) -> bool:
        """Did a job that ran ``exec_ns`` overrun the time budget?"""
        return self.budget.time_ns is not None and exec_ns > self.budget.time_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "budget": {
                "memory_bytes": self.budget.memory_bytes,
                "time_ns": self.budget.time_ns,
                "on_overrun": self.budget.on_overrun,
            },
            "overruns": self.overruns,
            "skipped": self.skipped,
            "faults": self.faults,
        }
