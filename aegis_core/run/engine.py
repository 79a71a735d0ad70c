"""The Engine protocol every engine implements, and engine discovery through the
``aegis.engines`` entry points (the core never imports an engine)."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from aegis_core.model.errors import EngineNotFound
from aegis_core.model.types import TimeNs
from aegis_core.run.events import EngineEvent

if TYPE_CHECKING:
    from aegis_core.run.scheduler import Dispatch
from aegis_core.run.plan import RunPlan

ENGINE_GROUP = "aegis.engines"
"""The entry-point group engines register in (the core never imports one)."""


class Engine(Protocol):
    """What the runner and the shared loop drive; every engine implements all of it.

    ``name`` labels the engine (``sim``, ``exec``); ``backend`` names what it runs on (None:
    nothing apart from the engine); ``device`` says where jobs run, for the summary
    (``"simulated"`` for a simulator; an executor's device is known once started).
    ``advance`` returns every event of the next instant; the release cursor, the slot count
    and the order of an instant's events are shared by every engine
    (:mod:`aegis_core.run.cursor`).
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

    def dispatch(self, d: Dispatch) -> None:
        """Start ``d`` now, or, decided ahead (``d.after >= 0``), when the running job
        ``d.after`` ends: chained behind it on the device, with no host step in between
        (the slot passes to it then; :class:`~aegis_core.run.cursor.Slots`)."""
        ...

    def next_release_ns(self) -> TimeNs | None:
        """The planned time of the earliest release not yet handed over (None: none left):
        what a decision taken ahead may rely on."""
        ...

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
