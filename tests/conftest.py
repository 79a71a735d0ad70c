from __future__ import annotations

from typing import Any

import pytest

from aegis_core.model.scenario import Scenario, parse_scenario

MS = 1_000_000


def make_scenario(tasks: list[dict[str, Any]], **top: Any) -> Scenario:
    """A scenario from task dicts (YAML keys, ms); defaults: np-edf, 100 ms, seed 0."""
    doc: dict[str, Any] = {"name": "t", "duration_ms": 100, **top, "tasks": tasks}
    return parse_scenario(doc)


def engines() -> list[Any]:
    from aegis_core.run.testing import FakeEngine
    from aegis_sim import SimPyEngine

    return [pytest.param(FakeEngine, id="fake"), pytest.param(SimPyEngine, id="sim")]
