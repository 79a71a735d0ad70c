"""``trace.json``: a run's trace in Chrome Trace Event format, for the Perfetto UI (theory §7).

Built from the decision records alone (``trace.jsonl``):

* process 1, **device**: one track per slot lane with an X slice per job (or lp-edf chunk);
  slices are put on the first lane free at their start, so slices on one track never overlap;
* process 2, **tasks**: per task, an X slice per job from release to start (its wait, with a
  flow to the job's slice) and instants for its release, deadline, miss, overrun, skip, fault;
* process 3, **scheduler**: every dispatch decision as an instant whose args hold the rule and
  the ready set; counters: ready-queue length, and activation bytes in use when the run's
  memory plan is given.

Times are µs (floats: ns precision kept). The result is one JSON object with
``traceEvents`` and ``displayTimeUnit``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
    records: Sequence[Mapping[str, Any]], memory: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The Chrome Trace Event object of a run; ``memory``: activation bytes per task (its
    planned arena), for the bytes-in-use counter."""
    events: list[dict[str, Any]] = []
    tasks = _task_order(records)
    slices = _slices(records)
    device = _Lanes()
    waits: dict[str, _Lanes] = {t: _Lanes() for t in tasks}
    flow = 0
    pending: list[tuple[dict[str, Any], str, int]] = []  # wait slices: tid once lanes are known
    for s in sorted(slices, key=lambda s: (s["start"], s["end"], s["job"])):
        lane = device.take(s["start"], s["end"])
        args = {k: s[k] for k in ("release_ns", "deadline_ns", "chunk", "end_kind") if k in s}
        name = s["job"] + (f" chunk {s['chunk']}" if s.get("chunk") is not None else "")
        job = {
            "ph": "X",
            "pid": DEVICE,
            "tid": lane + 1,
            "ts": _ts(s["start"]),
            "dur": _us(s["end"] - s["start"]),
            "name": name,
            "cat": "job",
            "args": args,
        }
        if s.get("first") and s.get("release_ns") is not None and s["start"] > s["release_ns"]:
            flow += 1
            t = s["task"]
            w = waits[t].take(s["release_ns"], s["start"])
            wait = {
                "ph": "X",
                "pid": TASKS,
                "ts": _ts(s["release_ns"]),
                "dur": _us(s["start"] - s["release_ns"]),
                "name": f"wait {s['job']}",
                "cat": "wait",
                "bind_id": flow,
                "flow_out": True,
            }
            pending.append((wait, t, w))
            events.append(wait)
            job.update(bind_id=flow, flow_in=True)
        events.append(job)
    bases, at = {}, 1  # each task's tracks: as many as its wait lanes, never a neighbour's
    for t in tasks:
        bases[t] = at
        at += max(1, len(waits[t].ends))
    for wait, t, w in pending:
        wait["tid"] = bases[t] + w
    events += _instants(records, bases)
    events += _counters(records, slices, memory)
    return {"displayTimeUnit": "ms", "traceEvents": _metadata(bases, device, waits) + events}


def _task_order(records: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        if r.get("kind") in ("admit", "reject", "release") and r.get("task"):
            seen.setdefault(r["task"], None)
    return list(seen)


def _slices(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One slice per dispatch, from the dispatch (or the device start the completion reports)
    to the record that ended it (complete, chunk or fault)."""
    release: dict[str, Mapping[str, Any]] = {}
    open_: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for r in records:
        kind, job = r.get("kind"), str(r.get("job"))
        if kind == "release":
            release[job] = r
        elif kind == "dispatch":
            rel = release.get(job, {})
            open_[job] = {
                "job": job,
                "task": r["task"],
                "start": r["t_ns"],
                "chunk": r.get("chunk"),
                "first": not r.get("chunk"),
                "release_ns": rel.get("release_ns"),
                "deadline_ns": rel.get("deadline_ns"),
            }
        elif kind in ("complete", "chunk", "fault") and job in open_:
            s = open_.pop(job)
            if kind == "complete" and r.get("start_ns") is not None and s["chunk"] is None:
                s["start"] = min(max(r["start_ns"], s["start"]), r["t_ns"])
            s["end"] = max(r["t_ns"], s["start"])
            s["end_kind"] = kind
            if s["chunk"] is None and kind == "chunk":
                s["chunk"] = 0
            out.append(s)
    return out


_INSTANTS = {"miss": "miss", "overrun": "overrun", "skip": "skip", "fault": "fault"}


def _instants(
    records: Sequence[Mapping[str, Any]], bases: Mapping[str, int]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in records:
        kind = r.get("kind")
        if kind == "release":
            tid = bases[r["task"]]
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": TASKS,
                    "tid": tid,
                    "ts": _ts(r["t_ns"]),
                    "name": f"release {r['job']}",
                    "cat": "release",
                    "args": {"deadline_ns": r["deadline_ns"], "release_ns": r["release_ns"]},
                }
            )
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": TASKS,
                    "tid": tid,
                    "ts": _ts(r["deadline_ns"]),
                    "name": f"deadline {r['job']}",
                    "cat": "deadline",
                }
            )
        elif kind in _INSTANTS and r.get("task") in bases:
            args = {k: v for k, v in r.items() if k not in ("seq", "t_ns", "kind")}
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": TASKS,
                    "tid": bases[r["task"]],
                    "ts": _ts(r["t_ns"]),
                    "name": f"{kind} {r.get('job')}",
                    "cat": kind,
                    "args": args,
                }
            )
        elif kind == "dispatch":
            rat = r["rationale"]
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": SCHED,
                    "tid": 1,
                    "ts": _ts(r["t_ns"]),
                    "name": f"dispatch {r['job']}",
                    "cat": "decision",
                    "args": {"rule": rat["rule"], "key": rat["key"], "ready": rat["ready"]},
                }
            )
        elif kind in ("admit", "reject"):
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": SCHED,
                    "tid": 2,
                    "ts": 0.0,
                    "name": f"{kind} {r['task']}",
                    "cat": "admission",
                    "args": r.get("rationale", {}),
                }
            )
    return out


def _counters(
    records: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    memory: Mapping[str, int] | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ready: set[str] = set()
    for r in records:
        kind, job = r.get("kind"), r.get("job")
        if kind in ("release", "chunk"):
            ready.add(str(job))
        elif kind in ("dispatch", "skip"):
            ready.discard(job)
        else:
            continue
        out.append(
            {
                "ph": "C",
                "pid": SCHED,
                "tid": 1,
                "ts": _ts(r["t_ns"]),
                "name": "ready",
                "args": {"jobs": len(ready)},
            }
        )
    if memory:
        steps: list[tuple[int, int]] = []
        for s in slices:
            b = memory.get(s["task"], 0)
            steps += [(s["start"], b), (s["end"], -b)]
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
