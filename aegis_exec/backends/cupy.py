"""The CUDA backend on CuPy: streams, events, one device arena, CUDA graphs.

This is the only module that imports ``cupy``, and only when the backend is built. CUDA and
CuPy errors are translated into AegisRT errors here (:func:`translate`): an error inside a
job's launch is a :class:`~aegis_core.errors.JobFault` (that job fails, the others go on);
an error of the device itself (out of memory while loading, a sticky CUDA error seen while
polling) is a :class:`~aegis_core.errors.BackendError` that ends the run.

* :class:`CudaStream` / :class:`CudaEvent` own their CUDA objects and release them on
  :meth:`close` (context managers); class counters tell how many are alive.
* :class:`DeviceMemoryPool` allocates one arena up front and hands out tensors as views at
  aligned offsets, so a run allocates nothing on the device after warm-up.
* Each task's job (each lp-edf chunk) is captured once as a CUDA graph and replayed: one
  launch per job. If capture fails (a CuPy routine that allocates or synchronises during
  capture), the task runs its kernels eagerly and the report says why.
* Times: device-side, from CUDA events, mapped onto the host ``perf_counter_ns`` timeline
  through a reference event whose host time is bracketed at the start.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aegis_core.errors import AegisError, BackendError, JobFault

from .backend import Finished, TaskWork

if TYPE_CHECKING:
    from .arena import Layout

REANCHOR_NS = 10_000_000_000
"""Move the timeline's reference event forward every 10 s (a float of ms keeps ~1 µs)."""

ALIGN = 256
"""Byte alignment of every tensor in the arena (cudaMalloc's own alignment)."""


def usable() -> bool:
    """Is CuPy importable and a CUDA device usable?"""
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


def _is_cuda_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("cupy", "cupy_backends", "cuda"))


def translate(exc: BaseException, where: str) -> AegisError:
    """The AegisRT error for an exception raised by CuPy/CUDA while doing ``where``."""
    if isinstance(exc, AegisError):
        return exc
    name = type(exc).__name__
    if name == "OutOfMemoryError":
        return BackendError(f"out of device memory while {where}: {exc}")
    if _is_cuda_error(exc):
        return BackendError(f"CUDA error while {where}: {name}: {exc}")
    return BackendError(f"unexpected error while {where}: {name}: {exc}")


@contextlib.contextmanager
def cuda_errors(where: str) -> Iterator[None]:
    """Re-raise any CuPy/CUDA exception as an AegisRT error (the backend seam)."""
    try:
        yield
    except AegisError:
        raise
    except Exception as exc:
        raise translate(exc, where) from exc


class CudaStream:
    """A non-blocking CUDA stream owned by this object; released by :meth:`close`."""

    live = 0

    def __init__(self, cp: Any) -> None:
        with cuda_errors("creating a stream"):
            self.raw: Any = cp.cuda.Stream(non_blocking=True)
        CudaStream.live += 1

    def synchronize(self) -> None:
        with cuda_errors("synchronising a stream"):
            self.raw.synchronize()

    def close(self) -> None:
        if self.raw is None:
            return
        try:
            self.synchronize()
        finally:
            self.raw = None  # the last reference: CuPy destroys the CUDA stream now
            CudaStream.live -= 1

    def __enter__(self) -> CudaStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CudaEvent:
    """A timing CUDA event owned by this object; released by :meth:`close`."""

    live = 0

    def __init__(self, cp: Any) -> None:
        with cuda_errors("creating an event"):
            self.raw: Any = cp.cuda.Event()
        CudaEvent.live += 1

    def record(self, stream: CudaStream) -> None:
        self.raw.record(stream.raw)

    def synchronize(self) -> None:
        with cuda_errors("waiting for an event"):
            self.raw.synchronize()

    def close(self) -> None:
        if self.raw is not None:
            self.raw = None
            CudaEvent.live -= 1

    def __enter__(self) -> CudaEvent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceMemoryPool:
    """One preallocated device arena; :meth:`alloc` hands out float32 views at aligned offsets.

    The arena is one ``cudaMalloc`` of its own (not CuPy's pool), freed by :meth:`close`
    whatever views may still exist, so a run's device memory is released deterministically.
    If the arena runs out (a sizing estimate was short) another segment is allocated and
    counted in ``segments``; the report shows it."""

    def __init__(self, cp: Any, nbytes: int) -> None:
        self.cp = cp
        self.capacity = 0
        self.used = 0
        self.segments = 0
        self._arenas: list[Any] = []
        self._ptrs: list[int] = []
        self._offset = 0
        self._grow(max(nbytes, ALIGN))

    def _grow(self, nbytes: int) -> None:
        cp = self.cp
        with cuda_errors(f"allocating a {nbytes}-byte device arena"):
            ptr = cp.cuda.runtime.malloc(nbytes)
            self._ptrs.append(ptr)
            mem = cp.cuda.UnownedMemory(ptr, nbytes, self)
            self._arenas.append(
                cp.ndarray((nbytes,), dtype=cp.uint8, memptr=cp.cuda.MemoryPointer(mem, 0))
            )
        self._offset = 0
        self.capacity += nbytes
        self.segments += 1

    def alloc_bytes(self, nbytes: int) -> Any:
        """A 1-D uint8 view of ``nbytes`` at an aligned offset (the planned activation arena)."""
        padded = -(-max(nbytes, 1) // ALIGN) * ALIGN
        arena = self._arenas[-1]
        if self._offset + padded > arena.size:
            self._grow(max(padded, arena.size // 4))
            arena = self._arenas[-1]
        view = arena[self._offset : self._offset + max(nbytes, 1)]
        self._offset += padded
        self.used += padded
        return view

    def alloc(self, shape: Sequence[int]) -> Any:
        size = math.prod(shape) * 4
        padded = -(-size // ALIGN) * ALIGN
        arena = self._arenas[-1]
        if self._offset + padded > arena.size:
            self._grow(max(padded, arena.size // 4))
            arena = self._arenas[-1]
        view = arena[self._offset : self._offset + size].view(self.cp.float32).reshape(shape)
        self._offset += padded
        self.used += padded
        return view

    def close(self) -> None:
        """Free the arena (after the device is idle); views handed out must not be used."""
        if not self._ptrs:
            return
        ptrs, self._ptrs = self._ptrs, []
        self._arenas.clear()
        with cuda_errors("freeing the device arena"):
            try:
                self.cp.cuda.Device().synchronize()
            finally:  # free even after a failed synchronize (then report the failure)
                for ptr in ptrs:
                    with contextlib.suppress(Exception):
                        self.cp.cuda.runtime.free(ptr)


_SGEMM_SOURCE = r"""
extern "C" __global__ void aegis_sgemm(
    const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
    const int M, const int N, const int K, const int d1, const int d2,
    const int splits, const int kchunk, const int zoff,
    const long long as0, const long long as1, const long long as2,
    const long long ars, const long long acs,
    const long long bs0, const long long bs1, const long long bs2,
    const long long brs, const long long bcs,
    const long long cs0, const long long cs1, const long long cs2,
    const long long crs, const long long ccs)
{
    __shared__ float As[16][65];
    __shared__ float Bs[16][65];
    const int zz = blockIdx.z + zoff;
    const int ks = zz % splits;
    const int b = zz / splits;
    const int i2 = b % d2;
    const int i1 = (b / d2) % d1;
    const int i0 = b / (d2 * d1);
    A += i0 * as0 + i1 * as1 + i2 * as2;
    B += i0 * bs0 + i1 * bs1 + i2 * bs2;
    C += i0 * cs0 + i1 * cs1 + i2 * cs2;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * 16 + tx;
    const int row0 = blockIdx.x * 64, col0 = blockIdx.y * 64;
    const int kbeg = ks * kchunk;
    const int kend = min(K, kbeg + kchunk);
    float acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = kbeg; k0 < kend; k0 += 16) {
        #pragma unroll
        for (int l = 0; l < 4; ++l) {
            const int e = tid + l * 256;
            const int r = e >> 4, c = e & 15;
            const int gr = row0 + r, gc = k0 + c;
            As[c][r] = (gr < M && gc < kend) ? A[gr * ars + gc * acs] : 0.0f;
            const int r2 = e >> 6, c2 = e & 63;
            const int gr2 = k0 + r2, gc2 = col0 + c2;
            Bs[r2][c2] = (gr2 < kend && gc2 < N) ? B[gr2 * brs + gc2 * bcs] : 0.0f;
        }
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < 16; ++kk) {
            float a[4], bv[4];
            #pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
            #pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * bv[j];
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= M) continue;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c >= N) continue;
            if (splits == 1) C[r * crs + c * ccs] = acc[i][j];
            else atomicAdd(&C[r * crs + c * ccs], acc[i][j]);
        }
    }
}
"""

MAX_GRID_Y = MAX_GRID_Z = 65535
"""CUDA's limits on gridDim.y and gridDim.z (gridDim.x goes to 2**31 - 1: the row tiles)."""

TARGET_BLOCKS = 264
"""Split the K loop until a GEMM has about this many thread blocks (2 per SM on an H100)."""


class CapturableGemm:
    """``out = a @ b`` (float32, NumPy broadcasting over up to 3 batch dims, any strides) as
    one raw CUDA kernel: 64x64 output tiles, 16x16 threads, split-K with atomics when the
    tiles alone would leave the GPU idle. CuPy refuses cuBLAS calls during stream capture,
    so the CUDA-graph path multiplies with this kernel instead."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        with cuda_errors("compiling the GEMM kernel"):
            self.kernel = cp.RawKernel(_SGEMM_SOURCE, "aegis_sgemm")

    def __call__(self, a: Any, b: Any, out: Any) -> None:
        import numpy as np

        cp = self.cp
        if a.dtype != cp.float32 or b.dtype != cp.float32 or out.dtype != cp.float32:
            raise BackendError("the GEMM kernel takes float32 operands only")
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if b.shape[-2] != k or out.shape[-2:] != (m, n) or len(out.shape) > 5:
            raise BackendError(f"GEMM shapes {a.shape} @ {b.shape} -> {out.shape}")
        if -(-n // 64) > MAX_GRID_Y:
            raise BackendError(f"GEMM with {n} output columns: more than the grid allows")
        dims = (1,) * (5 - len(out.shape)) + tuple(out.shape[:-2])
        sa, sb, sc = (_batch_strides(x, dims) for x in (a, b, out))
        tiles = -(-n // 64) * (-(-m // 64))
        batch = dims[0] * dims[1] * dims[2]
        splits = max(1, min(TARGET_BLOCKS // max(1, tiles * batch), -(-k // 64)))
        kchunk = -(-k // splits)
        kchunk = -(-kchunk // 16) * 16
        splits = -(-k // kchunk)
        if splits > 1:
            out.fill(0)
        i32, i64 = np.int32, np.int64
        strides = (*map(i64, sa), *map(i64, sb), *map(i64, sc))
        head = (a, b, out, i32(m), i32(n), i32(k), i32(dims[1]), i32(dims[2]), i32(splits),
                i32(kchunk))  # fmt: skip
        total = batch * splits
        for zoff in range(0, total, MAX_GRID_Z):  # gridDim.z is at most 65535
            grid = (-(-m // 64), -(-n // 64), min(MAX_GRID_Z, total - zoff))
            self.kernel(grid, (16, 16, 1), (*head, i32(zoff), *strides))


def _batch_strides(x: Any, dims: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides (3 batch dims, broadcast dims 0, then row and column) of ``x``."""
    st = [s // x.itemsize for s in x.strides]
    shape, batch = x.shape[:-2], st[:-2]
    pad = 3 - len(shape)
    out = []
    for i in range(3):
        j = i - pad
        out.append(0 if j < 0 or shape[j] == 1 else batch[j])
    return (*out, st[-2], st[-1])


class CapturableCupy:
    """The ``xp`` handed to the kernels on the CUDA-graph path: CuPy, with ``matmul`` done by
    :class:`CapturableGemm` (into ``out=``; nothing allocated)."""

    def __init__(self, cp: Any) -> None:
        self._cp = cp
        self._gemm = CapturableGemm(cp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cp, name)

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        if out is None:
            raise BackendError("matmul without out= would allocate during capture")
        self._gemm(a, b, out)
        return out


def persistent_bytes(graph: Any) -> int:
    """Bytes of a task's weights and input (outside the planned arena), aligned."""
    return sum(-(-t.nbytes // ALIGN) * ALIGN for n, t in graph.tensors.items()
               if t.role == "weight" or n == graph.input)  # fmt: skip


def arena_bytes(graph: Any) -> int:
    """Bytes one task's tensors and kernel workspaces take in the arena (aligned)."""
    from .kernels import workspace

    sizes = [t.nbytes for t in graph.tensors.values()]
    for op in graph.ops:
        sizes += [math.prod(s) * 4 for s in workspace(op, graph).values()]
    return sum(-(-s // ALIGN) * ALIGN for s in sizes)


class _Task:
    """One task's device context: its stream, compiled graph, captured CUDA graphs."""

    def __init__(self, work: TaskWork, stream: CudaStream, compiled: Any) -> None:
        self.work = work
        self.stream = stream
        self.compiled = compiled
        self.graphs: list[Any] = []
        self.graph_error: str | None = None
        self.in_flight: deque[tuple[int, CudaEvent, CudaEvent, int]] = deque()


class CupyBackend:
    """Kernels on a CUDA GPU through CuPy, one stream per task, one CUDA graph per job."""

    name = "cupy"

    def __init__(self, *, graphs: bool = True, **options: Any) -> None:
        # CUB-accelerated reductions take temporary memory from the pool: not capturable.
        os.environ.setdefault("CUPY_ACCELERATORS", "")
        import cupy as cp  # the one place cupy is imported

        with contextlib.suppress(Exception):  # already imported (e.g. by backend "auto")
            cp._core.set_reduction_accelerators([])
            cp._core.set_routine_accelerators([])
        self.cp = cp
        self.use_graphs = graphs
        with cuda_errors("opening the CUDA device"):
            props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
            name = props["name"]
            self.device = name.decode() if isinstance(name, bytes) else str(name)
            self._versions = {
                "cupy": cp.__version__,
                "cuda_runtime": str(cp.cuda.runtime.runtimeGetVersion()),
                "cuda_driver": str(cp.cuda.runtime.driverGetVersion()),
            }
            self._pool_start = cp.get_default_memory_pool().used_bytes()
        self._tasks: list[_Task | None] = []
        self._free_events: list[CudaEvent] = []
        self._pool: DeviceMemoryPool | None = None
        self._ref: CudaEvent | None = None
        self._ref_host = 0
        self._ref_window = 0
        self._held: list[Finished] = []
        self._report: dict[str, Any] = {}

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        from .arena import Placement
        from .kernels import CompiledGraph

        cp = self.cp
        # CuPy refuses cuBLAS during stream capture: the graph path multiplies with our own
        # kernel; eager mode (graphs off) keeps CuPy's cuBLAS matmul.
        xp: Any = CapturableCupy(cp) if self.use_graphs else cp
        if layout is None:
            total = sum(arena_bytes(w.graph) for w in work if w.graph is not None)
        else:  # the planned arena, plus weights and inputs apart
            total = (
                layout.nbytes
                + ALIGN
                + sum(persistent_bytes(w.graph) for w in work if w.graph is not None)
            )
        self._pool = DeviceMemoryPool(cp, total)
        buffer = self._pool.alloc_bytes(layout.nbytes) if layout is not None else None
        for w in work:
            if w.graph is None:
                self._tasks.append(None)
                continue
            place = None
            if layout is not None:
                place = Placement(buffer, layout.offsets[w.index], cp.float32)
            stream = CudaStream(cp)
            try:
                with cuda_errors(f"loading model {w.graph.name} for task {w.name}"):
                    compiled = CompiledGraph(
                        w.graph, xp, self._pool.alloc, seed=w.index, placement=place
                    )
                    cp.cuda.Device().synchronize()  # weights were written on the null stream
                    task = _Task(w, stream, compiled)
                    with stream.raw:
                        compiled.run()  # warm-up: JIT-compiles kernels, sets up cuBLAS
                    stream.synchronize()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.close()
                raise
            if self.use_graphs:
                self._capture(task)
            self._tasks.append(task)
        for _ in range(4 * max(1, len(work))):
            self._free_events.append(CudaEvent(cp))
        self._calibrate()

    def _capture(self, task: _Task) -> None:
        """One CUDA graph per chunk; checked once against the eager output."""
        import numpy as np

        cp, raw = self.cp, task.stream.raw
        try:
            expected = cp.asnumpy(task.compiled.output)  # on the host: no device temporaries
            graphs = []
            for ops in task.work.ranges:
                with raw:
                    raw.begin_capture()
                    try:
                        task.compiled.run(ops)
                    finally:
                        graph = raw.end_capture()
                graphs.append(graph)
            for g in graphs:
                g.launch(raw)
            raw.synchronize()
            replayed = cp.asnumpy(task.compiled.output)
            if not np.allclose(replayed, expected, rtol=1e-4, atol=1e-5):
                raise BackendError("the replayed CUDA graph does not reproduce the eager output")
            task.graphs = graphs
        except Exception as exc:  # fall back to eager launches for this task
            with contextlib.suppress(Exception):
                raw.synchronize()
            task.graph_error = f"{type(exc).__name__}: {exc}"
            task.graphs = []

    def _calibrate(self) -> None:
        """Put a reference event on the host timeline: record it on an idle device and take
        the host time half-way between the record call and its completion (best of 5)."""
        stream = CudaStream(self.cp)
        tries: list[tuple[int, int, CudaEvent]] = []
        try:
            for _ in range(5):
                event = CudaEvent(self.cp)
                tries.append((0, 0, event))
                before = time.perf_counter_ns()
                event.record(stream)
                event.synchronize()
                tries[-1] = (time.perf_counter_ns() - before, before, event)
        except BaseException:
            for _, _, event in tries:
                event.close()
            raise
        finally:
            stream.close()
        tries.sort(key=lambda x: x[0])
        window, before, self._ref = tries[0]
        for _, _, event in tries[1:]:
            event.close()
        self._ref_host = before + window // 2
        self._ref_window = window

    # -- launching and polling ------------------------------------------------------------

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None
    ) -> None:
        t = self._tasks[task]
        if t is None:
            raise BackendError(f"task #{task} has no model: the cupy backend needs one")
        fault = t.work.faults.get(k)
        start = self._free_events.pop() if self._free_events else CudaEvent(self.cp)
        end = self._free_events.pop() if self._free_events else CudaEvent(self.cp)
        host = time.perf_counter_ns()
        try:
            start.record(t.stream)
            if fault is not None:
                raise RuntimeError(fault)
            if t.graphs:
                t.graphs[chunk].launch(t.stream.raw)
            else:
                with t.stream.raw:
                    t.compiled.run(t.work.ranges[chunk])
            end.record(t.stream)
        except Exception as exc:  # this job's kernels failed to launch: its fault only
            # kernels queued before the failure may still run: let them finish before the
            # slot is freed (the next job may share their arena bytes)
            with contextlib.suppress(Exception):
                t.stream.synchronize()
            self._free_events += [start, end]
            raise JobFault(f"{type(exc).__name__}: {exc}") from exc
        t.in_flight.append((token, start, end, host))

    def _ns(self, event: CudaEvent) -> int:
        assert self._ref is not None
        ms: float = self.cp.cuda.get_elapsed_time(self._ref.raw, event.raw)
        return self._ref_host + round(ms * 1e6)

    def _finished(self, token: int, start: CudaEvent, end: CudaEvent, host: int) -> Finished:
        """Host-timeline times of one ended launch. The end is placed through the reference
        event; the duration comes from the launch's own two events (a float of ms measured
        from a reference minutes old loses µs). Every REANCHOR_NS the end event becomes the
        new reference, so the float never spans long."""
        end_ns = self._ns(end)
        dur_ms: float = self.cp.cuda.get_elapsed_time(start.raw, end.raw)
        start_ns = max(end_ns - round(dur_ms * 1e6), host)
        self._free_events.append(start)
        if end_ns - self._ref_host >= REANCHOR_NS:
            assert self._ref is not None
            self._ref.close()
            self._ref, self._ref_host = end, end_ns
        else:
            self._free_events.append(end)
        return Finished(token, start_ns, end_ns)

    def snapshot(self) -> tuple[int, list[Finished]]:
        now = time.perf_counter_ns()  # first: an event done by now is seen below
        out, self._held = self._held, []
        with cuda_errors("polling for finished jobs"):
            for t in self._tasks:
                if t is None:
                    continue
                q = t.in_flight
                while q and q[0][2].raw.done:
                    out.append(self._finished(*q.popleft()))
        return now, out

    def wait(self, until_ns: int) -> None:
        """Spin on the oldest event of each stream until one is done or ``until_ns``:
        a completion is seen within µs."""
        clock = time.perf_counter_ns
        heads = [t.in_flight[0][2].raw for t in self._tasks if t is not None and t.in_flight]
        with cuda_errors("waiting for a job to finish"):
            while clock() < until_ns:
                for e in heads:
                    if e.done:
                        return

    def synchronize(self) -> None:
        for t in self._tasks:
            if t is not None:
                t.stream.synchronize()
        self._held += self.snapshot()[1]

    # -- reporting and teardown -----------------------------------------------------------

    def graphs(self) -> dict[int, Any]:
        return {i: t.compiled for i, t in enumerate(self._tasks) if t is not None}

    def report(self) -> dict[str, Any]:
        if not self._report:
            self._report = self._make_report()
        return self._report

    def _make_report(self) -> dict[str, Any]:
        pool = self._pool
        tasks = [t for t in self._tasks if t is not None]
        return {
            "device": self.device,
            "versions": dict(self._versions),
            "cuda_graphs": bool(tasks) and all(t.graphs for t in tasks),
            "graph_fallbacks": {t.work.name: t.graph_error for t in tasks if t.graph_error},
            "timeline_uncertainty_ns": self._ref_window // 2,
            "memory": {
                "arena_bytes": pool.capacity if pool else 0,
                "used_bytes": pool.used if pool else 0,
                "segments": pool.segments if pool else 0,
                "cupy_pool_bytes": self.cp.get_default_memory_pool().total_bytes(),
            },
        }

    def close(self) -> None:
        """Release every stream, event, graph and the arena, each on its own (one failing
        does not keep the others); never raises: the first error is kept in the report as
        ``close_error`` (an exception from here would replace the run's own)."""
        if not self._tasks and self._pool is None and self._ref is None:
            return
        self.report()  # keep the figures: they are read after the run
        errors: list[BaseException] = []

        def attempt(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                errors.append(exc)

        tasks, self._tasks = self._tasks, []
        for t in tasks:
            if t is not None:
                attempt(t.stream.synchronize)
        for t in tasks:
            if t is None:
                continue
            t.graphs.clear()
            t.compiled = None
            for _, start, end, _ in t.in_flight:
                start.close()
                end.close()
            t.in_flight.clear()
            attempt(t.stream.close)
        for e in self._free_events:
            e.close()
        self._free_events = []
        if self._ref is not None:
            self._ref.close()
            self._ref = None
        if self._pool is not None:
            attempt(self._pool.close)
            self._pool = None
        gc.collect()  # cycles holding device arrays (the run paused automatic collection)
        pool = self.cp.get_default_memory_pool()
        attempt(pool.free_all_blocks)
        memory = self._report.setdefault("memory", {})
        with contextlib.suppress(Exception):
            memory["pool_used_after_close"] = int(pool.used_bytes())
            memory["pool_total_after_close"] = int(pool.total_bytes())
            memory["pool_used_before_run"] = int(self._pool_start)
        if errors:
            self._report["close_error"] = f"{type(errors[0]).__name__}: {errors[0]}"
