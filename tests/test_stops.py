"""Clean stops and progress (issue 14, points 5 and 6): SIGINT / SIGTERM end a run after an
instant with the results of what ran and an ``end`` record, exit 130 / 143; ``aegis explain
--verify`` tells a complete, an interrupted and a cut trace apart; progress is drawn on a
terminal only; a closed stdout ends a command quietly.

The subprocess tests never time anything: they wait until the run has written a record, then
send the signal, and assert on what the run wrote."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_scenario

from aegis_core.model.errors import Interrupted
from aegis_core.run import stop as stop_mod
from aegis_core.run.loop import POLL, run
from aegis_core.run.plan import RunPlan
from aegis_core.run.scheduler import Scheduler
from aegis_core.run.testing import FakeEngine
from aegis_core.tools import progress as progress_mod
from aegis_core.tools.cli import BROKEN_PIPE, main
from aegis_core.tools.runner import run_scenario
from aegis_core.tools.signals import exit_code, stop_on_signals

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "u08_five_tasks.yaml"
TINY = ROOT / "scenarios" / "tiny_gpu.yaml"
MS = 1_000_000


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _aegis(*args: str) -> list[str]:
    return [sys.executable, "-m", "aegis_core.tools.cli", *args]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stopped(
    cmd: list[str], trace: Path, sig: int, needle: str
) -> subprocess.CompletedProcess[str]:
    """Start ``cmd``, wait until ``trace`` holds ``needle`` (the run is under way), send
    ``sig``; the finished process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())  # fmt: skip
    try:
        while not (trace.is_file() and needle in trace.read_text()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)  # a guard against a hang, not a timing
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


RUNS = {
    "sim": lambda out: _aegis("sim", str(BENCH), "--out", str(out), "--duration-ms", "1e7"),
    "exec-numpy": lambda out: _aegis("exec", str(TINY), "--backend", "numpy", "--out", str(out),
                                     "--duration-ms", "1e7", "--trace-flush", "instant"),
}  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("engine", list(RUNS))
def test_a_signal_stops_the_run_with_results_for_what_ran(
    engine: str, sig: signal.Signals, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # the trace streams to trace.jsonl.tmp (renamed trace.jsonl when the run has ended)
    done = _stopped(RUNS[engine](out), out / "trace.jsonl.tmp", sig, '"kind":"release"')
    name = signal.Signals(sig).name
    assert done.returncode == 128 + sig == exit_code(name)  # 130, 143
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and f"({name}): results for what ran in {out}" in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    stopped = summary["interrupted"]
    assert stopped["signal"] == name and 0 < stopped["at_ns"] < 1e7 * MS
    records = _records(out / "trace.jsonl")
    end = records[-1]
    assert end["kind"] == "end" and sum(r["kind"] == "end" for r in records) == 1
    assert end["interrupted"] == stopped and end["t_ns"] == stopped["at_ns"]
    assert end["jobs"] == sum(r["kind"] == "release" for r in records) == summary["jobs"] > 0
    assert (out / "jobs.csv").read_text().count("\n") == summary["jobs"] + 1
    assert (out / "trace.json").is_file()
    verified = subprocess.run(_aegis("explain", str(out), "--verify"), capture_output=True,
                              text=True, env=_env())  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified: all ")
    at = stopped["at_ns"] / MS
    assert f"interrupted at {at:.3f} ms ({name})" in verified.stdout
    # the same trace cut at a line boundary (the end record dropped): incomplete, exit 1
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(json.dumps(r) + "\n" for r in records[:-1]))
    assert main(["explain", str(cut), "--verify"]) == 1


def test_a_wait_for_the_next_release_is_cut_short(tmp_path: Path) -> None:
    """The executor sleeps 100 s until its second release: the signal ends the sleep, so the
    run stops at its first instants (without an interruptible wait it could only stop at the
    release 100 s later: at_ns would be >= 100 s)."""
    scenario = tmp_path / "slow.yaml"
    scenario.write_text("name: slow\npolicy: np-edf\nduration_ms: 1000000\ntasks:\n"
                        "  - {name: mlp, model: mlp, input_shape: [256], period_ms: 100000,"
                        " wcet_ms: 50}\n")  # fmt: skip
    out = tmp_path / "run"
    cmd = _aegis("exec", str(scenario), "--backend", "numpy", "--out", str(out),
                 "--trace-flush", "instant")  # fmt: skip
    done = _stopped(cmd, out / "trace.jsonl.tmp", signal.SIGINT, '"kind":"complete"')
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs"] == 1 and summary["interrupted"]["at_ns"] < 100_000 * MS
    assert _records(out / "trace.jsonl")[-1]["kind"] == "end"


# ------------------------------------------------------------------ the loop and its hooks


def _plan(duration_ms: int = 200) -> RunPlan:
    return RunPlan.build(make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}],
                                       duration_ms=duration_ms))  # fmt: skip


def test_the_loop_stops_after_a_whole_instant_when_asked() -> None:
    plan = _plan()
    scheduler = Scheduler.for_plan(plan)
    asked: list[int] = []

    def stop() -> str | None:
        asked.append(len(scheduler.jobs))
        return "SIGINT" if len(asked) == 2 else None

    stats = run(plan, scheduler, FakeEngine(), stop=stop)
    assert stats.stopped == "SIGINT" and stats.instants == 1 + POLL  # polled at 1, 1 + POLL
    assert scheduler.drain() == []  # nothing of an instant left unwritten
    assert stats.last_ns < plan.scenario.duration_ns
    full = run(plan, Scheduler.for_plan(plan), FakeEngine(), stop=lambda: None)
    assert full.stopped is None and full.instants > stats.instants


def test_progress_is_polled_with_the_run_time() -> None:
    plan = _plan(2000)
    seen: list[int] = []
    stats = run(plan, Scheduler.for_plan(plan), FakeEngine(), progress=seen.append)
    assert len(seen) == 1 + (stats.instants - 1) // POLL
    assert seen == sorted(seen) and seen[-1] <= stats.last_ns


def test_a_stop_request_cuts_an_armed_wait_only() -> None:
    from aegis_exec.clock import sleep_until

    stop_mod.reset()
    try:
        with stop_mod.interruptible:  # not armed: a request is only noted
            stop_mod.request("SIGTERM")
        assert stop_mod.requested() == "SIGTERM"
        with stop_mod.armed(), pytest.raises(Interrupted) as cut:
            sleep_until(time.perf_counter_ns() + 3600 * 10**9)  # an hour: ends at once
        assert cut.value.reason == "SIGTERM"
        stop_mod.reset()
        with stop_mod.armed(), pytest.raises(Interrupted), stop_mod.interruptible:
            stop_mod.request("SIGINT")  # what a handler does while the main thread waits
    finally:
        stop_mod.reset()


def test_handlers_are_installed_for_the_run_only() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert stop() is None
        signal.raise_signal(signal.SIGTERM)
        assert stop() == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second one: a hard stop
            signal.raise_signal(signal.SIGINT)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert stop() is None


def test_a_completed_run_ends_its_trace_and_says_nothing_of_a_stop(tmp_path: Path) -> None:
    result = run_scenario(make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}]), "sim",
                          out_dir=tmp_path)  # fmt: skip
    assert "interrupted" not in result.summary
    end = _records(tmp_path / "trace.jsonl")[-1]
    assert end == {"rec": end["rec"], "t_ns": result.loop.last_ns, "kind": "end", "jobs": 10,
                   "interrupted": None}  # fmt: skip


# ------------------------------------------------------------------------ explain --verify


def _trace(tmp_path: Path) -> list[dict[str, Any]]:
    run_scenario(make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}]), "sim",
                 out_dir=tmp_path)  # fmt: skip
    return _records(tmp_path / "trace.jsonl")


def _write(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_explain_tells_incomplete_and_interrupted_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _trace(tmp_path)
    assert main(["explain", str(tmp_path), "--verify"]) == 0
    assert "interrupted" not in capsys.readouterr().out
    # cut at a line boundary: no end record
    assert main(["explain", str(_write(tmp_path / "a.jsonl", records[:-1])), "--verify"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("incomplete trace: no end record")
    # a last line cut mid-record: dropped, said, incomplete
    half = json.dumps(records[-2])[:20]
    assert main(["explain", str(_write(tmp_path / "b.jsonl", records[:-2], half)),
                 "--verify"]) == 1  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("incomplete trace: no end record")
    assert "cut mid-record" in out[0] and "re-derive" in out[0]
    # a cut line anywhere but last is bad input
    bad = tmp_path / "c.jsonl"
    bad.write_text(half + "\n" + "".join(json.dumps(r) + "\n" for r in records))
    assert main(["explain", str(bad), "--verify"]) == 2
    # an interrupted run's end record
    end = {**records[-1], "interrupted": {"at_ns": records[-1]["t_ns"], "signal": "SIGINT"}}
    assert main(["explain", str(_write(tmp_path / "d.jsonl", [*records[:-1], end])),
                 "--verify"]) == 0  # fmt: skip
    at = records[-1]["t_ns"] / MS
    assert f"interrupted at {at:.3f} ms (SIGINT)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda rs: [*rs[:-1], {**rs[-1], "jobs": 3}], "counts 3 jobs, the trace released 10"),
        (lambda rs: [*rs[:-2], rs[-1], rs[-2]], "is not the trace's last record"),
        (lambda rs: [*rs, rs[-1]], "is not the only one"),
    ],
)
def test_a_wrong_end_record_is_a_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, why: str
) -> None:
    path = _write(tmp_path / "t.jsonl", change(_trace(tmp_path)))
    assert main(["explain", str(path), "--verify"]) == 1
    assert why in capsys.readouterr().out


# ------------------------------------------------------------------------------ progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminal_only() -> None:
    tty = _Tty()
    assert progress_mod.terminal(stream=tty, env={}) is tty
    assert progress_mod.terminal(stream=tty, env={"CI": ""}) is tty
    assert progress_mod.terminal(stream=tty, env={"CI": "true"}) is None
    assert progress_mod.terminal(True, stream=tty, env={}) is None
    assert progress_mod.terminal(stream=io.StringIO(), env={}) is None


def test_a_runs_progress_shows_time_jobs_and_misses(tmp_path: Path) -> None:
    tty = _Tty()
    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 6},
                       {"name": "b", "period_ms": 10, "wcet_ms": 6}], duration_ms=100)  # fmt: skip
    result = run_scenario(s, "sim", out_dir=tmp_path, progress=tty, admission=False)
    text = tty.getvalue()
    assert "sim" in text and "/100 ms" in text and " jobs, " in text and " misses" in text
    assert result.summary["misses"] > 0


def test_the_progress_counts_are_exact() -> None:
    """The scheduler's counters (what the progress line shows) are the jobs released and the
    jobs flagged missed so far, at every poll."""
    plan = RunPlan.build(make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 6},
                                        {"name": "b", "period_ms": 10, "wcet_ms": 6}]))  # fmt: skip
    scheduler = Scheduler.for_plan(plan)
    got: list[tuple[int, int, int, int]] = []

    def tick(now: int) -> None:
        jobs = scheduler.jobs
        got.append((scheduler.released, len(jobs), scheduler.missed, sum(j.missed for j in jobs)))

    run(plan, scheduler, FakeEngine(), progress=tick)
    assert got and all(a == b and c == d for a, b, c, d in got)
    assert scheduler.missed == sum(j.missed for j in scheduler.jobs) > 0


def test_check_shows_its_simulations() -> None:
    from aegis_core.tools.check import check

    tty = _Tty()
    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}])
    assert check(s, runs=2, progress=tty).ok
    assert "simulations" in tty.getvalue() and "check" in tty.getvalue()


def _pty_run(args: list[str], **env: str) -> tuple[int, str]:
    """Run ``aegis`` with stderr on a pseudo-terminal (100 columns); its exit code and what
    reached the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(_aegis(*args), stdout=subprocess.DEVNULL, stderr=slave,
                            env=_env(**env))  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_not_elsewhere(tmp_path: Path) -> None:
    args = ["sim", str(BENCH), "--duration-ms", "2000", "--no-perfetto", "--out"]
    rc, shown = _pty_run([*args, str(tmp_path / "a")])
    assert rc == 0 and "/2000 ms" in shown and "jobs" in shown and "misses" in shown
    rc, shown = _pty_run([*args, str(tmp_path / "b"), "--quiet"])
    assert rc == 0 and shown == ""
    rc, shown = _pty_run([*args, str(tmp_path / "c")], CI="1")
    assert rc == 0 and shown == ""
    piped = subprocess.run(_aegis(*args, str(tmp_path / "d")), capture_output=True, text=True,
                           env=_env())  # fmt: skip
    assert piped.returncode == 0 and piped.stderr == ""


# ------------------------------------------------------------------------ a closed stdout


@pytest.mark.parametrize(
    "args",
    [
        ["sim", str(ROOT / "scenarios" / "fifo.yaml"), "--no-perfetto"],
        ["exec", str(ROOT / "scenarios" / "fifo.yaml"), "--backend", "mock", "--no-perfetto"],
        ["admit", "--json", str(ROOT / "scenarios" / "fifo.yaml")],
    ],
    ids=["sim", "exec", "admit"],
)
def test_a_closed_stdout_ends_quietly(args: list[str], tmp_path: Path) -> None:
    if args[0] in ("sim", "exec"):
        args = [*args, "--out", str(tmp_path / "run")]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(_aegis(*args), stdout=write, stderr=subprocess.PIPE, text=True,
                              env=_env())  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == BROKEN_PIPE and done.stderr == ""


def test_head_ends_explain_and_sim_quietly(tmp_path: Path) -> None:
    fifo = ROOT / "scenarios" / "fifo.yaml"
    for cmd in (
        shlex.join(_aegis("sim", str(fifo), "--out", str(tmp_path))) + " | head -1",
        shlex.join(_aegis("explain", str(tmp_path), "--job", "safety#1")) + " | head -1",
    ):
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True,
                              text=True, env=_env())  # fmt: skip
        assert done.returncode in (0, BROKEN_PIPE), done.stderr  # 0: all fitted in the pipe
        assert done.stderr == "" and len(done.stdout.splitlines()) == 1


def test_compare_and_profile_show_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis_core.tools.compare import compare
    from aegis_core.tools.profiling import profile_scenario

    monkeypatch.delenv("CI", raising=False)  # profile's bar asks the environment too (CI: none)
    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=50)
    tty = _Tty()
    c = compare(s, backend="mock", results=tmp_path, progress=tty)
    assert c.reused == {"sim": False, "exec": False}
    shown = tty.getvalue()
    assert "sim " in shown and "exec-mock " in shown and "/50 ms" in shown
    tty = _Tty()
    profile_scenario(s, backend="mock", out_dir=tmp_path / "p", samples=30, warmup=1,
                     pace="none", progress=tty, meter=lambda: None)  # fmt: skip
    text = tty.getvalue()
    assert "a [isolated]" in text and "/30 samples" in text and text.rstrip().endswith(".json")


def test_an_interrupted_run_is_never_reused_by_compare(tmp_path: Path) -> None:
    from aegis_core.tools.compare import _current

    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=50)
    out = tmp_path / "sim"
    run_scenario(s, "sim", out_dir=out, perfetto=False, host_mode="bound")
    assert _current(out, s, s.seed, "bound")
    summary = json.loads((out / "summary.json").read_text())
    summary["interrupted"] = {"at_ns": 0, "signal": "SIGINT"}
    (out / "summary.json").write_text(json.dumps(summary))
    assert not _current(out, s, s.seed, "bound")


def test_calibrate_stops_with_a_phase_a_signal_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis_core.tools import calibrate, runner

    ran: list[str] = []

    def stopped(scenario: Any, engine: Any, **kw: Any) -> Any:
        ran.append(scenario.name)
        return runner.RunResult({"interrupted": {"at_ns": 5, "signal": "SIGTERM"}}, [], None,
                                None)  # fmt: skip

    monkeypatch.setattr(runner, "run_scenario", stopped)
    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}])
    with pytest.raises(Interrupted) as cut:
        calibrate.measure(s, "mock", 10 * MS)
    assert cut.value.reason == "SIGTERM" and len(ran) == 1  # no second phase


class _Signalling(FakeEngine):
    """Raises ``signals`` (in order) at its 5th, 10th, ... advance: a Ctrl-C mid-run,
    in-process, at a known point."""

    def __init__(self, *signals: int) -> None:
        super().__init__()
        self.signals = list(signals)
        self.calls = 0

    def advance(self, until: Any) -> Any:
        self.calls += 1
        if self.signals and self.calls % 5 == 0:
            signal.raise_signal(self.signals.pop(0))
        return super().advance(until)


def _with_engine(monkeypatch: pytest.MonkeyPatch, *signals: int) -> None:
    from aegis_core.tools import runner

    monkeypatch.setattr(runner, "load_engine", lambda name, **kw: _Signalling(*signals))


def test_cli_an_interrupted_run_prints_one_line_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_engine(monkeypatch, signal.SIGINT)
    out = tmp_path / "run"
    assert main(["sim", str(BENCH), "--out", str(out), "--quiet"]) == 130
    got = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    at = summary["interrupted"]["at_ns"]
    assert got.out == "" and got.err == (
        f"aegis: interrupted at {at / 1e9:.3f} s (SIGINT): results for what ran in {out}/\n"
    )
    assert _records(out / "trace.jsonl")[-1]["interrupted"] == summary["interrupted"]


def test_cli_a_second_signal_stops_hard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_engine(monkeypatch, signal.SIGINT, signal.SIGINT)
    out = tmp_path / "run"
    from aegis_core.run import loop

    monkeypatch.setattr(loop, "POLL", 10**9)  # polled at the first instant only: the second
    # signal lands before the loop sees the first
    assert main(["sim", str(BENCH), "--out", str(out)]) == 130
    assert capsys.readouterr().err == "aegis: interrupted (SIGINT): stopped where it was\n"
    cut = out / "trace.jsonl.tmp"  # a hard stop leaves the records under the temporary name
    assert _records(cut)[-1]["kind"] != "end"  # cut: no end record
    assert {p.name for p in out.iterdir()} == {".aegis-results", "trace.jsonl.tmp"}
    assert main(["explain", str(cut), "--verify"]) == 1
    assert capsys.readouterr().out.startswith("incomplete trace: no end record")


def test_cli_compare_stops_with_its_stopped_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_engine(monkeypatch, signal.SIGTERM)
    fifo = ROOT / "scenarios" / "fifo.yaml"
    assert main(["compare", str(fifo), "--backend", "mock", "--results", str(tmp_path)]) == 143
    assert capsys.readouterr().err.endswith("aegis: interrupted (SIGTERM)\n")
    assert not (tmp_path / "fifo" / "compare").exists()
