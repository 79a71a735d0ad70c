"""The scheduler: releases in, dispatch decisions out. It never reads a clock.

Engines hand it :mod:`~aegis_core.run.events` with the current time; it answers
:meth:`Scheduler.schedule` with a frozen :class:`Dispatch` carrying its :class:`Rationale`.
Each decision also makes one record (:mod:`~aegis_core.record.schema`), kept until the loop takes
them (:meth:`Scheduler.drain`) and hands them to a trace sink: the scheduler never writes.
Deadline misses are job flags and records, detected at the deadline instant
(:meth:`Scheduler.next_timer` tells the engine when to wake).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, NamedTuple

from aegis_core.budget import TaskBudget, task_budget
from aegis_core.model.overheads import Overhead
from aegis_core.model.policy import Key, Policy, fp_priorities
from aegis_core.model.scenario import Task
from aegis_core.model.status import JobStatus
from aegis_core.model.types import TimeNs
from aegis_core.record.schema import (
    CHUNK_OVERRUN,
    AssumptionRecord,
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    FaultRecord,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
)
from aegis_core.run.ahead import AHEAD_BROKEN, NEVER, AheadMode, Chained, Horizon, resolve
from aegis_core.run.contexts import ExecutionContext
from aegis_core.run.events import Assumption, Completion, EngineEvent, Fault, Release

if TYPE_CHECKING:
    from aegis_core.run.plan import RunPlan

_new = tuple.__new__  # a record from all its fields (rec = -1), without a Python frame


class Job:
    """One released job; mutable bookkeeping owned by the scheduler."""

    __slots__ = (
        "broken", "chunk", "chunk_start_ns", "deadline_ns", "end_ns", "entry", "error", "id", "k",
        "lag_ns", "missed", "n_chunks", "overrun", "priority", "release_ns", "run_ns", "seq",
        "start_ns", "status", "task", "task_index",
    )  # fmt: skip

    def __init__(
        self, seq: int, task: str, task_index: int, k: int, release_ns: TimeNs,
        deadline_ns: TimeNs, priority: int | None = None,
    ) -> None:  # fmt: skip
        self.seq = seq
        self.id = f"{task}#{k}"
        self.task = task
        self.task_index = task_index
        self.k = k
        self.release_ns = release_ns
        self.deadline_ns = deadline_ns
        self.priority = priority
        self.status = JobStatus.READY
        self.start_ns: TimeNs | None = None
        self.end_ns: TimeNs | None = None
        self.missed = False
        self.overrun = False  # ran longer than its task's WCET (the time budget)
        self.error: str | None = None
        self.chunk = 0  # the chunk running or next to run
        self.n_chunks = 1
        self.chunk_start_ns: TimeNs = 0
        self.run_ns: TimeNs = 0  # execution time so far (sum over finished chunks)
        self.entry: ReadyEntry | None = None
        self.lag_ns: TimeNs = 0  # how late the engine handed the release over (wall clock)
        self.broken: tuple[str, ...] = ()  # overhead bounds the host broke for this job

    @property
    def response_ns(self) -> TimeNs | None:
        return None if self.end_ns is None else self.end_ns - self.release_ns

    @property
    def exec_ns(self) -> TimeNs | None:
        """Time spent executing (the sum of its chunks); None until it ends."""
        if self.end_ns is None or self.start_ns is None:
            return None
        return self.run_ns

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.status.name}, r={self.release_ns}, d={self.deadline_ns})"


class ReadyEntry(NamedTuple):
    """A ready job as the policy sees it. Entries order by ``key`` (unique: it ends with seq)."""

    key: Key
    seq: int
    job: str
    task: str
    release_ns: TimeNs
    deadline_ns: TimeNs
    priority: int | None


class Rationale(NamedTuple):
    """Why a job was dispatched: the whole ready set and the rule that picked the winner.

    ``ready`` holds every ready job at decision time, the winner first; ``key_fields`` name the
    entry fields the rule compares, in order. The winner is the entry with the smallest
    ``tuple(entry.<f> for f in key_fields)``.
    """

    rule: str
    key_fields: tuple[str, ...]
    ready: tuple[ReadyEntry, ...]

    @property
    def winner(self) -> ReadyEntry:
        return self.ready[0]


class Dispatch(NamedTuple):
    """Start job ``job`` (sequence number ``seq``, of task ``task_index``) at ``t_ns``."""

    t_ns: TimeNs
    seq: int
    job: str
    task_index: int
    rationale: Rationale
    chunk: int = 0
    """Which non-preemptive chunk of the job starts (lp-edf); 0 for a whole job."""
    k: int = 0
    """The job's index within its task (job ``<task>#<k>``)."""
    after: int = -1
    """Decided ahead: the seq of the running job this one is chained behind (it starts when
    that job ends, docs/THEORY.md §ahead); -1: it starts now."""


class Scheduler:
    """Turns releases into jobs and picks the next job through a :class:`Policy`."""

    def __init__(
        self,
        tasks: Sequence[Task],
        policy: Policy,
        *,
        rejected: Iterable[int] = (),
        budgets: Sequence[TaskBudget] = (),
        lag_bound_ns: TimeNs | None = None,
        retain: bool = True,
        ahead: AheadMode = AheadMode.OFF,
        start_allowance_ns: TimeNs = 0,
    ) -> None:
        """``rejected``: task indices whose jobs are recorded as REJECTED and never run;
        ``budgets``: per task, its time budget and chunk chain (default: decided from the
        tasks under ``policy``); ``lag_bound_ns``: the release lag the analysis charged (a
        release handed over later writes an ``assumption`` record; None: not checked);
        ``retain``: keep every job in :attr:`jobs` (False: a job leaves the scheduler once
        :meth:`settled` handed it over, so a run's memory does not grow with its length);
        ``ahead``: whether the next decision may be taken while a job runs
        (:meth:`schedule_ahead`; only under a policy that ``decides_ahead``), and
        ``start_allowance_ns`` how late after its decision instant a job dispatched at once
        may start (:func:`~aegis_core.run.ahead.chain_allowance`)."""
        self.tasks = tuple(tasks)
        self.policy = policy
        self.records: list[Record] = []
        """The records of the decisions since the last :meth:`drain`, in order."""
        self.rejected = frozenset(rejected)
        budgets = tuple(budgets) or tuple(
            task_budget(t, i, policy) for i, t in enumerate(self.tasks)
        )
        self._chunks = [len(b.chunks_ns) for b in budgets]
        self.jobs: list[Job] = []
        """Every job released, by seq (only when ``retain``)."""
        self.released = 0
        """Jobs released so far (the next job's seq)."""
        self.missed = 0
        """Jobs flagged missed so far."""
        self.announced = 0
        """Release records made so far (every job released but the rejected and those a
        ``skip-next`` dropped at their release)."""
        self._retain = retain
        self._live: dict[int, Job] = {}  # released and not yet handed over by settled()
        self.ended: list[Job] = []
        """Jobs that reached a terminal status since the last :meth:`settled` (the loop looks
        at it before asking)."""
        self._ready: list[ReadyEntry] = []
        self._deadlines: list[tuple[TimeNs, int]] = []
        self._key = policy.keyfunc()
        uses_priority = "priority" in policy.key_fields
        self._priorities = fp_priorities(self.tasks) if uses_priority else [None] * len(self.tasks)
        self.contexts = [ExecutionContext(i, b.name, b) for i, b in enumerate(budgets)]
        self._overran = [c.budget.overran for c in self.contexts]  # what over_budget asks
        self._skip_next: dict[int, int] = {}  # per task: how many next releases to drop
        self.lag_bound_ns = lag_bound_ns
        self.ahead = resolve(ahead, policy)
        """How this run decides ahead (OFF: never; the loop asks :meth:`schedule_ahead`
        only otherwise)."""
        self._on = self.ahead is not AheadMode.OFF
        self._sporadic = self.ahead is AheadMode.SPORADIC  # (else the engine's next too)
        self._allowance = start_allowance_ns
        self._chunk_wcet = [b.chunks_ns for b in budgets]
        self._skips = [b.on_overrun == "skip-next" for b in budgets]
        self._horizon = Horizon(self.tasks, self.rejected)
        self._running: Job | None = None  # the job holding the slot (ahead mode)
        self._latest_end: TimeNs = 0  # its running chunk's latest end, within its budget
        self._chained: Chained | None = None  # decided ahead, not in effect yet
        self._effected: Chained | None = None  # took effect in this step, record to make
        self._edits = 0  # ready-set removals other than picks (a chained snapshot is stale)
        self._watched: list[Chained] = []  # in effect: releases still checked against
        self._watch_ns = lag_bound_ns or 0  # how long after its effect a window is watched
        self.decided_ahead = 0
        """Decisions taken ahead (in effect) so far."""
        self.dispatched = 0
        """Dispatch decisions in effect so far (at once or ahead)."""

    # -- events in -------------------------------------------------------------------------

    def step(self, events: Iterable[EngineEvent], now: TimeNs) -> None:
        """Take every event of the instant ``now`` (in order), then flag the deadline misses."""
        if self._watched:
            self._unwatch(now)
        for ev in events:
            kind = type(ev)
            if kind is Completion:
                self._complete(ev)  # type: ignore[arg-type]
            elif kind is Release:
                if ev.t_ns == now:  # handed over on time
                    self.release(ev.task_index, ev.k, now)  # type: ignore[union-attr]
                else:
                    self._release(ev, now)  # type: ignore[arg-type]
            else:
                self.handle(ev, now)
        dl = self._deadlines
        if dl and dl[0][0] <= now:
            self.on_time(now)
        if self._effected is not None:
            self._flush_effect()

    def handle(self, ev: EngineEvent, now: TimeNs) -> None:
        """Take one engine event at time ``now``."""
        if type(ev) is Completion:
            self._complete(ev)
        elif type(ev) is Release:
            self._release(ev, now)
        elif type(ev) is Fault:
            self._fail(ev.seq, ev.error, ev.t_ns)
        elif type(ev) is Assumption:
            self._broken(ev.seq, ev.what, ev.observed_ns, ev.bound_ns, ev.t_ns)
        else:
            raise TypeError(f"not an engine event: {ev!r}")

    def _release(self, ev: Release, now: TimeNs) -> None:
        job = self.release(ev.task_index, ev.k, ev.t_ns)
        lag = job.lag_ns = now - ev.t_ns
        bound = self.lag_bound_ns
        if bound is not None and lag > bound and job.status is JobStatus.READY:
            self._broken(job.seq, Overhead.RELEASE_LAG, lag, bound, now)

    def _broken(self, seq: int, what: str, observed: TimeNs, bound: TimeNs, now: TimeNs) -> None:
        """The host broke an overhead bound the analysis assumed: an ``assumption`` record."""
        job = self._live[seq]
        job.broken = (*job.broken, what)
        self.records.append(AssumptionRecord(now, seq, job.id, job.task, what, observed, bound))

    def release(self, task_index: int, k: int, now: TimeNs) -> Job:
        """Release job ``k`` of task ``task_index`` at ``now`` (its planned release time)."""
        task = self.tasks[task_index]
        seq = self.released
        self.released = seq + 1
        prio = self._priorities[task_index]
        job = Job(seq, task.name, task_index, k, now, now + task.deadline_ns, prio)
        self._live[seq] = job
        if self._on:
            self._horizon.released(task_index, now)
        if self._retain:
            self.jobs.append(job)
        if task_index in self.rejected:
            job.status = JobStatus.REJECTED  # not admitted: recorded, never run
            self.ended.append(job)
            return job
        if self._skip_next.get(task_index):
            self._skip_next[task_index] -= 1
            job.status = JobStatus.SKIPPED
            self.ended.append(job)
            self.contexts[task_index].skipped += 1
            self.records.append(SkipRecord(
                now, seq, job.id, task.name, "skip-next: the task's previous job overran its WCET"
            ))  # fmt: skip
            return job
        job.n_chunks = self._chunks[task_index]
        key = self._key((job.deadline_ns, now, seq, 0 if prio is None else prio))
        self.announced += 1
        self.records.append(  # the hot records skip the NamedTuple constructor's Python frame
            _new(ReleaseRecord, (now, seq, job.id, task.name, job.deadline_ns, now, prio, -1))
        )
        entry = _new(ReadyEntry, (key, seq, job.id, task.name, now, job.deadline_ns, prio))
        if job.n_chunks > 1:
            job.entry = entry
        heappush(self._ready, entry)
        heappush(self._deadlines, (job.deadline_ns, seq))
        if self._chained is not None or self._effected is not None or self._watched:
            self._interloper(entry)
        return job

    def _complete(self, ev: Completion) -> None:
        """A job or chunk ended at ``ev.t_ns`` (the engine's best knowledge of the instant)."""
        now, job = ev.t_ns, self._live[ev.seq]
        if self._effected is not None and self._effected.job is job:
            self._effected.ran = True  # it ran and ended within the step it started in
        began = ev.started_ns
        if began is not None:
            if job.chunk == 0:
                job.start_ns = began
            job.chunk_start_ns = began
        ran = now - job.chunk_start_ns
        job.run_ns += ran
        if job.n_chunks > 1:
            self._chunk_overrun(job, ran, now)
        if job.chunk + 1 < job.n_chunks:  # a chunk boundary: the job competes again
            job.chunk += 1
            job.status = JobStatus.READY
            assert job.entry is not None
            chained = self._chained
            if chained is None or chained.after != job.seq:  # (else: in the set since then)
                heappush(self._ready, job.entry)
            self.records.append(
                ChunkRecord(now, job.seq, job.id, job.task, job.chunk, job.n_chunks, job.run_ns)
            )
            self._ended(job.seq, now)
            return
        if now > job.deadline_ns and not job.missed:  # ended past a deadline no timer saw
            c = self._effected  # pass (a wall-clock engine handed both over at once)
            waited = c is not None and c.job is job and c.effect_ns is not None \
                and job.deadline_ns <= c.effect_ns  # (missed before its effect)  # fmt: skip
            self._miss(job, "ready" if waited else "running")
        job.status = JobStatus.COMPLETED
        job.end_ns = now
        self.ended.append(job)
        start = job.start_ns if job.start_ns is not None else now
        self.records.append(_new(CompleteRecord, (
            now, job.seq, job.id, job.task, start, now, now - job.release_ns, job.deadline_ns,
            job.missed, -1,
        )))  # fmt: skip
        if self._overran[job.task_index](job.run_ns):  # its context's budget rule
            self._overrun(job, now)
        self._ended(job.seq, now)

    def _chunk_overrun(self, job: Job, ran: TimeNs, now: TimeNs) -> None:
        """An lp-edf chunk that ran past its own chunk WCET breaks the blocking the analysis
        charged (even when the job as a whole keeps its WCET): an ``overrun`` record with
        action ``chunk``, and the job counts as overran (nothing is skipped for it)."""
        budget = self.contexts[job.task_index].budget.chunks_ns[job.chunk]
        if ran > budget:
            job.overrun = True
            self.records.append(OverrunRecord(now, job.seq, job.id, job.task, ran, budget,
                                              CHUNK_OVERRUN))  # fmt: skip

    def _overrun(self, job: Job, now: TimeNs) -> None:
        """The job ran past its context's time budget (the WCET): an ``overrun`` record; under
        ``skip-next`` the task's next job is dropped (one already waiting, else the next
        release) so that the time it would take goes to the other tasks."""
        job.overrun = True
        ctx = self.contexts[job.task_index]
        ctx.overruns += 1
        self.records.append(OverrunRecord(
            now, job.seq, job.id, job.task, job.run_ns, ctx.budget.time_budget_ns,
            ctx.budget.on_overrun,
        ))  # fmt: skip
        if ctx.budget.on_overrun != "skip-next":
            return
        live = self._live
        waiting = [e for e in self._ready if live[e.seq].task_index == job.task_index
                   and live[e.seq].chunk == 0]  # fmt: skip
        if not waiting:  # one drop per overrun, even when overruns stack up (unscheduled)
            self._skip_next[job.task_index] = self._skip_next.get(job.task_index, 0) + 1
            return
        entry = min(waiting)
        self._ready.remove(entry)
        heapify(self._ready)
        self._edits += 1
        skipped = live[entry.seq]
        skipped.status = JobStatus.SKIPPED
        self.ended.append(skipped)
        ctx.skipped += 1
        self.records.append(SkipRecord(
            now, skipped.seq, skipped.id, skipped.task, f"skip-next: {job.id} overran its WCET"
        ))  # fmt: skip

    def _fail(self, seq: int, error: str, now: TimeNs) -> None:
        job = self._live[seq]
        if self._effected is not None and self._effected.job is job:
            self._effected.ran = True
        self.contexts[job.task_index].faults += 1
        job.status = JobStatus.FAILED
        self.ended.append(job)
        job.end_ns = now
        job.error = error
        self.records.append(FaultRecord(now, seq, job.id, job.task, error))
        self._ended(seq, now, failed=True)

    # -- time ------------------------------------------------------------------------------

    def next_timer(self) -> TimeNs | None:
        """The next instant the scheduler must be woken at (the earliest pending deadline)."""
        dl, live, done = self._deadlines, self._live, JobStatus.COMPLETED
        while dl:
            job = live.get(dl[0][1])
            if job is not None and job.status < done and not job.missed:
                return dl[0][0]
            heappop(dl)
        return None

    def on_time(self, now: TimeNs) -> None:
        """Flag every unfinished job whose deadline is ``<= now`` as missed (call after events)."""
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, seq = heappop(dl)
            job = self._live.get(seq)
            if job is not None and job.status < JobStatus.COMPLETED and not job.missed:
                self._miss(job, "ready" if job.status is JobStatus.READY else "running")

    def _miss(self, job: Job, state: str) -> None:
        """Flag ``job`` missed: a ``miss`` record at the instant its deadline passed (a wall
        clock wakes, or hands a completion over, later)."""
        job.missed = True
        self.missed += 1
        self.records.append(MissRecord(
            job.deadline_ns, job.seq, job.id, job.task, job.release_ns, job.deadline_ns, state
        ))  # fmt: skip

    # -- decisions out ---------------------------------------------------------------------

    def schedule(self, now: TimeNs) -> Dispatch | None:
        """Pick the ready job with the smallest policy key, or None when nothing is ready."""
        ready = self._ready
        if not ready:
            return None
        snapshot = tuple(ready)
        entry = heappop(ready)
        job = self._live[entry.seq]
        job.status = JobStatus.RUNNING
        job.chunk_start_ns = now
        if job.start_ns is None:
            job.start_ns = now
        policy = self.policy
        rule, key_fields = policy.rule, policy.key_fields
        self.records.append(_new(DispatchRecord, (
            now, entry.seq, entry.job, entry.task, job.chunk, rule, key_fields, snapshot, -1, 0
        )))  # fmt: skip
        self.dispatched += 1
        if self._on:
            self._running = job
            self._latest_end = now + self._allowance + self._chunk_wcet[job.task_index][job.chunk]
        return _new(Dispatch, (
            now, entry.seq, entry.job, job.task_index,
            _new(Rationale, (rule, key_fields, snapshot)), job.chunk, job.k, -1,
        ))  # fmt: skip

    def schedule_ahead(self, now: TimeNs, next_release_ns: TimeNs | None = None) -> Dispatch | None:
        """The decision the policy will take when the running job's chunk ends, taken now,
        or None when it cannot be known yet (docs/THEORY.md §ahead): nothing runs, a
        decision is already chained, nothing will be ready, or a job may be released
        before the running chunk's latest end. ``next_release_ns``: the engine's next
        planned release (None: none left), used under :attr:`AheadMode.PLANNED`.

        The pick is the one :meth:`schedule` would make at that end (the running job's next
        chunk, lp-edf, competing as it would then); its dispatch record is made when it takes
        effect, with the ready set of that instant (:meth:`_effect`). A job of the running
        job's own task is not chained under ``skip-next``: an overrun would drop it."""
        run = self._running
        if run is None or self._chained is not None:
            return None
        end = self._latest_end
        if now >= end:  # past its latest end (it overran, or started late): it may end at any
            end = NEVER  # time, so only a pick no job to come can rank before will do
        floor = 0  # no release before: the planned next one (PLANNED), else the rule alone
        if not self._sporadic:
            floor = NEVER if next_release_ns is None else next_release_ns
        clear = max(floor, self._horizon.bound()) > end  # no release at all before its end
        ready = self._ready
        cont = run.entry if run.chunk + 1 < run.n_chunks else None  # its next chunk
        if cont is None and not ready:
            return None
        best = ready[0] if ready and (cont is None or ready[0] < cont) else cont
        assert best is not None
        if not clear and not self._unbeatable(best, end, floor):
            return None
        if best is not cont and self._skips[run.task_index] \
                and self._live[best.seq].task_index == run.task_index:  # fmt: skip
            return None  # should the running job overrun, skip-next drops this very one
        if cont is not None:  # it competes as it would at its boundary
            heappush(ready, cont)
        snapshot = tuple(ready)
        entry = heappop(ready)
        job = self._live[entry.seq]
        chunk = run.chunk + 1 if job is run else job.chunk
        self._chained = Chained(entry, job, run.seq, now, end, snapshot, chunk, self._edits)
        policy = self.policy
        return _new(Dispatch, (
            now, entry.seq, entry.job, job.task_index,
            _new(Rationale, (policy.rule, policy.key_fields, snapshot)), chunk, job.k, run.seq,
        ))  # fmt: skip

    def _unbeatable(self, best: ReadyEntry, end: TimeNs, floor: TimeNs) -> bool:
        """No job released before ``end`` can rank before ``best``: a task whose next release
        may come by then (no earlier than its sporadic bound and ``floor``) has, at its
        earliest, a key above ``best``'s (the keys of a policy that decides ahead never fall
        with a later release: its deadline, release and seq only grow)."""
        key, tasks, prio, seq = self._key, self.tasks, self._priorities, self.released
        for i, earliest in enumerate(self._horizon.earliest):
            e = max(earliest, floor)
            if e <= end:
                p = prio[i]
                if key((e + tasks[i].deadline_ns, e, seq, 0 if p is None else p)) < best.key:
                    return False
        return True

    def _ended(self, seq: int, now: TimeNs, failed: bool = False) -> None:
        """Job ``seq``'s chunk ended at ``now`` (``failed``: the job faulted): the decision
        chained behind it takes effect, or the slot is free."""
        if not self._on:
            return
        c = self._chained
        if c is None or c.after != seq:
            if self._running is not None and self._running.seq == seq:
                self._running = None
            return
        if failed:
            if c.job.seq == seq:  # its own next chunk was chained: it never runs
                self._chained = self._running = None
                return
            self._drop_entry(seq)  # its next chunk, back in the ready set ahead of time
        self._effect(c, now)

    def _drop_entry(self, seq: int) -> None:
        entry = self._live[seq].entry
        if entry is not None and entry in self._ready:
            self._ready.remove(entry)
            heapify(self._ready)
            self._edits += 1

    def _effect(self, c: Chained, now: TimeNs) -> None:
        """A decision taken ahead takes effect at ``now``, the end of the chunk it was
        chained behind: the job starts here. Its dispatch record is made at the end of the
        step (:meth:`_flush_effect`), where the policy's own decision would have been."""
        job = c.job
        now = max(now, c.decided_ns)  # (ended by the decision, unseen: it starts at it)
        c.effect_ns = now
        c.mark = len(self.records)
        self._chained, self._effected = None, c
        job.chunk_start_ns = now
        if job.start_ns is None:
            job.start_ns = now
        self.decided_ahead += now > c.decided_ns  # (else a decision at the free slot's instant)
        self.dispatched += 1
        self._running = job
        self._latest_end = now + self._chunk_wcet[job.task_index][job.chunk]  # starts here

    def _flush_effect(self) -> None:
        """The dispatch record of the decision that took effect in this step, after every
        record stamped at or before its instant (misses at it, releases that fell before
        it) and before any later one or the job's own end; the ready set is that
        instant's."""
        c, self._effected = self._effected, None
        assert c is not None and c.effect_ns is not None
        t, entry, job = c.effect_ns, c.entry, c.job
        interloped = c.first_release_ns <= t  # jobs released in between: in the ready set
        ready = c.snapshot if not interloped and c.edits == self._edits else (
            entry, *(e for e in self._ready
                     if e.release_ns <= t and e.seq != entry.seq))  # fmt: skip
        policy = self.policy
        rec = _new(DispatchRecord, (
            t, entry.seq, entry.job, entry.task, c.chunk, policy.rule, policy.key_fields, ready,
            -1, t - c.decided_ns,
        ))  # fmt: skip
        # every record of the step stamped at or before the effect (misses, releases that
        # fell before it: a wall-clock host hands ends over first, then releases) comes
        # before it, but the job's own (its end, should it have ended in this step too)
        records, mark, seq = self.records, c.mark, entry.seq
        before: list[Record] = []
        after: list[Record] = []
        for r in records[mark:]:
            own = getattr(r, "seq", -1) == seq and type(r) is not MissRecord
            (before if r.t_ns <= t and not own else after).append(r)
        records[mark:] = [*before, rec, *after]
        if job.status is JobStatus.READY and not c.ran:
            job.status = JobStatus.RUNNING
        if c.beaten_ns <= t:  # one of them ranks before the job decided: not the policy's
            self._break(c)
        elif self._watch_ns:  # a release may still be handed over late into its window
            self._watched.append(c)

    def _interloper(self, entry: ReadyEntry) -> None:
        """A job entered the ready set (its ``entry``): does it fall between an ahead
        decision and its effect, ranked before the job decided?"""
        if self._chained is not None:
            self._chained.interloper(entry)
        if self._effected is not None:  # (its record not made yet: any job handed over)
            self._effected.interloper(entry, pending=True)
        for w in self._watched:
            if not w.broken and w.interloper(entry):
                self._break(w)

    def _break(self, c: Chained) -> None:
        """A release fell between decision ``c`` and its effect (the job it was chained
        behind ended past the bound assumed): an ``assumption`` record for the chained job."""
        c.broken = True
        assert c.effect_ns is not None
        job = c.job
        if job.seq in self._live:
            job.broken = (*job.broken, AHEAD_BROKEN)
        self.records.append(AssumptionRecord(
            c.effect_ns, job.seq, job.id, job.task, AHEAD_BROKEN, c.effect_ns - c.decided_ns,
            min(c.bound_ns, c.effect_ns) - c.decided_ns,  # (NEVER: no end was assumed)
        ))  # fmt: skip

    def _unwatch(self, now: TimeNs) -> None:
        """Stop checking releases against windows no late release can fall in any more (a
        release is handed over at most the charged release lag late: one later than that has
        its own ``release-lag`` assumption record)."""
        keep = self._watch_ns
        self._watched = [w for w in self._watched
                         if not w.broken and w.effect_ns is not None
                         and w.effect_ns + keep >= now]  # fmt: skip

    def settled(self) -> list[Job]:
        """The jobs that reached a terminal status (completed, failed, skipped, rejected)
        since the last call, in that order; they leave the scheduler (the loop hands them to
        the run's job sink after each instant: no later event names them)."""
        out = self.ended
        if not out:
            return []
        self.ended = []
        live = self._live
        for j in out:
            live.pop(j.seq, None)
        return out

    def drain(self) -> list[Record]:
        """The records of the decisions taken since the last call, in order (the loop hands
        them to its trace sink after each instant)."""
        out = self.records[:]
        self.records.clear()
        return out

    @classmethod
    def for_plan(cls, plan: RunPlan, *, retain: bool = True) -> Scheduler:
        """The scheduler a run plan asks for (its policy, rejections and chunking)."""
        return cls(
            plan.scenario.tasks,
            plan.policy,
            rejected=plan.rejected,
            budgets=plan.budgets,
            lag_bound_ns=plan.overheads.release_lag_ns if plan.overheads is not None else None,
            retain=retain,
            ahead=plan.dispatch_ahead,
            start_allowance_ns=plan.start_allowance_ns,
        )

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def pending(self) -> list[Job]:
        """Jobs that are released but not finished (ready or running)."""
        return [j for j in self._live.values() if j.status < JobStatus.COMPLETED]
