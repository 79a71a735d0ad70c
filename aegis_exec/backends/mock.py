"""The mock backend: no computation; each launch takes its planned duration (the plan's
execution-time model: the WCET, or a draw from the task's profile, as in the simulator) on
the injected clock. Deterministic durations for tests of the executor's flow (exact ones on
a virtual clock); streams are in-order per task, as on a device."""

from __future__ import annotations

from collections.abc import Sequence
from heapq import heappop, heappush
from typing import Any

from ..clock import WALL, Clock
from .base import Finished, TaskWork


def usable() -> bool:
    """Needs nothing: it runs anywhere."""
    return True


class MockBackend:
    name = "mock"
    device = "mock (synthetic durations)"

    def __init__(self, *, clock: Clock = WALL, **options: Any) -> None:
        self._clock = clock
        self._work: list[TaskWork] = []
        self._free_at: list[int] = []  # per task stream: when its last launch ends
        self._heap: list[tuple[int, int, Finished]] = []
        self._ends: dict[int, int] = {}  # launch token -> its end, while in flight
        self._n = 0

    def prepare(self, work: Sequence[TaskWork], layout: Any = None) -> None:
        self._work = list(work)
        self._free_at = [0] * len(work)

    def graphs(self) -> dict[int, Any]:
        return {}

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        w = self._work[task]
        start = max(self._clock.now_ns(), self._free_at[task])
        if after is not None:  # chained: starts as that launch ends
            start = max(start, self._ends.get(after, start))
        end = start + (w.durations_ns[chunk] if duration_ns is None else duration_ns)
        self._free_at[task] = end
        self._n += 1
        self._ends[token] = end
        heappush(self._heap, (end, self._n, Finished(token, start, end)))

    def snapshot(self) -> tuple[int, list[Finished]]:
        now, heap, out = self._clock.now_ns(), self._heap, []
        while heap and heap[0][0] <= now:
            f = heappop(heap)[2]
            self._ends.pop(f.token, None)
            out.append(f)
        return now, out

    def wait(self, until_ns: int) -> None:
        if self._heap:
            until_ns = min(until_ns, self._heap[0][0])
        self._clock.sleep_until(until_ns)

    def synchronize(self) -> None:
        if self._heap:
            self._clock.sleep_until(max(end for end, _, _ in self._heap))

    def report(self) -> dict[str, Any]:
        return {"device": self.device, "versions": {}, "memory": {}, "cuda_graphs": False}

    def close(self) -> None:
        self._heap.clear()
        self._ends.clear()
