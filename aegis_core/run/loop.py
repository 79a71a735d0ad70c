"""The shared loop (docs/CONTRACTS.md §layering): the only loop, used by every engine."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aegis_core.model.types import TimeNs
from aegis_core.record.sinks import NullTrace, TraceSink
from aegis_core.run import stop as _stop
from aegis_core.run.ahead import AheadMode
from aegis_core.run.engine import Engine
from aegis_core.run.plan import RunPlan
from aegis_core.run.samples import CostSamples
from aegis_core.run.scheduler import Job, Scheduler

POLL = 16
"""The loop consults its ``stop`` and ``progress`` hooks every this many instants (and
after the first): one integer comparison per instant in between."""


@dataclass
class LoopStats:
    decisions_ns: CostSamples = field(default_factory=CostSamples)
    """Wall-clock cost of each scheduling decision (pick + its record), in ns (bounded
    memory: folded into a histogram past :data:`~aegis_core.run.samples.CostSamples.RAW`)."""
    ahead_ns: CostSamples = field(default_factory=CostSamples)
    """Wall-clock cost of each decision taken ahead (off the device's critical path: the
    job it follows is still running), in ns."""
    instants: int = 0
    last_ns: TimeNs = 0
    """The run's last instant (0: none ran)."""
    stopped: str | None = None
    """Why the run was stopped before its end (what ``stop`` returned, e.g. ``"SIGINT"``);
    None: it ran to its end."""


def run(
    plan: RunPlan,
    scheduler: Scheduler,
    engine: Engine,
    *,
    sink: TraceSink | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    jobs: Callable[[list[Job]], None] | None = None,
    stop: Callable[[], str | None] | None = None,
    progress: Callable[[TimeNs], None] | None = None,
) -> LoopStats:
    """Drive ``engine`` through ``plan`` with ``scheduler`` until nothing is left to happen.

    At each instant: hand every engine event to the scheduler (completions, then releases),
    flag deadline misses, then dispatch while the engine has a free slot and a job is ready;
    then, when the one slot is held and the scheduler decides ahead, take the next decision
    now if it is already fixed and chain it behind the running job
    (:meth:`~aegis_core.run.scheduler.Scheduler.schedule_ahead`; docs/THEORY.md §ahead);
    then hand the instant's records to ``sink`` (none: they are dropped) and flush it before
    time moves on, and the jobs that settled in it to ``jobs`` (they leave the scheduler).
    The clock only measures decision overhead; decisions never read it.

    After the first instant and every :data:`POLL` instants, ``progress(now)`` is called and
    ``stop()`` asked: a reason (not None) ends the run there, after a whole instant
    (``stats.stopped``). With ``stop`` given, the engine's interruptible waits are armed
    (:mod:`aegis_core.run.stop`): a stop request ends a wait for the next release at once.
    """
    stats = LoopStats()
    overheads = stats.decisions_ns
    keep = sink is not None and not isinstance(sink, NullTrace)
    out = sink if sink is not None else NullTrace()
    step, schedule, pending = scheduler.step, scheduler.schedule, scheduler.records
    settled, take = scheduler.settled, jobs
    write, flush, drop = out.write, out.flush, pending.clear
    advance, timer, now_of, free_slots = (
        engine.advance,
        scheduler.next_timer,
        engine.now,
        engine.free_slots,
    )
    dispatch, decided = engine.dispatch, overheads.raw.append
    ahead = scheduler.schedule_ahead if scheduler.ahead is not AheadMode.OFF else None
    next_release = engine.next_release_ns if ahead is not None else None
    ahead_cost = stats.ahead_ns.raw.append
    costs_full = overheads.full
    pace_gc = GcPacer()
    gc_count, gc_due = gc.get_count, pace_gc.threshold0
    n = now = 0
    due = 1 if stop is not None or progress is not None else -1
    try:
        engine.start(plan)
        pace_gc.freeze()  # what start() loaded (models, libraries) is never scanned again
        with _stop.armed() if stop is not None else contextlib.nullcontext():
            while (events := advance(timer())) is not None:
                now = now_of()
                n += 1
                step(events, now)
                free = free_slots()  # a dispatch takes one slot; none frees within an instant
                while free > 0:
                    t0 = clock()
                    d = schedule(now)
                    t1 = clock()
                    if d is None:
                        break
                    decided(t1 - t0)
                    dispatch(d)
                    free -= 1
                if ahead is not None and free == 0:
                    assert next_release is not None
                    t0 = clock()
                    d = ahead(now, next_release())
                    if d is not None:
                        ahead_cost(clock() - t0)
                        dispatch(d)
                        if stats.ahead_ns.full():
                            stats.ahead_ns.fold()
                if keep:
                    write(pending)
                    flush()
                drop()
                if scheduler.ended:  # they leave the scheduler (kept in its jobs if it keeps)
                    ended = settled()
                    if take is not None:
                        take(ended)
                if gc_count()[0] >= gc_due:
                    pace_gc()
                if costs_full():  # decision costs: memory bounded, whatever
                    overheads.fold()  # the engine allocates
                if n == due:
                    due += POLL
                    if progress is not None:
                        progress(now)
                    if stop is not None and (why := stop()) is not None:
                        stats.stopped = why
                        break
    except _stop.Interrupted as exc:  # a stop request ended a wait: no instant was cut
        stats.stopped = exc.reason
    finally:
        stats.instants, stats.last_ns = n, now
        if keep:  # an instant cut short by an error: its records so far
            write(pending)
        drop()
        if scheduler.ended:
            ended = settled()
            if take is not None:
                take(ended)
        pace_gc.close()
        engine.close()
    return stats


class GcPacer:
    """Moves Python's cyclic garbage collection out of scheduling decisions.

    Automatic collection is switched off for the run; the loop calls the pacer between
    instants, where it runs the collections the interpreter would have run (same generation
    thresholds), so no decision pays for a collection and memory stays bounded.
    :meth:`close` restores the previous setting.
    """

    def __init__(self) -> None:
        self.was_enabled = gc.isenabled()
        self.threshold0, self.threshold1, self.threshold2 = gc.get_threshold()
        self.frozen = False
        gc.disable()

    def __call__(self) -> None:
        count0, count1, count2 = gc.get_count()
        if count0 >= self.threshold0:
            if count2 >= self.threshold2 and count1 >= self.threshold1:
                gc.collect(2)
            elif count1 >= self.threshold1:
                gc.collect(1)
            else:
                gc.collect(0)

    def freeze(self) -> None:
        """Move every object alive now to the permanent generation: the collections during
        the run then scan only what the run allocates (a full collection over the libraries'
        objects takes tens of ms: a stall on a wall-clock engine)."""
        gc.freeze()
        self.frozen = True

    def close(self) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
        if self.was_enabled:
            gc.enable()
