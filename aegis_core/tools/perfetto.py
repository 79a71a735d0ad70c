"""``trace.json``: the run in Chrome Trace Event format for Perfetto (docs/CONTRACTS.md §perfetto).

Built from the decision records alone, as the run goes: :class:`PerfettoTrace` is a trace
sink (:class:`~aegis_core.record.sinks.TraceSink`) that reads the records through one
streaming :class:`~aegis_core.record.replay.Replay` (``retain=False``) and writes each event
as soon as it is known, so its memory is O(tasks + jobs in flight + lanes), whatever the
horizon. :func:`export` / :func:`write` run the same writer over a finished list of records.

* process 1, **device**: one track per slot lane with an X slice per job (or lp-edf chunk);
  a run takes the lowest lane free at its dispatch (held until it ends), so slices on one
  track never overlap and a run of *n* slots uses at most *n* lanes;
* process 2, **tasks**: per task, an X slice per job from release to start (its wait, with a
  flow to the job's slice; first-fit on the task's wait tracks, none shared with another task)
  and instants for its release, deadline, miss, overrun, skip, fault and broken assumption
  (``assumption <job>: <figure>``, args: observed and bound);
* process 3, **scheduler**: every dispatch decision as an instant whose args hold the rule and
  the ready set; an instant per admission verdict; counters: ready-queue length (after each
  release, dispatch, chunk boundary and skip), and, when the run's memory plan is given, the
  activation bytes in use: a run's bytes count from its **dispatch** to its end (a run still
  open when the trace ends stays counted).

A track is named (``M`` events) when it first appears; events are written in record order,
not sorted by time. Times are µs (floats: ns precision kept). The file is one JSON object with
``displayTimeUnit`` and ``traceEvents``, valid once the sink is closed. Records of a kind the
writer does not know are ignored. Events are formatted by hand (a ready-set entry once per
job, reused by every dispatch that lists it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _q
from pathlib import Path
from typing import Any, TextIO

from aegis_core.model.errors import InputError
from aegis_core.model.types import TimeNs
from aegis_core.record.replay import Replay, Run
from aegis_core.record.schema import (
    AdmissionRecord,
    AssumptionRecord,
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    FaultRecord,
    Kind,
    MissRecord,
    OverrunRecord,
    ReadyLike,
    Record,
    ReleaseRecord,
    SkipRecord,
    TraceRecord,
    decode_all,
)
from aegis_core.record.sinks import close_text, write_text

DEVICE, TASKS, SCHED = 1, 2, 3
_BUSY = 2**63  # a lane's end while a run holds it
_CHUNK = Kind.CHUNK
_END = {k: str(k) for k in Kind}  # a run's end kind as text


def _us(ns: int) -> str:
    """A duration in µs (Perfetto truncates µs × 1000 to ns: at most 1 ns short)."""
    return repr(ns / 1000.0)


def _ts(ns: int) -> str:
    """A timestamp in µs, half a ns late so that Perfetto's truncation gives back exactly
    ``ns``: a slice that starts where the previous one ended never overlaps it. Written as
    the exact decimal (``ns`` / 1000, then a final 5): the value of ``(ns + 0.5) / 1000``."""
    if ns < 1000:
        return repr((ns + 0.5) / 1000.0)
    digits = str(ns)
    return f"{digits[:-3]}.{digits[-3:]}5"


class _Lanes:
    """First-fit lanes: a slice goes to the lowest lane whose last slice ended by its start."""

    def __init__(self) -> None:
        self.ends: list[int] = []

    def take(self, start: int, end: int) -> int:
        for i, e in enumerate(self.ends):
            if e <= start:
                self.ends[i] = end
                return i
        self.ends.append(end)
        return len(self.ends) - 1


def _meta(pid: int, tid: int, kind: str, name: str) -> str:
    return (f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"{kind}","args":{{"name":'
            f"{_q(name)}}}}}")  # fmt: skip


_HEAD = '{"displayTimeUnit":"ms","traceEvents":[' + ",".join(
    [
        _meta(DEVICE, 0, "process_name", "device"),
        _meta(TASKS, 0, "process_name", "tasks"),
        _meta(SCHED, 0, "process_name", "scheduler"),
        _meta(SCHED, 1, "thread_name", "dispatch decisions"),
        _meta(SCHED, 2, "thread_name", "admission"),
        _meta(DEVICE, 1, "thread_name", "slot 0"),
    ]
)
_TAIL = "]}"


def _value(v: Any) -> str:
    return _q(v) if isinstance(v, str) else json.dumps(v)


def _fields(cls: type) -> tuple[str, ...]:
    """The kind-specific fields of a job record (after ``t_ns, seq, job, task``)."""
    return tuple(f for f in cls._fields[4:] if f != "rec")  # type: ignore[attr-defined]


_Noted = MissRecord | OverrunRecord | SkipRecord | FaultRecord | AssumptionRecord
_INSTANT_FIELDS = {c: _fields(c) for c in (MissRecord, OverrunRecord, SkipRecord, FaultRecord,
                                           AssumptionRecord)}  # fmt: skip


class PerfettoTrace:
    """A trace sink writing ``trace.json`` incrementally (see the module docstring).

    ``memory``: activation bytes per task name (its planned arena), for the ``activations``
    counter; None or empty: no counter. Records go in through :meth:`write` (any chunks, in
    stream order); :meth:`close` ends the JSON document (also after an error: the file is
    then the valid trace of the run so far).
    """

    BLOCK = 2048
    """Events buffered before they are written to the stream."""
    TEXTS = 4096
    """Time and duration texts kept (each cache is emptied when it reaches this size)."""

    def __init__(
        self, stream: TextIO, memory: Mapping[str, int] | None = None, *, owns: bool = False
    ) -> None:
        self.stream = stream
        self._owns = owns
        self._memory = dict(memory) if memory else None
        self.replay = Replay(retain=False, on_run=self._run)
        """The streaming replay the events are read from."""
        self._apply = self.replay.apply
        self._queue = self.replay.ready  # (the replay never rebinds its dicts)
        self._jobs = self.replay.jobs
        self._out: list[str] = [_HEAD]
        self._device = _Lanes()
        self._device.ends.append(0)  # slot 0 exists (named in the head) even with no run
        self._lane_of: dict[str, int] = {}  # job -> device lane of its open run
        self._tid: dict[str, int] = {}  # task -> its first track in process 2
        self._waits: dict[str, _Lanes] = {}
        self._wait_tids: dict[str, list[int]] = {}
        self._next_tid = 1
        self._flow = 0
        self._live = 0  # activation bytes in use
        self._entries: dict[int, tuple[ReadyLike, str]] = {}  # seq -> (entry, its JSON)
        self._rule: tuple[str | None, tuple[str, ...], str] = (None, (), "")
        self._ts: dict[int, str] = {}  # ns -> its ts text (times recur: an instant's records,
        self._dur: dict[int, str] = {}  # a deadline that is a later release; WCETs recur)
        self._closed = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            ReleaseRecord: self._release,
            DispatchRecord: self._dispatch,
            ChunkRecord: self._chunk,
            CompleteRecord: self._complete,
            FaultRecord: self._fault,
            SkipRecord: self._skip,
            MissRecord: self._instant,
            OverrunRecord: self._instant,
            AssumptionRecord: self._instant,
            AdmissionRecord: self._admission,
        }

    @classmethod
    def open(cls, path: str | Path, memory: Mapping[str, int] | None = None) -> PerfettoTrace:
        """``trace.json`` at ``path``, written as the run goes."""
        return cls(open(path, "w", encoding="ascii"), memory, owns=True)

    # -- the sink --------------------------------------------------------------------------

    def write(self, records: Sequence[TraceRecord]) -> None:
        handlers, step = self._handlers, self.BLOCK
        for i in range(0, len(records), step):  # a long list: written block by block
            for r in records[i : i + step] if len(records) > step else records:
                h = handlers.get(type(r))
                if h is not None:  # an unknown kind (e.g. a newer schema's) is ignored
                    h(r)
            if len(self._out) >= step:
                self._drain()

    def flush(self) -> None:
        """End of an instant: hand full blocks of events to the stream."""
        if len(self._out) >= self.BLOCK:
            self._drain()

    def close(self) -> None:
        """End the document (once) and write what is pending."""
        if not self._closed:
            self._closed = True
            self._out.append(_TAIL)
            self._drain()
        if self._owns:
            close_text(self.stream)

    def state_size(self) -> int:
        """How many items the writer holds (its replay's and its own): O(tasks + jobs in
        flight + lanes), whatever the horizon."""
        rp = self.replay
        lanes = sum(len(w.ends) for w in self._waits.values()) + len(self._device.ends)
        return (len(rp.jobs) + len(rp.ready) + len(rp.running) + len(rp.runs) + len(rp._done)
                + len(self._lane_of) + len(self._entries) + len(self._tid) + lanes
                + len(self._out))  # fmt: skip

    def _drain(self) -> None:
        text = "".join(self._out)
        self._out.clear()
        write_text(self.stream, text)

    # -- helpers ---------------------------------------------------------------------------

    def _at(self, t: TimeNs) -> str:
        """The ``ts`` text of ``t`` (kept: times recur), the cache bounded."""
        return self._keep(self._ts, t, _ts(t))

    def _span(self, d: TimeNs) -> str:
        """The ``dur`` text of ``d`` (kept, as :meth:`_at`)."""
        return self._keep(self._dur, d, _us(d))

    def _keep(self, texts: dict[int, str], key: int, text: str) -> str:
        if len(texts) >= self.TEXTS:  # each cache emptied when full: bounded memory
            texts.clear()
        texts[key] = text
        return text

    def _task(self, task: str) -> int:
        """A task's first track (made, and named, when the task first appears)."""
        tid = self._tid.get(task)
        if tid is None:
            tid = self._tid[task] = self._new_track(task)
            self._waits[task] = _Lanes()
            self._wait_tids[task] = [tid]
        return tid

    def _new_track(self, name: str) -> int:
        tid = self._next_tid
        self._next_tid += 1
        self._out.append("," + _meta(TASKS, tid, "thread_name", name))
        return tid

    def _slot(self, start: TimeNs, end: TimeNs) -> int:
        """The lowest device lane free at ``start``, held until ``end`` (a new one named)."""
        lanes = self._device
        n = len(lanes.ends)
        lane = lanes.take(start, end)
        if len(lanes.ends) > n:
            self._out.append("," + _meta(DEVICE, lane + 1, "thread_name", f"slot {lane}"))
        return lane

    def _ready(self, t: TimeNs) -> None:
        ts = self._ts.get(t) or self._at(t)
        self._out.append(f',{{"ph":"C","pid":3,"tid":1,"ts":{ts},"name":"ready",'
                         f'"args":{{"jobs":{len(self._queue)}}}}}')  # fmt: skip

    def _bytes(self, t: TimeNs, delta: int) -> None:
        self._live += delta
        ts = self._ts.get(t) or self._at(t)
        self._out.append(f',{{"ph":"C","pid":1,"tid":0,"ts":{ts},"name":"activations",'
                         f'"args":{{"bytes":{self._live}}}}}')  # fmt: skip

    def _entry(self, e: ReadyLike, hit: tuple[ReadyLike, str] | None) -> str:
        """A ready entry's JSON (as the trace lists it), made once per job: ``hit`` is what
        is kept for its ``seq`` (an equal entry of a parsed trace reuses it too)."""
        if hit is not None and type(hit[0]) is type(e) and hit[0] == e:
            return hit[1]
        prio = "" if e.priority is None else f',"priority":{e.priority}'
        text = (f'{{"job":{_q(e.job)},"task":{_q(e.task)},"deadline_ns":{e.deadline_ns},'
                f'"release_ns":{e.release_ns},"seq":{e.seq}{prio}}}')  # fmt: skip
        self._entries[e.seq] = (e, text)
        return text

    # -- records ---------------------------------------------------------------------------

    def _admission(self, r: AdmissionRecord) -> None:
        self._apply(r)
        self._task(r.task)
        name = _q(f"{r.kind} {r.task}")
        args = json.dumps(dict(r.rationale), separators=(",", ":"))
        self._out.append(f',{{"ph":"i","s":"t","pid":3,"tid":2,"ts":0.0,"name":{name},'
                         f'"cat":"admission","args":{args}}}')  # fmt: skip

    def _release(self, r: ReleaseRecord) -> None:
        self._apply(r)
        t, _, job, task, deadline, release, _, _ = r
        tid = self._tid.get(task) or self._task(task)
        texts = self._ts
        ts = texts.get(t) or self._at(t)
        dts = texts.get(deadline) or self._at(deadline)
        q = _q(job)[1:]
        self._out.append(
            f',{{"ph":"i","s":"t","pid":2,"tid":{tid},"ts":{ts},"name":"release {q},'
            f'"cat":"release","args":{{"deadline_ns":{deadline},"release_ns":{release}}}}}'
            f',{{"ph":"i","s":"t","pid":2,"tid":{tid},"ts":{dts},"name":"deadline {q},'
            f'"cat":"deadline"}},{{"ph":"C","pid":3,"tid":1,"ts":{ts},"name":"ready","args":'
            f'{{"jobs":{len(self._queue)}}}}}'
        )  # fmt: skip

    def _dispatch(self, r: DispatchRecord) -> None:
        self._apply(r)
        t, _, job, task, _, rule, key, ready, _, ahead = r
        early = f'"decided_ahead_ns":{ahead},' if ahead else ""
        last = self._rule
        if rule != last[0] or key != last[1]:
            keys = ",".join(map(_q, key))
            last = self._rule = (rule, key, f'"rule":{_q(rule)},"key":[{keys}]')
        cached = self._entries.get
        entry = self._entry
        parts = ",".join([  # each entry formatted once, at the first dispatch that lists it
            h[1] if (h := cached(e.seq)) is not None and h[0] is e else entry(e, h) for e in ready
        ])  # fmt: skip
        ts = self._ts.get(t) or self._at(t)
        out = self._out
        out.append(
            f',{{"ph":"i","s":"t","pid":3,"tid":1,"ts":{ts},"name":"dispatch {_q(job)[1:]},'
            f'"cat":"decision","args":{{{last[2]},{early}"ready":[{parts}]}}}}'
            f',{{"ph":"C","pid":3,"tid":1,"ts":{ts},"name":"ready","args":'
            f'{{"jobs":{len(self._queue)}}}}}'
        )  # fmt: skip
        lane_of = self._lane_of
        if job in lane_of:  # dispatched again while its run was open: that run never ends
            self._device.ends[lane_of[job]] = t
            if self._memory is not None:
                self._bytes(t, -self._memory.get(task, 0))
        ends = self._device.ends
        if ends[0] <= t:  # the first lane is free (one slot: always)
            ends[0] = _BUSY
            lane_of[job] = 0
        else:
            lane_of[job] = self._slot(t, _BUSY)
        mem = self._memory
        if mem is not None:
            self._live = live = self._live + mem.get(task, 0)
            out.append(f',{{"ph":"C","pid":1,"tid":0,"ts":{ts},"name":"activations",'
                       f'"args":{{"bytes":{live}}}}}')  # fmt: skip

    def _chunk(self, r: ChunkRecord) -> None:
        self._apply(r)
        self._ready(r.t_ns)

    def _complete(self, r: CompleteRecord) -> None:
        self._apply(r)
        self._entries.pop(r.seq, None)

    def _fault(self, r: FaultRecord) -> None:
        self._apply(r)
        self._entries.pop(r.seq, None)
        self._note(r)

    def _skip(self, r: SkipRecord) -> None:
        self._apply(r)
        self._entries.pop(r.seq, None)
        self._ready(r.t_ns)
        self._note(r)

    def _instant(self, r: MissRecord | OverrunRecord | AssumptionRecord) -> None:
        self._apply(r)
        self._note(r)

    def _note(
        self, r: MissRecord | OverrunRecord | SkipRecord | FaultRecord | AssumptionRecord
    ) -> None:
        """An instant on the task's track, the record's fields as args."""
        tid = self._tid.get(r.task)
        if tid is None:  # a task never admitted nor released: no track to put it on
            return
        kind = str(r.kind)
        name = f"{kind} {r.job}" + (f": {r.what}" if type(r) is AssumptionRecord else "")
        rest = "".join(f',"{f}":{_value(getattr(r, f))}' for f in _INSTANT_FIELDS[type(r)])
        self._out.append(
            f',{{"ph":"i","s":"t","pid":2,"tid":{tid},"ts":{self._at(r.t_ns)},"name":{_q(name)},'
            f'"cat":"{kind}","args":{{"seq":{r.seq},"job":{_q(r.job)},"task":{_q(r.task)}'
            f"{rest}}}}}"
        )  # fmt: skip

    def _run(self, s: Run) -> None:
        """A run ended (the replay's callback): its device slice, its wait, its bytes."""
        start, end, job, chunk = s.start_ns, s.end_ns, s.job, s.chunk
        assert end is not None
        lane = self._lane_of.pop(job, None)
        if lane is None:  # never seen dispatched (cannot happen through one replay)
            lane = self._slot(start, end)
        self._device.ends[lane] = end
        js = self._jobs.get(job)
        rel = None if js is None else js.release
        kind = s.end
        whole = chunk == 0 and kind is not _CHUNK
        end_kind = _END[kind] if kind is not None else None
        ch = "null" if whole else chunk
        texts = self._ts
        ts = texts.get(start) or self._at(start)
        d = end - start
        dur = self._dur.get(d) or self._span(d)
        out = self._out
        if rel is None:
            out.append(
                f',{{"ph":"X","pid":1,"tid":{lane + 1},"ts":{ts},"dur":{dur},"name":'
                f'{_q(job if whole else f"{job} chunk {chunk}")},"cat":"job","args":{{'
                f'"release_ns":null,"deadline_ns":null,"chunk":{ch},"end_kind":"{end_kind}"}}}}'
            )  # fmt: skip
        elif chunk == 0 and start > rel.release_ns:  # it waited: a wait slice, a flow
            released = rel.release_ns
            self._flow = flow = self._flow + 1
            task = s.task
            waits = self._waits.get(task)
            if waits is None:
                w = self._lane0(task, released, start)
            elif waits.ends and waits.ends[0] <= released:  # the first wait track is free
                waits.ends[0] = start
                w = 0
            else:
                w = waits.take(released, start)
            tids = self._wait_tids[task]
            if w == len(tids):
                tids.append(self._new_track(f"{task} ({w})"))
            q = _q(job)
            rts = texts.get(released) or self._at(released)
            wd = start - released
            wdur = self._dur.get(wd) or self._span(wd)
            out.append(
                f',{{"ph":"X","pid":2,"ts":{rts},"dur":{wdur},"name":"wait {q[1:]},"cat":"wait",'
                f'"bind_id":{flow},"flow_out":true,"tid":{tids[w]}}}'
                f',{{"ph":"X","pid":1,"tid":{lane + 1},"ts":{ts},"dur":{dur},"name":'
                f'{q if whole else _q(f"{job} chunk {chunk}")},"cat":"job","args":{{'
                f'"release_ns":{released},"deadline_ns":{rel.deadline_ns},"chunk":{ch},'
                f'"end_kind":"{end_kind}"}},"bind_id":{flow},"flow_in":true}}'
            )  # fmt: skip
        else:
            out.append(
                f',{{"ph":"X","pid":1,"tid":{lane + 1},"ts":{ts},"dur":{dur},"name":'
                f'{_q(job if whole else f"{job} chunk {chunk}")},"cat":"job","args":{{'
                f'"release_ns":{rel.release_ns},"deadline_ns":{rel.deadline_ns},"chunk":{ch},'
                f'"end_kind":"{end_kind}"}}}}'
            )  # fmt: skip
        mem = self._memory
        if mem is not None:
            self._bytes(end, -mem.get(s.task, 0))

    def _lane0(self, task: str, start: TimeNs, end: TimeNs) -> int:
        """The first wait lane of a task no record named before (made with its track)."""
        self._task(task)
        return self._waits[task].take(start, end)


def export(
    records: Sequence[Mapping[str, Any] | Record], memory: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The Chrome Trace Event object of a run (the writer's output, parsed); ``memory``:
    activation bytes per task (its planned arena), for the bytes-in-use counter."""
    buf = io.StringIO()
    sink = PerfettoTrace(buf, memory)
    sink.write(decode_all(records))
    sink.close()
    doc: dict[str, Any] = json.loads(buf.getvalue())
    return doc


def write(
    path: str | Path, records: Sequence[Mapping[str, Any]], memory: Mapping[str, int] | None = None
) -> None:
    """Write ``trace.json`` (compact JSON) of a finished list of records, whole: through a
    fresh temporary file beside it (never through a symbolic link), renamed over ``path``."""
    import os
    import tempfile

    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    except OSError as exc:
        raise InputError(f"{p}: cannot write: {exc.strerror or exc}") from exc
    try:
        sink = PerfettoTrace(os.fdopen(fd, "w", encoding="ascii"), memory, owns=True)
        try:
            sink.write(decode_all(records))
        finally:
            sink.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(f"{p}: cannot write: {exc.strerror or exc}") from exc
        raise
