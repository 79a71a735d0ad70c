"""CUDA resources for the CuPy backend, each owning its CUDA object (RAII), and the
backend's error seam.

The CuPy module comes in as an argument (``cp``): only :mod:`aegis_exec.backends.cupy`
imports it. :func:`translate` / :func:`cuda_errors` map every CuPy/CUDA exception onto
:mod:`aegis_core.model.errors` (a device error is a BackendError that ends the run; the backend
turns an error inside one job's launch into that job's JobFault).

* :class:`CudaStream` / :class:`CudaEvent` own their CUDA objects and release them on
  :meth:`close` (context managers); class counters tell how many are alive.
* :class:`DeviceMemoryPool` allocates one arena up front and hands out tensors as views at
  aligned offsets, so a run allocates nothing on the device after warm-up.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

from aegis_core.model.errors import AegisError, BackendError

ALIGN = 256
"""Byte alignment of every tensor in the arena (cudaMalloc's own alignment)."""


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
    """A non-blocking CUDA stream owned by this object; released by :meth:`close`.
    ``priority``: its CUDA priority (lower = more urgent; CUDA clamps it into the device's
    range); None: the default priority."""

    live = 0

    def __init__(self, cp: Any, priority: int | None = None) -> None:
        with cuda_errors("creating a stream"):
            if priority is None:
                self.raw: Any = cp.cuda.Stream(non_blocking=True)
            else:
                self.raw = cp.cuda.Stream(non_blocking=True, priority=priority)
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


PROBE_PRIORITY = 1 << 16
"""Beyond any device's stream-priority range: CUDA clamps it to the range's ends."""


def stream_priority_range(cp: Any) -> tuple[int, int]:
    """The device's ``(least, greatest)`` stream priorities (``greatest`` is the most urgent and
    numerically smallest; both 0 when the device has none): read back from two probe streams
    created beyond either end (CUDA clamps a priority into the range, and
    ``Stream.priority`` is ``cudaStreamGetPriority``), so no runtime call outside CuPy's
    ``Stream`` API is needed."""
    ends = []
    for want in (PROBE_PRIORITY, -PROBE_PRIORITY):
        stream = CudaStream(cp, want)
        try:
            with cuda_errors("reading the stream priority range"):
                ends.append(int(stream.raw.priority))
        finally:
            stream.close()
    return ends[0], ends[1]


def cuda_priorities(ranks: Sequence[int], least: int, greatest: int) -> list[int]:
    """The CUDA priority of each stream priority rank (0 = the highest): rank r gets
    ``greatest + r``, and ranks beyond the device's levels all get ``least`` (they share the
    lowest level: the report shows it)."""
    return [min(greatest + r, least) for r in ranks]


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
