"""AegisRT's policy core: scenarios, arrivals, policies, the scheduler, the shared loop, trace
and results. Pure Python: it never imports an engine (``simpy``, ``cupy``, ``aegis_sim``,
``aegis_exec``); engines are found through the ``aegis.engines`` entry points."""

from aegis_core.model.errors import AegisError, InputError, ScenarioError
from aegis_core.model.scenario import Scenario, Task, load_scenario, parse_scenario
from aegis_core.model.types import TimeNs

__version__ = "0.1.0"

__all__ = [
    "AegisError",
    "InputError",
    "Scenario",
    "ScenarioError",
    "Task",
    "TimeNs",
    "__version__",
    "load_scenario",
    "parse_scenario",
]
