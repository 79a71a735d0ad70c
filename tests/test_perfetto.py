"""``trace.json`` (Chrome Trace Event format, aegis_core.tools.perfetto): structure Perfetto accepts
(X slices nest per track, µs times, named tracks), exact events on a small run, and what the
runner writes."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aegis_core.model.scenario import load_scenario, parse_scenario, replace_scenario
from aegis_core.record.schema import (
    AssumptionRecord,
    CompleteRecord,
    DispatchRecord,
    FaultRecord,
    ReleaseRecord,
    SkipRecord,
    as_dict,
)
from aegis_core.tools.explain import load
from aegis_core.tools.perfetto import export
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000


def ns(us: float) -> int:
    """Perfetto's reading of a JSON µs value (``static_cast<int64_t>(us * 1000.0)``)."""
    return int(us * 1000.0)


def check_structure(doc: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """What Perfetto needs: X events with dur, non-overlapping per (pid, tid), every track
    named; returns the X slices per track."""
    assert doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    procs = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        assert e["ph"] in ("X", "i", "C", "M"), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0
            tracks[(e["pid"], e["tid"])].append(e)
        if e["ph"] in ("X", "i"):
            assert (e["pid"], e["tid"]) in names and e["pid"] in procs, e
    for slices in tracks.values():
        slices.sort(key=lambda e: e["ts"])
        for a, b in itertools.pairwise(slices):  # as Perfetto reads them: µs x 1000, truncated
            assert ns(b["ts"]) >= ns(a["ts"]) + ns(a["dur"]), (a, b)  # disjoint on one track
    flows = defaultdict(list)
    for e in events:
        if "bind_id" in e:
            flows[e["bind_id"]].append("out" if e.get("flow_out") else "in")
    assert all(sorted(v) == ["in", "out"] for v in flows.values())
    return tracks


def test_exact_events_of_a_small_run(tmp_path: Path) -> None:
    """a#0 runs 0-4 ms; b#0, released at 1 ms, waits until 4 and runs to 6."""
    a = {"name": "a", "period_ms": 20, "wcet_ms": 4}
    b = {"name": "b", "period_ms": 20, "wcet_ms": 2, "deadline_ms": 8, "offset_ms": 1}
    s = parse_scenario({"name": "pf", "duration_ms": 10, "tasks": [a, b]})
    run_scenario(s, "sim", out_dir=tmp_path)
    doc = json.loads((tmp_path / "trace.json").read_text())
    tracks = check_structure(doc)
    device = [(e["name"], ns(e["ts"]), ns(e["dur"])) for e in tracks[(1, 1)]]
    assert device == [("a#0", 0, 4 * MS), ("b#0", 4 * MS, 2 * MS)]
    waits = [e for es in tracks.values() for e in es if e["cat"] == "wait"]
    assert [(e["name"], ns(e["ts"]), ns(e["dur"]), e["pid"]) for e in waits] == [
        ("wait b#0", 1 * MS, 3 * MS, 2)
    ]
    b0 = next(e for e in tracks[(1, 1)] if e["name"] == "b#0")
    assert b0["bind_id"] == waits[0]["bind_id"] and b0["flow_in"] is True
    ev = doc["traceEvents"]
    inst = sorted((e["name"], ns(e["ts"])) for e in ev if e["ph"] == "i" and e["cat"] != "decision"
                  and e["cat"] != "admission")  # fmt: skip
    assert inst == [("deadline a#0", 20 * MS), ("deadline b#0", 9 * MS), ("release a#0", 0),
                    ("release b#0", 1 * MS)]  # fmt: skip
    decisions = [e for e in ev if e.get("cat") == "decision"]
    assert [d["name"] for d in decisions] == ["dispatch a#0", "dispatch b#0"]
    assert decisions[1]["args"]["ready"][0]["job"] == "b#0"
    ready = [
        (ns(e["ts"]), e["args"]["jobs"]) for e in ev if e["ph"] == "C" and e["name"] == "ready"
    ]
    assert ready == [(0, 1), (0, 0), (1 * MS, 1), (4 * MS, 0)]
    names = {e["args"]["name"] for e in ev if e["ph"] == "M"}
    assert {"device", "tasks", "scheduler", "slot 0", "a", "b"} <= names


@pytest.mark.parametrize("name", ["lp_edf", "unscheduled", "memory", "admission"])
def test_scenario_traces_have_a_valid_structure(name: str, tmp_path: Path) -> None:
    s = replace_scenario(load_scenario(ROOT / "scenarios" / f"{name}.yaml"), duration_ns=300 * MS)
    run_scenario(s, "sim", out_dir=tmp_path)
    doc = json.loads((tmp_path / "trace.json").read_text())
    tracks = check_structure(doc)
    jobs = sum(len(v) for (pid, _), v in tracks.items() if pid == 1)
    records = load(tmp_path)
    assert jobs == sum(r["kind"] == "dispatch" for r in records)  # one slice per dispatch
    counters = {e["name"] for e in doc["traceEvents"] if e["ph"] == "C"}
    assert "ready" in counters
    if name in ("memory", "lp_edf"):
        assert "activations" in counters  # the models' planned arenas
    if name == "lp_edf":
        assert any(" chunk 1" in e["name"] for v in tracks.values() for e in v)
    if name == "unscheduled":
        assert len([k for k in tracks if k[0] == 1]) > 1  # overlapping jobs: several lanes


def test_exec_numpy_trace_json(tmp_path: Path) -> None:
    s = replace_scenario(load_scenario(ROOT / "scenarios" / "tiny_gpu.yaml"), duration_ns=60 * MS)
    run_scenario(s, ExecEngine("numpy"), out_dir=tmp_path)
    check_structure(json.loads((tmp_path / "trace.json").read_text()))


def test_no_trace_no_trace_json(tmp_path: Path) -> None:
    s = load_scenario(ROOT / "scenarios" / "fifo.yaml")
    run_scenario(s, "sim", out_dir=tmp_path)
    assert (tmp_path / "trace.json").exists()
    run_scenario(s, "sim", out_dir=tmp_path, trace=False)  # a rerun leaves no stale file
    assert not (tmp_path / "trace.json").exists() and not (tmp_path / "trace.jsonl").exists()


def test_export_of_faults_overruns_and_skips() -> None:
    released = ReleaseRecord(0, 0, "a#0", "a", 5, 0, rec=0)
    records = [
        as_dict(released),
        as_dict(DispatchRecord(0, 0, "a#0", "a", 0, "r", ("seq",), (released.entry,), rec=1)),
        as_dict(FaultRecord(9, 0, "a#0", "a", "boom", rec=2)),
        as_dict(SkipRecord(9, 1, "a#1", "a", "x", rec=3)),
    ]
    doc = export(records, {"a": 64})
    tracks = check_structure(doc)
    assert tracks[(1, 1)][0]["args"]["end_kind"] == "fault"
    cats = [e["cat"] for e in doc["traceEvents"] if e["ph"] == "i"]
    assert "fault" in cats and "skip" in cats
    fault = next(e for e in doc["traceEvents"] if e.get("cat") == "fault")
    assert fault["args"] == {"seq": 0, "job": "a#0", "task": "a", "error": "boom"}
    assert export(records) == export([ReleaseRecord(0, 0, "a#0", "a", 5, 0, rec=0), *records[1:]])
    mem = [e["args"]["bytes"] for e in doc["traceEvents"] if e.get("name") == "activations"]
    assert mem == [64, 0]


def test_a_broken_assumption_is_an_instant_on_its_task_track() -> None:
    released = ReleaseRecord(0, 0, "a#0", "a", 5 * MS, 0, rec=0)
    records = [
        as_dict(released),
        as_dict(AssumptionRecord(2 * MS, 0, "a#0", "a", "release-lag", 2 * MS, MS // 2, rec=1)),
        as_dict(DispatchRecord(2 * MS, 0, "a#0", "a", 0, "r", ("seq",), (released.entry,), rec=2)),
        as_dict(CompleteRecord(3 * MS, 0, "a#0", "a", 2 * MS, 3 * MS, 3 * MS, 5 * MS, False, 3)),
    ]
    doc = export(records)
    check_structure(doc)
    track = next(e["tid"] for e in doc["traceEvents"] if e["ph"] == "M"
                 and e["pid"] == 2 and e["args"]["name"] == "a")  # fmt: skip
    (got,) = [e for e in doc["traceEvents"] if e.get("cat") == "assumption"]
    assert got == {"ph": "i", "s": "t", "pid": 2, "tid": track, "ts": 2000.0005,
                   "name": "assumption a#0: release-lag", "cat": "assumption",
                   "args": {"seq": 0, "job": "a#0", "task": "a", "what": "release-lag",
                            "observed_ns": 2 * MS, "bound_ns": MS // 2}}  # fmt: skip


def test_back_to_back_slices_at_arbitrary_ns_never_overlap_in_perfetto() -> None:
    """Executor times are arbitrary ns: a slice starting where the last ended must not
    overlap it once Perfetto truncates µs x 1000 to integer ns."""
    import random

    rng = random.Random(3)
    records: list[Any] = []
    t = 0
    for k in range(2000):
        job = f"a#{k}"
        rel = ReleaseRecord(t, k, job, "a", t + 10**9, t)
        records += [rel, DispatchRecord(t, k, job, "a", 0, "r", ("seq",), (rel.entry,))]
        start, t = t, t + rng.randint(1, 10**7)
        records.append(CompleteRecord(t, k, job, "a", start, t, t - start, t + 10**9, False))
    tracks = check_structure(export(records))
    assert len(tracks[(1, 1)]) == 2000  # all on one lane, back to back, none overlapping


def test_many_waiting_jobs_keep_to_their_own_tracks() -> None:
    """A task with hundreds of jobs waiting at once gets as many wait tracks, none of them a
    neighbour's."""
    s = parse_scenario({"name": "starve", "policy": "np-fp", "duration_ms": 300, "tasks": [
        {"name": "a", "period_ms": 1, "wcet_ms": 0.9, "priority": 2},
        {"name": "b", "period_ms": 1, "wcet_ms": 0.9, "priority": 1}]})  # fmt: skip
    from aegis_core.run.testing import run_in_memory

    records, _ = run_in_memory(s)
    doc = export(records)
    tracks = check_structure(doc)
    names: dict[tuple[int, int], set[str]] = defaultdict(set)
    for e in doc["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "thread_name":
            names[(e["pid"], e["tid"])].add(e["args"]["name"])
    assert all(len(v) == 1 for v in names.values())
    assert sum(1 for k in names if k[0] == 2) > 100 and tracks


# ------------------------------------------------------------------ the streaming writer


class _Capture:
    """A sink keeping each instant's records as the loop hands them over (copied)."""

    def __init__(self) -> None:
        self.chunks: list[list[Any]] = []

    def write(self, records: Any) -> None:
        if records:
            self.chunks.append(list(records))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _instants(scenario: Any, engine: Any = None) -> list[list[Any]]:
    """The records of a real run, instant by instant (admission records first)."""
    from aegis_core.analysis.admission import admit
    from aegis_core.record.schema import admission_records
    from aegis_core.run.engine import load_engine
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.scheduler import Scheduler

    verdicts = admit(scenario)
    plan = RunPlan.build(scenario, admission=verdicts)
    cap = _Capture()
    cap.write(admission_records(verdicts, scenario, enforced=True))
    run(plan, Scheduler.for_plan(plan), engine or load_engine("sim"), sink=cap)
    return cap.chunks


def _streamed(chunks: list[list[Any]], memory: dict[str, int] | None) -> dict[str, Any]:
    import io

    from aegis_core.tools.perfetto import PerfettoTrace

    buf = io.StringIO()
    sink = PerfettoTrace(buf, memory)
    for c in chunks:
        sink.write(c)
        sink.flush()
    sink.close()
    doc: dict[str, Any] = json.loads(buf.getvalue())
    return doc


@pytest.mark.parametrize("name", ["lp_edf", "unscheduled", "np_fp", "memory"])
def test_the_sink_fed_instant_by_instant_writes_what_export_gives(name: str) -> None:
    """Fed the scheduler's records as the loop hands them over, the sink's file is the object
    ``export`` makes of the whole list, parsed back from the trace's lines or not."""
    from aegis_core.record.sinks import read_records

    s = replace_scenario(load_scenario(ROOT / "scenarios" / f"{name}.yaml"), duration_ns=300 * MS)
    chunks = _instants(s)
    records = [r for c in chunks for r in c]
    memory = {t.name: 1000 * (i + 1) for i, t in enumerate(s.tasks)}
    doc = _streamed(chunks, memory)
    assert doc == export(records, memory)
    parsed = read_records([json.dumps(as_dict(r)) for r in records])
    assert doc == export(parsed, memory)  # decoded entries: equal text, by value not identity
    check_structure(doc)
    ev = doc["traceEvents"]
    assert sum(e["ph"] == "X" and e["pid"] == 1 for e in ev) == sum(
        type(r) is DispatchRecord for r in records
    )
    assert sum(e.get("cat") == "release" for e in ev) == sum(
        type(r) is ReleaseRecord for r in records
    )


def test_device_lanes_of_a_concurrent_run_never_overlap_and_are_as_few_as_can_be() -> None:
    """unscheduled: jobs share the device; a run takes the lowest lane free at its dispatch, so
    there are as many lanes as runs ever open at once, and none overlaps on its track."""
    from aegis_core.record.replay import Replay

    s = replace_scenario(load_scenario(ROOT / "scenarios" / "unscheduled.yaml"),
                         duration_ns=500 * MS)  # fmt: skip
    records = [r for c in _instants(s) for r in c]
    tracks = check_structure(export(records))
    lanes = [k for k in tracks if k[0] == 1]
    steps = sorted((t, d) for run in Replay.of(records).runs
                   for t, d in ((run.dispatched_ns, 1), (run.end_ns, -1)))  # fmt: skip
    most = max(itertools.accumulate(d for _, d in steps))
    assert most > 1 and len(lanes) == most
    runs = [(e["ts"], e["dur"]) for k in lanes for e in tracks[k]]
    assert len(runs) == sum(type(r) is DispatchRecord for r in records)


def test_the_writer_state_stays_flat_over_a_long_run() -> None:
    """3 000 jobs of a 5-task set: what the writer holds (its streaming replay's jobs, open
    runs, cached entries, lanes, the unwritten events) stays below a bound set by the tasks,
    not by the jobs so far."""
    import io

    from aegis_core.run.testing import FakeEngine
    from aegis_core.tools.perfetto import PerfettoTrace

    s = parse_scenario({"name": "long", "duration_ms": 60_000, "tasks": [
        {"name": f"t{i}", "period_ms": p, "wcet_ms": c}
        for i, (c, p) in enumerate([(2, 10), (4, 20), (5, 25), (7, 50), (6, 100)])]})  # fmt: skip
    chunks = _instants(s, FakeEngine())
    sink = PerfettoTrace(io.StringIO(), {"t0": 64})
    sizes, jobs = [], []
    for c in chunks:
        sink.write(c)
        sink.flush()
        sizes.append(sink.state_size() - len(sink._out))  # what stays, the event buffer aside
        jobs.append(len(sink.replay.jobs))
    sink.close()
    released = sum(type(r) is ReleaseRecord for c in chunks for r in c)
    assert released > 10_000
    assert max(jobs) <= 10 and max(sizes) <= 60, (max(jobs), max(sizes))
    assert max(sizes[len(sizes) // 2 :]) <= max(sizes[: len(sizes) // 10])
    assert sink.replay.runs == [] and len(sink._out) == 0
    whole = PerfettoTrace(io.StringIO(), {"t0": 64})
    whole.write([r for c in chunks for r in c])  # one long list: written block by block
    assert len(whole._out) <= 5 * whole.BLOCK and max(jobs) <= 10


def test_the_sink_ignores_records_of_a_kind_it_does_not_know() -> None:
    """A newer schema's record (e.g. an ``end`` record, no job) goes through without error and
    changes nothing."""
    from typing import NamedTuple

    from aegis_core.record.replay import Replay

    class EndRecord(NamedTuple):
        t_ns: int
        reason: str
        rec: int = -1

    released = ReleaseRecord(0, 0, "a#0", "a", 5, 0)
    records: list[Any] = [
        released,
        DispatchRecord(0, 0, "a#0", "a", 0, "r", ("seq",), (released.entry,)),
        CompleteRecord(3, 0, "a#0", "a", 0, 3, 3, 5, False),
    ]
    end = EndRecord(3, "complete")
    assert _streamed([records, [end]], None) == export(records)
    rp = Replay()
    for r in [*records, end]:
        rp.apply(r)  # type: ignore[arg-type]
    assert len(rp.runs) == 1 and list(rp.jobs) == ["a#0"]
