"""Imported ONNX models (benchmarks/onnx_models.py) on AegisRT against onnxruntime.

Per model, at the per-sample input shape the tests use (batch ``--batch``):

* ``--backend numpy`` (default): AegisRT's float32 kernels (``CompiledGraph`` with the model's
  own weights, one BLAS thread through threadpoolctl) against onnxruntime's CPU execution
  provider (one intra-op and one inter-op thread, its default graph optimisations), each job
  timed with ``perf_counter`` and the two interleaved (one AegisRT job, one onnxruntime job,
  ``--reps`` times, after 5 warm-ups each), medians and their ratio; the median of 5
  ``import_onnx`` calls; the tensors (input and activations) planned vs naive (each tensor
  its own buffer), and the arena with the kernels' scratch buffers (what ``aegis memory``
  plans and the executor allocates); the
  largest absolute error against onnxruntime and whether every output element is within
  rtol 1e-3, atol 1e-4.
* ``--backend cupy``: the same models on the GPU, eager (CuPy, kernel by kernel) against one
  CUDA graph replay (``CapturableCupy``: our own GEMM), device times from CUDA events, medians
  of ``--reps``; each output checked against onnxruntime CPU (same tolerance).

A model that cannot be imported (an operator the importer does not support) is a row saying
so. Exit 1 if any model failed to import or to match onnxruntime.

Usage: ``python benchmarks/bench_onnx.py [--quick] [--backend numpy|cupy] [--reps 50]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

RTOL, ATOL = 1e-3, 1e-4
WARMUP = 5
KIB = 1024


def _generators() -> ModuleType:
    path = Path(__file__).resolve().parent / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("aegis_bench_onnx_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _error(got: Any, want: np.ndarray) -> tuple[float, bool]:
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    ok = bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))
    return float(np.max(np.abs(got - want))), ok


def _import(path: Path, shape: tuple[int, ...], batch: int, reps: int) -> tuple[Any, float]:
    from aegis_core.graph.onnx_import import import_onnx

    times = []
    for _ in range(reps):
        t = time.perf_counter()
        imported = import_onnx(path, input_shape=shape, batch=batch)
        times.append(time.perf_counter() - t)
    return imported, _ms(times)


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], reps: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run alternately (the same machine state)."""
    for _ in range(WARMUP):
        a()
        b()
    ta, tb = [], []
    for _ in range(reps):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return _ms(ta), _ms(tb)


def _memory(graph: Any) -> tuple[int, int, int]:
    """(activations planned, activations naive, the executor's arena with scratch), bytes."""
    from aegis_core.memory.planner import ALIGN, plan_model, usage_of

    act = plan_model(usage_of(graph), ALIGN)
    arena = plan_model(usage_of(graph, executor=True), ALIGN)
    return act.size, act.naive, arena.size


def _numpy_row(name: str, path: Path, shape: tuple[int, ...], args: argparse.Namespace) -> str:
    from threadpoolctl import threadpool_limits

    from aegis_exec.kernels import CompiledGraph

    imported, import_ms = _import(path, shape, args.batch, args.import_reps)
    g = imported.graph
    compiled = CompiledGraph(g, np)  # the model's own weights (graph.weights)
    x = np.random.default_rng(0).standard_normal(g.tensors[g.input].shape).astype(np.float32)
    session = _ort_session(path)
    feed = {imported.onnx_input: x}

    def ours() -> None:
        compiled.inputs[...] = x
        compiled.run()

    with threadpool_limits(limits=1, user_api="blas"):
        ours()
        err, ok = _error(compiled.output, session.run(None, feed)[0])
        aegis_ms, ort_ms = _interleaved(ours, lambda: session.run(None, feed), args.reps)
    planned, naive, arena = _memory(g)
    params = sum(v.size for v in imported.params.values())
    mflops = sum(op.flops for op in g.ops) / 1e6
    return (f"| {name} | {'x'.join(map(str, (args.batch, *shape)))} | {len(g.ops)} | {params} | "
            f"{mflops:.2f} | {import_ms:.1f} | {aegis_ms:.3f} | {ort_ms:.3f} | "
            f"{aegis_ms / ort_ms:.2f} | {err:.1e} {'ok' if ok else 'FAIL'} | "
            f"{planned / KIB:.1f} / {naive / KIB:.1f} ({1 - planned / naive:.0%} less) | "
            f"{arena / KIB:.1f} |")  # fmt: skip


NUMPY_HEAD = (
    "| model | input | IR ops | weights as run | MFLOPs | import ms | AegisRT numpy ms | "
    "onnxruntime CPU ms | ratio | max abs err vs ORT | tensors planned / naive KiB | "
    "arena with scratch KiB (`aegis memory`) |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _device_ms(cp: Any, stream: Any, fn: Callable[[], None], reps: int) -> float:
    """Median device milliseconds of ``fn`` on ``stream`` (CUDA events around each call)."""
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for i in range(WARMUP + reps):
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        if i >= WARMUP:
            times.append(cp.cuda.get_elapsed_time(start, end))
    return float(statistics.median(times))


def _captured(stream: Any, compiled: Any) -> Callable[[], None]:
    """``compiled.run()`` captured on ``stream`` as one CUDA graph; the replay."""
    stream.begin_capture()
    try:
        compiled.run()
    finally:
        graph = stream.end_capture()
    return lambda: graph.launch(stream)


def _cupy_row(name: str, path: Path, shape: tuple[int, ...], args: argparse.Namespace) -> str:
    import cupy as cp

    from aegis_exec.backends.sgemm import CapturableCupy
    from aegis_exec.kernels import CompiledGraph

    imported, _ = _import(path, shape, args.batch, 1)
    g = imported.graph
    x = np.random.default_rng(0).standard_normal(g.tensors[g.input].shape).astype(np.float32)
    want = _ort_session(path).run(None, {imported.onnx_input: x})[0]
    stream = cp.cuda.Stream(non_blocking=True)
    cells = []
    for xp in (cp, CapturableCupy(cp)):  # eager (CuPy's own matmul), then the graph path
        with stream:
            compiled = CompiledGraph(g, xp)
            for key, value in imported.params.items():
                compiled.tensors[key][...] = cp.asarray(value)
            compiled.inputs[...] = cp.asarray(x)
            run = compiled.run if xp is cp else _captured(stream, compiled)
            run()
            stream.synchronize()
            err, ok = _error(cp.asnumpy(compiled.output), want)
            ms = _device_ms(cp, stream, run, args.reps)
        cells.append(f"{ms:.3f} | {err:.1e} {'ok' if ok else 'FAIL'}")
    return f"| {name} | {'x'.join(map(str, (args.batch, *shape)))} | {len(g.ops)} | " + (
        " | ".join(cells) + " |"
    )


CUPY_HEAD = (
    "| model | input | IR ops | eager ms | eager err vs ORT | CUDA graph ms | graph err vs ORT |"
    "\n|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--reps", type=int, default=50, help="timed jobs per side (median)")
    parser.add_argument("--import-reps", type=int, default=5, help="import_onnx calls (median)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 reps, 1 import")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.import_reps = 3, 1
    gen = _generators()
    row = _numpy_row if args.backend == "numpy" else _cupy_row
    print(f"{NUMPY_HEAD if args.backend == 'numpy' else CUPY_HEAD}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in gen.write(Path(tmp)):
            shape = gen.MODELS[path.stem][1]
            try:
                line = row(path.stem, path, shape, args)
            except Exception as exc:  # an op not supported yet: say so, go on with the rest
                why = str(exc).replace(f"{tmp}/", "")
                line = f"| {path.stem} | not run: {type(exc).__name__}: {why} |"
                failed += 1
            failed += "FAIL" in line
            print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
