"""The Engine protocol, the run plan every engine receives, and engine discovery.

Engines are found by name in the entry-point group ``aegis.engines`` so the core never imports
one; the CLI asks :func:`load_engine` for ``"sim"`` (or, later, ``"exec"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from .arrivals import releases
from .errors import EngineNotFound, ScenarioError
from .events import EngineEvent, Release
from .policy import Policy, get_policy
from .scenario import Scenario, Task
from .types import TimeNs

if TYPE_CHECKING:
    from .scheduler import Dispatch

ENGINE_GROUP = "aegis.engines"


class ExecutionTimeModel(Protocol):
    """How long a dispatched job runs in a simulated engine (the seam for profile replay)."""

    def __call__(self, d: Dispatch) -> TimeNs: ...


class WcetModel:
    """Every job runs for exactly its task's WCET (``wcet_ms``)."""

    def __init__(self, tasks: Sequence[Task], path: str = "<memory>") -> None:
        missing = [t.name for t in tasks if t.wcet_ns is None]
        if missing:
            raise ScenarioError(
                path,
                "the simulator needs an execution time: give wcet_ms "
                "(replaying WCET profiles is not supported yet)",
                task=missing[0],
                field="wcet_ms",
            )
        self.wcet = [t.wcet_ns for t in tasks]

    def __call__(self, d: Dispatch) -> TimeNs:
        w = self.wcet[d.task_index]
        assert w is not None
        return w


@dataclass(frozen=True)
class RunPlan:
    """Everything an engine needs to run a scenario: the tasks, the planned releases and the
    execution-time model. ``slots`` is how many jobs may run at once (None: unlimited)."""

    scenario: Scenario
    policy: Policy
    releases: Sequence[Release]
    exec_time: ExecutionTimeModel
    slots: int | None = 1
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        *,
        exec_time: ExecutionTimeModel | None = None,
        seed: int | None = None,
    ) -> RunPlan:
        policy = get_policy(scenario.policy)
        return cls(
            scenario=scenario,
            policy=policy,
            releases=releases(scenario, seed),
            exec_time=exec_time or WcetModel(scenario.tasks, scenario.path),
            slots=None if policy.concurrent else 1,
        )


class Engine(Protocol):
    """What the shared loop drives. ``advance`` returns every event of the next instant."""

    name: str
    backend: str | None

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
