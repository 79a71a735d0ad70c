"""What the host-thread backends (numpy, onnxruntime) share: worker-thread streams, the
completion queue they hand ends to, and the backend half that drives them.

A :class:`WorkerStream` runs the work queued on it in order, on its own thread (NumPy's BLAS
and ufunc loops, and an ONNX Runtime session's ``run``, release the GIL, so streams of
different tasks really overlap, as CUDA streams would). Its events are host timestamps taken
on the stream's thread around each job. Such streams are real threads doing real work: they
need a clock whose time passes on its own (the wall clock, the default).

:class:`ThreadedBackend` is the part of a backend that is the same whatever the stream's
work is: opening and warming up streams, the non-blocking :meth:`~ThreadedBackend.snapshot`,
:meth:`~ThreadedBackend.wait`, :meth:`~ThreadedBackend.synchronize`, and closing. An exception
inside a job, on its stream's thread, is that job's fault (``Finished.error``).

A launch chained behind another (decided ahead) is queued on the stream that runs that
other one, so the same thread starts it the moment the first ends, as a device runs the next
kernel of a stream: no thread wake-up in between. (A worker waiting on the other's end event
instead wakes ~25 µs later at the median and ~55 µs at p99 on a 2-vCPU host: a stream wait
whose cost is the gap the chaining removes.) The chained job runs on its own buffers, so which
thread runs it changes nothing but when it starts.
"""

from __future__ import annotations

import contextlib
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator

from aegis_core.model.errors import AegisError, BackendError

from ..clock import SPIN_NS, WALL, Clock
from .base import Finished

SWITCH_INTERVAL_S = 50e-6
"""GIL switch interval during a run: bounds how late the engine's thread sees an event."""

WARMUP_RUNS = 2
"""Untimed runs of each model before the run starts (first runs pay one-off costs)."""


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
        item = self._queue.get()
        start = self._now()  # the stream's events: host timestamps
        while item is not None:
            token, fn = item
            error = None
            try:
                fn()
            except Exception as exc:  # a job's kernels failed: a fault of that job only
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                end = self._now()
                try:  # work queued behind this job starts now, before the end is handed over
                    item, nxt = self._queue.get_nowait(), self._now()  # (handing it over may
                except queue.Empty:  # give the GIL to the engine's thread for a while)
                    item, nxt = None, -1
                self._done.put(Finished(token, start, end, error))
            if nxt < 0:
                item = self._queue.get()
                nxt = self._now()
            start = nxt

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
def host_errors(where: str) -> Iterator[None]:
    """A host backend's error seam: anything but an AegisError raised while doing ``where``
    becomes a BackendError (out of memory named as such)."""
    try:
        yield
    except AegisError:
        raise
    except MemoryError as exc:
        raise BackendError(f"not enough memory while {where}: {exc}") from exc
    except Exception as exc:
        raise BackendError(f"unexpected error while {where}: {type(exc).__name__}: {exc}") from exc


class ThreadedBackend:
    """The stream half of a backend whose streams are :class:`WorkerStream` threads, one
    per task (None: a task with no model). Subclasses build each task's work in
    ``prepare`` and :meth:`_open` its stream; ``launch`` :meth:`_submit`\\ s a job."""

    def __init__(self, *, clock: Clock = WALL) -> None:
        self._clock = clock
        self._done: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._streams: list[WorkerStream | None] = []
        self._in_flight = 0  # launched, not yet returned by snapshot
        self._where: dict[int, WorkerStream] = {}  # launch token -> the stream running it
        self._held: list[Finished] = []  # taken from the queue, not yet returned
        self._lock = threading.Lock()
        self._switch: float | None = None

    def _shorten_switch(self) -> None:
        # The streams' threads hold the GIL between library calls; with CPython's default
        # 5 ms switch interval the engine's thread would wake up to 5 ms late for a release
        # or a completion. Restored by close().
        if self._switch is None:
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)

    def _open(self, name: str, run: Callable[[], None]) -> WorkerStream:
        """Task ``name``'s stream, after :data:`WARMUP_RUNS` runs of ``run`` on the stream's
        own thread (buffers paged in, thread pools up, caches warm for that thread); a
        warm-up that fails is a BackendError naming the task."""
        stream = WorkerStream(name, self._done, self._lock, self._clock)
        for _ in range(WARMUP_RUNS):
            stream.submit(-1, run)
        for _ in range(WARMUP_RUNS):
            warm = self._done.get()
            if warm.error is not None:
                stream.close()
                raise BackendError(f"task '{name}': warm-up run failed: {warm.error}")
        return stream

    def _submit(self, stream: WorkerStream, token: int, fn: Callable[[], None],
                after: int | None = None) -> None:  # fmt: skip
        """Queue ``fn`` on ``stream`` (chained ``after`` a launch in flight: on the stream
        that runs that one, right behind it)."""
        if after is not None:
            stream = self._where.get(after, stream)
        self._in_flight += 1
        self._where[token] = stream
        stream.submit(token, fn)

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
        where = self._where
        for f in out:
            where.pop(f.token, None)
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

    def synchronize(self) -> None:
        while self._in_flight - len(self._held) > 0:
            self._held.append(self._done.get())

    def _restore(self) -> None:
        """Undo what prepare changed in the interpreter (subclasses add their own)."""
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None

    def close(self) -> None:
        """Restore the interpreter's settings first (a second Ctrl-C while joining must not
        leave them changed), drop queued jobs that have not started, join the streams."""
        try:
            self._restore()
        finally:
            streams, self._streams = self._streams, []
            self._where.clear()
            self._forget()
            for st in streams:
                if st is not None:
                    st.cancel()
            for st in streams:
                if st is not None:
                    st.close()

    def _forget(self) -> None:
        """Drop the tasks' compiled work (called by close; subclasses with work override)."""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return "CPU: " + line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return "CPU: " + (platform.processor() or platform.machine())  # pragma: no cover


__all__ = ["SWITCH_INTERVAL_S", "WARMUP_RUNS", "ThreadedBackend", "WorkerStream", "cpu_name",
           "host_errors"]  # fmt: skip
