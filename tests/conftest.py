from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pytest

from aegis_core.scenario import Scenario, parse_scenario

MS = 1_000_000


def make_scenario(tasks: list[dict[str, Any]], **top: Any) -> Scenario:
    """A scenario from task dicts (YAML keys, ms); defaults: np-edf, 100 ms, seed 0."""
    doc: dict[str, Any] = {"name": "t", "duration_ms": 100, **top, "tasks": tasks}
    return parse_scenario(doc)


def engines() -> list[Any]:
    from aegis_core.testing import FakeEngine
    from aegis_sim import SimPyEngine

    return [pytest.param(FakeEngine, id="fake"), pytest.param(SimPyEngine, id="sim")]


# ----------------------------------------------------------------------------- wall-clock runs

STALL_NS = 1_000_000
"""Host time lost in one busy period that counts as a host stall (a few dispatch gaps)."""


class RunJob(NamedTuple):
    """What miss attribution reads of a job: from ``RunResult.jobs`` or a ``jobs.csv`` row."""

    id: str
    task: str
    release_ns: int
    deadline_ns: int
    start_ns: int | None
    end_ns: int | None
    missed: bool
    lag_ns: int

    @classmethod
    def of(cls, job: Any) -> RunJob:
        return cls(job.id, job.task, job.release_ns, job.deadline_ns, job.start_ns, job.end_ns,
                   job.missed, job.lag_ns)  # fmt: skip

    @classmethod
    def row(cls, r: dict[str, str]) -> RunJob:
        def opt(v: str) -> int | None:
            return int(v) if v else None

        return cls(r["job"], r["task"], int(r["release_ns"]), int(r["deadline_ns"]),
                   opt(r["start_ns"]), opt(r["end_ns"]), r["missed"] == "true",
                   int(r["release_lag_ns"] or 0))  # fmt: skip


def busy_period(job: RunJob, jobs: Sequence[RunJob]) -> tuple[int, int]:
    """``[b, e]``: ``b`` the start of the stretch, around ``job``'s release, over which some job
    was pending all along (released, by its nominal release time, and not yet ended); ``e``
    ``job``'s end (its deadline if it never ended)."""
    b = reach = None
    for r, f in sorted((j.release_ns, j.end_ns or j.release_ns) for j in jobs):
        if r > job.release_ns:
            break
        if reach is None or r > reach:  # nothing pending just before r: a new stretch
            b, reach = r, f
        else:
            reach = max(reach, f)
    assert b is not None
    return b, job.end_ns if job.end_ns is not None else job.deadline_ns


def unexplained_misses(
    jobs: Sequence[RunJob], overran: set[str], bounds: dict[str, int | None],
    stall_ns: int = STALL_NS,
) -> list[str]:  # fmt: skip
    """Missed jobs of a wall-clock run (one job on the device at a time) that nothing recorded
    explains. A miss is explained when, in its busy period, a job overran its time budget (a
    recorded overrun: ``overran``), or the host lost time: the device idle while a released
    job waited (a late release hand-over, a slow wake-up or dispatch) plus the releases'
    recorded lag, at least ``stall_ns`` in all or at least the miss's excess over its task's
    analytical bound. Any other miss is the analysis's or the scheduler's: a bug on any host."""
    out = []
    for job in jobs:
        if not job.missed:
            continue
        b, e = busy_period(job, jobs)
        window = [j for j in jobs if j.start_ns is not None and j.end_ns is not None
                  and j.end_ns > b and j.start_ns < e]  # fmt: skip
        if any(j.id in overran for j in window):
            continue
        busy, last = 0, b
        for j in sorted(window, key=lambda j: j.start_ns or 0):
            s, f = j.start_ns or 0, j.end_ns or 0
            busy += max(0, min(f, e) - max(s, last))
            last = max(last, f)
        lag = sum(j.lag_ns for j in jobs if b <= j.release_ns <= e)
        lost = (e - b) - busy + lag
        bound = bounds.get(job.task)
        excess = None if bound is None else (e - job.release_ns) - bound
        if lost >= stall_ns or (excess is not None and lost >= excess):
            continue
        out.append(job.id)
    return out
