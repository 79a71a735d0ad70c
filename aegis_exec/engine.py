"""The executor engine: the Engine protocol on a host clock, real kernels on a backend.

Releases come from the plan (the core's arrival generator: the same jobs at the same
relative times as the simulator); the engine waits for each on its clock and hands it to the
scheduler with its planned time (the scheduler records how late the host woke up). Under
np-edf / fifo / np-fp / lp-edf one launch is in flight at a time (one slot); under
``unscheduled`` every job is launched at release on its task's own stream (concurrent).

Every time is on one timeline: ns since the run's time 0, a reading of the injected
:class:`~aegis_exec.clock.Clock` (default: the host's ``perf_counter_ns``) taken after the
backend is warmed up. The backend is built on the same clock and maps device times (CUDA
events) onto it. What the engine does with a backend is decided by the backend's
capabilities (:mod:`aegis_exec.backends`), never by its name.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import JobFault, ScenarioError
from aegis_core.model.overheads import Overhead, Overheads
from aegis_core.model.policy import stream_ranks
from aegis_core.model.scenario import Scenario, Task
from aegis_core.model.types import TimeNs, fmt_count
from aegis_core.run.cursor import ReleaseCursor, Slots, instant
from aegis_core.run.events import Assumption, Completion, EngineEvent, Fault
from aegis_core.run.plan import RunPlan
from aegis_core.run.samples import cost_stats as overhead_stats
from aegis_core.run.scheduler import Dispatch

from . import host as _host
from .backends import Backend, Finished, TaskWork, make_backend, resolve, spec
from .clock import WALL, Clock

if TYPE_CHECKING:
    from aegis_core.graph.ir import Graph

    from .arena import Layout


FAILED = 0
"""The token of a one-slot launch that failed at launch (launch tokens start at 1): a launch
chained behind it starts at once."""


@dataclass(slots=True)
class _Launch:
    seq: int  # the job's
    task: int
    chunk: int
    host_ns: TimeNs  # engine time of the dispatch
    waited: bool  # the job was ready when the device went idle: its start measures a gap
    idle: bool  # its stream had nothing queued: its start measures the launch latency
    decision_ns: TimeNs  # the instant's events gathered -> this dispatch call
    chained: bool = False  # decided ahead: queued behind the launch before it


class OverheadMonitor:
    """The host overheads of a run, measured per job, and checked against the bounds the
    analysis charged (docs/THEORY.md §overheads): every sample is kept for ``aegis
    calibrate``; an observed overhead above its bound becomes an :class:`Assumption` event
    (the scheduler records it). Release lag is checked by the scheduler, which numbers jobs."""

    def __init__(self, overheads: Overheads | None) -> None:
        self.bounds = {w: overheads.bound(w) for w in Overhead} if overheads else None
        self.samples: dict[Overhead, array[int]] = {w: array("q") for w in Overhead}
        """Per figure, every sample in order (8 bytes each: a long run's memory)."""

    def observe(self, what: Overhead, seq: int, observed: TimeNs, now: TimeNs,
                out: list[EngineEvent]) -> None:  # fmt: skip
        self.samples[what].append(observed)
        bounds = self.bounds
        if bounds is not None and observed > bounds[what]:
            out.append(Assumption(now, seq, what.value, observed, bounds[what]))


def load_task_graph(scenario: Scenario, task: Task) -> Graph | None:
    """The task's model graph (None: no model); ScenarioError names the task and field."""
    from aegis_core.graph.zoo import task_graph

    return task_graph(scenario, task)


def check_runnable(scenario: Scenario, task: Task, graph: Graph | None, backend: str) -> None:
    """ScenarioError naming the task's model when ``backend`` cannot run ``graph`` (its
    module's ``refuses``: e.g. an operator onnxruntime's export lacks)."""
    problem = None if graph is None else spec(backend).refuses(graph)
    if problem is not None:
        raise ScenarioError(
            scenario.path,
            f"the {backend} backend cannot run model {task.model!r}: {problem}",
            task=task.name,
            field="model",
        )


def task_work(plan: RunPlan, backend: str) -> list[TaskWork]:
    """Each task's graph and chunk ranges for ``backend`` (a registered name), validated;
    ScenarioError names task and field."""
    caps = spec(backend).caps
    needs_model = caps.executes_models
    scenario, out = plan.scenario, []
    ranks: list[int | None] = [None] * len(scenario.tasks)
    if plan.policy.stream_priorities:
        if not caps.stream_priorities:
            raise ScenarioError(
                scenario.path,
                f"policy {plan.policy} needs CUDA stream priorities and the {backend} backend "
                "has none (use --backend cupy, or policy unscheduled for the equal-share "
                "baseline)",
                field="policy",
            )
        ranks = [*stream_ranks(scenario.tasks)]
    for i, task in enumerate(scenario.tasks):
        durations = plan.budgets[i].chunks_ns
        graph = load_task_graph(scenario, task)
        if graph is None and needs_model and i not in plan.rejected:
            raise ScenarioError(
                scenario.path,
                f"the {backend} backend executes a model: give one "
                "(a builtin name or a graph file)",
                task=task.name,
                field="model",
            )
        n = len(durations)
        if n > 1 and not caps.op_chunks:
            raise ScenarioError(
                scenario.path,
                f"policy {plan.policy} runs each job as {n} chunks of its operators and the "
                f"{backend} backend runs a whole model per launch (use another policy, or "
                "--backend numpy)",
                task=task.name,
                field="policy",
            )
        ranges = tuple(graph.chunks(n)) if graph is not None else tuple(range(1) for _ in range(n))
        if i in plan.rejected:
            graph = None  # validated, never run: not loaded, warmed up or given memory
        check_runnable(scenario, task, graph, backend)
        if len(ranges) != n:
            raise ScenarioError(
                scenario.path,
                f"lp-edf splits a job into {fmt_count(n, 'chunk')} but model {task.model!r} "
                f"has only {fmt_count(len(graph.ops) if graph is not None else 0, 'operator')}",
                task=task.name,
                field="kernels_ms",
            )
        out.append(TaskWork(i, task.name, graph, ranges, tuple(durations), ranks[i]))
    return out


class ExecEngine:
    """Real execution of a run plan on a compute backend (``auto`` or a name registered in
    :mod:`aegis_exec.backends`). ``clock``: the host clock the engine and the backend read
    and wait on (default: the wall clock; tests inject a virtual one); ``wrap``: a function
    applied to the backend once built (tests: :class:`aegis_exec.testing.FaultyBackend`);
    ``cuda_graphs=False`` makes a backend that replays CUDA graphs launch kernels one by one
    (comparisons); ``memory_plan=False`` gives every buffer its own allocation instead of the
    planned shared arena; ``check_memory=True`` verifies after loading, from the buffers'
    real addresses, that no two buffers that can be live together overlap (debug);
    ``host``: what to ask of the host for the loop thread once the backend is prepared
    (:mod:`aegis_exec.host`: a HostSettings, ``auto`` or ``off``; default None: left
    alone), undone by :meth:`close`; :meth:`report` says what was applied or refused."""

    name = "exec"

    def __init__(self, backend: str = "auto", *, clock: Clock = WALL,
                 wrap: Callable[[Backend], Backend] | None = None, cuda_graphs: bool = True,
                 memory_plan: bool = True, check_memory: bool = False,
                 host: _host.HostSettings | str | None = None,
                 **options: Any) -> None:  # fmt: skip
        self.backend: str = resolve(backend)
        caps = spec(self.backend).caps
        self._caps = caps
        self._clock = clock
        self._wrap = wrap
        self._memory_plan = memory_plan and caps.memory_plan
        self._check_memory = check_memory
        self._layout: Layout | None = None
        self._checked: int | None = None
        self._options: dict[str, Any] = {"graphs": cuda_graphs} if caps.cuda_graphs else {}
        self._impl: Backend | None = None
        self._work: list[TaskWork] | None = None
        self._validated: RunPlan | None = None
        self._plan: RunPlan | None = None
        self._t0 = clock.now_ns()
        self._host_settings = _host.settings(host)
        self._host: _host.Applied | None = None
        self._reset()

    def _reset(self) -> None:
        self._releases = ReleaseCursor()
        self._slots = Slots(1)
        self._launched: dict[int, _Launch] = {}  # by launch token (one per launch)
        self._token = 0
        self._current = -1  # the token of the launch holding the one slot (-1: none)
        self._behind: dict[int, int] = {}  # launch token -> the token chained behind it
        self._chain_faults: dict[int, Fault] = {}  # launch token -> its chained job's fault
        self._orphans: set[int] = set()  # chained next chunks of a job that faulted
        self._queued: dict[int, int] = {}  # launches in flight per task (its stream's queue)
        self._instant: TimeNs = 0
        self._pending: list[Fault] = []
        self._faulted: dict[int, str] = {}
        self._last_end: TimeNs | None = None
        self.gaps_ns: array[int] = array("q")
        self.chained_gaps_ns: array[int] = array("q")  # of the launches decided ahead
        self._chunk_overruns: dict[str, int] = {}  # chunks past their own chunk WCET
        self._setup_s = 0.0
        self.monitor = OverheadMonitor(self._plan.overheads if self._plan else None)

    @property
    def device(self) -> str:
        """The device the backend runs on (known once started)."""
        if self._impl is None:
            return f"{self.backend} (not started)"
        return self._impl.device

    # -- before the run ------------------------------------------------------------------

    def validate(self, plan: RunPlan) -> None:
        """Check that every task can run here (models, input shapes), before anything is
        written; raises ScenarioError naming the task and field."""
        self._work = task_work(plan, self.backend)
        self._layout = None
        if self._memory_plan:
            from .arena import layout

            deadlines = [t.deadline_ns for t in plan.scenario.tasks]
            self._layout = layout(self._work, plan.policy, deadlines)
        self._validated = plan

    def start(self, plan: RunPlan) -> None:
        if self._work is None or self._validated is not plan:
            self.validate(plan)
        assert self._work is not None
        self._plan = plan
        self._reset()
        t = time.perf_counter()  # set-up cost, reported in wall seconds
        impl = make_backend(self.backend, self._clock, **self._options)
        self._impl = impl = self._wrap(impl) if self._wrap is not None else impl
        impl.prepare(self._work, self._layout)
        if self._check_memory and self._layout is not None:
            from .arena import check

            self._checked = check(self._layout, impl.graphs())  # InternalError if not
        self._setup_s = time.perf_counter() - t
        if self._host_settings is not None and (self._host is None or self._host.restored):
            self._host = _host.apply(self._host_settings)  # the loop's thread, after prepare
        self._releases = ReleaseCursor(plan.releases)
        self._slots = Slots(plan.slots)
        self._t0 = self._clock.now_ns()

    # -- the Engine protocol -------------------------------------------------------------

    def now(self) -> TimeNs:
        """The current instant: the clock time at which the last :meth:`advance` gathered
        its events (every launch that had ended by then is among them), so a deadline check
        at ``now`` never races a completion. :meth:`dispatch` reads the live clock."""
        return self._instant

    def _live(self) -> TimeNs:
        return self._clock.now_ns() - self._t0

    def free_slots(self) -> int:
        return self._slots.free()

    def next_release_ns(self) -> TimeNs | None:
        return self._releases.next_ns()

    def dispatch(self, d: Dispatch) -> None:
        impl, plan = self._impl, self._plan
        assert impl is not None and plan is not None
        after = -1
        if d.after >= 0:  # decided ahead: queued on the device behind the running launch
            self._slots.chain(d.job)
            after = self._current
        else:
            self._slots.take(d.job)
        now = self._live()
        task = d.task_index
        waited = after >= 0 or (
            self._slots.slots == 1
            and self._slots.running == 1
            and self._last_end is not None
            and d.rationale.winner.release_ns <= self._last_end
        )
        queued = self._queued.get(task, 0)
        token = self._token = self._token + 1
        self._launched[token] = _Launch(d.seq, task, d.chunk, now, waited,
                                        queued == 0 and after < 0, now - self._instant,
                                        after >= 0)  # fmt: skip
        try:
            planned = plan.exec_time(d) if self._caps.replays_exec_time else None
            impl.launch(task, d.chunk, token, d.k, planned, None if after < 0 else after)
        except JobFault as exc:  # the job's own kernels failed at launch: its fault only
            del self._launched[token]
            self._faulted.setdefault(task, str(exc))  # the first fault of the task, reported
            if after >= 0:  # it fails where it would have started: at the end before it
                self._slots.chained = 0
                self._chain_faults[after] = Fault(0, d.seq, str(exc))
                return
            end = self._live()
            if self._slots.slots == 1:
                self._last_end = end  # the device is idle again from here
                self._current = FAILED  # (a decision taken ahead behind it starts at once)
            self._pending.append(Fault(end, d.seq, str(exc)))
            return
        if after >= 0:
            self._behind[after] = token
        elif self._slots.slots == 1:
            self._current = token
        self._queued[task] = queued + 1

    def advance(self, until: TimeNs | None) -> list[EngineEvent] | None:
        impl = self._impl
        assert impl is not None
        releases, clock = self._releases, self._clock
        while True:
            host, finished = impl.snapshot()  # the clock first, then all that ended by then
            now = self._instant = max(self._instant, host - self._t0)
            freed = self._slots.running
            ends = self._take(finished, now)
            due = releases.take(now)
            lags = self.monitor.samples[Overhead.RELEASE_LAG]
            for r in due:
                lags.append(now - r.t_ns)
            if ends or due or self._slots.running < freed:  # (a slot an orphan freed)
                return instant(ends, due)
            if until is not None and until <= now:
                return []
            nxt = releases.next_ns()
            if nxt is None and not self._slots.running:
                return None
            targets = [t for t in (nxt, until) if t is not None]
            target = min(targets) if targets else now + 1_000_000_000
            if self._slots.running:
                impl.wait(self._t0 + target)
            else:
                clock.sleep_until(self._t0 + target)

    def _take(self, finished: list[Finished], now: TimeNs) -> list[EngineEvent]:
        """Engine events for ended launches, in end order (faults at launch first), each
        completion after the assumptions its launch broke. Device times are clamped into
        [dispatch, now], keeping the measured duration."""
        out: list[EngineEvent] = [*self._pending]
        self._pending.clear()
        if out and self._current == FAILED:  # one slot: the launch that failed holds it
            self._slots.give(len(out) - 1)
            self._after_failed(out)
        else:
            self._slots.give(len(out))
        if not finished:
            return out
        t0, work, plan, observe = self._t0, self._work, self._plan, self.monitor.observe
        assert work is not None and plan is not None
        for f in sorted(finished, key=lambda f: (f.end_ns, f.token)):
            info = self._launched.pop(f.token)
            self._queued[info.task] -= 1
            end = max(min(f.end_ns - t0, now), info.host_ns)
            start = min(max(end - (f.end_ns - f.start_ns), info.host_ns), end)
            nxt = self._behind.get(f.token)
            self._hand_on(f.token)
            gap = None if self._last_end is None else start - self._last_end
            if info.waited and gap is not None:
                self.gaps_ns.append(gap)
                if info.chained:
                    self.chained_gaps_ns.append(gap)
            if self._slots.slots == 1:
                self._last_end = end
            if f.token in self._orphans:  # ran behind its own job's fault: nothing to say
                self._orphans.discard(f.token)
                continue
            seq = info.seq
            if f.error is not None:
                self._faulted.setdefault(info.task, f.error)
                out.append(Fault(end, seq, f.error))
                if nxt is not None and self._launched[nxt].seq == seq:
                    self._orphans.add(nxt)  # its own next chunk, chained: the job is over
            else:
                if not info.chained:  # a chained decision is off the device's critical path
                    observe(Overhead.DECISION, seq, info.decision_ns, now, out)
                if info.idle:
                    observe(Overhead.LAUNCH, seq, start - info.host_ns, now, out)
                elif info.chained and gap is not None:  # its launch: how late after the end
                    observe(Overhead.LAUNCH, seq, max(0, gap), now, out)  # it followed
                observe(Overhead.COMPLETION, seq, max(0, now - (f.end_ns - t0)), now, out)
                if end - start > work[info.task].durations_ns[info.chunk]:  # a chunk overrun
                    name = plan.scenario.tasks[info.task].name  # (a job's: the scheduler's)
                    self._chunk_overruns[name] = self._chunk_overruns.get(name, 0) + 1
                out.append(Completion(end, seq, start))
            fault = self._chain_faults.pop(f.token, None)
            if fault is not None and not (f.error is not None and fault.seq == seq):
                out.append(Fault(end, fault.seq, fault.error))  # its launch had failed
        return out

    def _after_failed(self, out: list[EngineEvent]) -> None:
        """The one-slot launch that failed at launch ends now (its fault, the last of
        ``out``): its slot is free, or passes to what was chained behind it (launched at
        once), which fails here too if its own launch did; a job's own next chunk chained
        behind its failed one never counts."""
        failed = out[-1]
        assert isinstance(failed, Fault)
        nxt = self._behind.get(FAILED)
        self._hand_on(FAILED)
        if nxt is not None and self._launched[nxt].seq == failed.seq:
            self._orphans.add(nxt)
        fault = self._chain_faults.pop(FAILED, None)
        if fault is not None and fault.seq != failed.seq:  # (its own next chunk: over)
            out.append(Fault(failed.t_ns, fault.seq, fault.error))

    def _hand_on(self, token: int) -> None:
        """Launch ``token`` ended: its slot is free, or passes to the launch
        chained behind it."""
        nxt = self._behind.pop(token, None)
        if nxt is None:
            self._slots.give()
            if token == self._current:
                self._current = -1
            return
        self._slots.handover()
        self._current = nxt

    @property
    def launch_ns(self) -> array[int]:
        """Launch latencies of the last run (dispatch → device start, idle streams only)."""
        return self.monitor.samples[Overhead.LAUNCH]

    def overhead_samples(self) -> dict[Overhead, array[int]]:
        """Every host overhead measured in the last run, per figure (what ``aegis calibrate``
        estimates bounds from)."""
        return self.monitor.samples

    def report(self) -> dict[str, Any]:
        """What the run summary adds for an executed run (its ``exec`` section, and the
        backend's ``versions``)."""
        impl = self._impl.report() if self._impl is not None else {}
        names = [t.name for t in self._plan.scenario.tasks] if self._plan is not None else []
        return {
            "backend": self.backend,
            **impl,
            "setup_s": round(self._setup_s, 3),
            "dispatch_gap_ns": overhead_stats(self.gaps_ns),
            "dispatch_gap_chained_ns": overhead_stats(self.chained_gaps_ns),
            "launch_latency_ns": overhead_stats(self.launch_ns),
            "chunk_overruns": {n: self._chunk_overruns.get(n, 0) for n in names},
            "memory_plan": self._layout.report() if self._layout is not None else None,
            "memory_check": self._checked,
            "faulted_tasks": {names[i]: e for i, e in sorted(self._faulted.items())},
            "overheads_ns": {w.value: overhead_stats(v) for w, v in self.monitor.samples.items()},
            "overheads_checked": self.monitor.bounds is not None,
            "host": _host.report(self._host),
        }

    def close(self) -> None:
        if self._host is not None:
            self._host = _host.restore(self._host)
        if self._impl is not None:
            self._impl.close()
