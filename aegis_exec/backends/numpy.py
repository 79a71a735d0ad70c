"""The CPU backend: real kernels in NumPy, each stream a worker thread.

Each task's :class:`~aegis_exec.kernels.CompiledGraph` runs on its own
:class:`~aegis_exec.backends.workers.WorkerStream` (the stream machinery it shares with the
onnxruntime backend: :mod:`aegis_exec.backends.workers`). The whole executor flow runs on
machines without a GPU.

Errors: :func:`numpy_errors` is the seam (out of memory and any other failure while loading
become BackendError); an exception inside a job's kernels, on its stream's thread, is that
job's fault (``Finished.error``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import BackendError

from ..clock import WALL, Clock
from .base import TaskWork
from .workers import SWITCH_INTERVAL_S, WARMUP_RUNS, ThreadedBackend, WorkerStream, cpu_name
from .workers import host_errors as numpy_errors

if TYPE_CHECKING:
    from ..arena import Layout

__all__ = ["SWITCH_INTERVAL_S", "WARMUP_RUNS", "NumpyBackend", "WorkerStream", "numpy_errors",
           "usable"]  # fmt: skip


def usable() -> bool:
    """NumPy is a dependency of AegisRT: the CPU backend runs wherever it is installed."""
    return True


class NumpyBackend(ThreadedBackend):
    """Real computation on the CPU: one :class:`WorkerStream` per task."""

    name = "numpy"

    def __init__(
        self, *, clock: Clock = WALL, blas_threads: int | None = 1, **options: Any
    ) -> None:
        super().__init__(clock=clock)
        self.device = cpu_name()
        self.blas_threads = blas_threads
        self._blas: Any = None
        self._graphs: list[Any] = []
        self._work: list[TaskWork] = []
        self._bytes = 0

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        import numpy as np

        self._shorten_switch()
        # One BLAS thread per stream: each stream is one thread of compute, so concurrent
        # streams do not oversubscribe the cores and a job's time does not depend on what
        # the other streams do (OpenBLAS's own pool stalls jobs when cores are busy).
        if self._blas is None and self.blas_threads is not None:
            from threadpoolctl import threadpool_limits

            self._blas = threadpool_limits(limits=self.blas_threads, user_api="blas")

        from ..arena import Placement, arena_buffer
        from ..kernels import CompiledGraph

        self._work = list(work)
        buffer = None
        if layout is not None:
            buffer = arena_buffer(np, layout.nbytes)  # the one activation arena
            self._bytes += layout.nbytes
        for w in work:
            if w.graph is None:
                self._graphs.append(None)
                self._streams.append(None)
                continue
            place = None
            if layout is not None:
                place = Placement(buffer, layout.offsets[w.index], np.float32)
            with numpy_errors(f"loading model {w.graph.name} (batch {w.graph.batch}) for task "
                              f"'{w.name}'"):  # fmt: skip
                compiled = CompiledGraph(w.graph, np, seed=w.index, placement=place)
            stream = self._open(w.name, compiled.run)
            self._bytes += compiled.nbytes
            self._graphs.append(compiled)
            self._streams.append(stream)

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        w, stream, compiled = self._work[task], self._streams[task], self._graphs[task]
        if stream is None or compiled is None:
            raise BackendError(f"task '{w.name}' has no model: the numpy backend needs one")
        ops = w.ranges[chunk]
        self._submit(stream, token, lambda: compiled.run(ops), after)

    def graphs(self) -> dict[int, Any]:
        return {i: g for i, g in enumerate(self._graphs) if g is not None}

    def report(self) -> dict[str, Any]:
        import numpy as np

        return {
            "device": self.device,
            "versions": {"numpy": np.__version__},
            "blas_threads_per_stream": self.blas_threads,
            "memory": {"buffers_bytes": self._bytes},
            "cuda_graphs": False,
        }

    def _restore(self) -> None:
        super()._restore()
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None

    def _forget(self) -> None:
        self._graphs = []
