"""Test doubles and checkers shipped with the core (like httpx's ``MockTransport``).

* :class:`FakeEngine`: a deterministic engine on a plain heap of ends, no SimPy; each slot runs
  its job at full speed (unlimited slots: every job in parallel, no sharing).
* :func:`log`: a trace as ``[(t_ns, job, kind), ...]`` for exact-schedule assertions.
* :func:`check_run`: the invariant checker used by the long randomized tests.
* :func:`unexplained_misses`: the misses (and exceedances) no recorded cause explains (the
  one attribution helper, :mod:`aegis_core.record.attribution`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from heapq import heappop, heappush
from typing import Any

from aegis_core.analysis.admission import Admission
from aegis_core.model.profile import Profile
from aegis_core.model.scenario import Scenario
from aegis_core.model.status import JobStatus
from aegis_core.model.types import TimeNs
from aegis_core.record.attribution import STALL_NS, RunJob, attribute, busy_period
from aegis_core.record.replay import Replay
from aegis_core.record.schema import (
    ChunkRecord,
    CompleteRecord,
    DispatchRecord,
    FaultRecord,
    Record,
    decode_all,
    key_of,
)
from aegis_core.record.sinks import MemoryTrace
from aegis_core.run.cursor import Slots, instant
from aegis_core.run.engine import Engine
from aegis_core.run.events import Completion, EngineEvent, Fault, Release
from aegis_core.run.loop import run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Dispatch, Job, Scheduler


class FakeEngine:
    """An engine with no SimPy: a heap of ends, the plan's releases in plan order.

    ``faults`` maps job ids to an error text: such a job ends with a :class:`Fault` instead of a
    :class:`Completion`. ``lag`` maps ``(task index, k)`` to how late that release is handed
    over (a host waking late: the job keeps its planned release and deadline). ``dispatches``
    records ``(t_ns, job, end_ns)`` for every dispatch, at the instant the job starts (a
    dispatch decided ahead starts when the job it is chained behind ends).
    """

    name = "fake"
    backend: str | None = None
    device = "simulated"

    def __init__(
        self, faults: Mapping[str, str] | None = None,
        lag: Mapping[tuple[int, int], int] | None = None,
    ) -> None:  # fmt: skip
        self.faults = dict(faults or {})
        self.lag = dict(lag or {})
        self._due: list[tuple[TimeNs, int, Release]] = []  # (handed over at, plan order, r)
        self._next = 0
        self.dispatches: list[tuple[TimeNs, str, TimeNs]] = []
        self._ends: list[tuple[TimeNs, int, Completion | Fault]] = []
        self._now: TimeNs = 0
        self._slots = Slots(1)
        self._chained: dict[int, Dispatch] = {}  # by the seq of the job it waits for

    def validate(self, plan: RunPlan) -> None:
        """Every plan runs here."""

    def start(self, plan: RunPlan) -> None:
        self._plan = plan
        self._now = 0
        self._slots = Slots(plan.slots)
        self._ends = []
        get = self.lag.get
        self._due = sorted((r.t_ns + get((r.task_index, r.k), 0), n, r)
                           for n, r in enumerate(plan.releases))  # fmt: skip
        self._next = 0
        self._chained = {}

    def now(self) -> TimeNs:
        return self._now

    def free_slots(self) -> int:
        return self._slots.free()

    def next_release_ns(self) -> TimeNs | None:
        rest = self._due[self._next :]
        if not rest:
            return None
        return min(r.t_ns for _, _, r in rest) if self.lag else rest[0][2].t_ns

    def dispatch(self, d: Dispatch) -> None:
        if d.after >= 0:
            self._slots.chain(d.job)
            self._chained[d.after] = d
            return
        self._slots.take(d.job)
        self._start(d, self._now)

    def _start(self, d: Dispatch, at: TimeNs) -> None:
        end = at + self._plan.exec_time(d)
        error = self.faults.get(d.job)
        ev = Fault(end, d.seq, error) if error else Completion(end, d.seq)
        heappush(self._ends, (end, d.seq, ev))
        self.dispatches.append((at, d.job, end))

    def advance(self, until: TimeNs | None) -> list[EngineEvent] | None:
        ends, due = self._ends, self._due
        nxt = due[self._next][0] if self._next < len(due) else None
        times = [t for t in (ends[0][0] if ends else None, nxt) if t is not None]
        if not times and until is None:
            return None
        if not times or (until is not None and until < min(times)):
            assert until is not None
            self._now = until
            return []
        t = self._now = min(times)
        done: list[Completion | Fault] = []
        while ends and ends[0][0] == t:
            ev = heappop(ends)[2]
            done.append(ev)
            chained = self._chained.pop(ev.seq, None)
            if chained is None:
                self._slots.give()
            elif type(ev) is Fault and chained.seq == ev.seq:  # its own next chunk: never runs
                self._slots.chained = 0
                self._slots.give()
            else:  # it starts as this one ends
                self._slots.handover()
                self._start(chained, t)
        first = self._next
        while self._next < len(due) and due[self._next][0] == t:
            self._next += 1
        return instant(done, [r for _, _, r in due[first : self._next]])

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def run_in_memory(
    scenario: Scenario,
    engine: Engine | None = None,
    *,
    seed: int | None = None,
    admission: Admission | None = None,
) -> tuple[list[dict[str, Any]], list[Job]]:
    """Run ``scenario`` on ``engine`` (default: a :class:`FakeEngine`) with the trace kept in
    memory; returns the parsed trace records and the jobs. No admission unless one is given
    (its rejections are enforced, its lp-edf chunks used)."""
    plan = RunPlan.build(scenario, seed=seed, admission=admission)
    trace = MemoryTrace()
    scheduler = Scheduler.for_plan(plan)
    run(plan, scheduler, engine if engine is not None else FakeEngine(), sink=trace)
    return trace.records(), scheduler.jobs


def log(records: Iterable[Mapping[str, Any]], kinds: Sequence[str] | None = None) -> list[Any]:
    """``[(t_ns, job, kind), ...]`` from trace records (admission records carry a task)."""
    out = []
    for r in records:
        if kinds is None or r["kind"] in kinds:
            out.append((r["t_ns"], r.get("job", r.get("task")), r["kind"]))
    return out


def check_run(
    records: Sequence[Mapping[str, Any] | Record], jobs: Sequence[Job], slots: int | None
) -> int:
    """Check a finished run against the scheduling invariants; returns the decisions checked.

    * every dispatch picks the minimum key among its recorded ready set, and that ready set is
      exactly the set of released, not yet dispatched jobs at that moment;
    * at most ``slots`` jobs run at once (never two on one non-preemptive slot); only a
      running job ends (complete, fault) or reaches a chunk boundary;
    * a job starts no earlier than its release; every released job ends completed or failed;
    * ``missed`` is true exactly when the job ended after its deadline, and a ``miss`` record
      sits at the deadline instant of each missed job.
    Raises AssertionError with the first violation.
    """
    rp = Replay()
    decisions = 0
    for r in decode_all(records):
        if isinstance(r, DispatchRecord):
            names = {e.job for e in r.ready}
            ready = set(rp.ready)
            assert names == ready, f"record {r.rec}: recorded ready set {names} != {ready}"
            best = min(r.ready, key=lambda e: key_of(e, r.key))
            assert best.job == r.job, f"record {r.rec}: picked {r.job}, rule picks {best.job}"
            decisions += 1
        elif isinstance(r, CompleteRecord | FaultRecord | ChunkRecord):
            assert r.job in rp.running, f"record {r.rec}: {r.job} ended but was not running"
        rp.apply(r)
        if isinstance(r, DispatchRecord):
            running = sorted(rp.running)
            assert slots is None or len(running) <= slots, f"record {r.rec}: {running} at once"
    assert not rp.running and not rp.ready, f"left unfinished: {sorted([*rp.running, *rp.ready])}"
    misses = {job: js.miss.t_ns for job, js in rp.jobs.items() if js.miss is not None}
    for j in jobs:
        if j.status is JobStatus.REJECTED:
            assert j.start_ns is None and not j.missed, f"{j.id}: rejected but ran"
            continue
        assert j.status in (JobStatus.COMPLETED, JobStatus.FAILED), f"{j.id} ended {j.status!r}"
        assert j.start_ns is not None and j.end_ns is not None
        assert j.release_ns <= j.start_ns <= j.end_ns, f"{j.id}: times out of order"
        late = j.end_ns > j.deadline_ns
        assert j.missed == late, f"{j.id}: missed={j.missed} but end {j.end_ns} vs {j.deadline_ns}"
        if late:
            assert misses.get(j.id) == j.deadline_ns, f"{j.id}: miss not flagged at its deadline"
    assert len(misses) == sum(j.missed for j in jobs)
    return decisions


__all__ = [
    "STALL_NS",
    "Completion",
    "FakeEngine",
    "Fault",
    "Release",
    "RunJob",
    "busy_period",
    "check_run",
    "log",
    "run_in_memory",
    "unexplained_misses",
]


def make_profile(
    samples_ns: Sequence[int],
    *,
    task: str = "t",
    model: str | None = None,
    batch: int = 1,
    backend: str = "mock",
    mode: str = "isolated",
    exceedance: float = 1e-3,
) -> Profile:
    """A profile of ``samples_ns`` with the WCET the estimator gives them (tests, examples)."""
    from aegis_core.analysis.pwcet import estimate

    est = estimate(samples_ns, exceedance, candidates=False)
    return Profile.from_estimate(
        est, samples_ns=samples_ns, task=task, model=model, batch=batch, backend=backend,
        device="test", mode=mode, created="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


SLOW_MODE = "N(5, 0.1) + 1% slow (+20%)"


def synthetic_latencies(p: float = 1e-3) -> dict[str, tuple[Callable[..., Any], float]]:
    """Latency-like distributions (ms) with their exact ``1 - p`` quantiles, for checking WCET
    estimators: ``{name: (draw(rng, size), quantile)}``. The last, :data:`SLOW_MODE`, is the
    rare-mode warning of docs/THEORY.md §pwcet-example: a normal with a 1 % mode 20 % slower."""
    import math

    import numpy as np
    from scipy import stats
    from scipy.optimize import brentq

    def slow(r: Any, size: Any) -> Any:
        x = r.normal(5.0, 0.1, size)
        return np.where(r.random(size) < 0.01, x * 1.2, x)

    def slow_sf(t: float) -> float:
        return float(0.99 * stats.norm.sf(t, 5, 0.1) + 0.01 * stats.norm.sf(t, 6, 0.12) - p)

    z = float(stats.norm.isf(p))
    return {
        "gumbel(5, 0.25)": (
            lambda r, s: stats.gumbel_r.rvs(5, 0.25, size=s, random_state=r),
            float(stats.gumbel_r.isf(p, 5, 0.25)),
        ),
        "lognormal(5, 0.1)": (lambda r, s: 5 * np.exp(r.normal(0, 0.1, s)), 5 * math.exp(0.1 * z)),
        "lognormal(5, 0.25)": (
            lambda r, s: 5 * np.exp(r.normal(0, 0.25, s)),
            5 * math.exp(0.25 * z),
        ),
        "4 + exp(0.5)": (lambda r, s: 4 + r.exponential(0.5, s), 4 + 0.5 * math.log(1 / p)),
        SLOW_MODE: (slow, float(brentq(slow_sf, 5, 8))),
    }


# ----------------------------------------------------------------------------- miss attribution


def unexplained_misses(
    jobs: Sequence[Job | RunJob], overran: Iterable[str] | None = None,
    bounds: Mapping[str, int | None] | None = None, stall_ns: int = STALL_NS,
    *, ideal_host: bool = True,
) -> list[str]:  # fmt: skip
    """The jobs of a run that nothing recorded explains: what a test of a real run asserts,
    on any host. The ids of :func:`~aegis_core.record.attribution.attribute`'s unattributed
    jobs: every missed job (with ``bounds``: every job of a task with a bound that missed
    or exceeded it) with no overrun (``overran``: job ids; default, the jobs' own flags) and
    no broken assumption in its busy window. ``ideal_host`` (the default: a run whose
    analysis charged no host overheads) also takes the host time the window lost, at least
    ``stall_ns`` or the job's excess over its bound, as a cause; a run with ``--overheads``
    passes ``ideal_host=False``: only its ``assumption`` records explain the host."""
    runs = [j if isinstance(j, RunJob) else RunJob.of(j) for j in jobs]
    found = attribute(runs, bounds, ideal_host=ideal_host, stall_ns=stall_ns, overran=overran)
    return [a.job for a in found if not a.attributed]
