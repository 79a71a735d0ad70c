"""A stand-in for ``cupy`` built on NumPy, so the CuPy backend's own logic (arena, streams,
events, capture and fall-back, timeline, fault and close paths) runs in CI without a GPU.

It imitates only what :mod:`aegis_exec.backends.cupy` calls. Kernels run eagerly on the host:
a "captured" graph replays nothing (the capture pass already computed the outputs), events
are timestamps of the given clock (the test's virtual clock: recording an event takes
``RECORD_NS`` of it, a graph launch ``GRAPH_NS``, so runs are exact and never depend on the
host's load), and the raw GEMM kernel multiplies with NumPy (recording its grid).
``errors`` lets a test make a call fail the way CUDA would (a ``CUDARuntimeError`` whose
module is CuPy's).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from aegis_exec.testing import VirtualClock

RECORD_NS = 1_000
GRAPH_NS = 50_000


class CUDARuntimeError(RuntimeError):
    pass


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"


class State:
    def __init__(self) -> None:
        self.mallocs: dict[int, np.ndarray] = {}
        self.next_ptr = 4096
        self.errors: dict[str, int] = {}  # call name -> fail from this call number on (1-based)
        self.fail_once: dict[str, set[int]] = {}  # call name -> fail these call numbers only
        self.calls: dict[str, int] = {}
        self.kernel_grids: list[tuple[int, int, int]] = []
        self.capture_error: Exception | None = None
        self.least, self.greatest = 0, -5  # the stream priority range (e.g. 0, -5)
        self.streams: list[Any] = []  # every stream created, in order

    def hit(self, name: str) -> None:
        n = self.calls[name] = self.calls.get(name, 0) + 1
        if (name in self.errors and n >= self.errors[name]) or n in self.fail_once.get(name, ()):
            raise CUDARuntimeError(f"cudaErrorIllegalAddress: fake failure in {name}")


def make(clock: VirtualClock) -> tuple[types.ModuleType, State]:
    """A fresh fake ``cupy`` module on ``clock`` and its state."""
    st = State()
    cp = types.ModuleType("cupy")
    cp.__version__ = "0.0-fake"
    cp.uint8, cp.float32 = np.uint8, np.float32
    cp.is_available = lambda: True
    cp.asnumpy = lambda x: np.array(x, copy=True)
    cp.lib = np.lib

    def ndarray(shape: Any, dtype: Any = np.float32, memptr: Any = None) -> np.ndarray:
        buf = st.mallocs[memptr.mem.ptr]
        return buf[memptr.offset :].view(dtype)[: int(np.prod(shape))].reshape(shape)

    cp.ndarray = ndarray

    class Pool:
        def used_bytes(self) -> int:
            return 0

        def total_bytes(self) -> int:
            return 0

        def free_all_blocks(self) -> None:
            st.hit("free_all_blocks")

    pool = Pool()
    cp.get_default_memory_pool = lambda: pool

    class Runtime:
        CUDARuntimeError = CUDARuntimeError

        @staticmethod
        def malloc(n: int) -> int:
            st.hit("malloc")
            ptr = st.next_ptr
            st.next_ptr += n + 4096
            st.mallocs[ptr] = np.zeros(n, np.uint8)
            return ptr

        @staticmethod
        def free(ptr: int) -> None:
            st.hit("free")
            del st.mallocs[ptr]

        @staticmethod
        def getDeviceProperties(i: int) -> dict[str, Any]:
            return {"name": b"Fake GPU"}

        @staticmethod
        def runtimeGetVersion() -> int:
            return 12000

        @staticmethod
        def driverGetVersion() -> int:
            return 12000

    class Device:
        id = 0

        def synchronize(self) -> None:
            st.hit("device_synchronize")

    class UnownedMemory:
        def __init__(self, ptr: int, size: int, owner: Any) -> None:
            self.ptr, self.size, self.owner = ptr, size, owner

    class MemoryPointer:
        def __init__(self, mem: UnownedMemory, offset: int) -> None:
            self.mem, self.offset = mem, offset

    class Graph:
        def launch(self, stream: Any = None) -> None:
            st.hit("graph_launch")
            clock.advance(GRAPH_NS)

    class Stream:
        def __init__(self, non_blocking: bool = False, priority: int | None = None) -> None:
            self.capturing = False
            # CUDA clamps a priority into [greatest, least]
            self.priority = 0 if priority is None else min(max(priority, st.greatest), st.least)
            st.streams.append(self)

        def __enter__(self) -> Stream:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def synchronize(self) -> None:
            st.hit("stream_synchronize")

        def wait_event(self, event: Any) -> None:
            st.hit("stream_wait_event")
            assert event.t is not None, "waits on an event never recorded"

        def begin_capture(self) -> None:
            if st.capture_error is not None:
                raise st.capture_error
            self.capturing = True

        def end_capture(self) -> Graph:
            self.capturing = False
            return Graph()

    class Event:
        def __init__(self) -> None:
            self.t: int | None = None

        def record(self, stream: Any = None) -> None:
            st.hit("event_record")
            clock.advance(RECORD_NS)
            self.t = clock.now_ns()

        @property
        def done(self) -> bool:
            st.hit("event_query")
            return self.t is not None

        def synchronize(self) -> None:
            pass

    def get_elapsed_time(a: Event, b: Event) -> float:
        assert a.t is not None and b.t is not None
        return np.float32((b.t - a.t) / 1e6).item()  # float32 ms, like cudaEventElapsedTime

    cuda = types.SimpleNamespace(
        runtime=Runtime, Device=Device, Stream=Stream, Event=Event, Graph=Graph,
        UnownedMemory=UnownedMemory, MemoryPointer=MemoryPointer,
        get_elapsed_time=get_elapsed_time,
    )  # fmt: skip
    cp.cuda = cuda

    class RawKernel:
        def __init__(self, source: str, name: str) -> None:
            assert "aegis_sgemm" in source and name == "aegis_sgemm"

        def __call__(self, grid: tuple[int, int, int], block: Any, args: tuple[Any, ...]) -> None:
            st.kernel_grids.append(grid)
            a, b, out, zoff = args[0], args[1], args[2], int(args[10])
            if zoff == 0:
                np.matmul(a, b, out=out)

    cp.RawKernel = RawKernel

    def __getattr__(name: str) -> Any:  # everything else: NumPy's
        return getattr(np, name)

    cp.__getattr__ = __getattr__  # type: ignore[method-assign]
    return cp, st
