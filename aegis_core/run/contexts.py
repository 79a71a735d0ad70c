"""Execution contexts: one per task, holding its budget and what happened to it.

A task's :class:`~aegis_core.budget.TaskBudget` is what admission granted it: device memory
(its planned bytes must fit ``budget.memory_mb``; checked by admission) and execution time
(its WCET: a job that runs longer has *overrun*). The scheduler owns one
:class:`ExecutionContext` per task: on an overrun it writes an ``overrun`` trace record and
applies the task's ``on_overrun`` setting — ``continue``, or ``skip-next`` (the task's next
job is dropped unrun, a ``skip`` record, so the time it would take goes to the other tasks).
A job whose kernels fault fails alone; the context counts it and the other contexts go on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    from aegis_core.budget import TaskBudget


class ExecutionContext:
    """One task's budget and the events charged to it during a run."""

    __slots__ = ("budget", "faults", "index", "overruns", "skipped", "task")

    def __init__(self, index: int, task: str, budget: TaskBudget) -> None:
        self.index = index
        self.task = task
        self.budget = budget
        self.overruns = 0
        self.skipped = 0
        self.faults = 0

    def over_budget(self, exec_ns: TimeNs) -> bool:
        """Did a job that ran ``exec_ns`` overrun the time budget?"""
        return self.budget.overran(exec_ns)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "budget": {
                "memory_bytes": self.budget.memory_budget_bytes,
                "time_ns": self.budget.time_budget_ns,
                "on_overrun": self.budget.on_overrun,
            },
            "overruns": self.overruns,
            "skipped": self.skipped,
            "faults": self.faults,
        }
