"""The run plan every engine receives (tasks, admitted budgets, planned releases, slots) and
the execution-time models of simulated engines (WCET, or profile replay)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aegis_core.budget import TaskBudget, any_samples, budgets, split_in_proportion
from aegis_core.model.errors import InputError
from aegis_core.model.overheads import Overhead, Overheads
from aegis_core.model.policy import Policy
from aegis_core.model.scenario import Scenario, check_times
from aegis_core.model.types import TimeNs
from aegis_core.run.ahead import AheadMode, chain_allowance, resolve
from aegis_core.run.arrivals import BLOCK, PlannedReleases, ReleasePlan

if TYPE_CHECKING:
    from aegis_core.analysis.admission import Admission
    from aegis_core.run.scheduler import Dispatch


class ExecutionTimeModel(Protocol):
    """How long a dispatched job runs in a simulated engine (the seam for profile replay)."""

    def __call__(self, d: Dispatch) -> TimeNs: ...


class WcetModel:
    """Every job (or chunk of a job) runs for exactly its WCET."""

    def __init__(self, chunks: Sequence[Sequence[TimeNs]]) -> None:
        self.chunks = [tuple(c) for c in chunks]

    @classmethod
    def of(cls, budgets: Sequence[TaskBudget]) -> WcetModel:
        """Each task's chunk chain, as its budget decided it."""
        return cls([b.chunks_ns for b in budgets])

    def __call__(self, d: Dispatch) -> TimeNs:
        return self.chunks[d.task_index][d.chunk]


EXEC_TIME_MODES = ("sample", "wcet")
"""``sample``: profiled tasks replay their profile's samples (others: WCET); ``wcet``: every
job runs for its WCET (the worst case)."""


class SampledModel:
    """Profile replay: each job of a task with samples runs for a duration drawn, with
    replacement, from them; other tasks run for their WCET.

    Draws come from one generator per task seeded by ``(seed, task index)`` and are taken in
    job order (``k``), so a job's duration depends only on the scenario, the seed, the task
    and ``k``: the simulator and the executor's mock backend replay the same durations. They
    are drawn lazily, :data:`~aegis_core.run.arrivals.BLOCK` at a time (the same sequence as
    one draw of them all), and only the latest blocks are kept. Under lp-edf a draw is split
    over the chunks in proportion to their WCETs (integer ns, summing exactly).
    """

    def __init__(
        self, base: WcetModel, samples: Sequence[Sequence[TimeNs] | None], seed: int
    ) -> None:
        self.base = base
        self.chunks = base.chunks
        self.draws = [None if not s else _Draws(tuple(s), seed, i) for i, s in enumerate(samples)]

    @classmethod
    def of(cls, budgets: Sequence[TaskBudget], base: WcetModel, seed: int) -> SampledModel:
        """Each task replays its budget's samples (a task with none: its WCET)."""
        return cls(base, [b.samples_ns or None for b in budgets], seed)

    def draw(self, task_index: int, k: int) -> TimeNs | None:
        """The whole duration of job ``k`` of the task (None: the task replays no samples)."""
        draws = self.draws[task_index]
        return None if draws is None else draws[k]

    def __call__(self, d: Dispatch) -> TimeNs:
        draws = self.draws[d.task_index]
        if draws is None:
            return self.base(d)
        value = draws[d.k]
        chain = self.chunks[d.task_index]
        if len(chain) == 1:
            return value
        return split_in_proportion(value, chain)[d.chunk]


class _Draws:
    """One task's replayed durations by job index ``k``: block ``b`` holds jobs
    ``b * BLOCK …``, drawn in order from the task's generator; the last :attr:`KEEP` blocks
    are kept (a job further back is redrawn from the seed: the same value, rarely needed)."""

    KEEP = 2
    __slots__ = ("drawn", "kept", "rng", "samples", "seed", "task_index")

    def __init__(self, samples: tuple[TimeNs, ...], seed: int, task_index: int) -> None:
        self.samples, self.seed, self.task_index = samples, seed, task_index
        self._restart()

    def _restart(self) -> None:
        import numpy as np

        self.rng = np.random.default_rng([self.seed, self.task_index])
        self.drawn = 0  # blocks drawn from rng
        self.kept: list[list[TimeNs]] = []  # the last blocks drawn, oldest first

    def __getitem__(self, k: int) -> TimeNs:
        b, r = divmod(k, BLOCK)
        first = self.drawn - len(self.kept)
        if first <= b < self.drawn:
            return self.kept[b - first][r]
        if b < first:
            self._restart()
        samples, kept = self.samples, self.kept
        while self.drawn <= b:
            picks = self.rng.integers(0, len(samples), size=BLOCK).tolist()
            kept.append([samples[j] for j in picks])
            self.drawn += 1
            if len(kept) > self.KEEP:
                del kept[0]
        return kept[-1][r]


@dataclass(frozen=True)
class RunPlan:
    """Everything an engine needs to run a scenario: the tasks and their budgets, the planned
    releases and the execution-time model. ``slots`` is how many jobs may run at once (None:
    unlimited)."""

    scenario: Scenario
    policy: Policy
    releases: ReleasePlan
    """The planned releases in plan order (:class:`~aegis_core.run.arrivals.PlannedReleases`:
    generated anew on each iteration, never held)."""
    exec_time: ExecutionTimeModel
    budgets: tuple[TaskBudget, ...]
    slots: int | None = 1
    rejected: frozenset[int] = frozenset()
    """Task indices that admission rejected: their jobs are recorded, never run."""
    overheads: Overheads | None = None
    """The host overheads the analysis charged (admission's): the simulator replays them,
    the executor checks them."""
    seed: int = 0
    """The run's seed (the simulator's overhead draws)."""
    host_mode: str = "sample"
    """How a simulated engine replays the overheads (:data:`~aegis_core.run.host.HOST_MODES`)."""
    dispatch_ahead: AheadMode = AheadMode.OFF
    """Whether the scheduler decides ahead (:mod:`aegis_core.run.ahead`): OFF unless the
    policy ``decides_ahead`` and the run asked for it (:meth:`build`'s default does)."""

    @property
    def start_allowance_ns(self) -> TimeNs:
        """How late after its decision instant a job dispatched at once may start: the
        charged decision and launch bounds (0 when the analysis charged none)."""
        o = self.overheads
        if o is None:
            return 0
        return chain_allowance(o.bound(Overhead.DECISION), o.bound(Overhead.LAUNCH))

    @property
    def chunks(self) -> tuple[tuple[TimeNs, ...], ...]:
        """Per task, the non-preemptive chunks of one job (its budget's chunk chain)."""
        return tuple(b.chunks_ns for b in self.budgets)

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
        host_mode: str = "sample",
        dispatch_ahead: AheadMode | bool = AheadMode.PLANNED,
    ) -> RunPlan:
        """The plan for ``scenario``; with an ``admission`` whose rejections are enforced
        (``enforce``), rejected tasks do not run; a chunked policy's jobs run in the chunks
        admission merged (else the task's kernel chain). ``exec_time_mode``
        (:data:`EXEC_TIME_MODES`) picks the execution-time model unless ``exec_time`` gives
        one; ``host_mode`` how a simulated engine replays the host overheads
        (:data:`~aegis_core.run.host.HOST_MODES`); ``dispatch_ahead`` whether (True: from the
        planned releases; False: never) and how decisions may be taken ahead, under a policy
        that ``decides_ahead``."""
        if exec_time_mode not in EXEC_TIME_MODES:
            raise InputError(
                f"unknown execution-time mode {exec_time_mode!r}; choose one of: "
                + ", ".join(EXEC_TIME_MODES)
            )
        policy = scenario.policy
        plan_budgets = admission.budgets if admission is not None else budgets(scenario)
        model = WcetModel.of(plan_budgets)
        rejected = admission.rejected if admission is not None and enforce else frozenset()
        check_times(scenario)
        seed = scenario.seed if seed is None else seed
        if exec_time is None:
            exec_time = model
            if exec_time_mode == "sample" and any_samples(plan_budgets):
                exec_time = SampledModel.of(plan_budgets, model, seed)
        return cls(
            scenario=scenario,
            policy=policy,
            releases=PlannedReleases(scenario, seed),
            exec_time=exec_time,
            budgets=plan_budgets,
            slots=None if policy.concurrent else 1,
            rejected=rejected,
            overheads=admission.overheads if admission is not None else scenario.overheads,
            seed=seed,
            host_mode=host_mode,
            dispatch_ahead=resolve(dispatch_ahead, policy),
        )
