"""The executor's host clock, injected: the engine and its backend read and wait on one
:class:`Clock`. :data:`WALL` (the default) is ``time.perf_counter_ns``, waited on with little
overshoot (sleep most of the way, spin the rest); tests inject a virtual clock
(:class:`aegis_exec.testing.VirtualClock`) so what they check cannot depend on how busy the
host is.

A wait of :func:`sleep_until` is :data:`~aegis_core.run.stop.interruptible`: a stop request
(SIGINT, SIGTERM during ``aegis exec``) ends it at once, and the loop ends the run there. A
signal that requests nothing (another handler) does not shorten it: ``time.sleep`` resumes
after the handler (PEP 475: no ``InterruptedError``), and the loop here re-checks the clock."""

from __future__ import annotations

import time
from typing import Protocol

from aegis_core.run.stop import interruptible

SPIN_NS = 200_000
"""The last stretch before a target is spun, not slept: a Linux sleep overshoots by ~50-100 us."""


class Clock(Protocol):
    """Integer ns on one monotonic timeline."""

    def now_ns(self) -> int: ...

    def sleep_until(self, t_ns: int) -> None:
        """Return once ``now_ns() >= t_ns``."""
        ...


def sleep_until(t_ns: int, spin_ns: int = SPIN_NS) -> None:
    """Return at ``time.perf_counter_ns() >= t_ns`` (as soon after as the host allows)."""
    clock = time.perf_counter_ns
    while (left := t_ns - clock()) > 0:
        if left > spin_ns:
            with interruptible:
                time.sleep((left - spin_ns) / 1e9)


class WallClock:
    """The host's ``perf_counter_ns``."""

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def sleep_until(self, t_ns: int) -> None:
        sleep_until(t_ns)


WALL = WallClock()
