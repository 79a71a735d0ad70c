"""Waiting on the host clock with little overshoot: sleep most of the way, spin the rest."""

from __future__ import annotations

import time

SPIN_NS = 200_000
"""The last stretch before a target is spun, not slept: a Linux sleep overshoots by ~50-100 us."""


def sleep_until(t_ns: int, spin_ns: int = SPIN_NS) -> None:
    """Return at ``time.perf_counter_ns() >= t_ns`` (as soon after as the host allows)."""
    clock = time.perf_counter_ns
    while (left := t_ns - clock()) > 0:
        if left > spin_ns:
            time.sleep((left - spin_ns) / 1e9)
