"""Test doubles for the executor: a virtual clock and a fault-injecting backend wrapper.

* :class:`VirtualClock`: time moves only when waited on (or advanced by hand), so a run of
  the mock backend on it is exact and cannot depend on how busy the host is.
* :class:`FaultyBackend`: wraps a real backend and makes chosen jobs fail, either at launch
  (the backend raises :class:`~aegis_core.model.errors.JobFault`, as a CUDA launch error does) or
  at their end (the job runs, its end reports an error, as a kernel raising on a stream
  does). The real backends carry no fault hooks.

What a wall-clock test asserts about deadlines (every miss has a recorded cause, never "no
misses") is :func:`aegis_core.run.testing.unexplained_misses`.

Use: ``ExecEngine("mock", clock=VirtualClock(), wrap=faults({"a#1": "boom"}))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from aegis_core.model.errors import JobFault

from .backends import Backend, Finished, TaskWork

if TYPE_CHECKING:
    from .arena import Layout

FaultAt = Literal["launch", "end"]


class VirtualClock:
    """A clock that stands still until waited on: :meth:`sleep_until` jumps to the target."""

    def __init__(self, start_ns: int = 0) -> None:
        self.t = start_ns

    def now_ns(self) -> int:
        return self.t

    def sleep_until(self, t_ns: int) -> None:
        self.t = max(self.t, t_ns)

    def advance(self, ns: int) -> None:
        """Time passes by ``ns`` (e.g. a fake device's kernel)."""
        self.t += ns


class LateClock(VirtualClock):
    """A virtual clock whose waits overshoot: waiting for a target in ``late`` (``{target
    ns: extra ns}``, targets on the clock's own timeline) returns ``extra`` after it, as a
    loaded host wakes up late."""

    def __init__(self, late: Mapping[int, int], start_ns: int = 0) -> None:
        super().__init__(start_ns)
        self.late = dict(late)

    def sleep_until(self, t_ns: int) -> None:
        self.t = max(self.t, t_ns + self.late.pop(t_ns, 0))


class BackendWrapper:
    """A real backend with some of its calls changed (what the doubles below subclass):
    every call goes to ``inner`` unless overridden."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.device = inner.name, inner.device
        self._names: list[str] = []

    def job(self, task: int, k: int) -> str:
        """The id ``task#k`` of a launch (known once prepared)."""
        return f"{self._names[task]}#{k}"

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        self._names = [w.name for w in work]
        self.inner.prepare(work, layout)
        self.device = self.inner.device

    def graphs(self) -> dict[int, Any]:
        return self.inner.graphs()

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        self.inner.launch(task, chunk, token, k, duration_ns, after)

    def snapshot(self) -> tuple[int, list[Finished]]:
        return self.inner.snapshot()

    def wait(self, until_ns: int) -> None:
        self.inner.wait(until_ns)

    def synchronize(self) -> None:
        self.inner.synchronize()

    def report(self) -> dict[str, Any]:
        return self.inner.report()

    def close(self) -> None:
        self.inner.close()


class SlowLaunch(BackendWrapper):
    """``inner`` with the launches of the jobs in ``delays`` (``{job id: ns}``) taking that
    long on the host before the device starts them (a slow launch path)."""

    def __init__(self, inner: Backend, clock: VirtualClock, delays: Mapping[str, int]) -> None:
        super().__init__(inner)
        self.clock, self.delays = clock, dict(delays)

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        self.clock.advance(self.delays.get(self.job(task, k), 0))
        self.inner.launch(task, chunk, token, k, duration_ns, after)


class FaultyBackend(BackendWrapper):
    """``inner`` with the jobs in ``faults`` (``{job id: message}``, ids ``task#k``) failing
    with that message: at launch (``at="launch"``: JobFault, nothing runs) or at their end
    (``at="end"``: the job runs and its end carries the error)."""

    def __init__(self, inner: Backend, faults: Mapping[str, str], at: FaultAt = "launch") -> None:
        super().__init__(inner)
        self.faults = dict(faults)
        self.at = at
        self._failing: dict[int, str] = {}  # token -> message (at="end")

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        message = self.faults.get(self.job(task, k))
        if message is not None and self.at == "launch":
            raise JobFault(message)
        self.inner.launch(task, chunk, token, k, duration_ns, after)
        if message is not None:
            self._failing[token] = message

    def snapshot(self) -> tuple[int, list[Finished]]:
        now, done = self.inner.snapshot()
        return now, [self._fail(f) for f in done]

    def _fail(self, f: Finished) -> Finished:
        message = self._failing.pop(f.token, None)
        return f if message is None else Finished(f.token, f.start_ns, f.end_ns, message)


def faults(jobs: Mapping[str, str], at: FaultAt = "launch") -> Callable[[Backend], Backend]:
    """``ExecEngine(wrap=faults({...}))``: the engine's backend wrapped in a FaultyBackend."""
    return lambda inner: FaultyBackend(inner, jobs, at)
