"""The record schema (aegis_core.record.schema): every kind round-trips through encode and decode,
decoding checks every field and names what is wrong, old traces still read; and the one
Replay of a record stream (aegis_core.record.replay)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from conftest import make_scenario
from hypothesis import given
from hypothesis import strategies as st

from aegis_core.model.errors import InputError
from aegis_core.model.policy import POLICIES
from aegis_core.model.status import JobStatus
from aegis_core.record.replay import Replay
from aegis_core.record.schema import (
    AdmissionRecord,
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    Encoder,
    EndRecord,
    Entry,
    FaultRecord,
    Interruption,
    Kind,
    MissRecord,
    OverrunRecord,
    Record,
    ReleaseRecord,
    SkipRecord,
    TraceRecord,
    as_dict,
    decode,
    decode_all,
    encode,
    from_dict,
)
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import run_in_memory

MS = 1_000_000
ints = st.integers(min_value=0, max_value=2**62)  # times, counts, indices: never negative
texts = st.text()
opt_ints = st.none() | ints
priorities = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
entries = st.builds(Entry, texts, texts, ints, ints, ints, priorities)
params = st.fixed_dictionaries(
    {"wcet_ns": st.integers(1, 2**62), "period_ns": st.integers(2, 2**62),
     "deadline_ns": st.integers(1, 2**62), "jitter_ns": st.just(1), "priority": priorities,
     "kernels_ns": st.none() | st.lists(st.integers(1, 2**62), min_size=1),
     "model": st.none() | st.text(min_size=1), "batch": st.integers(1, 64),
     "input_shape": st.none() | st.lists(st.integers(1, 2**20), min_size=1),
     "memory_budget_bytes": opt_ints, "on_overrun": st.sampled_from(["continue", "skip-next"])}
)  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | ints | texts, lambda v: st.lists(v) | st.dictionaries(texts, v)
)
job = (ints, ints, texts, texts)  # t_ns, seq, job, task

RECORDS: st.SearchStrategy[TraceRecord] = st.one_of(
    st.builds(EndRecord, ints, ints, st.none() | st.builds(Interruption, ints, texts)),
    st.builds(ReleaseRecord, *job, ints, ints, priorities),
    st.builds(
        DispatchRecord,
        *job,
        ints,
        texts,
        st.lists(st.sampled_from(Entry._fields)).map(tuple),
        st.lists(entries).map(tuple),
        decided_ahead_ns=ints,
    ),
    st.builds(ChunkRecord, *job, ints, ints, ints),
    st.builds(CompleteRecord, *job, ints, ints, ints, ints, st.booleans()),
    st.builds(MissRecord, *job, ints, ints, texts),
    st.builds(OverrunRecord, *job, ints, ints, texts),
    st.builds(SkipRecord, *job, texts),
    st.builds(FaultRecord, *job, texts),
    st.builds(
        AdmissionRecord,
        ints,
        texts,
        st.booleans(),
        st.sampled_from(sorted(POLICIES)),
        st.booleans(),
        st.dictionaries(texts, json_values),
        st.none() | params,
        opt_ints,
        analysis_points=st.none() | st.integers(1, 2**62),
    ),
)


@given(RECORDS, st.integers(min_value=0, max_value=10**9))
def test_every_record_round_trips(r: TraceRecord, rec: int) -> None:
    line = encode(r, rec)
    assert line.endswith("\n") and "\n" not in line[:-1]
    obj = json.loads(line)  # plain JSON, the fields in schema order after rec, t_ns, kind
    assert list(obj)[:3] == ["rec", "t_ns", "kind"] and obj["kind"] == r.kind
    back = decode(line)
    assert type(back) is type(r) and back == r._replace(rec=rec)
    assert from_dict(as_dict(back)) == back


@given(st.lists(entries, min_size=1, max_size=6, unique_by=lambda e: e.seq))
def test_a_cached_entry_is_reused_only_for_its_own_object(ready: list[Entry]) -> None:
    """A dispatch re-lists entries the encoder formatted before; an equal-seq entry with other
    fields (a different object) is formatted afresh, never taken from the cache."""
    enc = Encoder()
    first = DispatchRecord(0, 0, "a#0", "a", 0, "r", ("seq",), tuple(ready))
    assert decode(enc.line(first)).ready == tuple(ready)
    changed = tuple(e._replace(deadline_ns=e.deadline_ns + 1) for e in ready)
    second = first._replace(ready=changed)
    assert decode(enc.line(second)).ready == changed
    assert decode(enc.line(first)).ready == tuple(ready)


def test_a_schedulers_records_decode_to_themselves() -> None:
    """What the scheduler makes (its fast record constructor included) is what a trace holds."""
    tasks = [{"name": "a", "period_ms": 10, "wcet_ms": 4, "priority": 2},
             {"name": "b", "period_ms": 10, "wcet_ms": 2, "deadline_ms": 3, "offset_ms": 1,
              "priority": 1}]  # fmt: skip
    s = make_scenario(tasks, duration_ms=30, policy="np-fp")  # b misses behind a
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.testing import FakeEngine

    plan = RunPlan.build(s)
    sched = Scheduler.for_plan(plan)
    made: list[Record] = []

    class Keep:
        def write(self, records: Any) -> None:
            made.extend(records)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    run(plan, sched, FakeEngine(), sink=Keep())
    assert sched.drain() == []
    kinds = {r.kind for r in made}
    assert {Kind.RELEASE, Kind.DISPATCH, Kind.COMPLETE, Kind.MISS} <= kinds
    lines = Encoder().lines(made)
    back = [decode(line) for line in lines]
    want = [r._replace(rec=n) for n, r in enumerate(made)]
    assert [type(b) for b in back] == [type(w) for w in want]
    for b, w in zip(back, want, strict=True):
        if isinstance(w, DispatchRecord):
            w = w._replace(ready=tuple(Entry.of(e) for e in w.ready))
        assert b == w


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "is a JSON object, not list"),
        ({"rec": 3, "t_ns": 0, "kind": "teleport"}, "record 3: unknown kind 'teleport'"),
        ({"rec": 4, "t_ns": 0, "kind": "release", "seq": 0, "job": "a#0", "task": "a",
          "release_ns": 0}, "record 4 (release): field 'deadline_ns': an integer expected, "
         "missing"),
        ({"rec": 5, "t_ns": "0", "kind": "skip", "seq": 0, "job": "a#0", "task": "a",
          "reason": "x"}, "field 't_ns': an integer expected, got '0'"),
        ({"rec": 6, "t_ns": 0, "kind": "complete", "seq": 0, "job": "a#0", "task": "a",
          "start_ns": 0, "end_ns": 1, "response_ns": 1, "deadline_ns": 2, "missed": 0},
         "field 'missed': true or false expected, got 0"),
        ({"rec": 7, "t_ns": 0, "kind": "dispatch", "seq": 0, "job": "a#0", "task": "a",
          "rationale": {"rule": "r", "key": ["seq"], "ready": [{"job": "a#0"}]}},
         "record 7 (dispatch): field 'task': a string expected, missing"),
        ({"rec": 8, "t_ns": 0, "kind": "dispatch", "seq": 0, "job": "a#0", "task": "a",
          "rationale": {"rule": "r", "key": "seq", "ready": []}},
         "field 'key': a list expected, got 'seq'"),
        ({"rec": 9, "t_ns": 0, "kind": "admit", "task": "a", "policy": "np-edf",
          "enforced": True, "rationale": [], "gpu_memory_bytes": None},
         "record 9 (admit): field 'rationale': an object expected, got []"),
        ({"rec": 10, "t_ns": 5, "kind": "end", "interrupted": None},
         "record 10 (end): field 'jobs': an integer expected, missing"),
        ({"rec": 11, "t_ns": 5, "kind": "end", "jobs": 1, "interrupted": "SIGINT"},
         "record 11 (end): field 'interrupted': an object expected, got 'SIGINT'"),
        ({"rec": 12, "t_ns": 5, "kind": "end", "jobs": 1, "interrupted": {"at_ns": 5}},
         "record 12 (end): field 'signal': a string expected, missing"),
    ],
)  # fmt: skip
def test_decoding_names_the_record_and_field_that_are_wrong(obj: Any, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        from_dict(obj)


def test_the_end_record_is_read_but_left_out_of_the_runs_records() -> None:
    """``decode`` reads an end record; ``decode_all`` (what a replay takes) leaves it out."""
    rel = ReleaseRecord(0, 0, "a#0", "a", 5, 0, None, 0)
    end = EndRecord(4, 1, Interruption(4, "SIGTERM"), 1)
    lines = Encoder().lines([rel, end])
    assert lines[1] == ('{"rec":1,"t_ns":4,"kind":"end","jobs":1,'
                        '"interrupted":{"at_ns":4,"signal":"SIGTERM"}}\n')  # fmt: skip
    assert decode(lines[1]) == end
    assert decode_all([json.loads(line) for line in lines]) == [rel]
    assert decode_all([rel, end]) == [rel]
    assert Replay.of([json.loads(line) for line in lines]).jobs["a#0"].release == rel


def test_not_json_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not a JSON record"):
        decode("{nope")


def test_old_traces_still_decode() -> None:
    """Before ``rec``: ``seq`` was the record number and a release named ``job_seq``."""
    old = [
        {"seq": 0, "t_ns": 0, "kind": "release", "job": "a#0", "task": "a", "deadline_ns": 5,
         "release_ns": 0, "job_seq": 7},
        {"seq": 1, "t_ns": 0, "kind": "dispatch", "job": "a#0", "task": "a",
         "rationale": {"rule": "r", "key": ["seq"], "ready": [
             {"job": "a#0", "task": "a", "deadline_ns": 5, "release_ns": 0, "seq": 7}]}},
        {"seq": 2, "t_ns": 4, "kind": "complete", "job": "a#0", "task": "a", "start_ns": 0,
         "end_ns": 4, "response_ns": 4, "deadline_ns": 5, "missed": False},
    ]  # fmt: skip
    rel, disp, done = decode_all(old)
    assert rel == ReleaseRecord(0, 7, "a#0", "a", 5, 0, None, 0)
    assert isinstance(disp, DispatchRecord) and (disp.rec, disp.seq) == (1, 7)
    assert isinstance(done, CompleteRecord) and (done.rec, done.seq) == (2, -1)


# ----------------------------------------------------------------------------------- replay


def test_replay_follows_a_chunked_run_with_an_overrun_skip_and_fault() -> None:
    """lp-edf chunks (a job back in the ready set at its boundary), an overrun under
    skip-next (the next job skipped unrun) and a fault, state checked after each record."""
    e = Entry("b#0", "b", 20, 1, 1)
    recs: list[Record] = [
        AdmissionRecord(0, "a", True, "lp-edf", True, {}, {}, None),
        AdmissionRecord(0, "b", True, "lp-edf", True, {}, {}, None),
        ReleaseRecord(0, 0, "a#0", "a", 10, 0),
        DispatchRecord(0, 0, "a#0", "a", 0, "r", ("seq",), (Entry("a#0", "a", 10, 0, 0),)),
        ReleaseRecord(1, 1, "b#0", "b", 20, 1),
        ChunkRecord(3, 0, "a#0", "a", 1, 2, 3),
        DispatchRecord(3, 1, "b#0", "b", 0, "r", ("seq",), (e, Entry("a#0", "a", 10, 0, 0))),
        FaultRecord(5, 1, "b#0", "b", "boom"),
        DispatchRecord(5, 0, "a#0", "a", 1, "r", ("seq",), (Entry("a#0", "a", 10, 0, 0),)),
        CompleteRecord(12, 0, "a#0", "a", 0, 12, 12, 10, True),
        MissRecord(10, 0, "a#0", "a", 0, 10, "running"),
        OverrunRecord(12, 0, "a#0", "a", 9, 4, "skip-next"),
        SkipRecord(12, 2, "a#1", "a", "skip-next: a#0 overran its WCET"),
    ]
    rp = Replay()
    seen = []
    for r in recs:
        rp.apply(r)
        seen.append((sorted(rp.ready), sorted(rp.running)))
    assert seen[2:10] == [
        (["a#0"], []), ([], ["a#0"]), (["b#0"], ["a#0"]), (["a#0", "b#0"], []),
        (["a#0"], ["b#0"]), (["a#0"], []), ([], ["a#0"]), ([], []),
    ]  # fmt: skip
    assert rp.policy == "lp-edf" and list(rp.tasks) == ["a", "b"] and rp.dispatches == 3
    a, b = rp.jobs["a#0"], rp.jobs["b#0"]
    assert a.status is JobStatus.COMPLETED and (a.start_ns, a.end_ns) == (0, 12)
    assert [(x.chunk, x.start_ns, x.end_ns, x.end, x.whole) for x in a.runs] == [
        (0, 0, 3, Kind.CHUNK, False), (1, 5, 12, Kind.COMPLETE, False)]  # fmt: skip
    assert a.miss is not None and a.overrun is not None and a.overrun.action == "skip-next"
    assert len(a.contests) == 3  # a#0 was listed by every dispatch until it ended
    assert b.status is JobStatus.FAILED and b.fault is not None and b.end_ns == 5
    assert [x.job for x in b.blockers] == ["a#0"] and b.entry == e
    assert rp.jobs["a#1"].status is JobStatus.SKIPPED and rp.jobs["a#1"].release is None
    assert [(x.job, x.end) for x in rp.runs] == [
        ("a#0", Kind.CHUNK), ("b#0", Kind.FAULT), ("a#0", Kind.COMPLETE)]  # fmt: skip


def test_replay_takes_the_device_start_a_completion_reports() -> None:
    recs = [
        ReleaseRecord(0, 0, "a#0", "a", 10, 0),
        DispatchRecord(1, 0, "a#0", "a", 0, "r", ("seq",), (Entry("a#0", "a", 10, 0, 0),)),
        CompleteRecord(6, 0, "a#0", "a", 2, 6, 6, 10, False),
    ]
    (run,) = Replay.of([as_dict(r) for r in recs]).runs
    assert (run.dispatched_ns, run.start_ns, run.end_ns, run.whole) == (1, 2, 6, True)


def test_replay_of_a_real_run_agrees_with_the_scheduler() -> None:
    s = make_scenario(
        [{"name": "a", "period_ms": 5, "wcet_ms": 3}, {"name": "b", "period_ms": 7, "wcet_ms": 3}],
        duration_ms=70,
    )
    records, jobs = run_in_memory(s)
    rp = Replay.of(records)
    assert not rp.ready and not rp.running
    assert [j.id for j in jobs] == list(rp.jobs)
    for j in jobs:
        js = rp.jobs[j.id]
        assert (js.seq, js.status, js.start_ns, js.end_ns) == (j.seq, j.status, j.start_ns,
                                                               j.end_ns)  # fmt: skip
        assert (js.miss is not None) == j.missed


def test_a_streaming_replay_gives_the_same_runs_and_forgets_finished_jobs() -> None:
    """``Replay(retain=False)`` hands over the runs the default replay keeps, in the same order
    and with the same times, while it holds only the jobs in flight."""
    s = make_scenario(
        [{"name": "a", "period_ms": 5, "wcet_ms": 2}, {"name": "b", "period_ms": 7, "wcet_ms": 3}],
        duration_ms=700,
    )
    records = decode_all(run_in_memory(s)[0])
    seen: list[Any] = []
    rp = Replay(retain=False, on_run=seen.append)
    held = []
    for r in records:
        rp.apply(r)
        held.append(len(rp.jobs))
    full = Replay.of(records)

    def key(x: Any) -> tuple[Any, ...]:
        return (x.job, x.chunk, x.dispatched_ns, x.start_ns, x.end_ns, x.end)

    assert [key(x) for x in seen] == [key(x) for x in full.runs] and len(seen) > 150
    assert rp.runs == [] and max(held) <= 4 and len(full.jobs) > 150
    assert (rp.ready, rp.running, rp.dispatches) == ({}, {}, full.dispatches)


def test_a_streaming_replay_keeps_a_job_through_its_last_instant() -> None:
    """A ``miss`` before the ``complete`` of a running job and an ``overrun`` right after it
    (same instant) still find the job; it is forgotten when time moves on, and a record about
    a forgotten job neither fails nor stays."""
    rp = Replay(retain=False)
    entry = Entry("a#0", "a", 10, 0, 0)
    for r in [
        ReleaseRecord(0, 0, "a#0", "a", 10, 0),
        DispatchRecord(0, 0, "a#0", "a", 0, "r", ("seq",), (entry,)),
        MissRecord(10, 0, "a#0", "a", 0, 10, "running"),
        CompleteRecord(12, 0, "a#0", "a", 0, 12, 12, 10, True),
        OverrunRecord(12, 0, "a#0", "a", 12, 4, "skip-next"),
    ]:
        rp.apply(r)
    a = rp.jobs["a#0"]
    assert a.miss is not None and a.overrun is not None and a.status is JobStatus.COMPLETED
    assert a.records == [] and a.contests == []  # streaming: no per-job history
    rp.apply(ReleaseRecord(20, 1, "a#1", "a", 30, 20))
    assert list(rp.jobs) == ["a#1"]
    rp.apply(OverrunRecord(25, 0, "a#0", "a", 12, 4, "none"))  # about a forgotten job
    rp.apply(SkipRecord(25, 2, "a#2", "a", "x"))  # a job never released, done at once
    assert sorted(rp.jobs) == ["a#0", "a#1", "a#2"]
    rp.apply(DispatchRecord(30, 1, "a#1", "a", 0, "r", ("seq",), (Entry("a#1", "a", 30, 20, 1),)))
    assert list(rp.jobs) == ["a#1"] and list(rp.running) == ["a#1"]


@pytest.mark.parametrize("flush", ["record", "instant", "batch"])
def test_an_engine_error_leaves_the_records_so_far_in_the_trace(flush: str) -> None:
    """The loop hands over the records of an instant cut short (its releases, its dispatch),
    and the sink writes them on close: the trace is a valid prefix of the run."""
    from aegis_core.record.sinks import JsonlTrace
    from aegis_core.run.loop import run
    from aegis_core.run.plan import RunPlan
    from aegis_core.run.testing import FakeEngine

    class Breaks(FakeEngine):
        def dispatch(self, d: Any) -> None:
            if d.job == "b#0":
                raise RuntimeError("device lost")
            super().dispatch(d)

    s = make_scenario(
        [{"name": "a", "period_ms": 10, "wcet_ms": 2},
         {"name": "b", "period_ms": 10, "wcet_ms": 2, "offset_ms": 1}], duration_ms=20,
    )  # fmt: skip
    plan = RunPlan.build(s)
    stream = io.StringIO()
    sink = JsonlTrace(stream, flush=flush)
    with pytest.raises(RuntimeError, match="device lost"):
        run(plan, Scheduler.for_plan(plan), Breaks(), sink=sink)
    sink.close()
    got = [(r.kind, getattr(r, "job", None)) for r in map(decode, stream.getvalue().splitlines())]
    assert got == [("release", "a#0"), ("dispatch", "a#0"), ("release", "b#0"),
                   ("complete", "a#0"), ("dispatch", "b#0")]  # fmt: skip
