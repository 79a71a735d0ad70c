"""Job statuses: an ordered IntEnum (the scheduler moves a job only to a larger status; the
record replay, results and checks read the same vocabulary)."""

from __future__ import annotations

from enum import IntEnum


class JobStatus(IntEnum):
    """Lifecycle of a job, ordered: a job only ever moves to a larger status."""

    READY = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    REJECTED = 5
    SKIPPED = 6
    """Dropped unrun: an earlier job of its task overran its WCET under ``on_overrun:
    skip-next`` (a status, not a miss)."""

    @property
    def terminal(self) -> bool:
        return self >= JobStatus.COMPLETED
