"""The CPU backend: real kernels in NumPy, each stream a worker thread.

A :class:`WorkerStream` runs the work queued on it in order, on its own thread (NumPy's BLAS
and ufunc loops release the GIL, so streams of different tasks really overlap, as CUDA streams
would). Its events are host timestamps taken on the stream's thread around each job. The
whole executor flow runs on machines without a GPU. Its streams are real threads doing real
work: it needs a clock whose time passes on its own (the wall clock, the default).

Errors: :func:`numpy_errors` is the seam (out of memory and any other failure while loading
become BackendError); an exception inside a job's kernels, on its stream's thread, is that
job's fault (``Finished.error``).
"""

from __future__ import annotations

import contextlib
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import AegisError, BackendError

from ..clock import SPIN_NS, WALL, Clock
from .base import Finished, TaskWork

if TYPE_CHECKING:
    from ..arena import Layout

SWITCH_INTERVAL_S = 50e-6
"""GIL switch interval during a run: bounds how late the engine's thread sees an event."""

WARMUP_RUNS = 2
"""Untimed runs of each model before the run starts (first runs pay one-off costs)."""


def usable() -> bool:
    """NumPy is a dependency of AegisRT: the CPU backend runs wherever it is installed."""
    return True


class WorkerStream:
    """An in-order queue of work run by one daemon thread; ``close`` joins the thread.

    ``lock`` (shared by a backend's streams) makes "take the end time, hand the result
    over" one step, so a reader that takes the clock under the same lock sees every launch
    that ended before its reading."""

    live = 0
    """Streams created and not yet closed (resource-leak checks)."""

    def __init__(
        self,
        name: str,
        done: queue.SimpleQueue[Finished],
        lock: threading.Lock | None = None,
        clock: Clock = WALL,
    ) -> None:
        self._now = clock.now_ns
        self._queue: queue.SimpleQueue[tuple[int, Callable[[], None]] | None] = queue.SimpleQueue()
        self._done = done
        self._lock = lock or threading.Lock()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._work, name=f"aegis-stream-{name}", daemon=True
        )
        self._thread.start()
        WorkerStream.live += 1

    def submit(self, token: int, fn: Callable[[], None]) -> None:
        self._queue.put((token, fn))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            token, fn = item
            error = None
            start = self._now()  # the stream's events: host timestamps
            try:
                fn()
            except Exception as exc:  # a job's kernels failed: a fault of that job only
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._done.put(Finished(token, start, self._now(), error))

    def cancel(self) -> int:
        """Drop the work queued and not started yet; returns how many items."""
        n = 0
        try:
            while True:
                self._queue.get_nowait()
                n += 1
        except queue.Empty:
            return n

    def close(self) -> None:
        """Stop the thread after the work queued (see :meth:`cancel`) and join it."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        WorkerStream.live -= 1
        self._queue.put(None)
        thread.join()

    def __enter__(self) -> WorkerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def numpy_errors(where: str) -> Iterator[None]:
    """The backend's error seam: anything but an AegisError raised while doing ``where``
    becomes a BackendError (out of memory named as such)."""
    try:
        yield
    except AegisError:
        raise
    except MemoryError as exc:
        raise BackendError(f"not enough memory while {where}: {exc}") from exc
    except Exception as exc:
        raise BackendError(f"unexpected error while {where}: {type(exc).__name__}: {exc}") from exc


class NumpyBackend:
    """Real computation on the CPU: one :class:`WorkerStream` per task."""

    name = "numpy"

    def __init__(
        self, *, clock: Clock = WALL, blas_threads: int | None = 1, **options: Any
    ) -> None:
        self.device = _cpu_name()
        self._clock = clock
        self.blas_threads = blas_threads
        self._blas: Any = None
        self._done: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._streams: list[WorkerStream | None] = []
        self._graphs: list[Any] = []
        self._work: list[TaskWork] = []
        self._in_flight = 0  # launched, not yet returned by snapshot
        self._held: list[Finished] = []  # taken from the queue, not yet returned
        self._lock = threading.Lock()
        self._bytes = 0
        self._switch: float | None = None

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        import numpy as np

        # The streams' threads hold the GIL between NumPy calls; with CPython's default 5 ms
        # switch interval the engine's thread would wake up to 5 ms late for a release or a
        # completion. Restored by close().
        if self._switch is None:
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
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
            stream = WorkerStream(w.name, self._done, self._lock, self._clock)
            for _ in range(WARMUP_RUNS):  # on the stream's own thread: buffers paged in, BLAS
                stream.submit(-1, compiled.run)  # threads up, caches warm for that thread
            for _ in range(WARMUP_RUNS):
                warm = self._done.get()
                if warm.error is not None:
                    stream.close()
                    raise BackendError(f"task '{w.name}': warm-up run failed: {warm.error}")
            self._bytes += compiled.nbytes
            self._graphs.append(compiled)
            self._streams.append(stream)

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None
    ) -> None:
        w, stream, compiled = self._work[task], self._streams[task], self._graphs[task]
        if stream is None or compiled is None:
            raise BackendError(f"task '{w.name}' has no model: the numpy backend needs one")
        ops = w.ranges[chunk]
        self._in_flight += 1
        stream.submit(token, lambda: compiled.run(ops))

    def snapshot(self) -> tuple[int, list[Finished]]:
        with self._lock:  # no stream can stamp an end and not yet have handed it over
            now = self._clock.now_ns()
            out, self._held = self._held, []
            try:
                while True:
                    out.append(self._done.get_nowait())
            except queue.Empty:
                pass
        self._in_flight -= len(out)
        return now, out

    def wait(self, until_ns: int) -> None:
        """Block on the done queue until a launch ends or ``until_ns``; the last stretch is
        spun (a blocking get with a timeout overshoots by ~100 us)."""
        clock = self._clock.now_ns
        left = until_ns - clock() - SPIN_NS
        if left > 0 and self._in_flight and not self._held:
            try:
                self._held.append(self._done.get(timeout=left / 1e9))
                return
            except queue.Empty:
                pass
        while clock() < until_ns and self._done.empty() and not self._held:
            time.sleep(0)

    def graphs(self) -> dict[int, Any]:
        return {i: g for i, g in enumerate(self._graphs) if g is not None}

    def synchronize(self) -> None:
        while self._in_flight - len(self._held) > 0:
            self._held.append(self._done.get())

    def report(self) -> dict[str, Any]:
        import numpy as np

        return {
            "device": self.device,
            "versions": {"numpy": np.__version__},
            "blas_threads_per_stream": self.blas_threads,
            "memory": {"buffers_bytes": self._bytes},
            "cuda_graphs": False,
        }

    def close(self) -> None:
        """Restore the interpreter's settings first (a second Ctrl-C while joining must not
        leave them changed), drop queued jobs that have not started, join the streams."""
        try:
            if self._switch is not None:
                sys.setswitchinterval(self._switch)
                self._switch = None
            if self._blas is not None:
                self._blas.restore_original_limits()
                self._blas = None
        finally:
            streams, self._streams, self._graphs = self._streams, [], []
            for st in streams:
                if st is not None:
                    st.cancel()
            for st in streams:
                if st is not None:
                    st.close()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return "CPU: " + (platform.processor() or platform.machine())  # pragma: no cover
