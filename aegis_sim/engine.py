"""The SimPy engine: the Engine protocol on a ``simpy.Environment``.

Time is SimPy's clock in integer ns. Releases and completions are SimPy timeouts whose callbacks
buffer engine events; :meth:`SimPyEngine.advance` steps SimPy through one instant and returns
everything that happened in it (completions first, then releases in plan order), so a job
released when the GPU frees up competes for it.

The GPU is either ``slots`` non-preemptive slots (1 for np-edf/fifo/np-fp), or, under a
concurrent policy (unlimited slots), one processor that every job in flight shares:

* ``unscheduled``: shared equally (processor sharing: with n jobs running, each progresses at
  rate 1/n), as concurrent CUDA streams of equal priority roughly do;
* a policy with ``stream_priorities`` (``stream-priority``): strict priority sharing. The job in
  flight whose task has the highest stream priority (:func:`~aegis_core.model.policy.stream_ranks`;
  among equals the earliest released, as on one stream) gets the whole GPU, the others wait,
  and a higher-priority release takes the GPU at once. This is the *optimistic* model of CUDA
  stream priorities: on a device the block scheduler only prefers pending blocks of higher
  priority streams (running blocks finish, kernels of other streams overlap), so a real device
  lets a high-priority job wait at least as long as here.
"""

from __future__ import annotations

import math
from fractions import Fraction
from operator import attrgetter
from typing import Any, cast

import simpy

from aegis_core.model.overheads import Overhead
from aegis_core.model.policy import stream_ranks
from aegis_core.model.types import TimeNs
from aegis_core.run.cursor import ReleaseCursor, Slots, instant
from aegis_core.run.events import Completion, EngineEvent, Release
from aegis_core.run.host import HostModel
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Dispatch

_new = tuple.__new__  # an event from all its fields, without the NamedTuple's Python frame
_seq = attrgetter("seq")


class _ProcessorSharing:
    """Jobs in flight share the GPU equally. Tracks virtual time V (work served per job)."""

    def __init__(self, env: simpy.Environment, done: list[Completion]) -> None:
        self.env = env
        self.done = done
        self.v = Fraction(0)
        self.last: TimeNs = 0
        self.finish: dict[int, Fraction] = {}
        self.generation = 0

    def _update(self, now: TimeNs) -> None:
        if self.finish:
            self.v += Fraction(now - self.last, len(self.finish))
        self.last = now

    def add(self, d: Dispatch, work: TimeNs) -> None:
        self._update(cast(TimeNs, self.env.now))
        self.finish[d.seq] = self.v + work
        self._arm()

    def _arm(self) -> None:
        self.generation += 1
        if not self.finish:
            return
        first = min(self.finish.values())
        # Round up to whole ns: the job is done by then (V only overshoots).
        delay = math.ceil((first - self.v) * len(self.finish))
        generation = self.generation
        self.env.timeout(delay).callbacks.append(lambda _ev: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self.generation:
            return  # superseded by a later dispatch or completion
        now = cast(TimeNs, self.env.now)
        self._update(now)
        for seq in sorted(s for s, f in self.finish.items() if f <= self.v):
            del self.finish[seq]
            self.done.append(Completion(now, seq))
        self._arm()


class _PrioritySharing:
    """Strict priority sharing: only the job in flight with the smallest (stream rank, seq)
    progresses, at rate 1; the others keep their remaining work (integer ns, exact)."""

    def __init__(self, env: simpy.Environment, done: list[Completion], ranks: list[int]) -> None:
        self.env = env
        self.done = done
        self.ranks = ranks
        self.left: dict[tuple[int, int], TimeNs] = {}  # (rank, seq) -> work still to do
        self.running: tuple[int, int] | None = None
        self.since: TimeNs = 0
        self.generation = 0

    def _update(self, now: TimeNs) -> None:
        if self.running is not None:
            self.left[self.running] -= now - self.since
        self.since = now

    def add(self, d: Dispatch, work: TimeNs) -> None:
        self._update(cast(TimeNs, self.env.now))
        self.left[(self.ranks[d.task_index], d.seq)] = work
        self._arm()

    def _arm(self) -> None:
        self.generation += 1
        self.running = min(self.left) if self.left else None
        if self.running is None:
            return
        generation = self.generation
        delay = self.left[self.running]
        self.env.timeout(delay).callbacks.append(lambda _ev: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self.generation:
            return  # superseded by a later dispatch
        now = cast(TimeNs, self.env.now)
        self._update(now)
        for key in sorted(k for k, v in self.left.items() if v <= 0):
            del self.left[key]
            self.done.append(Completion(now, key[1]))
        self._arm()


class SimPyEngine:
    """Simulated GPU on SimPy; execution times come from the plan's execution-time model."""

    name = "sim"
    backend: str | None = None
    device = "simulated"

    def __init__(self, **options: Any) -> None:
        self.env = simpy.Environment()
        self._releases = ReleaseCursor()
        self._slots = Slots(1)
        self._done: list[Completion] = []
        self._released: list[Release] = []
        self._shared: _ProcessorSharing | _PrioritySharing | None = None
        self._host: HostModel | None = None
        self._unseen: dict[int, Completion] = {}  # ended on the device, not yet seen
        self._late: dict[tuple[int, int], Release] = {}  # due, not yet handed over
        self._t: TimeNs = 0  # the instant being stepped through (SimPy's clock)
        self._chained: dict[int, Dispatch] = {}  # decided ahead, by the seq it waits for
        self._handover: set[int] = set()  # ended jobs whose slot passes to a chained one

    def validate(self, plan: RunPlan) -> None:
        """Every plan runs here: the execution-time model gives each job's duration."""

    def start(self, plan: RunPlan) -> None:
        self.env = simpy.Environment()
        self._exec_time = plan.exec_time
        self._releases = ReleaseCursor(plan.releases)
        self._slots = Slots(plan.slots)
        self._done, self._released = [], []
        self._shared = None
        if plan.policy.stream_priorities:  # the device orders the jobs in flight
            ranks = stream_ranks(plan.scenario.tasks)
            self._shared = _PrioritySharing(self.env, self._done, ranks)
        elif plan.policy.concurrent:  # jobs in flight share the GPU equally
            self._shared = _ProcessorSharing(self.env, self._done)
        self._host = None
        if plan.overheads is not None and not plan.policy.concurrent:
            self._host = HostModel(plan.overheads, plan.seed, plan.host_mode)
        self._unseen, self._late = {}, {}
        self._chained, self._handover = {}, set()
        self._t = 0
        self._arm_release()

    def _arm_release(self) -> None:
        t = self._releases.next_ns()
        if t is not None:
            self.env.timeout(t - self._t).callbacks.append(self._on_release)

    def _on_release(self, _ev: simpy.Event) -> None:
        due = self._releases.take(self._t)
        host = self._host
        if host is None:
            self._released += due
        else:  # handed over after the host's release lag (or at an earlier instant)
            for r in due:
                self._late[(r.task_index, r.k)] = r
                lag = host.draw(Overhead.RELEASE_LAG)
                self.env.timeout(lag, value=r).callbacks.append(self._on_lagged)
        self._arm_release()

    def _on_lagged(self, ev: simpy.Event) -> None:
        r = cast(Release, ev.value)
        if self._late.pop((r.task_index, r.k), None) is not None:
            self._released.append(r)

    def _on_complete(self, ev: simpy.Event) -> None:
        seq = ev.value
        if self._chained and seq in self._chained:  # the chained job starts as this one ends
            self._slots.handover()
            self._start(self._chained.pop(seq))
        else:
            self._slots.running -= 1  # Slots.give, without a call on the hot path
        self._done.append(_new(Completion, (self._t, seq, None)))

    def _on_end(self, ev: simpy.Event) -> None:
        """A job ended on the device: the host sees it after its completion detection (or
        at an earlier instant, as an executor's loop sees every end before its instant)."""
        c = cast(Completion, ev.value)
        self._unseen[c.seq] = c
        chained = self._chained.pop(c.seq, None)
        if chained is not None:  # on the device right behind it: no host step in between
            self._handover.add(c.seq)
            self._launch(chained, c.t_ns)
        seen = cast(HostModel, self._host).draw(Overhead.COMPLETION)
        self.env.timeout(seen, value=c.seq).callbacks.append(self._on_seen)

    def _on_seen(self, ev: simpy.Event) -> None:
        c = self._unseen.pop(cast(int, ev.value), None)
        if c is not None:
            self._seen(c)

    def _seen(self, c: Completion) -> None:
        """The host sees ``c``: its slot is free, or passes to the job chained behind it."""
        if c.seq in self._handover:
            self._handover.discard(c.seq)
            self._slots.handover()
        else:
            self._slots.give()
        self._done.append(c)

    def _catch_up(self) -> None:
        """At an instant, the host sees everything that came due before it (ends and late
        releases); what comes due at the instant itself waits for its own overhead (the
        instant may be that very end or release)."""
        now = self.env.now
        for seq in [s for s, c in self._unseen.items() if c.t_ns < now]:
            self._seen(self._unseen.pop(seq))
        for key in [k for k, r in self._late.items() if r.t_ns < now]:
            self._released.append(self._late.pop(key))
        if len(self._released) > 1:
            self._released.sort(key=lambda r: (r.t_ns, r.task_index, r.k))

    def now(self) -> TimeNs:
        return self._t

    def free_slots(self) -> int:
        return self._slots.free()

    def next_release_ns(self) -> TimeNs | None:
        nxt = self._releases.next_ns()
        if self._late:  # due, handed over after their lag
            late = min(r.t_ns for r in self._late.values())
            return late if nxt is None else min(nxt, late)
        return nxt

    def dispatch(self, d: Dispatch) -> None:
        if d.after >= 0:  # decided ahead: starts when job d.after ends
            self._slots.chain(d.job)
            if d.after in self._unseen:  # it has ended, the host has not seen it yet
                self._handover.add(d.after)
                self._launch(d, cast(TimeNs, self.env.now))
            else:
                self._chained[d.after] = d
            return
        if self._shared is not None:
            self._shared.add(d, self._exec_time(d))
            return
        self._slots.take(d.job)
        host = self._host
        if host is None:
            self._start(d)
            return
        now = cast(TimeNs, self.env.now)
        self._launch(d, now + host.draw(Overhead.DECISION) + host.draw(Overhead.LAUNCH))

    def _start(self, d: Dispatch) -> None:
        """``d`` runs from now (no host overheads)."""
        self.env.timeout(self._exec_time(d), value=d.seq).callbacks.append(self._on_complete)

    def _launch(self, d: Dispatch, start: TimeNs) -> None:
        """``d`` runs on the device from ``start`` (host overheads replayed)."""
        end = Completion(start + self._exec_time(d), d.seq, start)
        now = cast(TimeNs, self.env.now)
        self.env.timeout(end.t_ns - now, value=end).callbacks.append(self._on_end)

    def advance(self, until: TimeNs | None) -> list[EngineEvent] | None:
        env = self.env
        t = env.peek()
        if until is not None and until < t:
            # Not env.run(until=...): SimPy re-queues its stop event at `until`, which the
            # next call would take for an instant of its own.
            env.timeout(until - self._t)
            self._t = until
            while env.peek() <= until:
                env.step()
            if self._host is None:
                return []
            self._catch_up()
            return self._hand_over()
        if t == math.inf:
            return None
        step, peek = env.step, env.peek
        self._t = t  # type: ignore[assignment]  # the instant stepped through (int: int delays)
        step()
        while peek() == t:
            step()
        if self._host is not None:
            self._catch_up()
        return self._hand_over()

    def _hand_over(self) -> list[EngineEvent]:
        done, released = self._done, self._released
        if not done:
            self._released = []
            return released  # type: ignore[return-value]
        if len(done) > 1:
            done.sort(key=_seq)
        out = instant(done, released)
        done.clear()
        released.clear()
        return out

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
