"""Measures execution times for ``aegis profile``: one task's model run job after job on a
backend, alone (``isolated``) or while every other task's model runs back to back on its own
stream (``contention``).

The core decides how many samples to take and what WCET they give
(:mod:`aegis_core.analysis.pwcet`); this module only produces durations, found by the core
through the entry-point group ``aegis.profilers``. A duration is the backend's own measure
of one job: device events on cupy, the stream thread's clock on numpy, the planned duration
on mock.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from types import TracebackType
from typing import Any

from aegis_core.budget import task_budget
from aegis_core.model.errors import BackendError, InputError, ScenarioError
from aegis_core.model.scenario import Scenario

from .backends import Backend, Finished, TaskWork, make_backend, resolve, spec
from .clock import WALL, Clock

_FAR = 10**18


def _work(scenario: Scenario, backend: str) -> list[TaskWork]:
    from .engine import check_runnable, load_task_graph

    needs_model = spec(backend).caps.executes_models
    out = []
    for i, task in enumerate(scenario.tasks):
        graph = load_task_graph(scenario, task)
        if graph is None and needs_model:
            raise ScenarioError(
                scenario.path,
                f"profiling on {backend} runs the task's model: give one",
                task=task.name,
                field="model",
            )
        try:  # a backend that replays durations replays the task's WCET, as its budget says
            wcet = task_budget(task, i, scenario.policy, scenario.path).wcet_ns
        except ScenarioError:
            wcet = 0
            if graph is None:
                raise ScenarioError(
                    scenario.path,
                    f"the {backend} backend replays wcet_ms: give it, or a model and a backend "
                    "that runs it",
                    task=task.name,
                    field="wcet_ms",
                ) from None
        check_runnable(scenario, task, graph, backend)
        ranges = (range(len(graph.ops)),) if graph is not None else (range(1),)
        out.append(TaskWork(i, task.name, graph, ranges, (wcet,)))
    return out


class Profiler:
    """Context manager: loads every task's model once on ``backend`` (``auto`` or a name
    registered in :mod:`aegis_exec.backends`), then :meth:`samples` yields one task's job
    durations (ns). ``clock``: the host clock (default: the wall clock)."""

    name = "exec"

    def __init__(
        self, scenario: Scenario, backend: str = "auto", *, clock: Clock = WALL, **options: Any
    ) -> None:
        self.scenario = scenario
        self.backend = resolve(backend)
        self._clock = clock
        self._work = _work(scenario, self.backend)
        self._options = options
        self._impl: Backend | None = None
        self._tokens = itertools.count()
        self.device = ""
        self.host_timed = not spec(self.backend).caps.replays_exec_time
        """Its durations are measured (real kernels on the host's CPUs or its device), not
        replayed: how busy the host was matters (the core's host-load check)."""

    def __enter__(self) -> Profiler:
        self._impl = make_backend(self.backend, self._clock, **self._options)
        try:
            self._impl.prepare(self._work)
        except BaseException:
            self._impl.close()
            raise
        self.device = self._impl.device
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._impl is not None:
            self._impl.close()
            self._impl = None

    def report(self) -> dict[str, Any]:
        return self._impl.report() if self._impl is not None else {}

    def co_runners(self, task: int) -> list[int]:
        replays = spec(self.backend).caps.replays_exec_time
        runs = [w.graph is not None or replays for w in self._work]
        return [w.index for w in self._work if w.index != task and runs[w.index]]

    def samples(
        self, task: int, *, contention: bool = False, pace_ns: int = 0
    ) -> Generator[int, None, None]:
        """Durations of consecutive jobs of ``task`` (one in flight at a time); with
        ``contention`` the co-runners are relaunched as soon as each ends, so the other streams
        never idle while a sample is taken. ``pace_ns``: launch job k at k * pace_ns (as a
        periodic task is released: caches and clocks see the idle gaps of a real run), or at
        once when late; 0 runs jobs back to back. Stop iterating to stop (co-runners are
        drained)."""
        impl = self._impl
        if impl is None:
            raise InputError("Profiler.samples() needs an open profiler: use `with Profiler(...)`")
        others = self.co_runners(task) if contention else []
        running: dict[int, int] = {}  # token -> task
        for o in others:
            self._launch(o, running)
        start = self._clock.now_ns()
        try:
            for k in itertools.count():
                if pace_ns:
                    self._idle_until(start + k * pace_ns, running, set(others))
                token = self._launch(task, running)
                done = self._until(token, running, set(others))
                if done.error is not None:
                    raise BackendError(f"task '{self._work[task].name}': job failed: {done.error}")
                yield done.end_ns - done.start_ns
        finally:
            impl.synchronize()
            impl.snapshot()

    def _launch(self, task: int, running: dict[int, int]) -> int:
        assert self._impl is not None
        token = next(self._tokens)
        running[token] = task
        self._impl.launch(task, 0, token, token)
        return token

    def _idle_until(self, t_ns: int, running: dict[int, int], relaunch: set[int]) -> None:
        """Wait for the host clock to reach ``t_ns``, keeping the co-runners going."""
        impl = self._impl
        assert impl is not None
        while self._clock.now_ns() < t_ns:
            if running:
                impl.wait(t_ns)
                self._relaunch(impl.snapshot()[1], running, relaunch)
            else:
                self._clock.sleep_until(t_ns)

    def _relaunch(
        self, finished: list[Finished], running: dict[int, int], relaunch: set[int]
    ) -> None:
        for f in finished:
            task = running.pop(f.token)
            if task in relaunch:
                if f.error is not None:
                    raise BackendError(f"co-runner '{self._work[task].name}' failed: {f.error}")
                self._launch(task, running)

    def _until(self, token: int, running: dict[int, int], relaunch: set[int]) -> Finished:
        """Wait for launch ``token``, relaunching the co-runners that end meanwhile."""
        impl = self._impl
        assert impl is not None
        mine: Finished | None = None
        while mine is None:
            impl.wait(_FAR)
            for f in impl.snapshot()[1]:
                task = running.pop(f.token)
                if f.token == token:
                    mine = f
                elif task in relaunch:
                    if f.error is not None:
                        raise BackendError(f"co-runner '{self._work[task].name}' failed: {f.error}")
                    self._launch(task, running)
        return mine
