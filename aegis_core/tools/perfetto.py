"""``trace.json``: the run in Chrome Trace Event format for Perfetto (docs/CONTRACTS.md §perfetto).

Built from the decision records alone (``trace.jsonl``, read through one
:class:`~aegis_core.record.replay.Replay`):

* process 1, **device**: one track per slot lane with an X slice per job (or lp-edf chunk);
  slices are put on the first lane free at their start, so slices on one track never overlap;
* process 2, **tasks**: per task, an X slice per job from release to start (its wait, with a
  flow to the job's slice) and instants for its release, deadline, miss, overrun, skip, fault
  and broken assumption (``assumption <job>: <figure>``, args: observed and bound);
* process 3, **scheduler**: every dispatch decision as an instant whose args hold the rule and
  the ready set; counters: ready-queue length, and activation bytes in use when the run's
  memory plan is given.

Times are µs (floats: ns precision kept). The result is one JSON object with
``traceEvents`` and ``displayTimeUnit``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aegis_core.record.replay import Replay, Run
from aegis_core.record.schema import (
    AdmissionRecord,
    AssumptionRecord,
    ChunkRecord,
    DispatchRecord,
    FaultRecord,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
    as_dict,
    decode_all,
    entry_dict,
)

DEVICE, TASKS, SCHED = 1, 2, 3


def _us(ns: int) -> float:
    """A duration in µs (Perfetto truncates µs × 1000 to ns: at most 1 ns short)."""
    return ns / 1000.0


def _ts(ns: int) -> float:
    """A timestamp in µs, half a ns late so that Perfetto's truncation gives back exactly
    ``ns``: a slice that starts where the previous one ended never overlaps it."""
    return (ns + 0.5) / 1000.0


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


def export(
    records: Sequence[Mapping[str, Any] | Record], memory: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The Chrome Trace Event object of a run; ``memory``: activation bytes per task (its
    planned arena), for the bytes-in-use counter."""
    recs = decode_all(records)
    rp = Replay()
    ready_counts: list[tuple[int, int]] = []  # (t_ns, ready jobs) after each change
    for r in recs:
        rp.apply(r)
        if isinstance(r, ReleaseRecord | ChunkRecord | DispatchRecord | SkipRecord):
            ready_counts.append((r.t_ns, len(rp.ready)))
    events: list[dict[str, Any]] = []
    tasks = list(rp.tasks)
    device = _Lanes()
    waits: dict[str, _Lanes] = {t: _Lanes() for t in tasks}
    flow = 0
    pending: list[tuple[dict[str, Any], str, int]] = []  # wait slices: tid once lanes are known
    for s in sorted(rp.runs, key=lambda s: (s.start_ns, s.end_ns, s.job)):
        end = s.end_ns if s.end_ns is not None else s.start_ns
        lane = device.take(s.start_ns, end)
        js = rp.jobs[s.job]
        rel = js.release
        args = {
            "release_ns": None if rel is None else rel.release_ns,
            "deadline_ns": None if rel is None else rel.deadline_ns,
            "chunk": None if s.whole else s.chunk,
            "end_kind": str(s.end),
        }
        name = s.job + ("" if s.whole else f" chunk {s.chunk}")
        job = {
            "ph": "X",
            "pid": DEVICE,
            "tid": lane + 1,
            "ts": _ts(s.start_ns),
            "dur": _us(end - s.start_ns),
            "name": name,
            "cat": "job",
            "args": args,
        }
        if s.chunk == 0 and rel is not None and s.start_ns > rel.release_ns:
            flow += 1
            w = waits[s.task].take(rel.release_ns, s.start_ns)
            wait = {
                "ph": "X",
                "pid": TASKS,
                "ts": _ts(rel.release_ns),
                "dur": _us(s.start_ns - rel.release_ns),
                "name": f"wait {s.job}",
                "cat": "wait",
                "bind_id": flow,
                "flow_out": True,
            }
            pending.append((wait, s.task, w))
            events.append(wait)
            job.update(bind_id=flow, flow_in=True)
        events.append(job)
    bases, at = {}, 1  # each task's tracks: as many as its wait lanes, never a neighbour's
    for t in tasks:
        bases[t] = at
        at += max(1, len(waits[t].ends))
    for wait, t, w in pending:
        wait["tid"] = bases[t] + w
    events += _instants(recs, bases)
    events += _counters(ready_counts, rp.runs, memory)
    return {"displayTimeUnit": "ms", "traceEvents": _metadata(bases, device, waits) + events}


_INSTANTS = (MissRecord, OverrunRecord, SkipRecord, FaultRecord, AssumptionRecord)


def _instants(records: Sequence[Record], bases: Mapping[str, int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in records:
        if type(r) is ReleaseRecord:
            tid, job = bases[r.task], r.job
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": TASKS,
                    "tid": tid,
                    "ts": _ts(r.t_ns),
                    "name": f"release {job}",
                    "cat": "release",
                    "args": {"deadline_ns": r.deadline_ns, "release_ns": r.release_ns},
                }
            )
            out.append({"ph": "i", "s": "t", "pid": TASKS, "tid": tid, "ts": _ts(r.deadline_ns),
                        "name": f"deadline {job}", "cat": "deadline"})  # fmt: skip
        elif type(r) is DispatchRecord:
            ready = [entry_dict(e) for e in r.ready]
            out.append({"ph": "i", "s": "t", "pid": SCHED, "tid": 1, "ts": _ts(r.t_ns),
                        "name": f"dispatch {r.job}", "cat": "decision",
                        "args": {"rule": r.rule, "key": list(r.key), "ready": ready}})  # fmt: skip
        elif isinstance(r, _INSTANTS) and r.task in bases:
            args = {k: v for k, v in as_dict(r).items() if k not in ("rec", "t_ns", "kind")}
            name = f"{r.kind} {r.job}" + (f": {r.what}" if type(r) is AssumptionRecord else "")
            out.append({"ph": "i", "s": "t", "pid": TASKS, "tid": bases[r.task],
                        "ts": _ts(r.t_ns), "name": name, "cat": str(r.kind),
                        "args": args})  # fmt: skip
        elif isinstance(r, AdmissionRecord):
            out.append({"ph": "i", "s": "t", "pid": SCHED, "tid": 2, "ts": 0.0,
                        "name": f"{r.kind} {r.task}", "cat": "admission",
                        "args": dict(r.rationale)})  # fmt: skip
    return out


def _counters(
    ready_counts: Sequence[tuple[int, int]],
    runs: Sequence[Run],
    memory: Mapping[str, int] | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"ph": "C", "pid": SCHED, "tid": 1, "ts": _ts(t), "name": "ready", "args": {"jobs": n}}
        for t, n in ready_counts
    ]
    if memory:
        steps: list[tuple[int, int]] = []
        for s in runs:
            b = memory.get(s.task, 0)
            end = s.end_ns if s.end_ns is not None else s.start_ns
            steps += [(s.start_ns, b), (end, -b)]
        live = 0
        for t, d in sorted(steps, key=lambda x: (x[0], x[1])):
            live += d
            out.append(
                {
                    "ph": "C",
                    "pid": DEVICE,
                    "tid": 0,
                    "ts": _ts(t),
                    "name": "activations",
                    "args": {"bytes": live},
                }
            )
    return out


def _metadata(
    bases: Mapping[str, int], device: _Lanes, waits: Mapping[str, _Lanes]
) -> list[dict[str, Any]]:
    def meta(pid: int, tid: int, kind: str, name: str) -> dict[str, Any]:
        return {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}}

    out = [
        meta(DEVICE, 0, "process_name", "device"),
        meta(TASKS, 0, "process_name", "tasks"),
        meta(SCHED, 0, "process_name", "scheduler"),
        meta(SCHED, 1, "thread_name", "dispatch decisions"),
        meta(SCHED, 2, "thread_name", "admission"),
    ]
    out += [
        meta(DEVICE, i + 1, "thread_name", f"slot {i}") for i in range(max(1, len(device.ends)))
    ]
    for t in bases:
        lanes = max(1, len(waits[t].ends))
        out += [
            meta(TASKS, bases[t] + k, "thread_name", t if k == 0 else f"{t} ({k})")
            for k in range(lanes)
        ]
    return out


def write(
    path: str | Path, records: Sequence[Mapping[str, Any]], memory: Mapping[str, int] | None = None
) -> None:
    """Write ``trace.json`` (compact JSON)."""
    text = json.dumps(export(records, memory), separators=(",", ":"))  # C encoder: one pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
