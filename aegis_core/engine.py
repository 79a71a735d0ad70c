"""The Engine protocol, the run plan every engine receives, and engine discovery.

Engines are found by name in the entry-point group ``aegis.engines`` so the core never imports
one; the CLI asks :func:`load_engine` for ``"sim"`` (or, later, ``"exec"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from .arrivals import releases
from .errors import EngineNotFound, InputError, ScenarioError
from .events import EngineEvent, Release
from .policy import Policy, get_policy
from .scenario import Scenario
from .types import TimeNs

if TYPE_CHECKING:
    from .admission import Admission
    from .scheduler import Dispatch

ENGINE_GROUP = "aegis.engines"


class ExecutionTimeModel(Protocol):
    """How long a dispatched job runs in a simulated engine (the seam for profile replay)."""

    def __call__(self, d: Dispatch) -> TimeNs: ...


def require_wcet(scenario: Scenario) -> None:
    """Simulation and admission need every task's WCET."""
    missing = [t.name for t in scenario.tasks if t.wcet_ns is None]
    if missing:
        raise ScenarioError(
            scenario.path,
            "an execution time is needed: give wcet_ms or a profile (aegis profile writes one)",
            task=missing[0],
            field="wcet_ms",
        )


class WcetModel:
    """Every job (or chunk of a job) runs for exactly its WCET."""

    def __init__(self, chunks: Sequence[Sequence[TimeNs]]) -> None:
        self.chunks = [tuple(c) for c in chunks]

    @classmethod
    def of(cls, scenario: Scenario, chunks: Sequence[Sequence[TimeNs] | None] = ()) -> WcetModel:
        """One chunk of the task's WCET each, unless ``chunks`` gives a task's chunk chain."""
        require_wcet(scenario)
        given = list(chunks) or [None] * len(scenario.tasks)
        return cls([c or (t.wcet_ns or 0,) for t, c in zip(scenario.tasks, given, strict=True)])

    def __call__(self, d: Dispatch) -> TimeNs:
        return self.chunks[d.task_index][d.chunk]


EXEC_TIME_MODES = ("sample", "wcet")
"""``sample``: profiled tasks replay their profile's samples (others: WCET); ``wcet``: every
job runs for its WCET (the worst case)."""


class SampledModel:
    """Profile replay: each job of a task with a profile runs for a duration drawn, with
    replacement, from the profile's samples; other tasks run for their WCET.

    Draws come from one generator per task seeded by ``(seed, task index)`` and are taken in
    job order (``k``), so a job's duration depends only on the scenario, the seed and ``k``:
    the simulator and the executor's mock backend replay the same durations. Under lp-edf a
    draw is split over the chunks in proportion to their WCETs (integer ns, summing exactly).
    """

    def __init__(self, base: WcetModel, by_seq: Sequence[TimeNs | None]) -> None:
        self.base = base
        self.chunks = base.chunks
        self.by_seq = list(by_seq)

    @classmethod
    def of(
        cls, scenario: Scenario, base: WcetModel, plan: Sequence[Release], seed: int
    ) -> SampledModel:
        import numpy as np

        counts = [0] * len(scenario.tasks)
        for r in plan:
            counts[r.task_index] += 1
        draws: list[list[int] | None] = []
        for i, t in enumerate(scenario.tasks):
            if not t.profile_samples:
                draws.append(None)
                continue
            rng = np.random.default_rng([seed, i])
            picks = rng.integers(0, len(t.profile_samples), size=counts[i])
            draws.append([t.profile_samples[j] for j in picks.tolist()])
        by_seq = [None if (d := draws[r.task_index]) is None else d[r.k] for r in plan]
        return cls(base, by_seq)

    def __call__(self, d: Dispatch) -> TimeNs:
        value = self.by_seq[d.seq]
        if value is None:
            return self.base(d)
        chain = self.chunks[d.task_index]
        if len(chain) == 1:
            return value
        total = sum(chain)
        before = sum(chain[: d.chunk])
        return value * (before + chain[d.chunk]) // total - value * before // total


@dataclass(frozen=True)
class RunPlan:
    """Everything an engine needs to run a scenario: the tasks, the planned releases and the
    execution-time model. ``slots`` is how many jobs may run at once (None: unlimited)."""

    scenario: Scenario
    policy: Policy
    releases: Sequence[Release]
    exec_time: ExecutionTimeModel
    slots: int | None = 1
    rejected: frozenset[int] = frozenset()
    """Task indices that admission rejected: their jobs are recorded, never run."""
    chunks: tuple[tuple[TimeNs, ...], ...] = ()
    """Per task, the non-preemptive chunks of one job (lp-edf); one chunk otherwise."""

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        *,
        admission: Admission | None = None,
        enforce: bool = True,
        exec_time: ExecutionTimeModel | None = None,
        seed: int | None = None,
        exec_time_mode: str = "sample",
    ) -> RunPlan:
        """The plan for ``scenario``; with an ``admission`` whose rejections are enforced
        (``enforce``), rejected tasks do not run; under lp-edf jobs run in chunks (the
        admission's, else the task's kernels). ``exec_time_mode`` (:data:`EXEC_TIME_MODES`)
        picks the execution-time model unless ``exec_time`` gives one."""
        if exec_time_mode not in EXEC_TIME_MODES:
            raise InputError(
                f"unknown execution-time mode {exec_time_mode!r}; choose one of: "
                + ", ".join(EXEC_TIME_MODES)
            )
        policy = get_policy(scenario.policy)
        given = admission.chunks() if admission is not None else [None] * len(scenario.tasks)
        if policy.name == "lp-edf":
            given = [c or t.kernels_ns for c, t in zip(given, scenario.tasks, strict=True)]
        else:
            given = [None] * len(scenario.tasks)
        model = WcetModel.of(scenario, given)
        rejected = admission.rejected if admission is not None and enforce else frozenset()
        planned = releases(scenario, seed)
        if exec_time is None:
            exec_time = model
            if exec_time_mode == "sample" and any(t.profile_samples for t in scenario.tasks):
                exec_time = SampledModel.of(
                    scenario, model, planned, scenario.seed if seed is None else seed
                )
        return cls(
            scenario=scenario,
            policy=policy,
            releases=planned,
            exec_time=exec_time,
            slots=None if policy.concurrent else 1,
            rejected=rejected,
            chunks=tuple(model.chunks),
        )


class Engine(Protocol):
    """What the runner and the shared loop drive; every engine implements all of it.

    ``name`` labels the engine (``sim``, ``exec``); ``backend`` names what it runs on (None:
    nothing apart from the engine); ``device`` says where jobs run, for the summary
    (``"simulated"`` for a simulator; an executor's device is known once started).
    ``advance`` returns every event of the next instant; the release cursor, the slot count
    and the order of an instant's events are shared by every engine
    (:mod:`aegis_core.cursor`).
    """

    name: str
    backend: str | None

    @property
    def device(self) -> str: ...

    def validate(self, plan: RunPlan) -> None:
        """Refuse, before anything is written, a plan this engine cannot run (e.g. a task
        without the model an executor needs); ScenarioError names the task and field."""
        ...

    def start(self, plan: RunPlan) -> None: ...

    def now(self) -> TimeNs: ...

    def free_slots(self) -> int: ...

    def dispatch(self, d: Dispatch) -> None: ...

    def advance(self, until: TimeNs | None) -> list[EngineEvent] | None:
        """Move to the next instant with events, or to ``until`` if that comes first.

        Returns that instant's events (completions first, then releases in plan order), an
        empty list when woken at ``until``, or None when nothing is left to happen.
        """
        ...

    def report(self) -> dict[str, Any]:
        """After the run: what the summary adds (``versions`` merged into its versions,
        the rest as its ``exec`` section); empty when the engine has nothing to add."""
        ...

    def close(self) -> None: ...


def engine_names() -> list[str]:
    return sorted(ep.name for ep in metadata.entry_points(group=ENGINE_GROUP))


def load_engine(name: str, **options: Any) -> Engine:
    """Instantiate the engine registered as ``name`` in ``aegis.engines``."""
    for ep in metadata.entry_points(group=ENGINE_GROUP):
        if ep.name == name:
            factory = ep.load()
            engine: Engine = factory(**options)
            return engine
    available = ", ".join(engine_names()) or "none (is the package installed? pip install -e .)"
    raise EngineNotFound(f"no engine named {name!r}; available: {available}")
