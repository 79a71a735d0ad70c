"""The CUDA backend on CuPy: streams, events, one device arena, CUDA graphs.

This is the only module that imports ``cupy``, and only when the backend is built. CUDA and
CuPy errors are translated into AegisRT errors at this seam (:func:`~.cuda.translate`): an
error inside a job's launch is a :class:`~aegis_core.model.errors.JobFault` (that job fails, the
others go on); an error of the device itself (out of memory while loading, a sticky CUDA
error seen while polling) is a :class:`~aegis_core.model.errors.BackendError` that ends the run.
Streams, events and the device arena (RAII wrappers) are in :mod:`aegis_exec.backends.cuda`,
the capturable GEMM in :mod:`aegis_exec.backends.sgemm`.

* Each task's job (each lp-edf chunk) is captured once as a CUDA graph and replayed: one
  launch per job. If capture fails (a CuPy routine that allocates or synchronises during
  capture), the task runs its kernels eagerly and the report says why.
* Times: device-side, from CUDA events, mapped onto the injected clock's timeline
  (the host's ``perf_counter_ns`` by default) through a reference event whose host time is
  bracketed at the start.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import BackendError, JobFault

from ..clock import WALL, Clock
from .base import Finished, TaskWork
from .cuda import (
    ALIGN,
    CudaEvent,
    CudaStream,
    DeviceMemoryPool,
    cuda_errors,
    cuda_priorities,
    stream_priority_range,
)
from .sgemm import CapturableCupy

if TYPE_CHECKING:
    from ..arena import Layout

REANCHOR_NS = 10_000_000_000
"""Move the timeline's reference event forward every 10 s (a float of ms keeps ~1 µs)."""


def usable() -> bool:
    """Is CuPy importable and a CUDA device usable?"""
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


def persistent_bytes(graph: Any) -> int:
    """Bytes of a task's weights and input (outside the planned arena), aligned."""
    return sum(-(-t.nbytes // ALIGN) * ALIGN for n, t in graph.tensors.items()
               if t.role == "weight" or n == graph.input)  # fmt: skip


def arena_bytes(graph: Any) -> int:
    """Bytes one task's tensors and kernel workspaces take in the arena (aligned)."""
    from ..kernels import workspace

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

    def __init__(self, *, clock: Clock = WALL, graphs: bool = True, **options: Any) -> None:
        self._clock = clock
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
        self._ends: dict[int, CudaEvent] = {}  # launch token -> its end event, in flight
        self._report: dict[str, Any] = {}
        self._priority_range: tuple[int, int] | None = None

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        from ..arena import Placement
        from ..kernels import CompiledGraph

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
        priorities = self._stream_priorities(work)
        for w in work:
            if w.graph is None:
                self._tasks.append(None)
                continue
            place = None
            if layout is not None:
                place = Placement(buffer, layout.offsets[w.index], cp.float32)
            stream = CudaStream(cp, priorities[w.index])
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

    def _stream_priorities(self, work: Sequence[TaskWork]) -> list[int | None]:
        """Each task's CUDA stream priority: None (the default) unless the work carries
        priority ranks; then rank r gets the device's r-th most urgent level."""
        ranks = [w.priority for w in work]
        if all(r is None for r in ranks):
            return [None] * len(work)
        least, greatest = stream_priority_range(self.cp)
        mapped = cuda_priorities([0 if r is None else r for r in ranks], least, greatest)
        self._priority_range = (least, greatest)
        return [None if r is None else p for r, p in zip(ranks, mapped, strict=True)]

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
                before = self._clock.now_ns()
                event.record(stream)
                event.synchronize()
                tries[-1] = (self._clock.now_ns() - before, before, event)
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
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        t = self._tasks[task]
        if t is None:
            raise BackendError(f"task #{task} has no model: the cupy backend needs one")
        start = self._free_events.pop() if self._free_events else CudaEvent(self.cp)
        end = self._free_events.pop() if self._free_events else CudaEvent(self.cp)
        host = self._clock.now_ns()
        before = self._ends.get(after) if after is not None else None
        try:
            if before is not None:  # chained: the device starts it as that launch ends
                t.stream.raw.wait_event(before.raw)
            start.record(t.stream)
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
        self._ends[token] = end

    def _ns(self, event: CudaEvent) -> int:
        assert self._ref is not None
        ms: float = self.cp.cuda.get_elapsed_time(self._ref.raw, event.raw)
        return self._ref_host + round(ms * 1e6)

    def _finished(self, token: int, start: CudaEvent, end: CudaEvent, host: int) -> Finished:
        """Host-timeline times of one ended launch. The end is placed through the reference
        event; the duration comes from the launch's own two events (a float of ms measured
        from a reference minutes old loses µs). Every REANCHOR_NS the end event becomes the
        new reference, so the float never spans long."""
        self._ends.pop(token, None)
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
        now = self._clock.now_ns()  # first: an event done by now is seen below
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
        heads = [t.in_flight[0][2].raw for t in self._tasks if t is not None and t.in_flight]
        if not heads:
            self._clock.sleep_until(until_ns)
            return
        clock = self._clock.now_ns
        with cuda_errors("waiting for a job to finish"):
            while True:
                if any(e.done for e in heads) or clock() >= until_ns:
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
        out: dict[str, Any] = {
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
        if self._priority_range is not None:
            out["stream_priorities"] = self._priority_report(tasks)
        return out

    def _priority_report(self, tasks: list[_Task]) -> dict[str, Any]:
        """The device's priority range and each task's stream priority as CUDA reports it
        (``cudaStreamGetPriority``), with a note when tasks had to share a level."""
        assert self._priority_range is not None
        least, greatest = self._priority_range
        by_task = {t.work.name: int(t.stream.raw.priority) for t in tasks}
        ranks = {t.work.priority for t in tasks}
        out: dict[str, Any] = {"least": least, "greatest": greatest, "tasks": by_task}
        if len(set(by_task.values())) < len(ranks):
            out["note"] = (
                f"{len(ranks)} priority ranks on {least - greatest + 1} device levels: "
                "the lowest ranks share the least priority"
            )
        return out

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
        self._ends.clear()
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
