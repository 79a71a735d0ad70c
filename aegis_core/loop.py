"""The shared loop (DESIGN §1): the only loop, used by every engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .engine import Engine, RunPlan
from .scheduler import Scheduler


@dataclass
class LoopStats:
    decisions_ns: list[int] = field(default_factory=list)
    """Wall-clock cost of each scheduling decision (pick + trace record), in ns."""
    instants: int = 0


def run(
    plan: RunPlan,
    scheduler: Scheduler,
    engine: Engine,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> LoopStats:
    """Drive ``engine`` through ``plan`` with ``scheduler`` until nothing is left to happen.

    At each instant: hand every engine event to the scheduler (completions, then releases),
    flag deadline misses, then dispatch while the engine has a free slot and a job is ready.
    The clock only measures decision overhead; decisions themselves never read it.
    """
    stats = LoopStats()
    overheads = stats.decisions_ns
    handle, schedule = scheduler.handle, scheduler.schedule
    engine.start(plan)
    try:
        while (events := engine.advance(scheduler.next_timer())) is not None:
            now = engine.now()
            stats.instants += 1
            for ev in events:
                handle(ev, now)
            scheduler.on_time(now)
            while engine.free_slots() > 0:
                t0 = clock()
                d = schedule(now)
                t1 = clock()
                if d is None:
                    break
                overheads.append(t1 - t0)
                engine.dispatch(d)
    finally:
        engine.close()
    return stats
