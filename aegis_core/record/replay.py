"""One replay of a record stream: the state of the run after each record.

:class:`Replay` walks records in order (:meth:`Replay.apply`) and keeps what every consumer of
a trace needs: per job its release, ready entry, runs on the device (one per dispatch: a whole
job or one lp-edf chunk), status, start, end and its miss / overrun / skip / fault records; the
ready set, the running set, the admission records and the task order. ``aegis explain``
(verification and a job's story), the Perfetto export and the invariant checker of
:mod:`~aegis_core.run.testing` read it instead of keeping their own state machines.

It trusts nothing: a record about an unknown job, an end of a job that is not running, a
dispatch of a job that is not ready are taken as they come (the checkers compare the state
*before* a record with what the record claims). A record of a kind it does not know (one
without a ``job``, e.g. a newer schema's) is ignored.

By default it keeps everything (every job, every finished run). ``Replay(retain=False)`` is
the streaming mode, for a consumer that reads the run as it goes (the Perfetto writer): its
memory is O(tasks + jobs in flight). Finished runs are handed to ``on_run`` instead of being
kept in :attr:`Replay.runs`, and a job's state is forgotten once nothing that matters can
follow: when it is *done* (completed, failed or skipped, or a job it never saw released that
is neither ready nor running), it stays through the rest of that instant (an ``overrun`` comes
right after its ``complete``, at the same ``t_ns``) and is dropped when a later record moves
time on. A record about a forgotten job gets a fresh state, which is itself done and dropped
the same way (a ``miss`` comes before the ``complete`` of a running job, never after it).
The streaming mode keeps no per-job history either: a job's ``records``, ``blockers`` and
``contests`` stay empty (what explaining one job needs; a whole trace is replayed for that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegis_core.model.status import JobStatus
from aegis_core.model.types import TimeNs
from aegis_core.record.schema import (
    AdmissionRecord,
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    Entry,
    FaultRecord,
    JobRecord,
    Kind,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
    decode_all,
)

_READY, _RUNNING, _DONE = JobStatus.READY, JobStatus.RUNNING, JobStatus.COMPLETED
_CHUNK, _COMPLETE, _FAULT = Kind.CHUNK, Kind.COMPLETE, Kind.FAULT


@dataclass(eq=False, slots=True)
class Run:
    """One dispatch on the device, until the record that ended it (complete, chunk, fault)."""

    job: str
    task: str
    chunk: int
    """The chunk dispatched (0 for a whole job or its first chunk)."""
    dispatched_ns: TimeNs
    start_ns: TimeNs
    """When it started: the dispatch, or for a whole job the device start its completion
    reports (clamped between the dispatch and the end)."""
    end_ns: TimeNs | None = None
    end: Kind | None = None
    """``complete``, ``chunk`` or ``fault``; None while it runs."""

    @property
    def whole(self) -> bool:
        """A whole job's run (not one of several chunks)."""
        return self.chunk == 0 and self.end is not Kind.CHUNK


@dataclass(eq=False, slots=True)
class JobState:
    job: str
    task: str
    seq: int
    release: ReleaseRecord | None = None
    status: JobStatus = JobStatus.READY
    records: list[JobRecord] = field(default_factory=list)
    """Every record about the job, in order."""
    runs: list[Run] = field(default_factory=list)
    contests: list[DispatchRecord] = field(default_factory=list)
    """Every dispatch whose ready set listed the job while it was unfinished."""
    blockers: tuple[Run, ...] = ()
    """The runs holding the device when it was released."""
    start_ns: TimeNs | None = None
    end_ns: TimeNs | None = None
    complete: CompleteRecord | None = None
    miss: MissRecord | None = None
    overrun: OverrunRecord | None = None
    skip: SkipRecord | None = None
    fault: FaultRecord | None = None

    @property
    def entry(self) -> Entry | None:
        """The ready-set entry its release makes (what a dispatch must list for it)."""
        return None if self.release is None else self.release.entry


class Replay:
    """The state of a run, record by record (see the module docstring)."""

    def __init__(self, *, retain: bool = True, on_run: Callable[[Run], None] | None = None) -> None:
        self.retain = retain
        """False: the streaming mode (see the module docstring)."""
        self.on_run = on_run
        """Called with each run as it ends (in both modes), while its job's state is kept."""
        self.jobs: dict[str, JobState] = {}
        """Every job a record names, by job id, in order of its first record (streaming: the
        jobs not yet forgotten)."""
        self.ready: dict[str, JobState] = {}
        """Released (or back at a chunk boundary) and not dispatched, in that order."""
        self.running: dict[str, Run] = {}
        """The open runs, in dispatch order."""
        self.runs: list[Run] = []
        """The finished runs, in the order they ended (streaming: always empty)."""
        self.admissions: list[AdmissionRecord] = []
        self.tasks: dict[str, None] = {}
        """Task names in order of their first admission or release record."""
        self.dispatches = 0
        self._clock: TimeNs = -(2**63)  # streaming: the latest t_ns seen
        self._done: list[JobState] = []  # streaming: jobs to forget once time moves on

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any] | Record]) -> Replay:
        """The state after every record (parsed objects are decoded first)."""
        rp = cls()
        for r in decode_all(records):
            rp.apply(r)
        return rp

    @property
    def policy(self) -> str | None:
        """The policy the (first) admission record names."""
        return self.admissions[0].policy if self.admissions else None

    def admission(self, task: str) -> AdmissionRecord | None:
        return next((r for r in self.admissions if r.task == task), None)

    def apply(self, r: Record) -> None:
        """Take the next record."""
        if type(r) is AdmissionRecord:  # exact types (a kind is one class): a hot loop
            self.admissions.append(r)
            self.tasks.setdefault(r.task)
            return
        if TYPE_CHECKING:  # r is a job record (no run-time check: a hot loop)
            assert not isinstance(r, AdmissionRecord)
        try:
            job = r.job
        except AttributeError:  # a kind this replay does not know (no job): nothing to track
            return
        if not self.retain and r.t_ns > self._clock:
            self._advance(r.t_ns)
        js = self.jobs.get(job)
        if js is None:
            js = self.jobs[job] = JobState(job, r.task, r.seq)
        full = self.retain  # streaming: no per-job history (records, blockers, contests)
        if full:
            js.records.append(r)
        if type(r) is ReleaseRecord:
            js.release = r
            if full:
                js.blockers = tuple(self.running.values())
            self.ready[job] = js
            self.tasks.setdefault(r.task)
        elif type(r) is DispatchRecord:
            self.dispatches += 1
            if full:
                jobs = self.jobs
                for e in r.ready:
                    other = jobs.get(e.job)
                    if other is not None and other.status < _DONE:
                        other.contests.append(r)
            self.ready.pop(job, None)
            run = Run(job, r.task, r.chunk, r.t_ns, r.t_ns)
            self.running[job] = run
            js.runs.append(run)
            js.status = _RUNNING
            if js.start_ns is None:
                js.start_ns = r.t_ns
        elif type(r) is CompleteRecord:
            self._close(job, r.t_ns, _COMPLETE, r.start_ns)
            self.ready.pop(job, None)
            js.complete = r
            js.status = _DONE
            js.end_ns = r.end_ns
        elif isinstance(r, ChunkRecord):
            self._close(job, r.t_ns, _CHUNK)
            if js.release is not None:
                self.ready[job] = js
            js.status = _READY
        elif isinstance(r, FaultRecord):
            self._close(job, r.t_ns, _FAULT)
            self.ready.pop(job, None)
            js.fault = r
            js.status = JobStatus.FAILED
            js.end_ns = r.t_ns
        elif isinstance(r, SkipRecord):
            self.ready.pop(job, None)
            js.skip = r
            js.status = JobStatus.SKIPPED
        elif isinstance(r, MissRecord):
            js.miss = r
        elif isinstance(r, OverrunRecord):
            js.overrun = r
        if not self.retain and (js.status >= _DONE or (js.release is None and self._finished(js))):
            self._done.append(js)

    def _finished(self, js: JobState) -> bool:
        """Nothing that matters can follow (streaming): the job ended, or it was never seen
        released and is neither ready nor running."""
        if js.status >= _DONE:
            return True
        return js.release is None and js.job not in self.running and js.job not in self.ready

    def _advance(self, t_ns: TimeNs) -> None:
        """Streaming: time moved on to ``t_ns``; forget the jobs done before (those unfinished
        again by now, e.g. dispatched again, are kept)."""
        self._clock = t_ns
        if self._done:
            jobs = self.jobs
            for js in self._done:
                if jobs.get(js.job) is js and self._finished(js):
                    del jobs[js.job]
            self._done.clear()

    def _close(self, job: str, t_ns: TimeNs, end: Kind, started_ns: TimeNs | None = None) -> None:
        run = self.running.pop(job, None)
        if run is None:
            return
        if started_ns is not None and run.chunk == 0:  # the device start the engine reported
            run.start_ns = min(max(started_ns, run.start_ns), t_ns)
        run.end_ns = max(t_ns, run.start_ns)
        run.end = end
        if self.retain:
            self.runs.append(run)
        if self.on_run is not None:
            self.on_run(run)
