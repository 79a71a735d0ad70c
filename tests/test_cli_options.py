"""The command line's options and help: every sub-command documents itself (description, exit
codes, defaults, an example, one metavar vocabulary); ``--policy`` for admit, check and
compare; compare's ``--out``, ``--exec-time``, ``--no-admission`` and exit code; check's
``--seed`` and ``--duration-ms``; counts in the right number; exec's WCET probe."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import Scenario, load_scenario, replace_scenario
from aegis_core.model.types import fmt_count
from aegis_core.tools import cli
from aegis_core.tools.cli import build_parser, format_table, main
from aegis_core.tools.runner import run_fingerprint

ROOT = Path(__file__).resolve().parent.parent
ADMISSION = ROOT / "scenarios" / "admission.yaml"
TINY = ROOT / "scenarios" / "tiny_gpu.yaml"
FIFO = ROOT / "scenarios" / "fifo.yaml"
MS = 1_000_000

METAVARS = {"SCENARIO", "FILE", "DIR", "TRACE", "MS", "N", "P", "POLICY", "NAME", "MODE", "JOB",
            "P1,P2,...", "SHAPE", "SPEC", "ADDRESS"}  # fmt: skip


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    yield from sub.choices.items()


def test_every_command_is_walked() -> None:
    assert {name for name, _ in commands()} == {
        "sim", "exec", "admit", "check", "compare", "profile", "calibrate", "wcet", "memory",
        "explain", "import", "sweep",
    }  # fmt: skip


@pytest.mark.parametrize("name", [n for n, _ in commands()])
def test_help_has_description_exit_codes_defaults_and_an_example(name: str) -> None:
    parser = dict(commands())[name]
    text = parser.format_help()
    assert parser.description and len(parser.description.split("\n\n")) == 2, name
    flat = " ".join(text.split())  # wrapped lines joined
    assert "exit status: 0 " in flat and " 2 bad input" in flat, text
    example = text.split("example:\n", 1)[1]
    assert example.startswith(f"  aegis {name} "), example
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        shown = cli.HelpFormatter(name)._get_help_string(action) or ""
        assert action.help, (name, action.dest)
        if action.default not in (None, False):
            assert "default" in shown, (name, action.dest, shown)
        if action.nargs != 0:  # takes a value: a metavar of the one vocabulary
            assert action.metavar in METAVARS, (name, action.dest, action.metavar)
    written = f"{parser.description}\n{parser.epilog}".splitlines()
    assert max(len(line) for line in written) <= 80, written


def test_defaults_appear_once_and_only_where_there_is_one() -> None:
    text = dict(commands())["check"].format_help()
    assert "random sporadic runs (default: 20)" in " ".join(text.split())
    assert text.count("(default") == 1  # --seed, --json, --policy... have no default to show
    prof = " ".join(dict(commands())["profile"].format_help().split())
    assert "--exceedance P per-run exceedance probability of the WCET (default: 0.001)" in prof
    assert "--out DIR directory for <task>.json (default: profiles)" in prof


# ------------------------------------------------------------------------------ grammar


@pytest.mark.parametrize(
    ("n", "word", "many", "want"),
    [
        (1, "miss", None, "1 miss"),
        (0, "miss", None, "0 misses"),
        (25, "miss", None, "25 misses"),
        (1, "job", None, "1 job"),
        (2, "job", None, "2 jobs"),
        (1, "model", None, "1 model"),
        (3, "dispatch", None, "3 dispatches"),
        (2, "box", None, "2 boxes"),
        (1, "admission verdict", None, "1 admission verdict"),
        (2, "index", "indices", "2 indices"),
    ],
)
def test_counts_take_the_right_number(n: int, word: str, many: str | None, want: str) -> None:
    assert fmt_count(n, word, many) == want


def test_the_run_table_says_1_job_1_miss(tmp_path: Path) -> None:
    summary = {"scenario": "s", "engine": "sim", "policy": "np-edf", "seed": 0,
               "duration_ns": 10 * MS, "jobs": 1, "misses": 1, "tasks": [],
               "decision_overhead_ns": {}}  # fmt: skip
    head = format_table(summary).splitlines()[0]
    assert head == "s · sim · np-edf · seed 0 · 10 ms · 1 job · 1 miss"
    summary.update(jobs=2, misses=0)
    assert format_table(summary).splitlines()[0].endswith("10 ms · 2 jobs · 0 misses")


def test_no_count_printed_with_a_fixed_plural() -> None:
    """Counts in the CLI go through fmt_count: no f-string prints ``{n} misses`` etc."""
    import re

    text = (ROOT / "aegis_core" / "tools" / "cli.py").read_text()
    fixed = re.findall(r"\{[^{}]+\} (?:jobs|misses|models|simulations|dispatches|buffers)\b", text)
    assert fixed == []


# ------------------------------------------------------------------------------ --policy


def test_admit_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admit", str(ADMISSION)]) == 1  # np-edf rejects C
    assert main(["admit", str(ADMISSION), "--policy", "fifo"]) == 0  # no analysis: all in
    assert "admission · fifo · 3 of 3 admitted" in capsys.readouterr().out
    assert main(["admit", str(ADMISSION), "--policy", "np-fp", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["policy"] == "np-fp"
    assert main(["admit", str(FIFO), "--policy", "np-edf"]) == 0  # tutorial §5: all admitted


@pytest.mark.parametrize("bad", ["edf", "", "NP-EDF"])
def test_unknown_policy_is_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("admit", "check", "compare", "sim"):
        with pytest.raises(SystemExit) as stop:
            main([command, str(ADMISSION), "--policy", bad])
        assert stop.value.code == 2
        assert "--policy" in capsys.readouterr().err


def test_check_policy_seed_and_duration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import aegis_core.tools.check as check_module

    seen: list[Scenario] = []
    real = check_module.check

    def spy(scenario: Scenario, **kw: Any) -> Any:
        seen.append(scenario)
        return real(scenario, **kw)

    monkeypatch.setattr(check_module, "check", spy)
    args = ["check", str(ADMISSION), "--runs", "2", "--json"]
    assert main([*args, "--policy", "np-fp", "--seed", "5", "--duration-ms", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "np-fp"
    assert (seen[-1].seed, seen[-1].duration_ns, seen[-1].policy.name) == (5, 300 * MS, "np-fp")
    assert main(args) == 0
    assert (seen[-1].seed, seen[-1].policy.name) == (load_scenario(ADMISSION).seed, "np-edf")
    capsys.readouterr()
    assert main(["check", str(ADMISSION), "--policy", "fifo"]) == 2  # no analysis to check
    assert "no analysis for policy fifo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--seed", "-1", "--seed must be >= 0"),
        ("--duration-ms", "0", "--duration-ms must be a finite number > 0"),
        ("--duration-ms", "nan", "--duration-ms must be a finite number > 0"),
        ("--duration-ms", "-5", "--duration-ms must be a finite number > 0"),
    ],
)
def test_check_and_compare_refuse_bad_seed_and_duration(
    option: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmp = ["compare", str(TINY), "--backend", "mock", "--results", str(tmp_path)]
    for argv in (["check", str(ADMISSION)], cmp):
        assert main([*argv, option, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("aegis: error: ") and said in err and err.count("\n") == 1
    assert not (tmp_path / "tiny_gpu").exists()  # refused before anything ran


# ------------------------------------------------------------------------------ compare


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_out_policy_and_no_admission(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compare", str(ADMISSION), "--backend", "mock", "--results", str(tmp_path / "r"),
            "--duration-ms", "200", "--quiet"]  # fmt: skip
    code = main([*base, "--out", str(tmp_path / "cmp")])
    rows = _csv(tmp_path / "cmp" / "compare.csv")
    assert code == (0 if all(r["bound_ge_sim_ge_exec"] == "True" for r in rows
                             if r["admitted"] == "True") else 1)  # fmt: skip
    assert not (tmp_path / "r" / "admission" / "compare").exists()  # --out, not the default
    assert [r["admitted"] for r in rows] == ["True", "True", "False"]
    sim = json.loads((tmp_path / "r/admission/sim/summary.json").read_text())
    assert sim["tasks"][2]["completed"] == 0  # C rejected: not run
    assert not (tmp_path / "r/admission/sim/trace.json").exists()  # compare writes no Perfetto
    capsys.readouterr()
    # --no-admission: C runs too (its own run: the fingerprint differs, nothing reused)
    main([*base, "--out", str(tmp_path / "all"), "--no-admission"])
    assert "sim run, exec run" in capsys.readouterr().out
    sim = json.loads((tmp_path / "r/admission/sim/summary.json").read_text())
    assert sim["tasks"][2]["completed"] > 0
    # --policy: the overridden policy's runs in their own folders, the default run kept
    assert main([*base, "--policy", "fifo"]) == 0  # nothing promised: no order to fail
    out = capsys.readouterr().out
    assert "no admitted task has an analytical bound" in out
    for d in ("sim-fifo", "exec-mock-fifo", "compare-fifo"):
        assert (tmp_path / "r" / "admission" / d).is_dir(), d
    for d, policy in (("sim", "np-edf"), ("sim-fifo", "fifo")):
        summary = json.loads((tmp_path / "r" / "admission" / d / "summary.json").read_text())
        assert summary["policy"] == policy


def test_compare_exec_time_is_part_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compare", str(TINY), "--backend", "mock", "--results", str(tmp_path), "--quiet"]
    main(base)
    main(base)
    assert "sim reused, exec reused" in capsys.readouterr().out
    main([*base, "--exec-time", "wcet"])
    assert "sim run, exec run" in capsys.readouterr().out
    sim = json.loads((tmp_path / "tiny_gpu/sim/summary.json").read_text())
    want = run_fingerprint(load_scenario(TINY), 0, True, "wcet", "sample")
    assert sim["fingerprint"] == want


def test_compare_policy_and_policies_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["compare", str(TINY), "--policy", "fifo", "--policies", "np-edf,fifo"])
    assert stop.value.code == 2


@pytest.mark.parametrize(
    ("orders", "code"),
    [
        ([True, True], 0),
        ([True, False], 1),
        ([False, False], 1),
        ([None, None], 0),  # no bound anywhere (no analysis): nothing promised, no order
        ([True, None], 0),
    ],
)
def test_compare_exit_code_is_the_order(
    orders: list[bool | None], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import aegis_core.tools.compare as compare_module

    def row(i: int, ordered: bool | None) -> dict[str, Any]:
        return {"task": f"t{i}", "admitted": True, "bound_ns": None if ordered is None else 9,
                "sim_p99_ns": 1, "sim_max_ns": 1, "exec_p99_ns": 1, "exec_max_ns": 1,
                "exec_minus_sim_p99_ns": 0, "sim_misses": 0, "exec_misses": 0, "exec_cv": None,
                "bound_ge_sim_ge_exec": bool(ordered)}  # fmt: skip

    def fake(scenario: Scenario, **kw: Any) -> compare_module.Comparison:
        rows = [row(i, o) for i, o in enumerate(orders)]
        return compare_module.Comparison(rows, tmp_path, tmp_path, tmp_path, {"sim": True})

    monkeypatch.setattr(compare_module, "compare", fake)
    assert main(["compare", str(TINY), "--backend", "mock"]) == code
    last = capsys.readouterr().out.splitlines()[-1]
    assert ("did NOT hold" in last) == (code == 1)


# ------------------------------------------------------------------------------ exec probe


class FakeProfiler:
    """Stands for the engine's profiler: job durations given per task (no clock, no device)."""

    def __init__(self, durations: dict[int, list[int]], host_timed: bool = True) -> None:
        self.durations = durations
        self.host_timed = host_timed
        self.device = "fake"
        self.asked: list[int] = []
        self.opened = False

    def __enter__(self) -> FakeProfiler:
        self.opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.opened = False

    def report(self) -> dict[str, Any]:
        return {}

    def co_runners(self, task: int) -> list[int]:
        return []

    def samples(
        self, task: int, *, contention: bool = False, pace_ns: int = 0
    ) -> Generator[int, None, None]:
        assert self.opened
        self.asked.append(task)
        yield from self.durations[task]


def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeProfiler) -> list[str]:
    import aegis_core.tools.probe as probe_module

    backends: list[str] = []

    def factory(scenario: Scenario, backend: str) -> FakeProfiler:
        backends.append(backend)
        return fake

    monkeypatch.setattr(probe_module, "load_profiler", factory)
    return backends


@pytest.mark.parametrize(
    ("durations", "over"),
    [
        ({0: [99 * MS, 3 * MS], 1: [99 * MS, 4 * MS]}, []),  # warm-up slow, timed within: fine
        ({0: [1, 5 * MS], 1: [1, 3 * MS]}, ["cnn"]),  # 5 ms > 4 ms
        ({0: [1, 4 * MS + 1], 1: [1, 9 * MS]}, ["cnn", "mlp"]),
        ({0: [1, 4 * MS], 1: [1, 4 * MS]}, []),  # at its WCET: holds
    ],
)
def test_probe_times_the_second_job_against_the_wcet(
    durations: dict[int, list[int]], over: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis_core.tools.probe import probe

    fake = FakeProfiler(durations)
    got = probe(load_scenario(TINY), "numpy", lambda s, b: fake)
    assert [(p.task, p.wcet_ns) for p in got] == [("cnn", 4 * MS), ("mlp", 4 * MS)]
    assert [p.measured_ns for p in got] == [durations[0][1], durations[1][1]]
    assert [p.task for p in got if p.exceeds] == over
    assert fake.asked == [0, 1]


def test_probe_skips_replayed_durations_and_models_it_cannot_load() -> None:
    from aegis_core.model.errors import ScenarioError
    from aegis_core.tools.probe import probe

    assert probe(load_scenario(TINY), "mock") == []  # the real profiler: mock replays
    fake = FakeProfiler({0: [1, 9 * MS], 1: [1, 9 * MS]}, host_timed=False)
    assert probe(load_scenario(TINY), "numpy", lambda s, b: fake) == []
    assert fake.asked == []

    def refuses(s: Scenario, b: str) -> FakeProfiler:
        raise ScenarioError(s.path, "cannot load", task="cnn", field="model")

    assert probe(load_scenario(TINY), "numpy", refuses) == []  # left for the run to say


def test_exec_warns_before_the_run_and_no_probe_skips_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import aegis_core.tools.runner as runner

    fake = FakeProfiler({0: [1, 6 * MS], 1: [1, 2 * MS]})
    backends = _install(monkeypatch, fake)
    order: list[str] = []
    real = runner.run  # the loop: the probe comes once the engine accepted the run, before it

    def run(*a: Any, **kw: Any) -> Any:
        order.append("run" if fake.asked else "run before the probe")
        return real(*a, **kw)

    monkeypatch.setattr(runner, "run", run)
    argv = ["exec", str(TINY), "--backend", "mock", "--out", str(tmp_path), "--quiet",
            "--duration-ms", "30"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "probe on mock" in line]
    assert warned == [
        "aegis: warning: probe on mock: task 'cnn' ran 6.000 ms > its WCET 4.000 ms: its WCET "
        "cannot hold on this device, so neither can the bounds (measure it: `aegis profile "
        f"{TINY} --backend mock`)"
    ]
    assert order == ["run"] and backends == ["mock"]
    fake.asked.clear()
    assert main([*argv, "--no-probe"]) == 0
    assert "probe" not in capsys.readouterr().err and fake.asked == []


def test_compare_policies_honours_out_and_no_admission(tmp_path: Path) -> None:
    value = ROOT / "scenarios" / "value.yaml"
    argv = ["compare", str(value), "--backend", "mock", "--results", str(tmp_path / "r"),
            "--policies", "np-edf,fifo", "--duration-ms", "100", "--quiet", "--no-admission",
            "--out", str(tmp_path / "pol")]  # fmt: skip
    assert main(argv) == 0  # no order to fail side by side
    assert (tmp_path / "pol" / "policies.csv").is_file()
    assert not (tmp_path / "r" / "value" / "compare").exists()
    summary = tmp_path / "r" / "value" / "policies" / "fifo" / "sim" / "summary.json"
    s = json.loads(summary.read_text())
    want = replace_scenario(load_scenario(value), policy=get_policy("fifo"), duration_ns=100 * MS)
    assert s["fingerprint"] == run_fingerprint(want, want.seed, False, "sample", "sample")
