"""Decision trace: one JSON record per line (``trace.jsonl``), written as decisions happen.

Records (DESIGN §5) carry a global ``seq``, ``t_ns``, ``kind`` and what the decision needs to be
re-derived without the code that made it. Hot records (release, dispatch, complete) are
formatted by hand: a ready job's JSON fragment is built once, when it is released (and kept
in its ``ReadyEntry.ref``), and a dispatch record joins the fragments of the ready set. The
output is plain JSON either way; the tests parse every line back.
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

_ref_of = attrgetter("ref")


class TraceSink(Protocol):
    """Where the scheduler reports its decisions."""

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None: ...
    def release(self, t_ns: TimeNs, job: Job) -> str:
        """Record a release; returns the job's ready-set record, kept in its ReadyEntry."""
        ...

    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None: ...
    def complete(self, t_ns: TimeNs, job: Job) -> None: ...
    def chunk(self, t_ns: TimeNs, job: Job) -> None: ...
    def miss(self, t_ns: TimeNs, job: Job) -> None: ...
    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None: ...
    def overrun(self, t_ns: TimeNs, job: Job, budget_ns: TimeNs, action: str) -> None: ...
    def skip(self, t_ns: TimeNs, job: Job, reason: str) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class NullTrace:
    """Discards every record (the trace-off configuration)."""

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None:
        pass

    def release(self, t_ns: TimeNs, job: Job) -> str:
        return ""

    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None:
        pass

    def complete(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def chunk(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def miss(self, t_ns: TimeNs, job: Job) -> None:
        pass

    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None:
        pass

    def overrun(self, t_ns: TimeNs, job: Job, budget_ns: TimeNs, action: str) -> None:
        pass

    def skip(self, t_ns: TimeNs, job: Job, reason: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


_STATE = {1: "ready", 2: "running"}
FLUSH_MODES = ("record", "instant", "batch")


class JsonlTrace:
    """Writes records to a text stream, one line each.

    When records reach the OS (``flush``, see :data:`FLUSH_MODES`):

    * ``"record"``: after every record;
    * ``"instant"``: when the loop has finished an instant of the run (:meth:`flush`), before
      time moves on: every decision is on disk before the next one is taken;
    * ``"batch"``: in blocks of :attr:`BATCH` records (the fast choice for simulation).

    Records are only ever written whole, and :meth:`close` (also run when the loop raises)
    writes what is pending, so the file is a valid JSONL prefix after an error; only a hard
    kill can lose the records of the last block.
    """

    BATCH = 512

    def __init__(self, stream: TextIO, *, owns: bool = False, flush: str = "instant") -> None:
        if flush not in FLUSH_MODES:
            raise ValueError(f"flush must be one of {', '.join(FLUSH_MODES)}, got {flush!r}")
        self.stream = stream
        self._lines: list[str] = []
        self._per_record = flush == "record"
        self._min_block = self.BATCH if flush == "batch" else 1
        self._owns = owns
        self.seq = 0
        self._names: dict[str, str] = {}
        self._who: dict[int, str] = {}  # '"job":…,"task":…' of each unfinished job, by job seq
        self._rules: dict[tuple[str, tuple[str, ...]], str] = {}

    @classmethod
    def open(cls, path: str | Path, *, flush: str = "instant") -> JsonlTrace:
        """A trace file written as the run goes (see the class docstring for ``flush``)."""
        return cls(open(path, "w", encoding="utf-8"), owns=True, flush=flush)

    def _name(self, task: str) -> str:
        esc = self._names.get(task)
        if esc is None:
            esc = self._names[task] = json.dumps(task)[1:-1]
        return esc

    def _emit(self, body: str) -> None:
        self._lines.append(f'{{"seq":{self.seq},{body}}}\n')
        self.seq += 1
        if self._per_record:
            self._drain()

    def flush(self) -> None:
        """End of an instant: hand pending records to the OS (in batch mode, full blocks)."""
        if len(self._lines) >= self._min_block:
            self._drain()

    def _drain(self) -> None:
        if self._lines:
            self.stream.write("".join(self._lines))
            self._lines.clear()
            self.stream.flush()

    def record(self, kind: str, t_ns: TimeNs, **fields: Any) -> None:
        body = json.dumps({"t_ns": t_ns, "kind": kind, **fields}, separators=(",", ":"))
        self._emit(body[1:-1])

    def release(self, t_ns: TimeNs, job: Job) -> str:
        n = self._name(job.task)
        seq = job.seq
        who = self._who[seq] = f'"job":"{n}#{job.k}","task":"{n}"'
        prio = "" if job.priority is None else f',"priority":{job.priority}'
        times = f'"deadline_ns":{job.deadline_ns},"release_ns":{job.release_ns}'
        self._emit(f'"t_ns":{t_ns},"kind":"release",{who},{times},"job_seq":{seq}{prio}')
        return f'{{{who},{times},"seq":{seq}{prio}}}'

    def dispatch(self, t_ns: TimeNs, d: Dispatch) -> None:
        r = d.rationale
        rule = self._rules.get((r.rule, r.key_fields))
        if rule is None:
            rule = json.dumps({"rule": r.rule, "key": list(r.key_fields)})[1:-1]
            self._rules[(r.rule, r.key_fields)] = rule
        ready = ",".join(map(_ref_of, r.ready))
        chunk = f',"chunk":{d.chunk}' if d.chunk else ""
        self._emit(
            f'"t_ns":{t_ns},"kind":"dispatch",{self._who[d.seq]}{chunk},'
            f'"rationale":{{{rule},"ready":[{ready}]}}'
        )

    def complete(self, t_ns: TimeNs, job: Job) -> None:
        e = job.end_ns
        self._emit(
            f'"t_ns":{t_ns},"kind":"complete",{self._who.pop(job.seq)},'
            f'"start_ns":{job.start_ns},"end_ns":{e},'
            f'"response_ns":{"null" if e is None else e - job.release_ns},'
            f'"deadline_ns":{job.deadline_ns},"missed":{"true" if job.missed else "false"}'
        )

    def chunk(self, t_ns: TimeNs, job: Job) -> None:
        """A chunk of ``job`` ended at a preemption point; ``next`` is the chunk to run next."""
        self._emit(
            f'"t_ns":{t_ns},"kind":"chunk",{self._who[job.seq]},"next":{job.chunk},'
            f'"of":{job.n_chunks},"run_ns":{job.run_ns}'
        )

    def miss(self, t_ns: TimeNs, job: Job) -> None:
        self.record(
            "miss", t_ns, job=job.id, task=job.task, release_ns=job.release_ns,
            deadline_ns=job.deadline_ns, state=_STATE.get(int(job.status), "done"),
        )  # fmt: skip

    def fault(self, t_ns: TimeNs, job: Job, error: str) -> None:
        self._who.pop(job.seq, None)
        self.record("fault", t_ns, job=job.id, task=job.task, error=error)

    def overrun(self, t_ns: TimeNs, job: Job, budget_ns: TimeNs, action: str) -> None:
        self.record("overrun", t_ns, job=job.id, task=job.task, exec_ns=job.run_ns,
                    budget_ns=budget_ns, action=action)  # fmt: skip

    def skip(self, t_ns: TimeNs, job: Job, reason: str) -> None:
        self._who.pop(job.seq, None)
        self.record("skip", t_ns, job=job.id, task=job.task, reason=reason)

    def close(self) -> None:
        self._drain()
        if self._owns:
            self.stream.close()


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
