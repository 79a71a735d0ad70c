"""What every engine shares about time and slots: the release cursor, the slot counter and
the order of one instant's events.

* :class:`ReleaseCursor` hands a plan's releases back once, in plan order (time order,
  simultaneous releases in plan order), never before their planned time.
* :class:`Slots` counts jobs in flight against the plan's ``slots`` (None: unlimited) and
  refuses a dispatch with no free slot; a dispatch decided ahead is chained behind the job
  that holds the slot and takes it over when that job ends.
* :func:`instant` puts one instant's events in the order the scheduler expects: every end
  (completion or fault) first, then the releases, so a job released when the device frees
  up competes for it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from aegis_core.model.errors import InternalError
from aegis_core.model.types import TimeNs
from aegis_core.run.events import EngineEvent, Release


class ReleaseCursor:
    """The next release of a plan not yet handed back, pulled from the plan's (lazy) release
    stream with one release of look-ahead: the plan's releases are never held."""

    __slots__ = ("_it", "_next")

    def __init__(self, releases: Iterable[Release] = ()) -> None:
        self._it = iter(releases)
        self._next = next(self._it, None)

    def next_ns(self) -> TimeNs | None:
        """The planned time of the next release (None: every release was handed back)."""
        nxt = self._next
        return None if nxt is None else nxt.t_ns

    def take(self, now: TimeNs) -> list[Release]:
        """Every release planned at or before ``now`` not handed back yet, in plan order."""
        nxt = self._next
        if nxt is None or nxt.t_ns > now:
            return []
        out, it = [], self._it
        while nxt is not None and nxt.t_ns <= now:
            out.append(nxt)
            nxt = next(it, None)
        self._next = nxt
        return out


class Slots:
    """Jobs in flight against ``slots`` (None: unlimited, :meth:`free` is ``sys.maxsize``),
    and the one job chained behind them (decided ahead: it holds no slot until
    :meth:`handover`)."""

    __slots__ = ("chained", "running", "slots")

    def __init__(self, slots: int | None = 1) -> None:
        self.slots = slots
        self.running = 0
        self.chained = 0

    def chain(self, job: str) -> None:
        """``job`` waits behind the running job; InternalError unless one slot is held by
        exactly that one job and nothing is chained yet."""
        if self.slots != 1 or self.running != 1 or self.chained:
            raise InternalError(f"chained dispatch of {job} with no single job running")
        self.chained = 1

    def handover(self) -> None:
        """The running job ended and the chained one took its slot."""
        self.chained -= 1

    def free(self) -> int:
        return sys.maxsize if self.slots is None else self.slots - self.running

    def take(self, job: str) -> None:
        """One more job in flight; InternalError when no slot is free."""
        if self.slots is not None and self.running >= self.slots:
            raise InternalError(f"dispatch of {job} with no free slot")
        self.running += 1

    def give(self, n: int = 1) -> None:
        """``n`` jobs ended."""
        self.running -= n


def instant(ends: Iterable[EngineEvent], releases: Iterable[Release] = ()) -> list[EngineEvent]:
    """One instant's events: the ends first (in the order given), then the releases."""
    return [*ends, *releases]
