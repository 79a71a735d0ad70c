"""Scheduling policies: a total, deterministic priority key per ready job.

A policy only says how ready jobs compare. The scheduler keeps the ready set in a heap ordered
by that key; the smallest key runs next. Every key ends with the job's release sequence number
``seq``, which is unique, so ties never fall through to anything arbitrary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from .errors import InputError
from .scenario import Policy as PolicyName
from .scenario import Task
from .types import TimeNs

Key = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """How ready jobs are ordered, and how many may run at once.

    ``key_fields`` name the ready-entry fields compared, in order (recorded in every dispatch
    rationale so a decision can be re-derived from the trace alone).
    """

    name: str
    rule: str
    key_fields: tuple[str, ...]
    concurrent: bool = False
    """True: dispatch every job at release, many in flight (the "no scheduler" baseline)."""

    def __post_init__(self) -> None:
        if len(self.key_fields) < 2 or self.key_fields[-1] != "seq":
            raise ValueError("a policy key compares >= 2 fields and ends with 'seq' (total order)")
        unknown = set(self.key_fields) - set(KEY_SOURCES)
        if unknown:
            raise ValueError(f"unknown key fields: {sorted(unknown)}")

    def key(self, deadline_ns: TimeNs, release_ns: TimeNs, seq: int, priority: int | None) -> Key:
        """The key of one ready job (``priority`` counts as 0 when absent)."""
        key: Key = self.keyfunc()(
            (deadline_ns, release_ns, seq, 0 if priority is None else priority)
        )
        return key

    def keyfunc(self) -> itemgetter[tuple[int, int, int, int]]:
        """A fast key builder over ``(deadline_ns, release_ns, seq, priority)`` tuples."""
        return itemgetter(*(KEY_SOURCES.index(f) for f in self.key_fields))


KEY_SOURCES = ("deadline_ns", "release_ns", "seq", "priority")
"""Fields a policy key may compare, in the order :meth:`Policy.keyfunc` expects them."""


NP_EDF = Policy(
    "np-edf",
    "np-edf: earliest absolute deadline, then release, then seq",
    ("deadline_ns", "release_ns", "seq"),
)
LP_EDF = Policy(
    "lp-edf",
    "lp-edf: at each chunk boundary, earliest absolute deadline, then release, then seq",
    ("deadline_ns", "release_ns", "seq"),
)
FIFO = Policy("fifo", "fifo: earliest release, then seq", ("release_ns", "seq"))
NP_FP = Policy(
    "np-fp",
    "np-fp: lowest priority number, then release, then seq",
    ("priority", "release_ns", "seq"),
)
UNSCHEDULED = Policy(
    "unscheduled",
    "unscheduled: every job dispatched at its release, in release order",
    ("release_ns", "seq"),
    concurrent=True,
)

POLICIES: dict[str, Policy] = {p.name: p for p in (NP_EDF, LP_EDF, FIFO, NP_FP, UNSCHEDULED)}


def get_policy(name: str | PolicyName) -> Policy:
    try:
        return POLICIES[str(name)]
    except KeyError:
        raise InputError(
            f"policy {str(name)!r} is not available in this engine yet "
            f"(available: {', '.join(POLICIES)})"
        ) from None


def fp_priorities(tasks: Sequence[Task]) -> list[int]:
    """Priority number per task for np-fp: as given, else deadline-monotonic (ties: list order).

    Lower number = higher priority. Given priorities are kept; tasks without one get ranks after
    every given priority, ordered by relative deadline.
    """
    given = [t.priority for t in tasks if t.priority is not None]
    base = max(given) + 1 if given else 0
    order = sorted(
        (i for i, t in enumerate(tasks) if t.priority is None), key=lambda i: tasks[i].deadline_ns
    )
    ranks = {i: base + r for r, i in enumerate(order)}
    return [t.priority if t.priority is not None else ranks[i] for i, t in enumerate(tasks)]
