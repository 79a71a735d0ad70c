"""Decision trace: one JSON record per line (``trace.jsonl``), written as decisions happen.

Records (DESIGN §5) carry a global ``seq``, ``t_ns``, ``kind`` and what the decision needs to be
re-derived without the code that made it. Hot records (release, dispatch, complete) are
formatted by hand: a ready job's JSON fragment is built once, when it is released, and a
dispatch record joins the fragments of the ready set. The output is plain JSON either way; the
tests parse every line back.
"""

from __future__ import annotations

import io
import json
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .types import TimeNs

if TYPE_CHECKING:
    from .scheduler import Dispatch, Job

_seq_of = attrgetter("seq")


class TraceSink(Protocol):
    """Where the scheduler reports its decisions."""

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None: ...
    def release(self, t_ns: TimeNs, job: Job) -> None: ...
    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None: ...
    def complete(self, t_ns: TimeNs, job: Job) -> None: ...
    def miss(self, t_ns: TimeNs, job: Job) -> None: ...
    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None: ...
    def close(self) -> None: ...


class NullTrace:
    """Discards every record (the trace-off configuration)."""

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None:
        pass

    def release(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None:
        pass

    def complete(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def miss(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None:
        pass

    def close(self) -> None:
        pass


_STATE = {1: "ready", 2: "running"}


class JsonlTrace:
    """Writes records to a text stream, one line each; a line-buffered file flushes per record."""

    def __init__(self, stream: TextIO, *, owns: bool = False) -> None:
        self.stream = stream
        self._write = stream.write
        self._owns = owns
        self.seq = 0
        self._names: dict[str, str] = {}
        self._frags: dict[int, str] = {}
        self._rules: dict[tuple[str, tuple[str, ...]], str] = {}

    @classmethod
    def open(cls, path: str | Path) -> JsonlTrace:
        """A trace file, line-buffered: each record reaches the OS as soon as it is written."""
        return cls(open(path, "w", buffering=1, encoding="utf-8"), owns=True)

    def _name(self, task: str) -> str:
        esc = self._names.get(task)
        if esc is None:
            esc = self._names[task] = json.dumps(task)[1:-1]
        return esc

    def _emit(self, body: str) -> None:
        self._write(f'{{"seq":{self.seq},{body}}}\n')
        self.seq += 1

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None:
        body = json.dumps({"t_ns": t_ns, "kind": kind, **fields}, separators=(",", ":"))
        self._emit(body[1:-1])

    def release(self, t_ns: TimeNs, job: Job) -> None:
        n = self._name(job.task)
        who = f'"job":"{n}#{job.k}","task":"{n}"'
        prio = "" if job.priority is None else f',"priority":{job.priority}'
        times = f'"deadline_ns":{job.deadline_ns},"release_ns":{job.release_ns}'
        self._frags[job.seq] = f'{{{who},{times},"seq":{job.seq}{prio}}}'
        self._emit(f'"t_ns":{t_ns},"kind":"release",{who},{times},"job_seq":{job.seq}{prio}')

    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None:
        r = d.rationale
        rule = self._rules.get((r.rule, r.key_fields))
        if rule is None:
            rule = json.dumps({"rule": r.rule, "key": list(r.key_fields)})[1:-1]
            self._rules[(r.rule, r.key_fields)] = rule
        frags = self._frags
        ready = ",".join(map(frags.__getitem__, map(_seq_of, r.ready)))
        del frags[d.seq]
        task = r.ready[0].task
        n = self._name(task)
        self._emit(
            f'"t_ns":{t_ns},"kind":"dispatch","job":"{n}{d.job[len(task) :]}",'
            f'"task":"{n}","rationale":{{{rule},"ready":[{ready}]}}'
        )

    def complete(self, t_ns: TimeNs, job: Job) -> None:
        n = self._name(job.task)
        self._emit(
            f'"t_ns":{t_ns},"kind":"complete","job":"{n}#{job.k}","task":"{n}",'
            f'"start_ns":{job.start_ns},"end_ns":{job.end_ns},'
            f'"response_ns":{job.end_ns - job.release_ns if job.end_ns is not None else "null"},'
            f'"deadline_ns":{job.deadline_ns},"missed":{"true" if job.missed else "false"}'
        )

    def miss(self, t_ns: TimeNs, job: Job) -> None:
        self.record(
            "miss", t_ns, job=job.id, task=job.task, release_ns=job.release_ns,
            deadline_ns=job.deadline_ns, state=_STATE.get(int(job.status), "done"),
        )  # fmt: skip

    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None:
        self._frags.pop(job.seq, None)
        self.record("fault", t_ns, job=job.id, task=job.task, error=error)

    def close(self) -> None:
        if self._owns:
            self.stream.close()
        else:
            self.stream.flush()


class MemoryTrace(JsonlTrace):
    """A JSONL trace kept in memory; :meth:`records` parses it back (for tests and tools)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.stream.getvalue().splitlines())  # type: ignore[attr-defined]


def read_records(lines: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return read_records(f)
