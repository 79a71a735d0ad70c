"""The ``aegis`` command line (docs/CONTRACTS.md §cli)."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from aegis_core import __version__
from aegis_core.analysis.admission import Admission
from aegis_core.analysis.bounds import MAX_POINTS
from aegis_core.model.errors import AegisError, InputError, Interrupted, one_line, show_path
from aegis_core.model.overheads import load_overheads
from aegis_core.model.policy import POLICIES, Analysis, get_policy
from aegis_core.model.scenario import Scenario, load_scenario, replace_scenario, with_profiles
from aegis_core.model.types import fmt_count as count
from aegis_core.model.types import fmt_ms as _ms
from aegis_core.model.types import ms_to_ns
from aegis_core.record.sinks import FLUSH_MODES
from aegis_core.run.plan import EXEC_TIME_MODES
from aegis_core.tools.profiling import PACES


def format_table(summary: dict[str, Any]) -> str:
    head = (
        f"{summary['scenario']} · {summary['engine']}"
        + (f"-{summary['backend']}" if summary.get("backend") else "")
        + f" · {summary['policy']} · seed {summary['seed']} · "
        f"{summary['duration_ns'] / 1e6:g} ms · {count(summary['jobs'], 'job')} · "
        f"{count(summary['misses'], 'miss')}"
    )
    cols = f"{'task':<16} {'jobs':>6} {'done':>6} {'miss':>5} {'p50 ms':>9} {'p99 ms':>9} "
    cols += f"{'max ms':>9} {'bound ms':>9}"
    lines = [head, cols]
    for t in summary["tasks"]:
        r = t["response_ns"] or {}
        bound = _ms(t.get("bound_ns")) if t.get("admitted", True) else "rejected"
        lines.append(
            f"{t['name']:<16} {t['jobs']:>6} {t['completed']:>6} {t['misses']:>5} "
            f"{_ms(r.get('p50')):>9} {_ms(r.get('p99')):>9} {_ms(r.get('max')):>9} "
            f"{bound:>9}"
        )
    over = [t for t in summary["tasks"] if t.get("exceeded")]
    if over:
        bug = " — unattributed: an analysis bug, see `aegis explain --job`"
        lines.append("above the bound: " + ", ".join(
            f"{t['name']} {t['exceeded']} ({t['unattributed']} unattributed)" for t in over
        ) + (bug if summary.get("unattributed") else ""))  # fmt: skip
    d = summary["decision_overhead_ns"]
    ahead = (summary.get("dispatch_ahead") or {}).get("decided_ahead")
    if d.get("n"):
        chained = ""
        if ahead:
            share = summary["dispatch_ahead"]["share"]
            chained = f"; {ahead} ahead, chained behind the job before ({share:.0%})"
        lines.append(
            f"decisions: {d['n']}{' at once' if ahead else ''}, overhead p50 "
            f"{d['p50'] / 1e3:.1f} µs, p99 {d['p99'] / 1e3:.1f} µs, max {d['max'] / 1e3:.1f} µs"
            + chained
        )
    return "\n".join(lines)


def _load(path: str) -> Scenario:
    """The scenario file with every task's model resolved (graph.zoo.check_models): each
    command reads its scenario through this, so all accept and refuse the same models."""
    from aegis_core.graph.zoo import check_models

    return check_models(load_scenario(path))


def _scenario(args: argparse.Namespace) -> Scenario:
    scenario = _load(args.scenario)
    if getattr(args, "profiles", None):
        scenario = with_profiles(scenario, args.profiles)
    changes: dict[str, Any] = {}
    if getattr(args, "seed", None) is not None:
        if args.seed < 0:
            raise InputError(f"--seed must be >= 0, got {args.seed}")
        changes["seed"] = args.seed
    if getattr(args, "duration_ms", None) is not None:
        ok = math.isfinite(args.duration_ms) and args.duration_ms > 0
        if not ok or ms_to_ns(args.duration_ms) <= 0:
            raise InputError(f"--duration-ms must be a finite number > 0, got {args.duration_ms}")
        changes["duration_ns"] = ms_to_ns(args.duration_ms)
    if getattr(args, "policy", None) is not None:
        changes["policy"] = get_policy(args.policy)
        args.own_policy = scenario.policy  # a run's default folder is then the override's
    if getattr(args, "overheads", None):
        changes["overheads"] = load_overheads(args.overheads)
    if getattr(args, "max_points", None) is not None:
        if args.max_points < 1:
            raise InputError(f"--max-points must be >= 1, got {args.max_points}")
        changes["analysis_points"] = args.max_points
    return replace_scenario(scenario, **changes) if changes else scenario


def warn_ideal_host(scenario: Scenario, backend: str | None = None) -> None:
    """Once per command: an executor run whose analysis charges no host overheads; or
    overheads with a figure never measured, or measured on another backend than ``backend``."""
    o = scenario.overheads
    if o is None:
        if scenario.policy.analysis is not Analysis.NONE:
            print("aegis: warning: no host overheads given (--overheads FILE, from `aegis "
                  "calibrate`): the bounds ignore this host's release lag, decision, launch "
                  "and completion times", file=sys.stderr)  # fmt: skip
        return
    unmeasured = [w.value for w, f in o.figures.items() if f.n == 0 and f.samples_ns == ()]
    if unmeasured and o.backend:
        print(f"aegis: warning: {o.label}: {', '.join(unmeasured)} never measured: its bound "
              "is a guess, not a measurement", file=sys.stderr)  # fmt: skip
    if backend is not None and o.backend and o.backend != backend:
        print(f"aegis: warning: {o.label} was calibrated on {o.backend}, this run is on "
              f"{backend}: its bounds may not hold here", file=sys.stderr)  # fmt: skip


def cmd_sim(args: argparse.Namespace) -> int:
    return _run(args, "sim")


def cmd_exec(args: argparse.Namespace) -> int:
    from aegis_core.run.engine import load_engine

    scenario = _scenario(args)  # bad input first, before a GPU is touched
    engine = load_engine(
        "exec",
        backend=args.backend,
        cuda_graphs=not args.no_cuda_graphs,
        memory_plan=not args.no_memory_plan,
        check_memory=args.check_memory,
        host=args.host_tuning,
    )
    warn_ideal_host(scenario, engine.backend)
    probe = None  # once the engine has accepted the run: a refused run is never probed
    if not args.no_probe and engine.backend is not None:
        probe = functools.partial(warn_probe, scenario, engine.backend)
    return _run(args, engine, scenario, before_run=probe)


def warn_probe(scenario: Scenario, backend: str) -> None:
    """Before an executor run: one timed job of each model on ``backend``; a warning on stderr
    for each task whose job took longer than its WCET (:mod:`aegis_core.tools.probe`)."""
    from aegis_core.tools.probe import probe

    for p in probe(scenario, backend):
        if p.exceeds:
            print(f"aegis: warning: {p.warning(scenario, backend)}", file=sys.stderr)


def _run(
    args: argparse.Namespace,
    engine: Any,
    scenario: Scenario | None = None,
    before_run: Callable[[], None] | None = None,
) -> int:
    from aegis_core.tools.runner import run_scenario

    scenario = scenario or _scenario(args)
    result = run_scenario(
        scenario,
        engine,
        out_dir=Path(args.out) if args.out else None,
        trace=not args.no_trace,
        trace_flush=args.trace_flush,
        admission=not args.no_admission,
        exec_time=args.exec_time,
        perfetto=not args.no_perfetto,
        progress=_progress(args),
        own_policy=getattr(args, "own_policy", None),
        before_run=before_run,
        dispatch_ahead=not args.no_dispatch_ahead,
    )
    stopped = result.summary.get("interrupted")
    if stopped is not None:
        from aegis_core.tools.signals import exit_code

        print(f"aegis: interrupted at {stopped['at_ns'] / 1e9:.3f} s ({stopped['signal']}): "
              f"results for what ran in {result.out_dir}/", file=sys.stderr)  # fmt: skip
        return exit_code(stopped["signal"])
    print(format_table(result.summary))
    if "exec" in result.summary:
        print(format_exec(result.summary))
    rejected = result.summary["admission"]["rejected"]
    if rejected and not args.no_admission:
        print(f"not run (rejected by admission): {', '.join(rejected)}; see `aegis admit`")
    print(f"results: {show_path(result.out_dir)}/")
    return 0


def _progress(args: argparse.Namespace) -> Any:
    """Where this command draws progress (stderr on a terminal, not under CI, not --quiet)."""
    from aegis_core.tools.progress import terminal

    return terminal(args.quiet)


def format_exec(summary: dict[str, Any]) -> str:
    ex = summary["exec"]
    gap, lag = ex["dispatch_gap_ns"], ex["release_lag_ns"]
    lines = [f"device: {summary.get('device')} · setup {ex['setup_s']:.2f} s"
             + (" · CUDA graphs" if ex.get("cuda_graphs") else "")]  # fmt: skip
    if gap.get("n"):
        lines.append(
            f"dispatch gap (device idle while a job waited): p50 {gap['p50'] / 1e3:.1f} µs, "
            f"p99 {gap['p99'] / 1e3:.1f} µs, max {gap['max'] / 1e3:.1f} µs ({gap['n']})"
        )
    if lag.get("n"):
        lines.append(
            f"release lag (host wake-up after the planned release): p50 {lag['p50'] / 1e3:.1f} "
            f"µs, p99 {lag['p99'] / 1e3:.1f} µs, max {lag['max'] / 1e3:.1f} µs"
        )
    plan = ex.get("memory_plan")
    if plan:
        check = ex.get("memory_check")
        lines.append(
            f"activation arena: {plan['arena_bytes'] / 2**20:.2f} MiB ({plan['sharing']} "
            f"sharing) vs {plan['isolated_bytes'] / 2**20:.2f} MiB isolated, "
            f"reduction {plan['reduction']:.1%}"
            + (f"; overlap check passed ({count(check, 'buffer')})" if check else "")
        )
    cvs = ", ".join(
        f"{t['name']} {t['exec_ns']['cv'] * 100:.1f} %" for t in summary["tasks"] if t["exec_ns"]
    )
    if cvs:
        lines.append(f"execution-time CV: {cvs}")
    over = {t["name"]: t["overruns"] for t in summary["tasks"] if t.get("overruns")}
    if over:
        lines.append(
            "WCET overruns (jobs whose measured execution exceeded their WCET): "
            + ", ".join(f"{k} {v}" for k, v in over.items())
            + " — these WCETs do not hold on this device, so neither do the bounds"
        )
    if ex.get("host"):
        lines.append(format_host(ex["host"]))
    for name, error in ex.get("faulted_tasks", {}).items():
        lines.append(f"FAULT in task {name}: {error}")
    return "\n".join(lines)


def format_host(host: dict[str, Any]) -> str:
    """One line: what the loop thread got from the host, and what the host refused."""
    got, parts = host["applied"], []
    if got["affinity"] is not None:
        parts.append(f"pinned to CPU {', '.join(map(str, got['affinity']))}")
    if got["realtime"] is not None:
        parts.append(f"SCHED_{got['realtime'].upper()} {got['priority']}")
    if got["memory_locked"]:
        parts.append("memory locked")
    line = "host: " + (", ".join(parts) or "nothing applied")
    if host["refused"]:
        line += "; refused: " + "; ".join(host["refused"].values())
    return line


def format_admission(adm: Admission) -> str:
    n_ok = sum(v.admitted for v in adm.tasks)
    o = adm.overheads
    charged = o is not None
    source = [v.profile or v.wcet_from for v in adm.tasks]
    width = max(8, *map(len, source))
    lines = [
        f"admission · {adm.policy} · {n_ok} of {len(adm.tasks)} admitted",
        f"{'task':<16} {'verdict':<9} {'C ms':>8} "
        + ("   C' ms " if charged else "")
        + f"{'C from':<{width}} {'T ms':>8} {'D ms':>8} {'bound ms':>9}  reason",
    ]
    if o is not None:
        lines.insert(1, f"host overheads ({o.label}): C' = C + {_ms(o.per_dispatch_ns)} ms per "
                        f"dispatched job or chunk (decision + launch + completion); release "
                        f"jitter + {_ms(o.release_lag_ns)} ms (release lag)")  # fmt: skip
    for v, src in zip(adm.tasks, source, strict=True):
        cc = f"{_ms(v.charged_ns):>8} " if charged else ""
        lines.append(
            f"{v.name:<16} {'admitted' if v.admitted else 'REJECTED':<9} {_ms(v.wcet_ns):>8} "
            f"{cc}{src:<{width}} {_ms(v.period_ns):>8} {_ms(v.deadline_ns):>8} "
            f"{_ms(v.response_bound_ns):>9}  {v.reason}"
        )
        if v.chunks_ns and len(v.chunks_ns) > 1:
            chunks = ", ".join(_ms(c) for c in v.chunks_ns)
            lines.append(f"{'':<16} chunks [{chunks}] ms (largest tolerable {_ms(v.max_chunk_ns)})")
        if v.note is not None:
            lines.append(f"{'':<16} WCET from the {v.wcet_from}; {v.note}")
    return "\n".join(lines)


def cmd_admit(args: argparse.Namespace) -> int:
    from aegis_core.analysis.admission import admit

    adm = admit(_scenario(args))
    print(json.dumps(adm.as_dict(), indent=2) if args.json else format_admission(adm))
    return 0 if adm.schedulable else 1


def cmd_check(args: argparse.Namespace) -> int:
    from aegis_core.tools.check import check

    if args.runs < 0:
        raise InputError(f"--runs must be >= 0, got {args.runs}")
    result = check(_scenario(args), runs=args.runs, progress=_progress(args))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"check · {result.policy} · {count(result.runs, 'simulation')} (critical patterns "
              "+ random)")  # fmt: skip
        print(f"{'task':<16} {'bound ms':>10} {'worst sim ms':>13} {'bound/sim':>10}  worst run")
        for r in result.rows:
            ratio = f"{r.bound_ns / r.worst_sim_ns:.3f}" if r.worst_sim_ns else "-"
            flag = "" if r.ok else "   <-- ABOVE THE BOUND"
            print(
                f"{r.name:<16} {_ms(r.bound_ns):>10} {_ms(r.worst_sim_ns):>13} {ratio:>10}  "
                f"{r.worst_run}{flag}"
            )
        print(
            "ok: every simulated response is within its bound"
            if result.ok
            else "FAILED: a simulated response exceeds its bound (analysis or simulator bug)"
        )
    return 0 if result.ok else 1


def cmd_wcet(args: argparse.Namespace) -> int:
    from aegis_core.analysis.pwcet import estimate, read_samples, unit_warning

    samples = read_samples(args.samples)
    if (unit := unit_warning(samples)) is not None:
        print(f"aegis: warning: {args.samples}: {unit}", file=sys.stderr)
    est = estimate(samples, args.exceedance)
    if args.json:
        print(json.dumps(est.as_dict(), indent=2))
        return 0
    print(format_wcet(est))
    return 0


def format_wcet(est: Any) -> str:
    st = est.stats
    lines = [
        f"pWCET at exceedance {est.exceedance:g}: {est.wcet_ns} ns ({est.wcet_ns / 1e6:.3f} ms), "
        f"method {est.method}, n {est.n}, converged {'yes' if est.converged else 'NO'}, "
        f"supported {'yes' if est.supported else 'NO'}",
        f"samples: min {st['min']:.0f}, p50 {st['p50']:.0f}, max {st['max']:.0f} ns, "
        f"CV {st['cv'] * 100:.2f} %",
        "pWCET table: " + ", ".join(f"{k}: {v} ns" for k, v in est.pwcet.items()),
        "checks: "
        + ", ".join(
            f"{c.name} {'-' if c.passed is None else 'pass' if c.passed else 'FAIL'}"
            + (f" (p={c.pvalue:.3g})" if c.pvalue is not None else "")
            for c in est.checks
        ),
        "candidates at this exceedance:",
    ]
    for c in est.candidates:
        value = "-" if c.wcet_ns is None else f"{c.wcet_ns} ns"
        lines.append(f"  {c.method:<22} {value:>16}  {c.note}")
    lines += [f"warning: {w}" for w in est.warnings]
    return "\n".join(lines)


def cmd_memory(args: argparse.Namespace) -> int:
    from aegis_core.memory.report import format_plan, plot_plan, read_usages
    from aegis_core.memory.sharing import plan_models

    path = args.input
    if Path(path).suffix == ".json":
        usages, interleave = read_usages(path)
        plan = plan_models(usages, "concurrent" if interleave else "serial", alignment=1)
    else:
        memory = _scenario_memory(_load(path))
        usages = list(memory.usages.values())
        if not usages:
            raise InputError(f"{path}: no task has a model: nothing to plan")
        plan = memory.plan()
    if args.png:
        plot_plan(plan, usages, args.png)
    if args.json:
        print(json.dumps(plan.as_dict(usages, assignments=Path(path).suffix == ".json"), indent=2))
    else:
        print(format_plan(plan))
    return 0


def _scenario_memory(scenario: Scenario) -> Any:
    """``aegis memory SCENARIO``: every modelled task, with the chunk chains admission decides
    (the executor's sizing, the one usage path); without WCETs, every op a preemption point."""
    from aegis_core.analysis.admission import admit
    from aegis_core.memory.sharing import ScenarioMemory
    from aegis_core.model.errors import ScenarioError

    try:
        chosen = admit(scenario).budgets
    except ScenarioError:  # no WCET yet (e.g. before profiling): the conservative plan
        return ScenarioMemory.of(scenario)
    return ScenarioMemory.of(scenario, chosen)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from aegis_core.tools.calibrate import calibrate, format_overheads

    if not (math.isfinite(args.duration_ms) and args.duration_ms >= 100):
        raise InputError(f"--duration-ms must be a number >= 100, got {args.duration_ms}")
    scenario = _load(args.scenario) if args.scenario else None
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    o = calibrate(scenario, args.backend, duration_ms=args.duration_ms,
                  exceedance=args.exceedance, progress=progress, host=args.host_tuning)  # fmt: skip
    o.save(args.out)
    print(format_overheads(o))
    print(f"overheads: {args.out} — charge them with `aegis admit|sim|exec|check|compare "
          f"S.yaml --overheads {args.out}`, or `overheads: <file>` in a scenario")  # fmt: skip
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from aegis_core.tools.compare import compare, format_comparison

    if args.policies is not None:
        return _compare_policies(args)
    from aegis_core.tools.plots import window_ns

    gantt_ns = window_ns(args.gantt_ms, "--gantt-ms")  # before anything runs
    scenario = _scenario(args)
    warn_ideal_host(scenario)
    c = compare(scenario, backend=args.backend, results=Path(args.results), rerun=args.rerun,
                progress=_progress(args), out=_path(args.out), settings=_compare_settings(args),
                own_policy=getattr(args, "own_policy", None), gantt_ns=gantt_ns)  # fmt: skip
    print(format_comparison(c))
    return 0 if c.ordered else 1


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _compare_settings(args: argparse.Namespace) -> Any:
    from aegis_core.tools.compare import RunSettings

    return RunSettings(admission=not args.no_admission, exec_time=args.exec_time)


def _compare_policies(args: argparse.Namespace) -> int:
    from aegis_core.tools.compare import compare_policies, format_policies

    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    pc = compare_policies(_scenario(args), names, backend=args.backend,
                          results=Path(args.results), rerun=args.rerun,
                          progress=_progress(args), out=_path(args.out),
                          settings=_compare_settings(args))  # fmt: skip
    print(format_policies(pc))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from aegis_core.tools.explain import explain_job, load, report

    records = load(args.trace)
    if args.job:
        print(explain_job(records, args.job))
    if args.verify or not args.job:
        code, text = report(records)
        print(text)
        return code
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from aegis_core.tools.profiling import format_profiles, profile_scenario

    scenario = _load(args.scenario)
    measured = profile_scenario(
        scenario,
        backend=args.backend,
        out_dir=Path(args.out),
        samples=args.samples,
        warmup=args.warmup,
        contention=args.contention,
        exceedance=args.exceedance,
        pace=args.pace,
        progress=None if args.quiet else sys.stderr,
    )
    print(format_profiles(measured))
    print(
        f"profiles: {args.out}/ — use them with `aegis admit|sim|exec {args.scenario} "
        f"--profiles {args.out}`, or `profile: <file>` in a task"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from aegis_core.tools.import_model import Options, run

    return run(Options(args.model, args.input_shape, args.batch, args.out, args.verify, args.name))


def cmd_sweep(args: argparse.Namespace) -> int:
    import importlib

    if args.spec == "plot":  # aegis sweep plot DIR
        if args.dir is None:
            raise InputError("aegis sweep plot needs the sweep folder: aegis sweep plot DIR")
        code: int = importlib.import_module("aegis_core.sweep.plots").plot_command(args.dir)
        return code
    if args.dir is not None:
        raise InputError(f"aegis sweep takes one spec file, got also {args.dir!r} (the plots: "
                         "aegis sweep plot DIR)")  # fmt: skip
    return _run_sweep(args, importlib.import_module("aegis_core.sweep.spec"))


def _run_sweep(args: argparse.Namespace, specs: Any) -> int:
    import importlib

    from aegis_core.model.files import MAX_YAML_BYTES, read_user_bytes
    from aegis_core.sweep.runner import run_sweep

    spec = specs.load_spec(args.spec)
    if args.dump is not None:  # set N counts point by point: point N // sets, set N % sets
        made = specs.dump(spec, *divmod(args.dump, spec.sets_per_point))
        print(importlib.import_module("aegis_core.analysis.generators").scenario_yaml(made),
              end="")  # fmt: skip
        return 0
    source = read_user_bytes(args.spec, "sweep spec", MAX_YAML_BYTES)
    out = Path(args.out) if args.out else Path("results") / spec.name / "sweep"
    r = run_sweep(spec, out, source=source, scheduler=args.scheduler, workers=args.workers,
                  resume=args.resume, sets_per_point=args.sets_per_point,
                  progress=_progress(args))  # fmt: skip
    finished = f"{r.written + r.skipped} of {count(r.total, 'partition')}"
    if r.interrupted is not None:
        from aegis_core.tools.signals import exit_code

        print(f"aegis: interrupted ({r.interrupted}): {finished} finished in "
              f"{show_path(r.out_dir)}/; go on with --resume", file=sys.stderr)  # fmt: skip
        return exit_code(r.interrupted)
    kept = f" ({r.skipped} already there)" if r.skipped else ""
    print(f"sweep {spec.name} · {r.where} · {finished}{kept}")
    print(f"dataset: {show_path(r.out_dir)}/ (plots: aegis sweep plot {show_path(r.out_dir)})")
    return 0


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (wrapped by hand); each option's default appended
    to its help, ``(default: …)``, unless the help says it already or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        d = action.default
        if "(default" in text or d is None or d is False or d is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


EXIT_RUN = "0 done (misses are results, not errors); 1 the engine or backend failed; 2 bad \
input; 130 / 143 stopped by SIGINT / SIGTERM (results for what ran)"
"""The exit codes of a command that runs a scenario (sim, exec)."""

EXIT_MEASURE = "0 measured and written; 1 the engine or backend failed; 2 bad input; 130 / 143 \
stopped by SIGINT / SIGTERM"
"""The exit codes of a command that measures on a backend (profile, calibrate)."""


def _command(
    sub: Any, name: str, summary: str, about: str, exits: str, example: str
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` has a description (``summary`` and ``about``), its exit
    codes (``exits``; a closed stdout is 141 for every command) and an ``example``."""
    import textwrap

    def wrap(text: str) -> str:
        return textwrap.fill(text, 78)

    epilog = wrap(f"exit status: {exits}; 141 standard output closed early.")
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=wrap(summary[0].upper() + summary[1:] + ".") + "\n\n" + wrap(about),
        epilog=f"{epilog}\n\nexample:\n  {example}",
        formatter_class=HelpFormatter,
    )
    return p


def _scenario_arg(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")


def _quiet_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (shown only on a terminal, not under CI)",
    )


def _json_option(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _policy_option(sub: Any) -> None:
    sub.add_argument(
        "--policy",
        choices=list(POLICIES),
        metavar="POLICY",
        help=f"override the scenario's policy: {', '.join(POLICIES)} (unscheduled: the "
        "no-scheduler baseline)",
    )


def _seed_options(sub: argparse.ArgumentParser, horizon: str = "the scenario's horizon") -> None:
    sub.add_argument("--seed", type=int, metavar="N", help="override the scenario's seed")
    sub.add_argument("--duration-ms", type=float, metavar="MS", help=f"override {horizon}")


def _admission_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--no-admission",
        action="store_true",
        help="run every task, also those admission rejects (baseline comparisons)",
    )


def _exec_time_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--exec-time",
        choices=EXEC_TIME_MODES,
        default="sample",
        metavar="MODE",
        help="sim and the mock backend: jobs of profiled tasks run for a duration drawn from "
        "the profile's samples (sample) or for their WCET (wcet: the worst case)",
    )


def _run_options(sub: argparse.ArgumentParser, default_out: str) -> None:
    _scenario_arg(sub)
    _quiet_option(sub)
    sub.add_argument("--out", metavar="DIR", help=f"results directory (default: {default_out})")
    _seed_options(sub)
    _policy_option(sub)
    sub.add_argument(
        "--no-trace", action="store_true", help="do not write trace.jsonl (nor trace.json)"
    )
    sub.add_argument(
        "--no-perfetto", action="store_true", help="do not write trace.json (the Perfetto view)"
    )
    sub.add_argument(
        "--trace-flush",
        choices=FLUSH_MODES,
        default="batch",
        metavar="MODE",
        help="when trace records reach the disk: record (after each record), instant (after "
        "each instant of the run) or batch (in blocks of 512 records)",
    )
    _admission_option(sub)
    _profiles_option(sub)
    _exec_time_option(sub)
    sub.add_argument(
        "--no-dispatch-ahead",
        action="store_true",
        help="take every decision when the device frees up (default: np-edf, np-fp and "
        "lp-edf decide the next job while one runs, when no release can come before it "
        "ends, and chain it on the device; the same decisions, no gap between jobs)",
    )


def _backend_option(sub: argparse.ArgumentParser, help: str) -> None:
    # No list of names here: the executor's backend registry checks the name (an unknown
    # one is an input error naming the choices, exit 2, before anything is written).
    sub.add_argument(
        "--backend",
        default="auto",
        metavar="NAME",
        help=f"{help}: cupy (CUDA GPU), numpy (CPU), onnxruntime (ONNX Runtime, the onnx "
        "extra), mock (planned durations, no compute) or auto (cupy when a GPU is usable, "
        "else numpy)",
    )


def _host_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(  # the executor checks the mode (aegis_exec.host.MODES)
        "--host-tuning",
        default="auto",
        metavar="MODE",
        help="auto: the loop thread gets SCHED_FIFO (and, on 3+ CPUs, one CPU) where "
        "permitted (silently not where not; the summary's exec.host says which); off",
    )


def _overheads_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--overheads",
        metavar="FILE",
        help="charge the host overheads in FILE (written by `aegis calibrate`) in the "
        "analysis; sim replays them, exec checks them (replaces the scenario's overheads:)",
    )


def _profiles_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--profiles",
        metavar="DIR",
        help="use the WCET profiles in DIR (<task>.json, written by `aegis profile`; DIR "
        "relative to the working directory) in place of the tasks' wcet_ms",
    )
    _overheads_option(sub)
    sub.add_argument(
        "--max-points",
        type=int,
        metavar="N",
        help="admission's analysis budget in points (replaces the scenario's analysis_points; "
        f"default {MAX_POINTS}): a task not proved within it is rejected, saying so",
    )


def _exceedance_option(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument("--exceedance", type=_probability, default=1e-3, metavar="P", help=what)


def _add_run_commands(sub: Any) -> None:
    sim = _command(
        sub, "sim", "simulate a scenario (SimPy engine) and write its results",
        "Admits the tasks (rejected ones do not run), simulates the run (every job for its "
        "WCET, or a draw from its profile's samples), prints per task the jobs, misses and "
        "response times against the bound, and writes summary.json, jobs.csv, trace.jsonl "
        "and trace.json (Perfetto) to the results directory.",
        EXIT_RUN, "aegis sim scenarios/three_models.yaml --seed 3 --duration-ms 500",
    )  # fmt: skip
    _run_options(sim, "results/<scenario>/sim/")
    sim.set_defaults(func=cmd_sim)

    ex = _command(
        sub, "exec", "execute a scenario's models on a backend and write its results",
        "Admits like sim, then runs the admitted tasks' models for real on the backend, at "
        "the same planned release times. Before the run, unless --no-probe, one job of each "
        "model is timed on the backend (after one warm-up job) and a task whose job took "
        "longer than its WCET is a warning on stderr: its WCET, and so its bound, cannot "
        "hold on this device (the mock backend replays planned durations: no probe).",
        EXIT_RUN, "aegis exec scenarios/three_models_cpu.yaml --backend numpy",
    )  # fmt: skip
    _run_options(ex, "results/<scenario>/exec-<backend>/")
    _backend_option(ex, "where to run the models")
    ex.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the probe (one timed job per model against its WCET) before the run",
    )
    ex.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="cupy: launch each kernel separately instead of replaying one CUDA graph per job",
    )
    ex.add_argument(
        "--no-memory-plan",
        action="store_true",
        help="give every activation its own buffer instead of the planned shared arena",
    )
    ex.add_argument(
        "--check-memory",
        action="store_true",
        help="debug: verify from the buffers' addresses that no two live tensors overlap",
    )
    _host_option(ex)
    ex.set_defaults(func=cmd_exec)


def _add_analysis_commands(sub: Any) -> None:
    adm = _command(
        sub, "admit", "admission analysis of a scenario's tasks, in list order",
        "Each task is admitted only if the analysis of the scenario's policy proves that it "
        "and every task admitted before it meet their deadlines; the table gives each "
        "verdict with its WCET, period, deadline, response bound and reason.",
        "0 every task admitted; 1 some rejected; 2 bad input",
        "aegis admit scenarios/admission.yaml --policy np-fp",
    )  # fmt: skip
    _scenario_arg(adm)
    _json_option(adm, "the verdicts")
    _policy_option(adm)
    _profiles_option(adm)
    adm.set_defaults(func=cmd_admit)

    chk = _command(
        sub, "check", "simulate worst-case and random release patterns against the bounds",
        "Simulates the release patterns where the analysis puts the worst case, plus random "
        "sporadic runs of the admitted tasks (seeded by --seed; each lasts the scenario's "
        "duration, at most 20 longest periods or 4 busy periods), and compares every "
        "response with its bound.",
        "0 every simulated response within its bound; 1 one above it (an analysis or "
        "simulator bug); 2 bad input (or a policy without analysis); 130 stopped by SIGINT",
        "aegis check scenarios/admission.yaml --runs 50 --seed 1",
    )  # fmt: skip
    _scenario_arg(chk)
    _json_option(chk, "the result")
    chk.add_argument("--runs", type=int, default=20, metavar="N", help="random sporadic runs")
    _seed_options(chk, "the scenario's duration_ms (it caps each random run)")
    _policy_option(chk)
    _profiles_option(chk)
    _quiet_option(chk)
    chk.set_defaults(func=cmd_check)

    cmp_ = _command(
        sub, "compare", "bound, simulation and execution of a scenario side by side",
        "Runs sim and exec for the same scenario and seed (or reuses results with the same "
        "run fingerprint), written without trace.json (run `aegis sim` / `aegis exec` for "
        "the Perfetto view), and writes compare.csv, cdf.png and gantt.png; per admitted "
        "task it checks bound >= sim max >= exec max. With --policies, the policies side by "
        "side instead (policies.csv, policies.png).",
        "0 the order held for every admitted task (--policies: done); 1 it did not (see the "
        "NO rows); 2 bad input; 130 / 143 stopped by SIGINT / SIGTERM",
        "aegis compare scenarios/three_models_cpu.yaml --backend numpy --out /tmp/cmp",
    )  # fmt: skip
    _scenario_arg(cmp_)
    _backend_option(cmp_, "the executor's backend")
    cmp_.add_argument(
        "--results",
        default="results",
        metavar="DIR",
        help="results root for the runs: <root>/<scenario>/{sim,exec-<backend>}",
    )
    cmp_.add_argument(
        "--out",
        metavar="DIR",
        help="where to write the comparison (default: <root>/<scenario>/compare/)",
    )
    cmp_.add_argument("--rerun", action="store_true", help="run both even if results are current")
    which = cmp_.add_mutually_exclusive_group()
    which.add_argument(
        "--policies",
        metavar="P1,P2,...",
        help="compare these policies side by side instead (e.g. np-edf,fifo,unscheduled,"
        "stream-priority): misses and p99 per task, sim and exec; runs in "
        "<root>/<scenario>/policies/<policy>/",
    )
    _policy_option(which)
    _seed_options(cmp_)
    _admission_option(cmp_)
    _exec_time_option(cmp_)
    cmp_.add_argument("--gantt-ms", type=float, default=200.0, metavar="MS",
                      help="gantt.png shows the first MS ms of the runs")  # fmt: skip
    _profiles_option(cmp_)
    _quiet_option(cmp_)
    cmp_.set_defaults(func=cmd_compare)


def _add_measuring_commands(sub: Any) -> None:
    prof = _command(
        sub, "profile", "measure each task's execution time and write WCET profiles",
        "Runs each task's model on the backend (warm-up runs discarded, then one job per "
        "task period) until its pWCET estimate converges or --samples are in, and writes "
        "<out>/<task>.json: the samples, the pWCET and the checks behind it.",
        EXIT_MEASURE,
        "aegis profile scenarios/tiny_gpu.yaml --backend numpy --out profiles/tiny",
    )  # fmt: skip
    _scenario_arg(prof)
    _backend_option(prof, "where to run the models")
    prof.add_argument(
        "--samples",
        type=int,
        default=100,
        metavar="N",
        help="at most this many timed runs per task; sampling stops earlier once "
        "the estimate converges",
    )
    prof.add_argument(
        "--warmup",
        type=int,
        default=5,
        metavar="N",
        help="untimed first runs per task, discarded and reported",
    )
    prof.add_argument(
        "--contention",
        action="store_true",
        help="also measure each task while every other task's model runs on its "
        "own stream; <task>.json is then the contention profile",
    )
    _exceedance_option(prof, "per-run exceedance probability of the WCET")
    prof.add_argument(
        "--pace",
        choices=PACES,
        default="period",
        metavar="MODE",
        help="period: one job per task period, as a run releases them (the idle gaps "
        "between jobs slow them down, as in the run); none: back to back (faster, optimistic)",
    )
    prof.add_argument("--out", default="profiles", metavar="DIR", help="directory for <task>.json")
    _quiet_option(prof)
    prof.set_defaults(func=cmd_profile)

    cal = _command(
        sub, "calibrate", "measure the executor's host overheads and write an overheads file",
        "Runs the executor twice (paced, then back to back) and bounds each host overhead "
        "(release lag, decision, launch, completion) by the WCET rule; charge them with "
        "--overheads FILE in admit, sim, exec, check and compare.",
        EXIT_MEASURE, "aegis calibrate --backend mock --out host-mock.json",
    )  # fmt: skip
    cal.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="scenario YAML whose tasks to run (default: a builtin workload of three tasks)",
    )
    _backend_option(cal, "the executor's backend")
    cal.add_argument("--out", default="overheads.json", metavar="FILE", help="file to write")
    cal.add_argument("--duration-ms", type=float, default=4000, metavar="MS",
                     help="measured run time, over both phases")  # fmt: skip
    _exceedance_option(cal, "per-job exceedance of each bound")
    _host_option(cal)
    cal.set_defaults(func=cmd_calibrate)

    wc = _command(
        sub, "wcet", "pWCET estimate from a file of durations (ns, one per line)",
        "The estimator of `aegis profile` on durations measured elsewhere: the WCET at "
        "--exceedance with its method, its converged and supported flags and the checks.",
        "0 estimated; 2 bad input",
        "aegis wcet durations.txt --exceedance 1e-6",
    )  # fmt: skip
    wc.add_argument(
        "samples", metavar="FILE", help="text file: one duration in ns per line (-: standard input)"
    )
    _exceedance_option(wc, "per-run exceedance probability")
    _json_option(wc, "the estimate")
    wc.set_defaults(func=cmd_wcet)

    imp = _command(
        sub, "import", "import an ONNX model: its summary, a graph file, a check against "
        "onnxruntime",
        "Imports the model for --input-shape (every dynamic dimension fixed; the first size "
        "is the batch) and prints its ops (ONNX in, AegisRT out), parameters, compute and "
        "activation memory (planned as `aegis memory` plans it). -o writes the graph file and "
        "its weights (<graph>.weights.npz beside it). --verify runs one seeded random input "
        "through AegisRT's NumPy kernels and through onnxruntime (CPU) and compares the "
        "outputs (fp32: |ours - ort| <= 1e-4 + 1e-3 |ort|). Needs the onnx extra.",
        "0 imported (and verified); 1 an output differs beyond the tolerance (no graph "
        "written); 2 bad input (an unsupported operator or attribute included, naming the "
        "node)",
        "aegis import net.onnx --input-shape 1x3x224x224 -o net.json --verify",
    )  # fmt: skip
    imp.add_argument("model", metavar="FILE", help="the ONNX model file (.onnx)")
    imp.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="the input's shape, batch first, as NxCxHxW (default: the model's static one)",
    )
    imp.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="batch size (overrides the first size of --input-shape; default: it, or 1)",
    )
    imp.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="write the graph file (x.json) and its weights, x.weights.npz, beside it (an "
        "existing file is replaced only if it is a graph file and the weights it names)",
    )
    imp.add_argument(
        "--verify",
        action="store_true",
        help="compare the outputs with onnxruntime's (exit 1 above the tolerance)",
    )
    imp.add_argument("--name", metavar="NAME", help="the graph's name (default: the file's stem)")
    imp.set_defaults(func=cmd_import)


def _add_reading_commands(sub: Any) -> None:
    mem = _command(
        sub, "memory", "tensor lifetimes, activation arena plans and sharing",
        "Plans each model's activations in one arena and, across models, the sharing the "
        "scenario's policy allows; prints naive, planned and lower-bound sizes per model.",
        "0 planned; 2 bad input",
        "aegis memory scenarios/memory.yaml --png arena.png",
    )  # fmt: skip
    mem.add_argument(
        "input",
        metavar="FILE",
        help="scenario YAML, or a tensor-usage JSON file (docs/CONTRACTS.md)",
    )
    _json_option(mem, "the plan")
    mem.add_argument("--png", metavar="FILE", help="also draw the arena layout (op x offset)")
    mem.set_defaults(func=cmd_memory)

    exp = _command(
        sub, "explain", "why each decision of a run was taken",
        "Re-derives every dispatch and admission verdict from a run's trace (--verify, the "
        "default without --job), or tells one job's story: release, admission, blocking, "
        "dispatch, completion and, past its bound, the causes.",
        "0 verified (or the job told); 1 a decision does not re-derive, or the trace is "
        "incomplete; 2 bad input",
        "aegis explain results/three_models/sim --job detector#3",
    )  # fmt: skip
    exp.add_argument(
        "trace", metavar="TRACE", help="trace.jsonl, or a results directory holding one"
    )
    exp.add_argument("--job", metavar="JOB", help="tell this job's story (e.g. detector#3)")
    exp.add_argument(
        "--verify",
        action="store_true",
        help="re-derive every dispatch and admission (exit 1 if one does not)",
    )
    exp.set_defaults(func=cmd_explain)


def _add_sweep_command(sub: Any) -> None:
    sw = _command(
        sub, "sweep", "run a sweep spec's task sets on Dask into a Parquet dataset",
        "Generates sets_per_point task sets at every point of the spec's axes, tests each "
        "under the spec's tests (and check or sim when the spec says so), and writes one row "
        "per set and test to DIR/part-p<point>-b<batch>.parquet as each batch finishes "
        "(spec.yaml and sweep.json beside them). It runs on a LocalCluster (one process per "
        "worker), on the cluster at --scheduler, or in this process (--workers 1); every "
        "set's seed derives from the spec's seed, the point and the set, so the dataset is "
        "the same whichever way it runs. Needs the sweep extra (pip install "
        "'aegisrt[sweep]'). `aegis sweep plot DIR` draws a dataset's plots into DIR/plots/.",
        "0 done (or the set dumped, the plots drawn); 2 bad input (the spec, an unreachable "
        "--scheduler, an --out that is not a sweep folder); 130 / 143 stopped by SIGINT / "
        "SIGTERM (the finished partitions kept: rerun with --resume)",
        "aegis sweep benchmarks/sweep_reference.yaml --sets-per-point 50 --out /tmp/sw",
    )  # fmt: skip
    sw.add_argument("spec", metavar="SPEC", help="sweep spec YAML file (or: plot)")
    sw.add_argument("dir", nargs="?", metavar="DIR", help=argparse.SUPPRESS)
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786, from "
                    "`dask scheduler`; its workers need AegisRT installed)")  # fmt: skip
    sw.add_argument("--workers", type=int, metavar="N",
                    help="LocalCluster workers (default: the CPU count); 1: in this process, "
                    "without Dask")  # fmt: skip
    sw.add_argument("--out", metavar="DIR", help="sweep folder (default: results/<name>/sweep/)")
    sw.add_argument("--resume", action="store_true",
                    help="keep the partitions already in --out and run only the others (the "
                    "same spec file and --sets-per-point only)")  # fmt: skip
    sw.add_argument("--sets-per-point", type=int, metavar="N",
                    help="override the spec's sets_per_point (a quick look)")  # fmt: skip
    sw.add_argument(
        "--dump",
        type=int,
        metavar="N",
        help="print task set N as a scenario YAML file and exit (nothing runs)",
    )
    _quiet_option(sw)
    sw.set_defaults(func=cmd_sweep)


class Parser(argparse.ArgumentParser):
    """argparse, with a command-line error as one line (``aegis admit: error: argument
    --max-points: invalid int value: 'abc' (see aegis admit --help)``, exit 2), control
    characters escaped, like every other bad input; sub-commands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{one_line(self.prog)}: error: {one_line(message)} "
                     f"(see {one_line(self.prog)} --help)\n")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="aegis",
        description="AegisRT: provable latency for DNN models sharing one GPU.",
        epilog="exit status: 0 success; 1 the command's negative answer (see each\n"
        "command's --help); 2 bad input.\n\nexample:\n  aegis sim scenarios/three_models.yaml",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"aegis {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_analysis_commands(sub)
    _add_measuring_commands(sub)
    _add_reading_commands(sub)
    _add_sweep_command(sub)
    return p


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < p < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
    return p


BROKEN_PIPE = 141
"""The exit status when stdout was closed early (``aegis … | head -1``): 128 + SIGPIPE, what a
Unix tool killed by SIGPIPE reports."""


def _stdout_closed() -> bool:
    """Is standard output a pipe or socket whose reader went away (poll reports an error or
    a hang-up on it)?"""
    import select
    import stat

    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
        p = select.poll()
        p.register(fd, select.POLLERR)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):  # no such stream, or no poll here
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed stdout shows here at the latest, not at exit
    except BrokenPipeError:  # the reader went away: end quietly (the Python docs' recipe)
        if not _stdout_closed():
            raise  # a pipe or FIFO the command writes a file to, not its standard output
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit fails no more
        return BROKEN_PIPE
    except InputError as exc:
        print(f"aegis: error: {exc}", file=sys.stderr)
        return 2
    except AegisError as exc:
        print(f"aegis: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # a stop outside a run's loop (e.g. between compare's runs)
        from aegis_core.tools.signals import exit_code

        print(f"aegis: interrupted ({exc.reason})", file=sys.stderr)
        return exit_code(exc.reason)
    except KeyboardInterrupt:  # Ctrl-C outside a run, or a second one during a run
        print("aegis: interrupted (SIGINT): stopped where it was", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
