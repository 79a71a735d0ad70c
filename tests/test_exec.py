"""The executor engine (``exec``) on its CPU backends (mock, numpy) and, where a GPU is
usable, on cupy: same releases as the simulator, serialized vs concurrent execution, fault
isolation, the results directory, resource hygiene and the CUDA error seam.

Nothing here depends on how busy the host is: the mock backend runs on a virtual clock
(exact schedules); runs that execute real kernels on the wall clock assert only what holds
on any host (the schedule's logic, and every deadline miss attributed to a recorded cause)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MS, make_scenario

from aegis_core.model.errors import AegisError, BackendError, InputError, JobFault
from aegis_core.model.status import JobStatus
from aegis_core.run.arrivals import releases
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import check_run, log, run_in_memory, unexplained_misses
from aegis_core.tools.cli import main
from aegis_core.tools.runner import run_scenario
from aegis_exec import backends
from aegis_exec.backends import resolve
from aegis_exec.backends.cuda import cuda_errors, translate
from aegis_exec.clock import WALL
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import VirtualClock, faults

GPU = backends.usable("cupy")
needs_gpu = [
    pytest.mark.gpu,
    pytest.mark.skipif(not GPU, reason="needs CuPy and a usable CUDA GPU"),
]
BACKENDS = [
    pytest.param("mock", id="mock"),
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=needs_gpu),
]

# Every deadline below is far beyond its task's period: on a 2-core host the numpy backend's
# sub-ms jobs occasionally stall for 10-30 ms, and for 30-40 ms when another process keeps
# one core busy (OpenBLAS's own threads contend with the streams' threads). The tests here are
# about releases, ordering, overlap and faults, not about timeliness.


def engine(backend: str, **options: Any) -> ExecEngine:
    """The executor on ``backend``; a backend that runs no real work (mock) runs on a
    virtual clock: its schedule is exact, whatever the host's load."""
    caps = backends.spec(resolve(backend)).caps
    return ExecEngine(backend, clock=WALL if caps.executes_models else VirtualClock(), **options)


MIXED = make_scenario(
    [
        {"name": "per", "model": "tiny_cnn", "period_ms": 20, "deadline_ms": 500,
         "wcet_ms": 2, "offset_ms": 3},
        {"name": "spo", "model": "mlp", "input_shape": [256], "arrival": "sporadic",
         "period_ms": 15, "slack_ms": 10, "deadline_ms": 500, "wcet_ms": 1},
        {"name": "poi", "model": "tiny_cnn", "arrival": "poisson", "period_ms": 10,
         "slack_ms": 10, "deadline_ms": 500, "wcet_ms": 1, "offset_ms": 1},
    ],
    duration_ms=100,
)  # fmt: skip


def planned(seed: int) -> list[tuple[str, int]]:
    names = [t.name for t in MIXED.tasks]
    return [(f"{names[r.task_index]}#{r.k}", r.t_ns) for r in releases(MIXED, seed)]


def test_exec_releases_the_same_jobs_as_the_simulator() -> None:
    want = planned(7)
    assert want != planned(8)  # the seed matters: sporadic and poisson gaps are drawn
    assert [t for j, t in want if j.startswith("per#")] == [3 * MS, 23 * MS, 43 * MS,
                                                             63 * MS, 83 * MS]  # fmt: skip
    kinds = {j.split("#")[0] for j, _ in want}
    assert kinds == {"per", "spo", "poi"}

    from aegis_sim import SimPyEngine

    got = {}
    _, jobs = run_in_memory(MIXED, SimPyEngine(), seed=7)
    got["sim"] = jobs
    assert all(j.lag_ns == 0 for j in jobs)
    for backend in ("mock", "numpy"):
        _, jobs = run_in_memory(MIXED, engine(backend), seed=7)
        got[backend] = jobs
    assert all(j.lag_ns == 0 for j in got["mock"])  # the virtual clock is never late
    got["numpy-runner"] = run_scenario(MIXED, ExecEngine("numpy"), write=False, seed=7).jobs
    for name, jobs in got.items():
        assert [(j.id, j.release_ns) for j in jobs] == want, name
        assert all(j.status is JobStatus.COMPLETED for j in jobs), name
        assert all(j.lag_ns >= 0 for j in jobs), name


def test_np_edf_on_numpy_serializes_and_picks_the_edf_minimum() -> None:
    # three jobs released together every 150 ms: EDF runs b (D 400), then c (D 450), then a
    # (D 500, still before b#1's 550); d arrives at 1 ms, 41 ms, ... and competes
    scenario = make_scenario(
        [
            {"name": "a", "model": "tiny_cnn", "batch": 8, "period_ms": 150,
             "deadline_ms": 500, "wcet_ms": 5},
            {"name": "b", "model": "mlp", "input_shape": [256], "period_ms": 150,
             "deadline_ms": 400, "wcet_ms": 5},
            {"name": "c", "model": "tiny_cnn", "period_ms": 150, "deadline_ms": 450,
             "wcet_ms": 5},
            {"name": "d", "model": "mlp", "input_shape": [256], "period_ms": 40,
             "deadline_ms": 400, "wcet_ms": 1, "offset_ms": 1},
        ],
        duration_ms=200,
    )  # fmt: skip
    records, jobs = run_in_memory(scenario, ExecEngine("numpy"))
    assert check_run(records, jobs, slots=1) == len(jobs) == 2 * 3 + 5
    order = [j for _, j, _ in log(records, ["dispatch"])]
    assert order[0] == "b#0"  # (d#0 arrives at 1 ms and may overtake c#0 and a#0)
    assert order.index("c#0") < order.index("a#0") < order.index("b#1")
    first = next(r for r in records if r["kind"] == "dispatch")
    assert first["rationale"]["key"] == ["deadline_ns", "release_ns", "seq"]
    ready = first["rationale"]["ready"]
    assert ready[0]["job"] == "b#0" and sorted(e["job"] for e in ready) == ["a#0", "b#0", "c#0"]
    ran = sorted(jobs, key=lambda j: j.start_ns or 0)
    for prev, nxt in itertools.pairwise(ran):
        assert prev.end_ns is not None and nxt.start_ns is not None
        assert nxt.start_ns >= prev.end_ns, f"{prev.id} and {nxt.id} overlap"
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    assert unexplained_misses(jobs) == []  # a loaded host may stall a job: never unexplained


@pytest.mark.parametrize("backend", ["mock", "numpy"])
def test_unscheduled_launches_every_job_at_its_release(backend: str) -> None:
    # ~10 ms jobs on numpy: longer than the interpreter's 5 ms switch interval
    big = {"model": "mlp", "batch": 128, "input_shape": [2048], "period_ms": 50,
           "deadline_ms": 500, "wcet_ms": 5}  # fmt: skip
    scenario = make_scenario(
        [{"name": "a", **big}, {"name": "b", **big}], duration_ms=100, policy="unscheduled"
    )
    records, jobs = run_in_memory(scenario, engine(backend))
    assert check_run(records, jobs, slots=None) == len(jobs) == 4
    # both tasks' jobs are released together and launched in that same instant, neither
    # waiting for the other (on any host: the instant is when the engine woke up)
    dispatches = {j: t for t, j, _ in log(records, ["dispatch"])}
    assert dispatches["a#0"] == dispatches["b#0"] and dispatches["a#1"] == dispatches["b#1"]
    if backend == "mock":  # the virtual clock: at the release, running side by side
        assert all(dispatches[j.id] == j.release_ns for j in jobs)
        assert [(j.start_ns, j.end_ns) for j in jobs] == [(0, 5 * MS)] * 2 + [
            (50 * MS, 55 * MS)] * 2  # fmt: skip


TWO = make_scenario(
    [
        {"name": "a", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 2},
        {"name": "b", "model": "mlp", "input_shape": [256], "period_ms": 10,
         "deadline_ms": 500, "wcet_ms": 2, "offset_ms": 1},
    ],
    duration_ms=50,
)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_faulting_job_fails_alone(backend: str) -> None:
    eng = engine(backend, wrap=faults({"b#1": "boom"}))
    records, jobs = run_in_memory(TWO, eng)
    by_id = {j.id: j for j in jobs}
    assert sorted(by_id) == sorted([f"a#{k}" for k in range(5)] + [f"b#{k}" for k in range(5)])
    b1 = by_id["b#1"]
    assert b1.status is JobStatus.FAILED and b1.error is not None and "boom" in b1.error
    failed = {r["job"]: r for r in records if r["kind"] == "fault"}
    assert sorted(failed) == ["b#1"]  # that job only: the task's later jobs run
    assert "boom" in failed["b#1"]["error"]
    assert [j.id for j in jobs if j.status is not JobStatus.COMPLETED] == ["b#1"]
    assert [r["job"] for r in records if r["kind"] == "complete" and r["task"] == "b"] == [
        "b#0", "b#2", "b#3", "b#4",
    ]  # fmt: skip
    assert check_run(records, jobs, slots=1) == 10
    report = eng.report()
    assert list(report["faulted_tasks"]) == ["b"] and "boom" in report["faulted_tasks"]["b"]


@pytest.mark.parametrize("at", ["launch", "end"])
def test_mock_fault_message_is_the_injected_one(at: Any) -> None:
    _, jobs = run_in_memory(TWO, engine("mock", wrap=faults({"a#0": "bad kernel"}, at)))
    errors = {j.id: j.error for j in jobs if j.status is JobStatus.FAILED}
    assert errors["a#0"] == "bad kernel"
    assert sorted(errors) == ["a#0"]
    assert all(j.status is JobStatus.COMPLETED for j in jobs if j.task == "b")


@pytest.mark.parametrize("backend", ["mock", "numpy"])
def test_a_plan_runs_its_budgets_chunk_chains(backend: str) -> None:
    plan = RunPlan.build(TWO)
    assert plan.chunks == tuple(b.chunks_ns for b in plan.budgets)
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, engine(backend))
    assert all(j.status is JobStatus.COMPLETED for j in scheduler.jobs)


# ------------------------------------------------------------------------- the command line

CLI_TASKS = [
    {"name": "cnn", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 3},
    {"name": "mlp", "model": "mlp", "input_shape": [256], "arrival": "sporadic",
     "period_ms": 15, "slack_ms": 5, "deadline_ms": 500, "wcet_ms": 2, "offset_ms": 2},
]  # fmt: skip


def write_scenario(tmp_path: Path, tasks: list[dict[str, Any]], name: str = "cli") -> str:
    path = tmp_path / f"{name}.yaml"
    doc = {"name": name, "policy": "np-edf", "duration_ms": 50, "seed": 3, "tasks": tasks}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


def read_jobs(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "jobs.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:]]


def test_exec_on_numpy_writes_the_same_layout_as_sim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, CLI_TASKS)
    ex, sim = tmp_path / "exec", tmp_path / "sim"
    assert main(["exec", path, "--backend", "numpy", "--out", str(ex)]) == 0
    out = capsys.readouterr().out
    assert "device: CPU" in out and f"results: {ex}/" in out
    assert main(["sim", path, "--out", str(sim)]) == 0
    capsys.readouterr()
    files = sorted(p.name for p in ex.iterdir())
    assert files == sorted(p.name for p in sim.iterdir()) == [
        ".aegis-results", "jobs.csv", "summary.json", "trace.json", "trace.jsonl",
    ]  # fmt: skip

    header, rows = read_jobs(ex)
    sim_header, sim_rows = read_jobs(sim)
    assert header == sim_header and header[-1] == "release_lag_ns"
    keys = ("job", "task", "release_ns", "deadline_ns")
    assert [tuple(r[k] for k in keys) for r in rows] == [
        tuple(r[k] for k in keys) for r in sim_rows
    ]
    assert len(rows) == 5 + 3
    assert {r["status"] for r in rows} == {"completed"}
    assert all(int(r["release_lag_ns"]) >= 0 for r in rows)
    assert all(int(r["start_ns"]) >= int(r["release_ns"]) for r in rows)

    summary = json.loads((ex / "summary.json").read_text(encoding="utf-8"))
    assert (summary["engine"], summary["backend"]) == ("exec", "numpy")
    assert summary["device"].startswith("CPU")
    assert "numpy" in summary["versions"]
    assert summary["jobs"] == 8  # a miss on a stalled host is a valid run: counted right
    assert summary["misses"] == sum(int(r["end_ns"]) > int(r["deadline_ns"]) for r in rows)
    exec_ = summary["exec"]
    assert "n" in exec_["dispatch_gap_ns"]
    assert exec_["release_lag_ns"]["n"] == 8
    assert exec_["cuda_graphs"] is False
    assert exec_["faulted_tasks"] == {}
    assert sorted(exec_["chunk_overruns"]) == ["cnn", "mlp"]
    sim_summary = json.loads((sim / "summary.json").read_text(encoding="utf-8"))
    assert "exec" not in sim_summary and sim_summary["device"] == "simulated"
    assert sorted(set(summary) - set(sim_summary)) == ["exec"]

    trace = [json.loads(line) for line in (ex / "trace.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in trace[:2]] == ["admit", "admit"]
    assert sum(r["kind"] == "complete" for r in trace) == 8


def test_a_task_without_model_is_refused_by_numpy_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [CLI_TASKS[0], {"name": "bare", "period_ms": 10, "deadline_ms": 500, "wcet_ms": 1}]
    path = write_scenario(tmp_path, tasks)
    out = tmp_path / "out"
    assert main(["exec", path, "--backend", "numpy", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "task 'bare'" in err and "field 'model'" in err
    assert not out.exists()


def test_mock_runs_a_model_less_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [{k: v for k, v in t.items() if k not in ("model", "input_shape")} for t in CLI_TASKS]
    path = write_scenario(tmp_path, tasks)
    out = tmp_path / "out"
    assert main(["exec", path, "--backend", "mock", "--out", str(out)]) == 0
    capsys.readouterr()
    _, rows = read_jobs(out)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"completed"}
    # mock jobs run exactly their WCET
    assert {(r["task"], r["exec_ns"]) for r in rows} == {("cnn", "3000000"), ("mlp", "2000000")}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["backend"], summary["device"]) == ("mock", "mock (synthetic durations)")


def test_an_unknown_backend_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, CLI_TASKS)
    assert main(["exec", path, "--backend", "tpu", "--out", str(tmp_path / "out")]) == 2
    assert "unknown backend 'tpu'; choose one of: auto, " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(GPU, reason="a usable GPU is present")
def test_cupy_without_a_gpu_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, CLI_TASKS)
    out = tmp_path / "out"
    assert main(["exec", path, "--backend", "cupy", "--out", str(out)]) == 2
    assert "cupy backend needs CuPy" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------- resources


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_many_short_numpy_runs_leak_nothing() -> None:
    from aegis_exec.backends.numpy import WorkerStream

    scenario = make_scenario(
        [
            {"name": "a", "model": "tiny_cnn", "period_ms": 5, "deadline_ms": 500, "wcet_ms": 1},
            {"name": "b", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 500,
             "wcet_ms": 1, "offset_ms": 1},
        ],
        duration_ms=20,
    )  # fmt: skip
    threads = threading.active_count()
    rss = {}
    for i in range(1, 51):
        _, jobs = run_in_memory(scenario, ExecEngine("numpy"))
        assert len(jobs) == 4 + 2 and all(j.status is JobStatus.COMPLETED for j in jobs)
        assert WorkerStream.live == 0, f"run {i}: {WorkerStream.live} streams left open"
        if i in (10, 50):
            rss[i] = _rss_bytes()
    assert threading.active_count() == threads
    assert not [t.name for t in threading.enumerate() if t.name.startswith("aegis-stream")]
    assert rss[50] - rss[10] < 20 * 2**20, f"RSS grew by {(rss[50] - rss[10]) / 2**20:.1f} MB"


# ------------------------------------------------------------------------ the CUDA seam


def _fake_error(name: str, module: str) -> type[Exception]:
    cls = type(name, (RuntimeError,), {})
    cls.__module__ = module
    return cls


CUDARuntimeError = _fake_error("CUDARuntimeError", "cupy_backends.cuda.api.runtime")
OutOfMemoryError = _fake_error("OutOfMemoryError", "cupy.cuda.memory")


def test_cuda_errors_become_backend_errors() -> None:
    err = translate(CUDARuntimeError("cudaErrorIllegalAddress: an illegal access"), "polling")
    assert type(err) is BackendError
    assert str(err) == (
        "CUDA error while polling: CUDARuntimeError: cudaErrorIllegalAddress: an illegal access"
    )
    oom = translate(OutOfMemoryError("out of memory allocating 1,024 bytes"), "loading x")
    assert type(oom) is BackendError
    assert str(oom) == "out of device memory while loading x: out of memory allocating 1,024 bytes"
    other = translate(ValueError("odd"), "launching")
    assert type(other) is BackendError
    assert str(other) == "unexpected error while launching: ValueError: odd"


@pytest.mark.parametrize("error", [InputError("bad"), JobFault("job"), BackendError("dev")])
def test_aegis_errors_pass_the_seam_unchanged(error: AegisError) -> None:
    assert translate(error, "anything") is error
    with pytest.raises(type(error)) as exc, cuda_errors("anything"):
        raise error
    assert exc.value is error and exc.value.__cause__ is None


def test_the_cuda_errors_context_chains_the_original() -> None:
    original = CUDARuntimeError("cudaErrorLaunchFailure")
    where = "synchronising a stream"
    with (
        pytest.raises(BackendError, match=f"^CUDA error while {where}: ") as exc,
        cuda_errors(where),
    ):
        raise original
    assert exc.value.__cause__ is original
    with (
        pytest.raises(BackendError, match=r"^out of device memory while x: 2 GiB$") as oom,
        cuda_errors("x"),
    ):
        raise OutOfMemoryError("2 GiB")
    assert type(oom.value.__cause__).__name__ == "OutOfMemoryError"
    with cuda_errors("nothing"):
        pass  # no error, nothing raised


def test_importing_the_executor_does_not_import_cupy() -> None:
    probe = (
        "import aegis_exec, aegis_exec.engine, aegis_exec.backends, aegis_exec.backends.cupy\n"
        "import sys\nprint(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = set(out.stdout.split())
    assert "aegis_exec.backends.cupy" in modules and "aegis_exec.engine" in modules
    assert not {m for m in modules if m == "cupy" or m.startswith(("cupy.", "cupy_backends"))}


def test_auto_resolves_to_cupy_only_with_a_usable_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "usable", lambda name: name != "cupy")
    assert resolve("auto") == "numpy"
    assert ExecEngine("auto").backend == "numpy"
    assert resolve("numpy") == "numpy" and resolve("mock") == "mock"
    with pytest.raises(InputError, match="cupy backend needs CuPy"):
        resolve("cupy")
    monkeypatch.setattr(backends, "usable", lambda name: True)
    assert resolve("auto") == "cupy"
    assert resolve("cupy") == "cupy"
    with pytest.raises(InputError, match=r"unknown backend 'tpu'; choose one of: auto, cupy"):
        resolve("tpu")
    with pytest.raises(InputError, match="unknown backend 'tpu'"):
        ExecEngine("tpu")


# ------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CuPy and a usable CUDA GPU")
def test_cupy_runs_three_models_and_releases_every_resource() -> None:
    import cupy

    from aegis_exec.backends.cuda import CudaEvent, CudaStream

    scenario = make_scenario(
        [
            {"name": "detector", "model": "resnet18", "period_ms": 33.3, "wcet_ms": 6},
            {"name": "classifier", "model": "mobilenet_v2", "period_ms": 20,
             "deadline_ms": 15, "wcet_ms": 3, "offset_ms": 1},
            {"name": "transformer", "model": "bert_tiny", "arrival": "sporadic",
             "period_ms": 50, "deadline_ms": 40, "slack_ms": 25, "wcet_ms": 2.5},
        ],
        duration_ms=200,
    )  # fmt: skip
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    result = run_scenario(scenario, ExecEngine("cupy"), write=False)
    assert (CudaStream.live, CudaEvent.live) == (0, 0)
    assert pool.used_bytes() == before
    s = result.summary
    assert (s["engine"], s["backend"]) == ("exec", "cupy")
    assert not s["device"].startswith("CPU") and "cupy" in s["versions"]
    assert s["exec"]["cuda_graphs"] is True, s["exec"].get("graph_fallbacks")
    assert unexplained_misses(result.jobs) == []
    assert s["jobs"] == len(RunPlan.build(scenario).releases)
    assert all(j.status is JobStatus.COMPLETED for j in result.jobs)


# ------------------------------------------------------------------ lp-edf: chunk by chunk
# The planner's kernels [3, 2, 3] ms merge into chunks [5, 3] ms (scenarios/lp_edf.yaml); the
# tests check the chunking, not timeliness (a miss on a stalled CPU is still a valid run).

LP = make_scenario(
    [
        {"name": "safety", "model": "tiny_cnn", "period_ms": 10, "deadline_ms": 8,
         "wcet_ms": 2},
        {"name": "planner", "model": "mobilenet_v2", "input_shape": [3, 32, 32],
         "period_ms": 40, "deadline_ms": 30, "kernels_ms": [3, 2, 3]},
    ],
    duration_ms=80,
    policy="lp-edf",
)  # fmt: skip


def test_lp_edf_chunks_are_contiguous_op_ranges_covering_the_model() -> None:
    from aegis_core.analysis.admission import admit
    from aegis_exec.engine import task_work

    plan = RunPlan.build(LP, admission=admit(LP))
    work = task_work(plan, "numpy")
    planner = work[1]
    assert len(planner.ranges) == len(plan.chunks[1]) >= 2
    assert planner.ranges[0].start == 0 and planner.ranges[-1].stop == len(planner.graph.ops)
    assert all(a.stop == b.start for a, b in itertools.pairwise(planner.ranges))
    assert work[0].ranges == (range(len(work[0].graph.ops)),)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lp_edf_runs_each_chunk_as_its_own_dispatch(backend: str) -> None:
    from aegis_core.analysis.admission import admit

    adm = admit(LP)
    n = len(RunPlan.build(LP, admission=adm).chunks[1])
    records, jobs = run_in_memory(LP, engine(backend), admission=adm)
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    planner = [j for j in jobs if j.task == "planner"]
    chunks = [r for r in records if r["kind"] == "chunk"]
    dispatches = [r for r in records if r["kind"] == "dispatch" and r["task"] == "planner"]
    assert len(chunks) == len(planner) * (n - 1)
    assert len(dispatches) == len(planner) * n
    assert check_run(records, jobs, slots=1) == len(jobs) + len(chunks)


def test_lp_edf_with_more_chunks_than_operators_is_refused() -> None:
    from aegis_core.model.errors import ScenarioError
    from aegis_exec.engine import task_work

    plan = RunPlan.build(LP)
    many = dataclasses.replace(plan.budgets[1], chunks_ns=(MS,) * 500)
    plan = dataclasses.replace(plan, budgets=(plan.budgets[0], many))
    with pytest.raises(ScenarioError, match=r"task 'planner': field 'kernels_ms': .*500 chunks"):
        task_work(plan, "numpy")


# ------------------------------------------------------------------ review fixes, pinned


def _graph_file(tmp_path: Path, **change: Any) -> Path:
    from aegis_core.graph.zoo import build_model

    doc = build_model("tiny_cnn").to_dict()
    for op in doc["ops"]:
        if op["name"] == "conv1":
            op["attrs"] = {**op["attrs"], **change}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [({"stride": 0}, "stride must be an integer >= 1"),
     ({"pad": -1}, "pad must be an integer >= 0"), ({"stride": "2"}, "stride must be an integer")],
)  # fmt: skip
def test_a_graph_file_with_bad_attributes_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    g = _graph_file(tmp_path, **change)
    sc = tmp_path / "s.yaml"
    sc.write_text(f"name: s\ntasks:\n  - {{name: a, model: {g}, period_ms: 10, wcet_ms: 5}}\n")
    out = tmp_path / "out"
    assert main(["exec", str(sc), "--backend", "numpy", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "task 'a': field 'model'" in err and message in err and not out.exists()


@pytest.mark.parametrize("field", ["batch: 4", "input_shape: [3, 32, 32]"])
def test_a_graph_file_fixes_its_own_batch_and_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    g = _graph_file(tmp_path)
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"name: s\ntasks:\n  - {{name: a, model: {g}, {field}, period_ms: 10, wcet_ms: 5}}\n"
    )
    assert main(["admit", str(sc)]) == 2
    assert "a graph file fixes its own" in capsys.readouterr().err


def test_results_onto_a_file_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["exec", "scenarios/tiny_gpu.yaml", "--backend", "mock", "--out", str(target)]) == 2
    assert f"results directory {target}" in capsys.readouterr().err


def test_an_engine_that_cannot_start_leaves_nothing_and_no_stale_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["exec", "scenarios/tiny_gpu.yaml", "--backend", "mock", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        ".aegis-results",  # the marker: AegisRT's results (docs/CONTRACTS.md §results)
        "summary.json",
        "jobs.csv",
        "trace.json",
        "trace.jsonl",
    }

    class Broken(ExecEngine):
        def start(self, plan: RunPlan) -> None:
            raise BackendError("device fell off the bus")

    from aegis_core.model.scenario import load_scenario

    with pytest.raises(BackendError):
        run_scenario(load_scenario("scenarios/tiny_gpu.yaml"), Broken("mock"), out_dir=out)
    assert list(out.iterdir()) == []  # the earlier run's results are not left beside nothing
    fresh = tmp_path / "fresh"
    with pytest.raises(BackendError):
        run_scenario(load_scenario("scenarios/tiny_gpu.yaml"), Broken("mock"), out_dir=fresh)
    assert not fresh.exists()


def test_rejected_tasks_are_validated_but_never_loaded() -> None:
    from aegis_core.analysis.admission import admit
    from aegis_exec.engine import task_work

    sc = make_scenario(
        [
            {"name": "a", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 8},
            {"name": "b", "model": "resnet18", "period_ms": 10, "wcet_ms": 8},
        ]
    )
    adm = admit(sc)
    assert [v.admitted for v in adm.tasks] == [True, False]
    work = task_work(RunPlan.build(sc, admission=adm), "numpy")
    assert work[0].graph is not None and work[1].graph is None


class _Skewed:
    """A mock-like backend whose device clock runs ``skew`` ns ahead of the host's."""

    name, device = "skewed", "skewed"

    def __init__(self, clock: VirtualClock, skew: int, duration: int) -> None:
        self.clock, self.skew, self.duration = clock, skew, duration
        self.q: list[Any] = []

    def prepare(self, work: Any, layout: Any = None) -> None:
        pass

    def graphs(self) -> dict[int, Any]:
        return {}

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        from aegis_exec.backends import Finished

        t = self.clock.now_ns() + self.skew
        self.q.append(Finished(token, t, t + self.duration))

    def snapshot(self) -> tuple[int, list[Any]]:
        now = self.clock.now_ns()
        done = [f for f in self.q if f.end_ns - self.skew <= now]
        self.q = [f for f in self.q if f not in done]
        return now, done

    def wait(self, until_ns: int) -> None:
        self.clock.sleep_until(min([until_ns, *(f.end_ns - self.skew for f in self.q)]))

    def synchronize(self) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def test_device_times_ahead_of_the_host_are_clamped_keeping_the_duration() -> None:
    clock = VirtualClock()
    skewed = _Skewed(clock, 300_000, 1_000_000)
    sc = make_scenario([{"name": "a", "period_ms": 5, "wcet_ms": 2}], duration_ms=20)
    records, jobs = run_in_memory(sc, ExecEngine("mock", clock=clock, wrap=lambda _: skewed))
    for j in jobs:
        assert j.start_ns is not None and j.end_ns is not None
        assert j.release_ns <= j.start_ns <= j.end_ns
        assert j.run_ns == 1_000_000  # the measured duration survives the clamp
        assert (j.start_ns, j.end_ns) == (j.release_ns, j.release_ns + 1_000_000)
    assert check_run(records, jobs, slots=1) == len(jobs) == 4


def test_the_gap_after_a_faulted_job_counts_from_its_end() -> None:
    sc = make_scenario(
        [
            {"name": "a", "period_ms": 20, "wcet_ms": 5},
            {"name": "b", "period_ms": 20, "wcet_ms": 5},
        ],
        duration_ms=20,
    )
    eng = engine("mock", wrap=faults({"a#0": "boom"}, at="end"))  # a#0 runs 0-5 ms, fails
    _, jobs = run_in_memory(sc, eng)
    assert list(eng.gaps_ns) == [0]  # b#0 waited for a#0's end, launched at once: not a#0's 5 ms
    assert [(j.id, j.start_ns) for j in jobs] == [("a#0", 0), ("b#0", 5 * MS)]


def test_launch_latency_is_only_measured_on_an_idle_stream() -> None:
    # 1.5 ms jobs every 1 ms: from the second job on, each launch queues behind the last
    sc = make_scenario(
        [{"name": "a", "period_ms": 1, "wcet_ms": 1.5, "deadline_ms": 100}],
        duration_ms=10,
        policy="unscheduled",
    )
    eng = engine("mock")
    _, jobs = run_in_memory(sc, eng)
    assert max(j.start_ns or 0 for j in jobs) > 9 * MS  # queued: the last starts late
    assert list(eng.launch_ns) == [0]  # the first, on an idle stream; no queueing in it


def test_a_stream_cancels_what_it_has_not_started() -> None:
    import queue

    from aegis_exec.backends import Finished
    from aegis_exec.backends.numpy import WorkerStream

    done: queue.SimpleQueue[Finished] = queue.SimpleQueue()
    started, gate = threading.Event(), threading.Event()
    stream = WorkerStream("s", done)

    def hold() -> None:
        started.set()
        gate.wait()

    stream.submit(0, hold)  # holds the stream
    for k in range(1, 201):
        stream.submit(k, lambda: None)
    started.wait()
    assert stream.cancel() == 200  # nothing queued behind the first job ran
    gate.set()
    stream.close()
    assert [done.get().token] == [0] and done.empty() and WorkerStream.live == 0


def test_a_kernel_error_on_a_stream_is_that_jobs_fault() -> None:
    import queue

    from aegis_exec.backends import Finished
    from aegis_exec.backends.numpy import WorkerStream

    def bad() -> None:
        raise ValueError("bad shape")

    done: queue.SimpleQueue[Finished] = queue.SimpleQueue()
    with WorkerStream("s", done) as stream:
        stream.submit(1, bad)
        stream.submit(2, lambda: None)
    first, second = done.get(), done.get()
    assert (first.token, first.error) == (1, "ValueError: bad shape")
    assert (second.token, second.error) == (2, None)


def test_numpy_close_drops_queued_jobs_and_restores_the_interpreter() -> None:
    from aegis_core.graph.zoo import build_model
    from aegis_exec.backends import TaskWork
    from aegis_exec.backends.numpy import NumpyBackend, WorkerStream

    switch = sys.getswitchinterval()
    g = build_model("mlp", 64, (1024,))
    backend = NumpyBackend()
    backend.prepare([TaskWork(0, "a", g, (range(len(g.ops)),), (MS,))])
    assert sys.getswitchinterval() != switch
    for k in range(200):
        backend.launch(0, 0, k, k)
    backend.close()
    assert sys.getswitchinterval() == switch and WorkerStream.live == 0


# ------------------------------------------------------------- the registry and the checker


def test_the_registry_is_the_one_list_of_backends() -> None:
    assert backends.names() == ("auto", *backends.REGISTRY)
    caps = {name: s.caps for name, s in backends.REGISTRY.items()}
    # what the engine decides on, per backend: a model to run or durations to replay
    assert all(c.executes_models != c.replays_exec_time for c in caps.values())
    with pytest.raises(InputError, match=r"unknown backend 'tpu'; choose one of: auto, "):
        backends.spec("tpu")
    eng = ExecEngine("mock", clock=VirtualClock())
    assert eng.device == "mock (not started)"
    run_in_memory(TWO, eng)
    assert eng.device == "mock (synthetic durations)"


def _job(k: int, release: int, start: int, end: int, deadline: int, **flags: Any) -> Any:
    from aegis_core.run.scheduler import Job

    j = Job(k, "t", 0, k, release, deadline)
    j.start_ns, j.end_ns, j.missed = start, end, end > deadline
    for name, value in flags.items():
        setattr(j, name, value)
    return j


def test_a_miss_needs_a_recorded_cause() -> None:
    # x#0 runs 0-9 ms; y (released at 1, deadline 10) waits for it and misses
    def run(**x_flags: Any) -> list[str]:
        x = _job(0, 0, 0, 9 * MS, 100 * MS, **x_flags)
        return unexplained_misses([x, _job(1, 1 * MS, 9 * MS, 12 * MS, 10 * MS)])

    assert run() == ["t#1"]  # no overrun, nobody late, never idle: unexplained
    assert run(overrun=True) == []  # the job ahead ran past its WCET
    assert run(lag_ns=5 * MS) == []  # the host handed a release over late
    # the device idle for 4 ms while the job was ready: the host stalled
    idle = [_job(0, 0, 0, 5 * MS, 100 * MS), _job(1, 1 * MS, 9 * MS, 12 * MS, 10 * MS)]
    assert unexplained_misses(idle) == []
    assert unexplained_misses(idle, stall_ns=5 * MS) == ["t#1"]
