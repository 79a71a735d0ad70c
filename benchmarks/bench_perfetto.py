"""``trace.json`` writing: µs per job, the old whole-list export vs the streaming sink.

The records of one real run of ``benchmarks/u08_five_tasks.yaml`` (NP-EDF, 5 tasks; SimPy
engine, default 100 s = 22 000 jobs) are captured once, instant by instant, as the loop hands
them to its sink. Then, on the same records (the simulation itself excluded), side by side:

* ``old export``: the export before issue 14 (kept below as :func:`old_export`): replay the
  whole list, sort the runs, build every event as a dict, ``json.dumps`` the lot, write it;
* ``streaming sink``: :class:`~aegis_core.tools.perfetto.PerfettoTrace` fed the instants'
  records as the run would feed it, writing the file as it goes.

Both write a real file with the activations counter on (1 MiB per task); a third row times
the streaming replay the sink reads through, alone (the sink's floor). Times are medians of
``--repeat`` runs, wall and CPU (this process: less sensitive to other load on a shared VM);
the peak is the Python heap allocated on top of the records (tracemalloc, one extra run
each). Usage:
``python benchmarks/bench_perfetto.py [--duration-ms 100000] [--repeat 5] [--no-old]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aegis_core.tools.perfetto import _Lanes  # the same first-fit lanes the old export used

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "benchmarks" / "u08_five_tasks.yaml"


class _Capture:
    """A sink keeping each instant's records (copied: the loop reuses its list)."""

    def __init__(self) -> None:
        self.chunks: list[list[Any]] = []

    def write(self, records: Sequence[Any]) -> None:
        if records:
            self.chunks.append(list(records))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def capture(duration_ms: float) -> tuple[list[list[Any]], int]:
    """The records of one run, per instant (admission records first), and its job count."""
    from aegis_core.analysis.admission import admit
    from aegis_core.model.scenario import load_scenario, replace_scenario
    from aegis_core.record.schema import admission_records
    from aegis_core.run.engine import load_engine
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.scheduler import Scheduler

    s = replace_scenario(load_scenario(SCENARIO), duration_ns=int(duration_ms * 1_000_000))
    verdicts = admit(s)
    plan = RunPlan.build(s, admission=verdicts)
    sink = _Capture()
    sink.write(admission_records(verdicts, s, enforced=True))
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, load_engine("sim"), sink=sink)
    return sink.chunks, len(scheduler.jobs)


def streaming(chunks: list[list[Any]], memory: Mapping[str, int], path: Path) -> None:
    from aegis_core.tools.perfetto import PerfettoTrace

    sink = PerfettoTrace.open(path, memory)
    for c in chunks:
        sink.write(c)
        sink.flush()
    sink.close()


def old(chunks: list[list[Any]], memory: Mapping[str, int], path: Path) -> None:
    records = [r for c in chunks for r in c]
    text = json.dumps(old_export(records, memory), separators=(",", ":"))
    path.write_text(text, encoding="utf-8")


def replay_only(chunks: list[list[Any]], memory: Mapping[str, int], path: Path) -> None:
    """The streaming replay the sink reads through, alone (its floor): no event made."""
    from aegis_core.record.replay import Replay

    apply = Replay(retain=False, on_run=lambda run: None).apply
    for c in chunks:
        for r in c:
            apply(r)


def measure(fn: Callable[[], None], repeat: int) -> tuple[float, float, float]:
    """(median wall s, median CPU s, peak MiB traced) of ``fn``."""
    wall, cpu = [], []
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(wall), statistics.median(cpu), peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-ms", type=float, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-old", action="store_true", help="skip the old export (long horizons)")
    args = ap.parse_args()
    chunks, jobs = capture(args.duration_ms)
    n = sum(map(len, chunks))
    memory = {f"t{i}": 1 << 20 for i in range(1, 6)}
    print(
        f"u08_five_tasks, {args.duration_ms / 1000:g} s: {jobs} jobs, {n} records, "
        f"{len(chunks)} instants; medians of {args.repeat}"
    )
    print(f"{'writer':<22} {'wall s':>8} {'µs/job':>8} {'CPU µs/job':>10} {'peak MiB':>9}")
    rows = (("old export", old), ("streaming sink", streaming),
            ("(its replay alone)", replay_only))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in rows[1:] if args.no_old else rows:
            path = Path(tmp) / f"{name.split()[0]}.json"
            wall, cpu, peak = measure(
                lambda fn=fn, path=path: fn(chunks, memory, path), args.repeat
            )
            print(
                f"{name:<22} {wall:>8.3f} {wall / jobs * 1e6:>8.2f} {cpu / jobs * 1e6:>10.2f} "
                f"{peak:>9.1f}"
            )


# ---------------------------------------------------------------- the export before issue 14
# (a copy, for the side-by-side only: whole list in, one replay keeping every job, every event
# as a dict)


def old_export(records: Sequence[Any], memory: Mapping[str, int] | None = None) -> dict[str, Any]:
    from aegis_core.record.replay import Replay
    from aegis_core.record.schema import (
        ChunkRecord,
        DispatchRecord,
        ReleaseRecord,
        SkipRecord,
        decode_all,
    )

    recs = decode_all(records)
    rp = Replay()
    ready_counts: list[tuple[int, int]] = []
    for r in recs:
        rp.apply(r)
        if isinstance(r, ReleaseRecord | ChunkRecord | DispatchRecord | SkipRecord):
            ready_counts.append((r.t_ns, len(rp.ready)))
    events: list[dict[str, Any]] = []
    tasks = list(rp.tasks)
    device = _Lanes()
    waits: dict[str, _Lanes] = {t: _Lanes() for t in tasks}
    flow = 0
    pending: list[tuple[dict[str, Any], str, int]] = []
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
            "pid": 1,
            "tid": lane + 1,
            "ts": (s.start_ns + 0.5) / 1000.0,
            "dur": (end - s.start_ns) / 1000.0,
            "name": name,
            "cat": "job",
            "args": args,
        }
        if s.chunk == 0 and rel is not None and s.start_ns > rel.release_ns:
            flow += 1
            w = waits[s.task].take(rel.release_ns, s.start_ns)
            wait = {
                "ph": "X",
                "pid": 2,
                "ts": (rel.release_ns + 0.5) / 1000.0,
                "dur": (s.start_ns - rel.release_ns) / 1000.0,
                "name": f"wait {s.job}",
                "cat": "wait",
                "bind_id": flow,
                "flow_out": True,
            }
            pending.append((wait, s.task, w))
            events.append(wait)
            job.update(bind_id=flow, flow_in=True)
        events.append(job)
    bases, at = {}, 1
    for t in tasks:
        bases[t] = at
        at += max(1, len(waits[t].ends))
    for wait, t, w in pending:
        wait["tid"] = bases[t] + w
    events += _old_instants(recs, bases)
    events += _old_counters(ready_counts, rp.runs, memory)
    return {"displayTimeUnit": "ms", "traceEvents": _old_metadata(bases, device, waits) + events}


def _old_instants(records: Sequence[Any], bases: Mapping[str, int]) -> list[dict[str, Any]]:
    from aegis_core.record.schema import (
        AdmissionRecord,
        AssumptionRecord,
        DispatchRecord,
        FaultRecord,
        MissRecord,
        OverrunRecord,
        ReleaseRecord,
        SkipRecord,
        as_dict,
        entry_dict,
    )

    kinds = (MissRecord, OverrunRecord, SkipRecord, FaultRecord, AssumptionRecord)
    out: list[dict[str, Any]] = []
    for r in records:
        if type(r) is ReleaseRecord:
            tid, job = bases[r.task], r.job
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": 2,
                    "tid": tid,
                    "ts": (r.t_ns + 0.5) / 1000.0,
                    "name": f"release {job}",
                    "cat": "release",
                    "args": {"deadline_ns": r.deadline_ns, "release_ns": r.release_ns},
                }
            )
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": 2,
                    "tid": tid,
                    "ts": (r.deadline_ns + 0.5) / 1000.0,
                    "name": f"deadline {job}",
                    "cat": "deadline",
                }
            )
        elif type(r) is DispatchRecord:
            ready = [entry_dict(e) for e in r.ready]
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": 3,
                    "tid": 1,
                    "ts": (r.t_ns + 0.5) / 1000.0,
                    "name": f"dispatch {r.job}",
                    "cat": "decision",
                    "args": {"rule": r.rule, "key": list(r.key), "ready": ready},
                }
            )
        elif isinstance(r, kinds) and r.task in bases:
            args = {k: v for k, v in as_dict(r).items() if k not in ("rec", "t_ns", "kind")}
            name = f"{r.kind} {r.job}" + (f": {r.what}" if type(r) is AssumptionRecord else "")
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": 2,
                    "tid": bases[r.task],
                    "ts": (r.t_ns + 0.5) / 1000.0,
                    "name": name,
                    "cat": str(r.kind),
                    "args": args,
                }
            )
        elif isinstance(r, AdmissionRecord):
            out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "pid": 3,
                    "tid": 2,
                    "ts": 0.0,
                    "name": f"{r.kind} {r.task}",
                    "cat": "admission",
                    "args": dict(r.rationale),
                }
            )
    return out


def _old_counters(
    ready_counts: Sequence[tuple[int, int]], runs: Sequence[Any], memory: Mapping[str, int] | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "ph": "C",
            "pid": 3,
            "tid": 1,
            "ts": (t + 0.5) / 1000.0,
            "name": "ready",
            "args": {"jobs": n},
        }
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
                    "pid": 1,
                    "tid": 0,
                    "ts": (t + 0.5) / 1000.0,
                    "name": "activations",
                    "args": {"bytes": live},
                }
            )
    return out


def _old_metadata(
    bases: Mapping[str, int], device: _Lanes, waits: Mapping[str, _Lanes]
) -> list[dict[str, Any]]:
    def meta(pid: int, tid: int, kind: str, name: str) -> dict[str, Any]:
        return {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}}

    out = [
        meta(1, 0, "process_name", "device"),
        meta(2, 0, "process_name", "tasks"),
        meta(3, 0, "process_name", "scheduler"),
        meta(3, 1, "thread_name", "dispatch decisions"),
        meta(3, 2, "thread_name", "admission"),
    ]
    out += [meta(1, i + 1, "thread_name", f"slot {i}") for i in range(max(1, len(device.ends)))]
    for t in bases:
        lanes = max(1, len(waits[t].ends))
        out += [
            meta(2, bases[t] + k, "thread_name", t if k == 0 else f"{t} ({k})")
            for k in range(lanes)
        ]
    return out


if __name__ == "__main__":
    main()
