"""``aegis compare``: the analytical bound, the simulation and the execution of one scenario,
side by side.

Runs (or reuses, when their ``summary.json`` carries the same run fingerprint) the
``sim`` results and the ``exec`` results of one backend (written without ``trace.json``, the
Perfetto view), then writes to ``results/<scenario>/compare/`` (or ``--out DIR``):
``compare.csv`` (one row per task), ``cdf.png`` (response-time CDFs, sim and exec, with each
task's bound) and ``gantt.png`` (the first 200 ms by default, sim above exec), drawn by
:mod:`~aegis_core.tools.plots`. The check it states:
for every admitted task, bound ≥ sim max ≥ exec max; per task, where it fails, the jobs above
the bound and what each run's summary attributes them to (an unattributed one: an analysis
bug).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aegis_core.model.errors import InputError, Interrupted
from aegis_core.model.files import read_json, write_text_atomic
from aegis_core.model.policy import Policy
from aegis_core.model.scenario import Scenario
from aegis_core.model.types import fmt_count, fmt_ms
from aegis_core.tools.outdir import mark
from aegis_core.tools.plots import GANTT_NS

COLUMNS = ("task", "admitted", "bound_ns", "sim_p99_ns", "sim_max_ns", "exec_p99_ns",
           "exec_max_ns", "exec_minus_sim_p99_ns", "sim_misses", "exec_misses", "exec_cv",
           "bound_ge_sim_ge_exec")  # fmt: skip


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    sim_dir: Path
    exec_dir: Path
    out_dir: Path
    reused: dict[str, bool]
    statements: list[str] = field(default_factory=list)
    """Per task, the order and the attribution of every exceedance (:func:`order_statement`)."""

    @property
    def bounded(self) -> list[dict[str, Any]]:
        """The rows of admitted tasks with an analytical bound (the order applies to them)."""
        return [r for r in self.rows if r["admitted"] and r["bound_ns"] is not None]

    @property
    def ordered(self) -> bool:
        """bound ≥ sim max ≥ exec max held for every admitted task with a bound (``aegis
        compare`` exits 1 when not)."""
        return all(r["bound_ge_sim_ge_exec"] for r in self.bounded)


OUTPUTS = ("compare.csv", "cdf.png", "gantt.png", "policies.csv", "policies.png")
"""What compare writes in its folder (refused there when AegisRT did not write them)."""


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` as a CSV with a header (its folder made), written whole through a temporary
    file (never through a symbolic link); an OSError is an InputError."""
    import io

    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=list(columns))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, text.getvalue(), "table")


@dataclass(frozen=True)
class RunSettings:
    """How compare runs its sim and exec: admission (False: every task runs, as
    ``--no-admission``) and the execution-time mode (``--exec-time``)."""

    admission: bool = True
    exec_time: str = "sample"


DEFAULT_RUN = RunSettings()


def _current(
    out: Path, scenario: Scenario, seed: int, host_mode: str = "sample",
    settings: RunSettings = DEFAULT_RUN,
) -> bool:  # fmt: skip
    """Results in ``out`` are this very run: the same effective scenario (tasks, profiles,
    policy, horizon), seed, admission and execution-time mode, and AegisRT version."""
    from aegis_core.tools.outdir import owned
    from aegis_core.tools.runner import run_fingerprint

    try:  # only a run AegisRT wrote there (the marker), read bounded
        s = _summary(out) if owned(out) else None
    except InputError:
        s = None  # not reusable: the run's own claim of the folder says why, or replaces it
    if not isinstance(s, dict):
        return False
    want = run_fingerprint(scenario, seed, settings.admission, settings.exec_time, host_mode)
    whole = not s.get("interrupted")  # a run stopped by a signal is never reused
    return (out / "jobs.csv").is_file() and s.get("fingerprint") == want and whole


def _results(
    scenario: Scenario, engine: Any, out: Path, host_mode: str = "sample", *,
    progress: TextIO | None = None, settings: RunSettings = DEFAULT_RUN, rerun: bool = False,
) -> bool:  # fmt: skip
    """Run unless current results exist (or ``rerun``); True when reused. A run stopped by a
    signal stops the comparison (:class:`~aegis_core.model.errors.Interrupted`). The runs are
    written without ``trace.json`` (the Perfetto view; ``aegis sim`` / ``exec`` write it)."""
    from aegis_core.tools.runner import run_scenario

    if not rerun and _current(out, scenario, scenario.seed, host_mode, settings):
        return True
    r = run_scenario(scenario, engine, out_dir=out, perfetto=False, host_mode=host_mode,
                     progress=progress, admission=settings.admission,
                     exec_time=settings.exec_time)  # fmt: skip
    if r.summary.get("interrupted"):
        raise Interrupted(r.summary["interrupted"]["signal"])
    return False


def _summary(run_dir: Path) -> Any:
    """A run's ``summary.json`` (read bounded, a regular file only)."""
    return read_json(run_dir / "summary.json", "summary")


SIM_HOST = "bound"
"""With host overheads, compare's simulation charges each at its bound (the host the
analysis assumes): what the run can reach on a host that keeps its bounds, so bound ≥ sim ≥
exec is the order to expect; ``aegis sim`` replays them as measured (the prediction)."""


def compare(
    scenario: Scenario, backend: str = "auto", results: Path = Path("results"),
    rerun: bool = False, progress: TextIO | None = None, out: Path | None = None,
    settings: RunSettings = DEFAULT_RUN, own_policy: Policy | None = None,
    gantt_ns: int = GANTT_NS,
) -> Comparison:  # fmt: skip
    """Run (or reuse) sim and exec under ``results/<scenario>/``, then write the comparison to
    ``out`` (default ``results/<scenario>/compare/``): ``compare.csv``, ``cdf.png`` and
    ``gantt.png`` (its first ``gantt_ns``). ``own_policy``: the scenario's own policy when
    ``scenario``'s was overridden: the runs and the comparison then go to folders of their
    own (``sim-<policy>``, ``compare-<policy>``: :func:`.runner.default_out_dir`)."""
    from aegis_core.run.engine import load_engine
    from aegis_core.tools.runner import default_out_dir, policy_suffix

    engine = load_engine("exec", backend=backend, host="auto")
    base = results / scenario.name
    sim_dir = default_out_dir(scenario, load_engine("sim"), own_policy, results)
    exec_dir = default_out_dir(scenario, engine, own_policy, results)
    out = out if out is not None else base / f"compare{policy_suffix(scenario, own_policy)}"
    command = f"aegis compare {scenario.path}"
    mark(out, OUTPUTS, command, create=False)  # refused before anything runs
    run = functools.partial(_results, progress=progress, settings=settings, rerun=rerun)
    reused = {
        "sim": run(scenario, "sim", sim_dir, SIM_HOST),
        "exec": run(scenario, engine, exec_dir),
    }
    sim = _summary(sim_dir)
    ex = _summary(exec_dir)
    rows = [_row(s, e) for s, e in zip(sim["tasks"], ex["tasks"], strict=True)]
    mark(out, OUTPUTS, command)
    write_csv(out / "compare.csv", COLUMNS, rows)
    _plots({"sim": (sim_dir, sim), exec_dir.name: (exec_dir, ex)}, out, gantt_ns)
    said = [order_statement(s, e) for s, e in zip(sim["tasks"], ex["tasks"], strict=True)]
    return Comparison(rows, sim_dir, exec_dir, out, reused, said)


def order_statement(s: dict[str, Any], e: dict[str, Any]) -> str:
    """One task's order, ``bound >= sim >= exec``, and where it fails, each run's jobs above
    the bound with their attribution from its summary (``exceeded``, ``unattributed``,
    ``causes``): ``exec above bound for detector: 3 jobs, all attributed (2 release-lag,
    1 overrun)``; an unattributed one is an analysis bug."""
    name, bound = s["name"], s.get("bound_ns")
    if not s.get("admitted"):
        return f"{name}: rejected"
    if bound is None:
        return f"{name}: no analytical bound (nothing promised)"
    smax, emax = _stat(s, "response_ns", "max"), _stat(e, "response_ns", "max")
    if smax is not None and emax is not None and bound >= smax >= emax:
        return f"{name}: bound >= sim >= exec held"
    said = [x for x in (_above("sim", name, s), _above("exec", name, e)) if x]
    if said:
        return "; ".join(said)
    return (f"{name}: within the bound, exec above sim (max {fmt_ms(emax)} > "
            f"{fmt_ms(smax)} ms)")  # fmt: skip


def _above(run: str, name: str, t: dict[str, Any]) -> str | None:
    """``run`` above the bound for task ``name``: how many jobs, how many attributed to
    what, how many not (None: no job above it)."""
    if "exceeded" not in t:  # a summary from before attribution
        return f"{run} for {name}: no attribution in its summary (re-run with --rerun)"
    n, u = t.get("exceeded") or 0, t.get("unattributed") or 0
    if not n and not u:
        return None
    causes = ", ".join(f"{k} {what}" for what, k in (t.get("causes") or {}).items())
    head = f"{run} above bound for {name}: {fmt_count(n, 'job')}"
    if not u:
        return f"{head}, all attributed ({causes})"
    rest = f", {n - u} attributed ({causes})" if causes else ""
    return f"{head}, {u} unattributed (analysis bug){rest}"


def _stat(t: dict[str, Any], key: str, stat: str) -> int | None:
    s = t.get(key) or {}
    v = s.get(stat)
    return None if v is None else int(v)


def _row(s: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
    bound = s.get("bound_ns")
    sp99, smax = _stat(s, "response_ns", "p99"), _stat(s, "response_ns", "max")
    ep99, emax = _stat(e, "response_ns", "p99"), _stat(e, "response_ns", "max")
    cv = (e.get("exec_ns") or {}).get("cv")
    ordered = bound is not None and smax is not None and emax is not None and bound >= smax >= emax
    return {
        "task": s["name"], "admitted": bool(s.get("admitted")), "bound_ns": bound,
        "sim_p99_ns": sp99, "sim_max_ns": smax, "exec_p99_ns": ep99, "exec_max_ns": emax,
        "exec_minus_sim_p99_ns": None if ep99 is None or sp99 is None else ep99 - sp99,
        "sim_misses": s["misses"], "exec_misses": e["misses"],
        "exec_cv": None if cv is None else round(float(cv), 6),
        "bound_ge_sim_ge_exec": ordered,
    }  # fmt: skip


def _plots(runs: dict[str, tuple[Path, dict[str, Any]]], out: Path, gantt_ns: int) -> None:
    """``cdf.png`` and ``gantt.png`` of the runs (label: folder, summary), drawn by
    :mod:`~aegis_core.tools.plots`."""
    from aegis_core.tools import plots
    from aegis_core.tools.frames import read_jobs, read_runs

    plots.headless()
    jobs = {k: read_jobs(d / "jobs.csv") for k, (d, _) in runs.items()}
    summaries = {k: s for k, (_, s) in runs.items()}
    traced = {k: read_runs(d / "trace.jsonl", gantt_ns) for k, (d, _) in runs.items()
              if (d / "trace.jsonl").is_file()}  # fmt: skip
    plots.save(plots.cdf(jobs, summaries), out / "cdf.png")
    plots.save(plots.gantt(jobs, summaries, gantt_ns, traced), out / "gantt.png")


def format_comparison(c: Comparison) -> str:
    ms = fmt_ms

    lines = [
        f"{'task':<14} {'bound':>8} {'sim p99':>8} {'sim max':>8} {'exec p99':>9} {'exec max':>9} "
        f"{'exec-sim':>9} {'miss s/e':>9} {'exec CV':>8}  bound>=sim>=exec"
    ]
    for r in c.rows:
        cv = "-" if r["exec_cv"] is None else f"{r['exec_cv'] * 100:.1f}%"
        ok = ("yes" if r["bound_ge_sim_ge_exec"] else "NO") if r["admitted"] else "rejected"
        lines.append(
            f"{r['task']:<14} {ms(r['bound_ns']):>8} {ms(r['sim_p99_ns']):>8} "
            f"{ms(r['sim_max_ns']):>8} {ms(r['exec_p99_ns']):>9} {ms(r['exec_max_ns']):>9} "
            f"{ms(r['exec_minus_sim_p99_ns']):>9} {r['sim_misses']:>4}/{r['exec_misses']:<4} "
            f"{cv:>8}  {ok}"
        )
    lines += c.statements
    used = ", ".join(f"{k} {'reused' if v else 'run'}" for k, v in c.reused.items())
    lines.append("(ms) " + used + f"; {c.out_dir}/compare.csv, cdf.png, gantt.png")
    if not c.bounded:
        lines.append("no admitted task has an analytical bound (nothing promised): no order")
    else:
        lines.append(
            "bound >= sim >= exec held for every admitted task"
            if c.ordered
            else "bound >= sim >= exec did NOT hold for every admitted task (see the NO rows)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------- policies side by side

POLICY_COLUMNS = ("policy", "task", "admitted", "deadline_ns", "bound_ns", "sim_jobs",
                  "sim_misses", "sim_miss_ratio", "sim_p99_ns", "exec_jobs", "exec_misses",
                  "exec_miss_ratio", "exec_p99_ns")  # fmt: skip


@dataclass
class PolicyComparison:
    """One scenario run under several policies, in sim and on one backend: ``rows`` per
    policy per task (:data:`POLICY_COLUMNS`); ``refused``: policies the backend would not run
    (the engine's one-line reason; their exec columns are empty)."""

    scenario: str
    policies: tuple[str, ...]
    backend: str
    rows: list[dict[str, Any]]
    out_dir: Path
    reused: dict[str, dict[str, bool]]
    refused: dict[str, str]

    def misses(self, policy: str, side: str = "sim") -> int | None:
        """Total misses of ``policy`` in ``side`` (``sim`` or ``exec``; None: not run)."""
        got = [r[f"{side}_misses"] for r in self.rows if r["policy"] == policy]
        return None if any(m is None for m in got) else sum(got)


def compare_policies(
    scenario: Scenario, policies: list[str], backend: str = "auto",
    results: Path = Path("results"), rerun: bool = False, progress: TextIO | None = None,
    out: Path | None = None, settings: RunSettings = DEFAULT_RUN,
) -> PolicyComparison:  # fmt: skip
    """Run ``scenario`` under each of ``policies`` (names) in sim and on ``backend`` (reusing
    current results, as :func:`compare` does), under ``results/<scenario>/policies/<policy>/``;
    write ``policies.csv`` and ``policies.png`` to ``out`` (default ``compare/``; grouped bars
    of miss ratio and p99 response per task per policy). A policy the backend refuses
    (``stream-priority`` without stream priorities) keeps its sim columns; the reason is in
    ``refused``."""
    from aegis_core.model.errors import ScenarioError
    from aegis_core.model.policy import get_policy
    from aegis_core.model.scenario import replace_scenario
    from aegis_core.run.engine import load_engine

    chosen = [get_policy(p) for p in policies]  # InputError names the unknown one
    if not chosen or len({p.name for p in chosen}) != len(chosen):
        raise InputError(f"--policies: give distinct policy names, got {','.join(policies)!r}")
    resolved = str(load_engine("exec", backend=backend).backend)  # "auto" resolved
    base = results / scenario.name
    out = out if out is not None else base / "compare"
    command = f"aegis compare {scenario.path} --policies"
    mark(out, OUTPUTS, command, create=False)  # refused before anything runs
    rows: list[dict[str, Any]] = []
    reused: dict[str, dict[str, bool]] = {}
    refused: dict[str, str] = {}
    run = functools.partial(_results, progress=progress, settings=settings, rerun=rerun)
    for policy in chosen:
        s = replace_scenario(scenario, policy=policy)
        d = base / "policies" / policy.name
        sim_dir, exec_dir = d / "sim", d / f"exec-{resolved}"
        reused[policy.name] = {"sim": run(s, "sim", sim_dir)}
        ex: dict[str, Any] | None = None
        try:
            engine = load_engine("exec", backend=resolved, host="auto")
            reused[policy.name]["exec"] = run(s, engine, exec_dir)
            ex = _summary(exec_dir)
        except ScenarioError as exc:
            if exc.field != "policy":  # a refusal of the policy only; any other error stands
                raise
            refused[policy.name] = exc.reason
        sim = _summary(sim_dir)
        etasks = ex["tasks"] if ex is not None else [None] * len(sim["tasks"])
        rows += [_policy_row(policy.name, st, et) for st, et in zip(sim["tasks"], etasks,
                                                                    strict=True)]  # fmt: skip
    mark(out, OUTPUTS, command)
    write_csv(out / "policies.csv", POLICY_COLUMNS, rows)
    names = tuple(p.name for p in chosen)
    pc = PolicyComparison(scenario.name, names, resolved, rows, out, reused, refused)
    from aegis_core.tools import plots

    plots.headless()
    plots.save(plots.policies(rows, f"{scenario.name}: sim and exec-{resolved}"),
               out / "policies.png")  # fmt: skip
    return pc


def _policy_row(policy: str, s: dict[str, Any], e: dict[str, Any] | None) -> dict[str, Any]:
    def ratio(t: dict[str, Any] | None) -> float | None:
        return None if t is None or not t["jobs"] else round(t["misses"] / t["jobs"], 6)

    return {
        "policy": policy, "task": s["name"], "admitted": bool(s.get("admitted")),
        "deadline_ns": s.get("deadline_ns"), "bound_ns": s.get("bound_ns"),
        "sim_jobs": s["jobs"], "sim_misses": s["misses"], "sim_miss_ratio": ratio(s),
        "sim_p99_ns": _stat(s, "response_ns", "p99"),
        "exec_jobs": None if e is None else e["jobs"],
        "exec_misses": None if e is None else e["misses"], "exec_miss_ratio": ratio(e),
        "exec_p99_ns": None if e is None else _stat(e, "response_ns", "p99"),
    }  # fmt: skip


def load_policy_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``policies.csv`` with their numbers (empty cells: None)."""
    ints = {"deadline_ns", "bound_ns", "sim_jobs", "sim_misses", "sim_p99_ns", "exec_jobs",
            "exec_misses", "exec_p99_ns"}  # fmt: skip
    floats = {"sim_miss_ratio", "exec_miss_ratio"}
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = dict(r)
            for k, v in r.items():
                if k in ints or k in floats:
                    row[k] = None if v == "" else (int(v) if k in ints else float(v))
            row["admitted"] = r["admitted"] == "True"
            out.append(row)
    return out


def format_policies(pc: PolicyComparison) -> str:
    """The per-task, per-policy table: misses of jobs and p99 response, sim and exec."""
    ms = fmt_ms

    def miss(r: dict[str, Any], side: str) -> str:
        m = r[f"{side}_misses"]
        return "-" if m is None else f"{m}/{r[f'{side}_jobs']}"

    lines = [
        f"{'task':<14} {'policy':<16} {'deadline':>8} {'bound':>8} {'sim miss':>9} "
        f"{'sim p99':>8} {'exec miss':>10} {'exec p99':>9}"
    ]
    for task in dict.fromkeys(r["task"] for r in pc.rows):
        for r in (r for r in pc.rows if r["task"] == task):
            lines.append(
                f"{task:<14} {r['policy']:<16} {ms(r['deadline_ns']):>8} {ms(r['bound_ns']):>8} "
                f"{miss(r, 'sim'):>9} {ms(r['sim_p99_ns']):>8} {miss(r, 'exec'):>10} "
                f"{ms(r['exec_p99_ns']):>9}"
            )
    total = ", ".join(
        f"{p} {pc.misses(p)}/{'-' if pc.misses(p, 'exec') is None else pc.misses(p, 'exec')}"
        for p in pc.policies
    )
    lines.append(f"(ms) misses sim/exec-{pc.backend}: {total}")
    for p, why in pc.refused.items():
        lines.append(f"exec-{pc.backend} refused {p}: {why}")
    lines.append(f"{pc.out_dir}/policies.csv, policies.png")
    return "\n".join(lines)
