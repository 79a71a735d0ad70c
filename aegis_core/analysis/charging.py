"""Host overheads charged to the analysis (docs/THEORY.md §overheads).

The slot is held from the decision instant to the instant the loop sees the completion, so
each dispatched unit (a whole job, or one lp-edf chunk) costs its execution time plus
``decision + launch + completion``; the release lag makes a job visible to the scheduler up
to ``release-lag`` after its planned release, which is release jitter (its deadline and its
response still count from the planned release). :func:`charge` is the one place that turns
a task's analysis view into the one the host obeys.
"""

from __future__ import annotations

import dataclasses

from aegis_core.analysis.bounds import ATask
from aegis_core.budget import TaskBudget
from aegis_core.model.overheads import Overheads


def charge(task: ATask, overheads: Overheads | None) -> ATask:
    """``task`` with every chunk charged the per-dispatch overheads and the release lag
    added to its release jitter (unchanged without overheads)."""
    if overheads is None:
        return task
    extra = overheads.per_dispatch_ns
    chunks = tuple(c + extra for c in task.chunks)
    return dataclasses.replace(
        task, c=sum(chunks), chunks=chunks, j=task.j + overheads.release_lag_ns
    )


def charged_budget(budget: TaskBudget, overheads: Overheads | None) -> TaskBudget:
    """``budget`` with every chunk lengthened by the per-dispatch overheads: how long each
    dispatched unit holds the slot in the analysis (``aegis check`` simulates it)."""
    if overheads is None:
        return budget
    extra = overheads.per_dispatch_ns
    chunks = tuple(c + extra for c in budget.chunks_ns)
    return dataclasses.replace(budget, wcet_ns=sum(chunks), chunks_ns=chunks,
                               kernels_ns=chunks, samples_ns=None)  # fmt: skip


def charged_wcet(wcet_ns: int, n_chunks: int, overheads: Overheads | None) -> int:
    """``C'``: a job's WCET with each of its ``n_chunks`` dispatched units charged."""
    return wcet_ns + (0 if overheads is None else n_chunks * overheads.per_dispatch_ns)
