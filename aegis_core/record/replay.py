"""One replay of a record stream: the state of the run after each record.

:class:`Replay` walks records in order (:meth:`Replay.apply`) and keeps what every consumer of
a trace needs: per job its release, ready entry, runs on the device (one per dispatch: a whole
job or one lp-edf chunk), status, start, end and its miss / overrun / skip / fault records; the
ready set, the running set, the admission records and the task order. ``aegis explain``
(verification and a job's story), the Perfetto export and the invariant checker of
:mod:`~aegis_core.run.testing` read it instead of keeping their own state machines.

It trusts nothing: a record about an unknown job, an end of a job that is not running, a
dispatch of a job that is not ready are taken as they come (the checkers compare the state
*before* a record with what the record claims).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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

    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        """Every job a record names, by job id, in order of its first record."""
        self.ready: dict[str, JobState] = {}
        """Released (or back at a chunk boundary) and not dispatched, in that order."""
        self.running: dict[str, Run] = {}
        """The open runs, in dispatch order."""
        self.runs: list[Run] = []
        """The finished runs, in the order they ended."""
        self.admissions: list[AdmissionRecord] = []
        self.tasks: dict[str, None] = {}
        """Task names in order of their first admission or release record."""
        self.dispatches = 0

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
        assert not isinstance(r, AdmissionRecord)  # for mypy: r is a job record
        job = r.job
        js = self.jobs.get(job)
        if js is None:
            js = self.jobs[job] = JobState(job, r.task, r.seq)
        js.records.append(r)
        if type(r) is ReleaseRecord:
            js.release = r
            js.blockers = tuple(self.running.values())
            self.ready[job] = js
            self.tasks.setdefault(r.task)
        elif type(r) is DispatchRecord:
            self.dispatches += 1
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

    def _close(self, job: str, t_ns: TimeNs, end: Kind, started_ns: TimeNs | None = None) -> None:
        run = self.running.pop(job, None)
        if run is None:
            return
        if started_ns is not None and run.chunk == 0:  # the device start the engine reported
            run.start_ns = min(max(started_ns, run.start_ns), t_ns)
        run.end_ns = max(t_ns, run.start_ns)
        run.end = end
        self.runs.append(run)
