"""Dispatch-ahead: when the next decision of a one-slot policy is already fixed while a job
runs (docs/THEORY.md §ahead).

While job J runs non-preemptively, the ready set at J's end is the ready set now if no job
can be released before J can end. J ends no later than its latest start plus its chunk's
budget (the WCET the analysis used); every task's next release is no earlier than the
:class:`Horizon` (the sporadic rule: its last release plus its period minus its jitter;
before its first, its offset), or, where the engine knows its planned releases, the next of
them. If that instant lies after J's latest end, the decision the policy would take at J's
end can be taken now, and the job chained behind J on the device: it starts when J ends,
with no host step in between. It can be taken too when every job that may be released
before J's latest end would rank after the pick (its key at the earliest, since the keys of
these policies never fall with a later release).

A decision taken ahead is recorded when it takes effect (at J's end), with the ready set of
that instant and how long before it was taken (``decided_ahead_ns``). Should J end later
than assumed (an overrun, or a late start) and a release fall between the decision and its
effect ranked before the job decided, the decision is not the one the policy would have
taken: the scheduler records
an ``assumption`` record (:data:`AHEAD_BROKEN`) for the chained job, so the job that waited
is attributed, and ``aegis explain --verify`` checks every ahead decision against it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    from aegis_core.model.policy import Policy
    from aegis_core.run.scheduler import Job, ReadyEntry

AHEAD_BROKEN = "dispatch-ahead"
"""The ``what`` of the ``assumption`` record a broken ahead decision makes: the job it was
chained behind ended ``observed_ns`` after the decision, past the ``bound_ns`` assumed, and a
release fell in between."""

NEVER: TimeNs = 1 << 62
"""An instant no run reaches (a task with no release to come)."""


class AheadMode(StrEnum):
    """Whether, and from what, a run decides ahead."""

    OFF = "off"
    """Every decision at the instant the device frees up (``--no-dispatch-ahead``)."""
    SPORADIC = "sporadic"
    """The next release bounded by the sporadic rule alone (the releases seen so far)."""
    PLANNED = "planned"
    """The engine's next planned release (the default: every engine knows its plan; it is
    never before the sporadic rule's bound, so that bound need not be kept)."""


def resolve(mode: AheadMode | bool, policy: Policy) -> AheadMode:
    """How a run under ``policy`` decides ahead when asked for ``mode`` (True: planned,
    False: off): never under a policy that does not ``decides_ahead``. The one place this
    is decided (the run plan, the scheduler and the run's fingerprint ask it)."""
    if not policy.decides_ahead or mode is False:
        return AheadMode.OFF
    return AheadMode.PLANNED if mode is True else AheadMode(mode)


class _Timed(Protocol):
    @property
    def offset_ns(self) -> TimeNs: ...
    @property
    def period_ns(self) -> TimeNs: ...
    @property
    def jitter_ns(self) -> TimeNs: ...


class Horizon:
    """The earliest instant any task can release a job that enters the ready set, from the
    releases seen so far. A task's releases are at least ``period - jitter`` apart (nominal
    gaps are at least the period; jitter delays a release by at most ``jitter``); its first
    is at or after its offset. A rejected task never releases a ready job."""

    __slots__ = ("earliest", "gap")

    def __init__(self, tasks: Sequence[_Timed], rejected: Collection[int] = ()) -> None:
        self.earliest = [NEVER if i in rejected else t.offset_ns for i, t in enumerate(tasks)]
        self.gap = [NEVER if i in rejected else t.period_ns - t.jitter_ns
                    for i, t in enumerate(tasks)]  # fmt: skip

    def released(self, task_index: int, t_ns: TimeNs) -> None:
        """Task ``task_index`` released a job at ``t_ns`` (its planned time)."""
        self.earliest[task_index] = min(t_ns + self.gap[task_index], NEVER)

    def bound(self) -> TimeNs:
        """No job is released before this instant."""
        return min(self.earliest, default=NEVER)


class Chained:
    """A decision taken ahead: chunk ``chunk`` of ``job`` (its ready ``entry``) runs when job
    ``after``'s chunk ends. It was taken at ``decided_ns`` from the ready set ``snapshot``
    (``edits``: the scheduler's count of other ready-set removals then), assuming ``after``
    ends by ``bound_ns``. ``effect_ns``: when it took effect (None: not yet), ``mark`` the
    scheduler's record count then; ``ran``: the job also ended something in that step;
    ``first_release_ns``: the earliest release that entered the ready set after the
    decision and before the effect (in the ready set at the effect when at or before it),
    ``beaten_ns`` the earliest of those ranked before the chained job (a broken decision when
    at or before the effect)."""

    __slots__ = (
        "after",
        "beaten_ns",
        "bound_ns",
        "broken",
        "chunk",
        "decided_ns",
        "edits",
        "effect_ns",
        "entry",
        "first_release_ns",
        "job",
        "mark",
        "ran",
        "snapshot",
    )  # fmt: skip

    def __init__(
        self, entry: ReadyEntry, job: Job, after: int, decided_ns: TimeNs, bound_ns: TimeNs,
        snapshot: tuple[ReadyEntry, ...], chunk: int, edits: int,
    ) -> None:  # fmt: skip
        self.entry, self.job, self.after, self.chunk = entry, job, after, chunk
        self.decided_ns, self.bound_ns = decided_ns, bound_ns
        self.snapshot, self.edits = snapshot, edits
        self.effect_ns: TimeNs | None = None
        self.mark = 0
        self.ran = False
        self.first_release_ns: TimeNs = NEVER
        self.beaten_ns: TimeNs = NEVER
        self.broken = False

    def interloper(self, entry: ReadyEntry, pending: bool = False) -> bool:
        """A job that entered the ready set now (its ready ``entry``): is it in the ready set
        at the effect, and ranked before the chained job, so that the policy would have
        picked it instead? Before the effect's record is made (``pending``, or no effect
        yet) any job handed over is (one planned before the decision may be handed over
        late, after a release lag); after, one released between the decision and the
        effect. Kept for the effect either way."""
        release_ns, effect = entry.release_ns, self.effect_ns
        if not pending and effect is not None and not self.decided_ns < release_ns <= effect:
            return False
        self.first_release_ns = min(self.first_release_ns, release_ns)
        if entry < self.entry and (effect is None or release_ns <= effect):
            self.beaten_ns = min(self.beaten_ns, release_ns)
            return True
        return False


def chain_allowance(decision_ns: TimeNs | None, launch_ns: TimeNs | None) -> TimeNs:
    """How late after its decision instant a job dispatched now may start: the decision and
    launch bounds the analysis charged (0 for an ideal host, as the analysis assumes)."""
    return (decision_ns or 0) + (launch_ns or 0)
