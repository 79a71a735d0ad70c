"""GPU checks of the CuPy backend (marked ``gpu``; skipped where no CUDA device is usable)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aegis_exec.backends import usable

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not usable("cupy"), reason="no usable CUDA GPU (cupy)"),
]

SMALL = {
    "tiny_cnn": None,
    "mlp": (256,),
    "bert_tiny": (32, 128),
    "mobilenet_v2": (3, 64, 64),
    "resnet18": (3, 64, 64),
}


@pytest.mark.parametrize(
    ("ashape", "bshape"),
    [((5, 7), (7, 9)), ((70, 33), (33, 65)), ((3, 2, 17), (3, 17, 19)),
     ((2, 2, 9, 8), (2, 2, 8, 9)), ((1, 3000), (3000, 10)), ((512, 4608), (4608, 49)),
     ((4, 6), (3, 6, 5))],
)  # fmt: skip
def test_capturable_gemm_matches_numpy(ashape: tuple[int, ...], bshape: tuple[int, ...]) -> None:
    import cupy as cp

    from aegis_exec.backends.sgemm import CapturableGemm

    rng = np.random.default_rng(1)
    a = rng.standard_normal(ashape).astype(np.float32)
    b = rng.standard_normal(bshape).astype(np.float32)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    out = cp.empty(ref.shape, dtype=cp.float32)
    CapturableGemm(cp)(cp.asarray(a), cp.asarray(b), out)
    err = np.abs(cp.asnumpy(out) - ref).max() / np.abs(ref).max()
    assert err < 1e-5, err


@pytest.mark.parametrize("capturable", [False, True], ids=["cupy", "capturable"])
@pytest.mark.parametrize("model", sorted(SMALL))
def test_model_on_cupy_matches_the_float64_reference(model: str, capturable: bool) -> None:
    import cupy as cp

    from aegis_core.graph.zoo import build_model
    from aegis_exec.backends.sgemm import CapturableCupy
    from aegis_exec.kernels import CompiledGraph, init_params, reference

    g = build_model(model, 2, SMALL[model])
    xp: Any = CapturableCupy(cp) if capturable else cp
    c = CompiledGraph(g, xp, seed=3)
    c.run()
    params, x = init_params(g, 3)
    ref = reference(g, params, x)
    got = cp.asnumpy(c.output).astype(np.float64)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < 1e-3, f"{model}: relative error {err:.2e}"


def _run(scenario_path: str, **kw: Any) -> dict[str, Any]:
    from aegis_core.model.scenario import load_scenario
    from aegis_core.run.testing import unexplained_misses
    from aegis_core.tools.runner import run_scenario
    from aegis_exec.engine import ExecEngine

    engine = ExecEngine("cupy", **kw)
    result = run_scenario(load_scenario(scenario_path), engine, write=False)
    assert unexplained_misses(result.jobs) == []  # every miss has a recorded cause
    return result.summary


def test_cupy_run_captures_cuda_graphs_and_releases_everything() -> None:
    import cupy as cp

    from aegis_exec.backends.cuda import CudaEvent, CudaStream

    pool = cp.get_default_memory_pool()
    before = pool.used_bytes()
    s = _run("scenarios/tiny_gpu.yaml")
    assert s["backend"] == "cupy"
    assert s["exec"]["cuda_graphs"] is True, s["exec"]["graph_fallbacks"]
    assert all(t["completed"] == t["jobs"] for t in s["tasks"])
    assert CudaStream.live == 0 and CudaEvent.live == 0
    assert pool.used_bytes() == before


def test_cupy_fault_in_one_task_leaves_the_other_running() -> None:
    from aegis_exec.testing import faults

    s = _run("scenarios/tiny_gpu.yaml", wrap=faults({"mlp#1": "boom"}))
    by = {t["name"]: t for t in s["tasks"]}
    assert by["cnn"]["completed"] == by["cnn"]["jobs"]
    assert by["mlp"]["failed"] == 1  # mlp#1 alone: the task's later jobs run
    assert "boom" in s["exec"]["faulted_tasks"]["mlp"]
