"""``aegis exec``'s probe: before the run, one job of each task's model on the chosen backend,
its time against the task's WCET, so that WCETs that cannot hold on this device are said
before the run (not after seconds of misses). ``aegis exec`` probes once the engine has
accepted the run (:func:`~aegis_core.tools.runner.run_scenario`'s ``before_run``, after
``Engine.validate``), before anything is written: a run the backend refuses (chunked lp-edf
work where it runs whole models, a model it cannot export) is refused without loading or
timing any model.

Per task with a model and a WCET: one untimed warm-up job (first-launch costs: allocation,
graph capture, caches), then one timed job, through the engine package's profiler (the
``aegis.profilers`` entry point, the durations ``aegis profile`` measures). A backend that
replays planned durations (mock) measures nothing: no probe. The probe is advice, never a
verdict: a scenario the profiler cannot load, or a job that fails, is left for the run to
report, its own way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aegis_core.budget import task_budget
from aegis_core.model.errors import AegisError, InputError
from aegis_core.model.scenario import Scenario
from aegis_core.model.types import TimeNs, fmt_ms
from aegis_core.tools.profiling import Profiler, load_profiler

WARMUP = 1
"""Untimed jobs per task before the timed one."""


@dataclass(frozen=True)
class Probed:
    """One task's probe: its timed job's duration against its WCET."""

    task: str
    measured_ns: TimeNs
    wcet_ns: TimeNs

    @property
    def exceeds(self) -> bool:
        return self.measured_ns > self.wcet_ns

    def warning(self, scenario: Scenario, backend: str) -> str:
        return (
            f"probe on {backend}: task '{self.task}' ran {fmt_ms(self.measured_ns)} ms > its "
            f"WCET {fmt_ms(self.wcet_ns)} ms: its WCET cannot hold on this device, so neither "
            f"can the bounds (measure it: `aegis profile {scenario.path} --backend {backend}`)"
        )


def _wcets(scenario: Scenario) -> Iterator[tuple[int, str, TimeNs]]:
    """The tasks with a model and a WCET: index, name, WCET (ns)."""
    for i, task in enumerate(scenario.tasks):
        if task.model is None:
            continue
        try:
            wcet = task_budget(task, i, scenario.policy, scenario.path).wcet_ns
        except InputError:  # no WCET (the run says so)
            continue
        yield i, task.name, wcet


def probe(
    scenario: Scenario,
    backend: str,
    profiler: Callable[[Scenario, str], Profiler] | None = None,
) -> list[Probed]:
    """One warm-up and one timed job of each modelled task on ``backend`` (resolved, e.g.
    ``numpy``); ``profiler`` builds the measuring profiler (default: the engine package's,
    :func:`~aegis_core.tools.profiling.load_profiler`). Empty when the backend replays
    durations or the scenario cannot be loaded for measuring."""
    tasks = list(_wcets(scenario))
    if not tasks:
        return []
    try:
        prof = (profiler or load_profiler)(scenario, backend)
        if not prof.host_timed:
            return []
        out = []
        with prof:
            for index, name, wcet in tasks:
                with contextlib.closing(prof.samples(index)) as durations:
                    for k, value in enumerate(durations):
                        if k == WARMUP:
                            out.append(Probed(name, int(value), wcet))
                            break
        return out
    except AegisError:  # a bad input or a failing job: left for the run to report, its way
        return []
