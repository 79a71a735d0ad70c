"""Scheduling policies, each one piece of data carrying every fact of itself.

A policy says how ready jobs compare (a total, deterministic priority key: the scheduler keeps
the ready set in a heap ordered by it, the smallest key runs next, and every key ends with the
job's release sequence number ``seq``, so ties never fall through to anything arbitrary), and
what the rest of AegisRT needs to know of it: whether jobs run concurrently or one at a time,
whether they run in non-preemptive chunks, how models share the activation arena, which
admission analysis applies and which worst-case release patterns ``aegis check`` tries.
:data:`POLICIES` is the only registry; no other module compares policy names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import Protocol

from aegis_core.model.errors import InputError
from aegis_core.model.types import TimeNs

Key = tuple[int, ...]


class Sharing(StrEnum):
    """How the models of a policy share one activation arena."""

    SERIAL = "serial"
    """One job at a time, never preempted: every model may reuse the same region."""
    NESTED = "nested"
    """Preemption at chunk boundaries: a task lies above what the tasks it may preempt keep
    live across their boundaries."""
    CONCURRENT = "concurrent"
    """Jobs run together: every model has a region of its own."""


class Analysis(StrEnum):
    """The admission analysis of a policy (:mod:`aegis_core.analysis.admission` maps each to
    its test)."""

    NP_EDF = "np-edf demand"
    LP_EDF = "lp-edf demand with chunk blocking"
    NP_FP = "np-fp response time"
    NONE = "none"


class Patterns(StrEnum):
    """The worst-case release patterns ``aegis check`` simulates (``aegis_core.tools.check``)."""

    EDF = "edf"
    FP = "fp"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Policy:
    """How ready jobs are ordered, and how many may run at once.

    ``key_fields`` name the ready-entry fields compared, in order (recorded in every dispatch
    rationale so a decision can be re-derived from the trace alone).
    """

    name: str
    rule: str
    key_fields: tuple[str, ...]
    analysis: Analysis = Analysis.NONE
    patterns: Patterns = Patterns.NONE
    sharing: Sharing = Sharing.SERIAL
    concurrent: bool = False
    """True: dispatch every job at release, many in flight (the "no scheduler" baseline)."""
    chunked: bool = False
    """True: a job runs as a chain of non-preemptive chunks (its kernel groups); the policy
    picks again at every chunk boundary."""
    stream_priorities: bool = False
    """True (concurrent policies only): each task's stream is created with a priority, in the
    order of :func:`stream_ranks` (deadline-monotonic unless the scenario gives priorities).
    The device, not AegisRT, then orders the jobs in flight: a backend must support stream
    priorities (its ``stream_priorities`` capability) or the executor refuses the policy; the
    simulator models it as strict priority sharing (:mod:`aegis_sim.engine`)."""
    decides_ahead: bool = False
    """True: while a job runs, the next decision may be taken ahead and chained behind it
    when no release can come before that job's latest end (docs/THEORY.md §ahead): the
    one-slot policies whose pick depends only on the ready set (np-edf, np-fp, lp-edf).
    ``fifo`` is the baseline left as it is; a concurrent policy has no next decision."""

    def __str__(self) -> str:
        return self.name

    def __post_init__(self) -> None:
        if len(self.key_fields) < 2 or self.key_fields[-1] != "seq":
            raise ValueError("a policy key compares >= 2 fields and ends with 'seq' (total order)")
        unknown = set(self.key_fields) - set(KEY_SOURCES)
        if unknown:
            raise ValueError(f"unknown key fields: {sorted(unknown)}")
        if self.stream_priorities and not self.concurrent:
            raise ValueError("stream priorities order jobs in flight: a concurrent policy only")
        if self.decides_ahead and self.concurrent:
            raise ValueError("a concurrent policy dispatches at release: nothing to decide ahead")

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
    analysis=Analysis.NP_EDF,
    patterns=Patterns.EDF,
    decides_ahead=True,
)
LP_EDF = Policy(
    "lp-edf",
    "lp-edf: at each chunk boundary, earliest absolute deadline, then release, then seq",
    ("deadline_ns", "release_ns", "seq"),
    analysis=Analysis.LP_EDF,
    patterns=Patterns.EDF,
    sharing=Sharing.NESTED,
    chunked=True,
    decides_ahead=True,
)
FIFO = Policy("fifo", "fifo: earliest release, then seq", ("release_ns", "seq"))
NP_FP = Policy(
    "np-fp",
    "np-fp: lowest priority number, then release, then seq",
    ("priority", "release_ns", "seq"),
    analysis=Analysis.NP_FP,
    patterns=Patterns.FP,
    decides_ahead=True,
)
UNSCHEDULED = Policy(
    "unscheduled",
    "unscheduled: every job dispatched at its release, in release order",
    ("release_ns", "seq"),
    sharing=Sharing.CONCURRENT,
    concurrent=True,
)
STREAM_PRIORITY = Policy(
    "stream-priority",
    "stream-priority: every job dispatched at its release on its task's stream; streams "
    "prioritised deadline-monotonically, the device orders the jobs in flight",
    ("release_ns", "seq"),
    sharing=Sharing.CONCURRENT,
    concurrent=True,
    stream_priorities=True,
)
"""The baseline a CUDA user would build: no admission, no scheduler, one stream per model
with CUDA stream priorities by deadline-monotonic order."""

POLICIES: dict[str, Policy] = {
    p.name: p for p in (NP_EDF, LP_EDF, NP_FP, FIFO, UNSCHEDULED, STREAM_PRIORITY)
}
"""Every policy by name: the only registry (the scenario validates ``policy:`` against it)."""

DEFAULT = NP_EDF


def get_policy(name: str | Policy) -> Policy:
    """The policy named ``name`` (a Policy is returned as it is); InputError lists the names."""
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name]
    except KeyError:
        raise InputError(f"unknown policy {name!r}; choose one of: {', '.join(POLICIES)}") from None


class _Prioritised(Protocol):
    @property
    def priority(self) -> int | None: ...
    @property
    def deadline_ns(self) -> TimeNs: ...


def fp_priorities(tasks: Sequence[_Prioritised]) -> list[int]:
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


def stream_ranks(tasks: Sequence[_Prioritised]) -> list[int]:
    """Each task's stream priority rank under a ``stream_priorities`` policy, 0 = the highest,
    dense (0, 1, 2, ...): the order of :func:`fp_priorities` (given priorities, else
    deadline-monotonic; equal priorities share a rank)."""
    prio = fp_priorities(tasks)
    dense = {p: r for r, p in enumerate(sorted(set(prio)))}
    return [dense[p] for p in prio]
