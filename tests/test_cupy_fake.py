"""The CuPy backend's own logic on a NumPy stand-in for CuPy (tests/fake_cupy.py): runs in CI
without a GPU, on a virtual clock shared by the engine, the backend and the fake device, so
every run is exact and none depends on how busy the host is. What only a GPU can show
(kernels, capture, timing) is in tests/test_gpu.py."""

from __future__ import annotations

import sys
from typing import Any

import fake_cupy
import pytest
from conftest import make_scenario

from aegis_core.model.errors import BackendError
from aegis_core.model.status import JobStatus
from aegis_core.run.plan import RunPlan
from aegis_core.run.testing import check_run, run_in_memory
from aegis_core.tools.runner import run_scenario
from aegis_exec.backends import cuda, sgemm
from aegis_exec.backends import cupy as cb
from aegis_exec.engine import ExecEngine
from aegis_exec.testing import VirtualClock, faults

SC = make_scenario(
    [
        {"name": "cnn", "model": "tiny_cnn", "period_ms": 5, "deadline_ms": 200, "wcet_ms": 1},
        {"name": "mlp", "model": "mlp", "input_shape": [64], "period_ms": 7,
         "deadline_ms": 200, "wcet_ms": 1},
    ],
    duration_ms=40,
)  # fmt: skip


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, clock: VirtualClock) -> Any:
    cp, state = fake_cupy.make(clock)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    return state


def engine(clock: VirtualClock, **options: Any) -> ExecEngine:
    return ExecEngine("cupy", clock=clock, **options)


def _live() -> tuple[int, int]:
    return cuda.CudaStream.live, cuda.CudaEvent.live


def test_a_run_on_the_cupy_backend_logic(fake: Any, clock: VirtualClock) -> None:
    before = _live()
    records, jobs = run_in_memory(SC, engine(clock))
    assert all(j.status is JobStatus.COMPLETED for j in jobs) and len(jobs) == 8 + 6
    assert check_run(records, jobs, slots=1) == len(jobs)
    assert fake.calls["graph_launch"] >= len(jobs)  # every job is one graph launch
    # on the virtual clock a job takes its graph launch and its end event, exactly (but for
    # the float32 ms of cudaEventElapsedTime), and nothing is late
    assert all(abs(j.run_ns - fake_cupy.GRAPH_NS - fake_cupy.RECORD_NS) < 100 for j in jobs)
    assert not any(j.missed or j.lag_ns for j in jobs)
    assert _live() == before and not fake.mallocs  # streams, events and the arena released


def test_the_summary_names_the_device_and_the_graphs(fake: Any, clock: VirtualClock) -> None:
    s = run_scenario(SC, engine(clock), write=False).summary
    assert s["backend"] == "cupy" and s["device"] == "Fake GPU"
    assert s["versions"]["cupy"] == "0.0-fake"
    ex = s["exec"]
    assert ex["cuda_graphs"] is True and ex["graph_fallbacks"] == {}
    assert (
        ex["memory"]["segments"] == 1 and ex["memory"]["used_bytes"] <= ex["memory"]["arena_bytes"]
    )
    assert "close_error" not in ex


def test_without_cuda_graphs_every_job_launches_its_kernels(fake: Any, clock: VirtualClock) -> None:
    _, jobs = run_in_memory(SC, engine(clock, cuda_graphs=False))
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    assert "graph_launch" not in fake.calls


def test_a_failed_capture_falls_back_to_eager_launches(fake: Any, clock: VirtualClock) -> None:
    fake.capture_error = NotImplementedError("calling cuBLAS API during stream capture")
    s = run_scenario(SC, engine(clock), write=False).summary
    assert s["misses"] == 0 and all(t["completed"] == t["jobs"] for t in s["tasks"])
    assert s["exec"]["cuda_graphs"] is False
    assert s["exec"]["graph_fallbacks"]["cnn"].startswith("NotImplementedError: calling cuBLAS")


def test_a_fault_at_launch_fails_that_job_only(fake: Any, clock: VirtualClock) -> None:
    records, jobs = run_in_memory(SC, engine(clock, wrap=faults({"mlp#1": "boom"})))
    by = {j.id: j for j in jobs}
    assert by["mlp#1"].status is JobStatus.FAILED and "boom" in (by["mlp#1"].error or "")
    assert all(j.status is JobStatus.COMPLETED for j in jobs if j.task == "cnn")
    assert [r["job"] for r in records if r["kind"] == "fault"] == ["mlp#1"]
    assert all(j.status is JobStatus.COMPLETED for j in jobs if j.id != "mlp#1")


def test_a_launch_the_device_refuses_fails_that_job_only(fake: Any, clock: VirtualClock) -> None:
    # the capture check replays each task's graph once (calls 1, 2); call 5 is the third job's
    before = _live()
    fake.fail_once["graph_launch"] = {5}
    records, jobs = run_in_memory(SC, engine(clock))
    failed = [j for j in jobs if j.status is JobStatus.FAILED]
    assert [j.id for j in failed] == ["cnn#1"]
    assert "CUDARuntimeError: cudaErrorIllegalAddress" in (failed[0].error or "")
    assert all(j.status is JobStatus.COMPLETED for j in jobs if j.id != "cnn#1")
    assert check_run(records, jobs, slots=1) == len(jobs)
    assert _live() == before and not fake.mallocs  # its events went back to the pool


def test_a_cuda_error_while_polling_ends_the_run_and_still_releases_everything(
    fake: Any, clock: VirtualClock
) -> None:
    before = _live()
    fake.errors["event_query"] = 3
    with pytest.raises(BackendError, match=r"CUDA error while .*CUDARuntimeError"):
        run_in_memory(SC, engine(clock))
    assert _live() == before and not fake.mallocs


def test_close_after_a_sticky_error_releases_everything_and_reports_it(
    fake: Any, clock: VirtualClock
) -> None:
    before = _live()
    eng = engine(clock)
    plan = RunPlan.build(SC)
    eng.start(plan)
    fake.errors["stream_synchronize"] = 1  # every synchronize fails from now on
    eng.close()  # never raises
    eng.close()  # idempotent
    assert _live() == before and not fake.mallocs
    assert "CUDA error while synchronising a stream" in eng.report()["close_error"]


def test_a_model_that_fails_to_load_leaks_no_stream(fake: Any, clock: VirtualClock) -> None:
    before = _live()
    fake.errors["device_synchronize"] = 1
    with pytest.raises(BackendError, match="loading model tiny_cnn for task cnn"):
        run_in_memory(SC, engine(clock))
    assert _live() == before and not fake.mallocs


def test_the_gemm_splits_a_grid_deeper_than_cuda_allows(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    monkeypatch.setattr(sgemm, "MAX_GRID_Z", 4)
    gemm = sgemm.CapturableGemm(sys.modules["cupy"])
    a = np.ones((10, 3, 5), np.float32)
    b = np.ones((10, 5, 2), np.float32)
    out = np.zeros((10, 3, 2), np.float32)
    gemm(a, b, out)
    assert [g[2] for g in fake.kernel_grids] == [4, 4, 2]  # 10 batches (1 split each)
    assert (out == 5).all()


def test_the_timeline_reference_moves_forward(
    fake: Any, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cb, "REANCHOR_NS", 2_000_000)  # every 2 ms instead of 10 s
    before = _live()
    records, jobs = run_in_memory(SC, engine(clock))
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    assert check_run(records, jobs, slots=1) == len(jobs)
    starts = [j.start_ns for j in jobs]
    assert all(s is not None and s >= j.release_ns for s, j in zip(starts, jobs, strict=True))
    assert _live() == before


def test_cupy_is_only_imported_by_the_backend_when_built(fake: Any, clock: VirtualClock) -> None:
    assert cb.usable() is True
    backend = cb.CupyBackend(clock=clock)
    assert backend.device == "Fake GPU" and backend.cp is sys.modules["cupy"]
    backend.close()


def test_the_planned_arena_on_the_cupy_backend(fake: Any, clock: VirtualClock) -> None:
    """Activations live in one planned arena inside the backend's device pool; the overlap
    check passes on their addresses; every output equals the unplanned run's."""
    import numpy as np

    from aegis_exec import arena
    from aegis_exec.engine import task_work

    s = run_scenario(SC, engine(clock, check_memory=True), write=False).summary
    assert s["exec"]["memory_check"] > 0 and s["exec"]["memory_plan"]["sharing"] == "serial"
    work = task_work(RunPlan.build(SC), "cupy")
    lay = arena.layout(work, "np-edf", [t.deadline_ns for t in SC.tasks])
    outs: dict[int, list[Any]] = {}
    for layout in (None, lay):
        backend = cb.CupyBackend(clock=clock)
        try:
            backend.prepare(work, layout)
            graphs = backend.graphs()
            for i, g in graphs.items():
                g.run()
                outs.setdefault(i, []).append(np.array(g.output, copy=True))
            if layout is not None:
                assert arena.check(layout, graphs) > 0
        finally:
            backend.close()
    assert all(np.array_equal(a, b) for a, b in outs.values()) and len(outs) == 2


# ----------------------------------------------------------------- stream priorities

PRIO = make_scenario(
    [
        {"name": "cnn", "model": "tiny_cnn", "period_ms": 5, "deadline_ms": 40, "wcet_ms": 1},
        {"name": "mlp", "model": "mlp", "input_shape": [64], "period_ms": 7,
         "deadline_ms": 6, "wcet_ms": 1},
        {"name": "mlp2", "model": "mlp", "input_shape": [64], "period_ms": 9,
         "deadline_ms": 20, "wcet_ms": 1},
    ],
    duration_ms=40,
    policy="stream-priority",
)  # fmt: skip


def test_stream_priority_creates_streams_by_deadline_monotonic_order(
    fake: Any, clock: VirtualClock
) -> None:
    before = _live()
    s = run_scenario(PRIO, engine(clock), write=False)
    assert all(j.status is JobStatus.COMPLETED for j in s.jobs)
    # ranks by deadline: mlp 0, mlp2 1, cnn 2 -> the device's most urgent levels -5, -4, -3
    prio = s.summary["exec"]["stream_priorities"]
    assert prio == {"least": 0, "greatest": -5, "tasks": {"cnn": -3, "mlp": -5, "mlp2": -4}}
    # the two probe streams read the range, then one stream per task with its priority
    assert [st.priority for st in fake.streams[:2]] == [0, -5]
    assert _live() == before


def test_more_ranks_than_device_levels_share_the_least_priority(
    fake: Any, clock: VirtualClock
) -> None:
    fake.least, fake.greatest = 0, -1  # two levels for three ranks
    prio = run_scenario(PRIO, engine(clock), write=False).summary["exec"]["stream_priorities"]
    assert prio["tasks"] == {"cnn": 0, "mlp": -1, "mlp2": 0}
    assert "3 priority ranks on 2 device levels" in prio["note"]
    assert cuda.cuda_priorities([0, 1, 2, 3], 0, -2) == [-2, -1, 0, 0]


def test_other_policies_keep_the_default_stream_priority(fake: Any, clock: VirtualClock) -> None:
    from aegis_core.model.policy import get_policy
    from aegis_core.model.scenario import replace_scenario

    s = run_scenario(replace_scenario(PRIO, policy=get_policy("unscheduled")), engine(clock),
                     write=False)  # fmt: skip
    assert "stream_priorities" not in s.summary["exec"]
    assert {st.priority for st in fake.streams} == {0}
