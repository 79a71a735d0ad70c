"""The plots answer their question: the CDF's bound lines and axis scale, the Gantt's window,
markers, shades and legend, the demand curve's steps (aegis_core.tools.plots)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import os

import matplotlib.pyplot as plt
import pytest

from aegis_core.analysis.bounds import ATask, dbf, demand_steps, edf_demand_enumerate
from aegis_core.tools import plots
from aegis_core.tools.frames import read_jobs
from aegis_core.tools.results import JOB_COLUMNS

MS = 1_000_000
HEADER = ",".join(JOB_COLUMNS)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def jobs(*rows: tuple[Any, ...]) -> Any:
    """A jobs frame from ``(task, k, release, deadline, start, end, missed)`` in ms (None: no
    start / end)."""
    lines = [HEADER]
    for task, k, r, d, s, e, missed in rows:
        ns = [None if v is None else int(v * MS) for v in (r, d, s, e)]
        resp = "" if ns[3] is None else ns[3] - ns[0]  # type: ignore[operator]
        ex = "" if ns[2] is None else ns[3] - ns[2]  # type: ignore[operator]
        cells = [f"{task}#{k}", task, ns[0], ns[1], ns[2], ns[3], resp, ex,
                 "true" if missed else "false", "completed" if ns[3] is not None else "rejected",
                 0]  # fmt: skip
        lines.append(",".join("" if c is None else str(c) for c in cells))
    return read_jobs(io.StringIO("\n".join(lines) + "\n"))


def summary(tasks: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    base = {"scenario": "demo", "engine": "sim", "backend": None, "policy": "np-edf"}
    return {**base, **top, "tasks": tasks}


def task(name: str, bound_ms: float | None, deadline_ms: float, admitted: bool = True) -> Any:
    bound = None if bound_ms is None else int(bound_ms * MS)
    return {"name": name, "bound_ns": bound, "deadline_ns": int(deadline_ms * MS),
            "admitted": admitted}  # fmt: skip


def periodic(name: str, n: int, period: float, wcet: float, *, late: int = -1) -> list[Any]:
    """``n`` jobs released every ``period`` ms, each running ``wcet`` ms from its release
    (job ``late`` runs past its deadline and misses)."""
    out = []
    for k in range(n):
        r = k * period
        e = r + (period * 1.5 if k == late else wcet)
        out.append((name, k, r, r + period, r, e, k == late))
    return out


# ----------------------------------------------------------------------------- log scale


@pytest.mark.parametrize(
    ("values", "log"),
    [([1.0, 10.0], False), ([1.0, 10.01], True), ([3.0, 5.0, 29.0], False), ([0.5, 50.0], True),
     ([], False), ([0.0, 2.0], False), ([0.0, 0.1, 2.0], True)],
)  # fmt: skip
def test_log_scale_only_when_values_span_more_than_ten(values: list[float], log: bool) -> None:
    assert plots.needs_log(values) is log


# ----------------------------------------------------------------------------------- CDF


def _bound_lines(ax: Any) -> list[Any]:
    return [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("bound")]


def test_cdf_draws_each_tasks_bound_where_it_is_and_picks_the_scale_per_axis() -> None:
    # fast: responses 1-2 ms, bound 3 ms (span 3x: linear); slow: 1 ms in sim, 40 ms in exec
    sim = jobs(*periodic("fast", 5, 10, 1), ("fast", 5, 50, 60, 50, 52, False),
               *periodic("slow", 4, 50, 1))  # fmt: skip
    ex = jobs(*periodic("fast", 5, 10, 1.5), *periodic("slow", 4, 50, 40))
    s = summary([task("fast", 3, 10), task("slow", 45, 50)])
    fig = plots.cdf({"sim": sim, "exec-mock": ex}, {"sim": s, "exec-mock": {**s, "engine": "exec"}})
    fast, slow = fig.axes
    assert [list(ln.get_xdata()) for ln in _bound_lines(fast)] == [[3.0, 3.0]]
    assert [list(ln.get_xdata()) for ln in _bound_lines(slow)] == [[45.0, 45.0]]
    assert fast.get_xscale() == "linear" and slow.get_xscale() == "log"
    assert "log" in slow.get_xlabel() and "log" not in fast.get_xlabel()
    for ax in (fast, slow):
        assert ax.get_ylabel() and ax.get_legend() is not None
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[:2] == ["sim", "exec-mock"] and any("deadline" in x for x in labels)
    title = fig.get_suptitle()
    assert "demo" in title and "sim, exec-mock" in title and "np-edf" in title


def test_cdf_steps_reach_one_at_the_largest_response() -> None:
    sim = jobs(*periodic("a", 4, 10, 2), ("a", 4, 40, 50, 40, 47, False))
    fig = plots.cdf({"sim": sim}, {"sim": summary([task("a", 8, 10)])})
    (ax,) = fig.axes
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "sim")
    assert list(line.get_xdata()) == [2.0, 2.0, 2.0, 2.0, 2.0, 7.0]
    assert list(line.get_ydata()) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_cdf_without_bound_or_completed_job_says_so() -> None:
    sim = jobs(*periodic("a", 3, 10, 2), ("b", 0, 0, 30, None, None, False))
    s = summary([task("a", None, 10), task("b", None, 30, admitted=False)])
    fig = plots.cdf({"sim": sim}, {"sim": s})
    a, b = fig.axes
    assert _bound_lines(a) == [] and _bound_lines(b) == []
    assert b.get_title() == "b (rejected)" and a.get_title() == "a (no bound)"
    assert any(t.get_text() == "no completed job" for t in b.texts)
    assert not any(t.get_text() == "no completed job" for t in a.texts)


# --------------------------------------------------------------------------------- Gantt


def _gantt(first_ms: float, n: int = 30, late: int = -1) -> Any:
    run = jobs(*periodic("a", n, 10, 3, late=late), *periodic("b", n // 2, 20, 4))
    s = summary([task("a", 7, 10), task("b", 7, 20)])
    return plots.gantt({"sim": run, "exec-mock": run}, {"sim": s, "exec-mock": s},
                       int(first_ms * MS))  # fmt: skip


@pytest.mark.parametrize("first_ms", [50, 120, 200.5])
def test_gantt_x_axis_is_the_first_n_ms(first_ms: float) -> None:
    fig = _gantt(first_ms, n=40)  # the run: 400 ms
    (ax,) = fig.axes
    assert ax.get_xlim() == (0.0, first_ms)
    assert f"first {first_ms:g} ms" in ax.get_xlabel()


def test_gantt_of_a_shorter_run_ends_with_it() -> None:
    fig = _gantt(200, n=6)  # a's last job: released at 50 ms, ends at 53 ms
    assert fig.axes[0].get_xlim() == (0.0, 53.0)


def test_gantt_legend_lies_outside_the_axes_and_names_tasks_and_markers() -> None:
    fig = _gantt(100)
    fig.canvas.draw()
    (ax,) = fig.axes
    (legend,) = fig.legends
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= frame.x1  # right of the bars, never over them
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == ["a", "b"]
    assert {"release", "deadline", "missed deadline"} <= set(labels)


def test_gantt_lanes_per_run_and_task_with_release_deadline_and_miss_markers() -> None:
    fig = _gantt(100, late=2)  # a#2: released 20 ms, due 30 ms, ends 35 ms: missed
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "exec-mock: b", "exec-mock: a", "sim: b", "sim: a"]  # fmt: skip
    marks = {m: [ln for ln in ax.get_lines() if ln.get_marker() == m] for m in "^vx"}
    releases = sorted(x for ln in marks["^"] for x in ln.get_xdata())
    # per run: a released every 10 ms in [0, 100], b every 20 ms
    want = sorted([*range(0, 101, 10), *range(0, 101, 20)] * 2)
    assert releases == want
    deadlines = sorted(x for ln in marks["v"] for x in ln.get_xdata())
    assert deadlines == sorted([*range(10, 101, 10), *range(20, 101, 20)] * 2)
    missed = [(x, y) for ln in marks["x"] for x, y in zip(ln.get_xdata(), ln.get_ydata(),
                                                          strict=True)]  # fmt: skip
    assert sorted(missed) == [(30.0, 1.5), (30.0, 3.5)]  # a's lanes: y 1 (exec), 3 (sim)


def test_gantt_consecutive_jobs_alternate_shade_and_have_edges() -> None:
    fig = _gantt(60)
    (ax,) = fig.axes
    bars = [c for c in ax.collections if len(c.get_paths())]
    a_top = [c for c in bars if c.get_paths()[0].vertices[:, 1].min() >= 3]  # sim: a lane
    alphas = [c.get_alpha() for c in a_top]
    assert alphas[:4] == [1.0, 0.5, 1.0, 0.5]
    assert all(c.get_linewidth()[0] > 0 for c in a_top)


# -------------------------------------------------------------------------------- demand

SETS = {
    "pair": [ATask("A", 8 * MS, 20 * MS, 20 * MS), ATask("B", 6 * MS, 30 * MS, 25 * MS)],
    "three": [ATask("A", 8 * MS, 20 * MS, 20 * MS), ATask("B", 6 * MS, 30 * MS, 25 * MS),
              ATask("C", 15 * MS, 100 * MS, 100 * MS)],
    "chunks": [ATask("s", 2, 10, 8), ATask("t", 3, 15, 15), ATask("p", 8, 40, 30, (5, 3))],
    "jitter": [ATask("x", 2, 7, 5, burst=3), ATask("y", 3, 11, 9, j=1)],
}  # fmt: skip


def _blocking(ts: list[ATask], t: int) -> int:
    return max((x.q_max for x in ts if x.blocks_below > t), default=0)


@pytest.mark.parametrize("name", ["chunks", "jitter"])
def test_demand_steps_hold_their_value_until_the_next_step(name: str) -> None:
    ts = SETS[name]
    upto = 120
    steps = demand_steps(ts, upto)
    assert [p for p, _, _ in steps] == sorted({p for p, _, _ in steps})
    for (p, d, b), nxt in itertools.zip_longest(steps, steps[1:]):
        end = upto + 1 if nxt is None else nxt[0]
        for t in range(p, end):  # every integer instant of the step: the same value
            assert dbf(ts, t) + _blocking(ts, t) == d + b, (name, t)
        assert (d, b) == (dbf(ts, p), _blocking(ts, p))


def test_demand_steps_agree_with_the_test_and_its_reason() -> None:
    ts = SETS["three"]
    steps = demand_steps(ts, 100 * MS)
    first = next((p, d, b) for p, d, b in steps if d + b > p)
    v = edf_demand_enumerate(ts).violation
    assert v is not None and first == (v.t, v.dbf, v.blocking) == (20 * MS, 8 * MS, 15 * MS)
    assert steps[0][0] == 20 * MS  # the first test point: nothing is due before it


def test_demand_plot_draws_steps_over_one_horizon_and_marks_the_violation() -> None:
    fig = plots.demand({"admitted": SETS["pair"], "admitted + C": SETS["three"]})
    (ax,) = fig.axes
    curves = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"}
    assert set(curves) == {"admitted", "admitted + C"}
    ends = {float(ln.get_xdata()[-1]) for ln in curves.values()}
    assert ends == {ax.get_xlim()[1]}  # one common horizon
    ok = curves["admitted"]
    assert all(y <= x for x, y in zip(ok.get_xdata(), ok.get_ydata(), strict=True))
    assert ok.get_xdata()[0] == 20.0 and ok.get_ydata()[0] == 14.0  # dbf 8 + B 6 at t = 20
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [(list(m.get_xdata()), list(m.get_ydata())) for m in marks] == [([20.0], [23.0])]
    assert "B(t)" in ax.get_ylabel() and ax.get_legend() is not None


def test_demand_horizon_is_given_or_common(tmp_path: Path) -> None:
    assert plots.demand_horizon({"a": SETS["chunks"]}) == 30  # L = 15 < the longest D
    fig = plots.demand({"a": SETS["chunks"]}, horizon=90)
    assert fig.axes[0].get_xlim()[1] == 90 / MS
    plots.save(fig, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("bad", [0, -5, 0.0, float("nan"), float("inf"), "100"])
def test_a_window_that_is_not_a_positive_number_of_ms_is_an_input_error(bad: Any) -> None:
    from aegis_core.model.errors import InputError

    with pytest.raises(InputError, match=r"--gantt-ms must be a number of ms > 0, got"):
        plots.window_ns(bad, "--gantt-ms")
    with pytest.raises(InputError):
        _gantt(0)


def test_window_ns_is_integer_ns() -> None:
    assert plots.window_ns(200) == 200 * MS and plots.window_ns(0.0000001) == 1
    assert plots.window_ns(1.5) == 1_500_000 and isinstance(plots.window_ns(2.5), int)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_compare_refuses_a_bad_gantt_window_before_it_runs(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aegis_core.tools.cli import main

    root = Path(__file__).resolve().parent.parent
    code = main(["compare", str(root / "scenarios" / "admission.yaml"), "--backend", "mock",
                 "--results", str(tmp_path), "--gantt-ms", bad])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--gantt-ms must be" in err
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


# ------------------------------------------------------------------------------ policies


def _policy_row(policy: str, task: str, sim: tuple[int, int, int], ex: Any = None) -> Any:
    def side(k: str, v: Any) -> dict[str, Any]:
        if v is None:
            return {f"{k}_jobs": None, f"{k}_misses": None, f"{k}_miss_ratio": None,
                    f"{k}_p99_ns": None}  # fmt: skip
        jobs, misses, p99 = v
        return {f"{k}_jobs": jobs, f"{k}_misses": misses, f"{k}_miss_ratio": misses / jobs,
                f"{k}_p99_ns": p99 * MS}  # fmt: skip

    return {"policy": policy, "task": task, "admitted": True, "deadline_ns": 20 * MS,
            "bound_ns": 15 * MS, **side("sim", sim), **side("exec", ex)}  # fmt: skip


def test_policies_bars_start_at_zero_and_say_when_nothing_missed_or_ran() -> None:
    rows = [_policy_row("np-edf", "a", (10, 0, 5), (10, 0, 6)),
            _policy_row("stream-priority", "a", (10, 0, 4))]  # fmt: skip
    fig = plots.policies(rows, "demo")
    sim_miss, exec_miss, sim_p99, _ = fig.axes
    assert sim_miss.get_ylim()[0] == 0 and exec_miss.get_ylim()[0] == 0
    assert any(t.get_text() == "no misses" for t in sim_miss.texts)
    assert any(t.get_text() == "not run: stream-priority" for t in exec_miss.texts)
    heights = sorted(p.get_height() for p in sim_p99.patches)
    assert heights == [4.0, 5.0]
    assert fig.get_suptitle() == "demo"


def test_policies_miss_ratio_axis_fits_the_largest_ratio() -> None:
    rows = [_policy_row("fifo", "a", (10, 3, 25), (10, 4, 26)),
            _policy_row("np-edf", "a", (10, 0, 9), (10, 0, 9))]  # fmt: skip
    fig = plots.policies(rows)
    top = fig.axes[0].get_ylim()[1]
    assert 0.4 < top <= 0.4 * 1.15 + 1e-9
    assert not any(t.get_text() == "no misses" for t in fig.axes[0].texts)


def test_gantt_of_runs_where_no_job_ran_spans_the_releases() -> None:
    rejected = jobs(("a", 0, 0, 10, None, None, False), ("a", 1, 10, 20, None, None, False))
    empty = read_jobs(io.StringIO(HEADER + "\n"))
    s = summary([task("a", None, 10, admitted=False)])
    fig = plots.gantt({"sim": rejected, "exec": empty}, {"sim": s, "exec": s}, 100 * MS)
    (ax,) = fig.axes
    assert ax.get_xlim() == (0.0, 10.0)  # the last release
    assert [t.get_text() for t in ax.get_yticklabels()] == ["exec: a (rejected)",
                                                             "sim: a (rejected)"]  # fmt: skip
    assert not [c for c in ax.collections if len(c.get_paths())]  # no bar


# ------------------------------------------------------------------ dispatches from a trace

LP_EDF = Path(__file__).resolve().parent.parent / "scenarios" / "lp_edf.yaml"


@pytest.fixture(scope="module")
def lp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aegis_core.model.scenario import load_scenario, replace_scenario
    from aegis_core.tools.runner import run_scenario

    out = tmp_path_factory.mktemp("lp") / "sim"
    s = replace_scenario(load_scenario(LP_EDF), duration_ns=400 * MS)
    run_scenario(s, "sim", out_dir=out, perfetto=False)
    return out


def test_read_runs_gives_each_chunk_of_an_lp_edf_job_within_the_window(lp_run: Path) -> None:
    from aegis_core.tools.frames import RUN_COLUMNS, read_runs

    runs = read_runs(lp_run / "trace.jsonl", 100 * MS)
    assert tuple(runs.columns) == RUN_COLUMNS and (runs["start_ns"] <= 100 * MS).all()
    planner = runs[runs["task"] == "planner"]
    first = planner[planner["job"] == "planner#0"]
    # chunks [5, 3] ms; safety's release at 10 ms runs between them
    assert list(first["chunk"]) == [0, 1]
    assert list(first["end_ns"] - first["start_ns"]) == [5 * MS, 3 * MS]
    assert (runs["end_ns"] >= runs["start_ns"]).all()
    jobs = read_jobs(lp_run / "jobs.csv")
    ran = jobs[jobs["start_ns"] <= 100 * MS]
    assert set(runs["job"]) == set(ran["job"])  # every job started in the window, no other


def test_read_runs_streams_only_up_to_its_window(lp_run: Path, tmp_path: Path) -> None:
    from aegis_core.model.errors import InputError
    from aegis_core.tools.frames import read_runs

    lines = (lp_run / "trace.jsonl").read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if '"t_ns":300000000' in ln)
    bad = tmp_path / "trace.jsonl"
    bad.write_text("".join(lines[:at]) + "not a record\n" + "".join(lines[at:]))
    assert len(read_runs(bad, 100 * MS)) == len(read_runs(lp_run / "trace.jsonl", 100 * MS))
    with pytest.raises(InputError, match=rf"trace\.jsonl:{at + 1}: not a JSON record"):
        read_runs(bad, 350 * MS)  # the window reaches the bad line
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:at]) + lines[at][:25])  # a run that crashed mid-line
    assert len(read_runs(cut, 10**12)) > 0
    with pytest.raises(InputError, match=r"none\.jsonl: no such trace file"):
        read_runs(tmp_path / "none.jsonl", MS)
    os.mkfifo(tmp_path / "fifo.jsonl")  # never blocks: a regular file only
    with pytest.raises(InputError, match=r"cannot read a FIFO as a trace file"):
        read_runs(tmp_path / "fifo.jsonl", MS)


def test_gantt_from_a_trace_draws_each_dispatch_in_its_jobs_shade(lp_run: Path) -> None:
    import json

    from aegis_core.tools.frames import read_runs

    jobs_ = read_jobs(lp_run / "jobs.csv")
    s = json.loads((lp_run / "summary.json").read_text())
    runs = read_runs(lp_run / "trace.jsonl", 45 * MS)
    fig = plots.gantt({"sim": jobs_}, {"sim": s}, 45 * MS, {"sim": runs})
    (ax,) = fig.axes
    lane = [c for c in ax.collections if len(c.get_paths())
            and c.get_paths()[0].vertices[:, 1].min() < 1]  # fmt: skip  # y 0: planner
    spans = [(p.vertices[:, 0].min(), p.vertices[:, 0].max()) for c in lane
             for p in c.get_paths()]  # fmt: skip
    assert sorted(spans) == [(5.0, 10.0), (12.0, 15.0), (42.0, 47.0)]  # the axes clip at 45
    assert [c.get_alpha() for c in lane] == [1.0, 1.0, 0.5]  # job 0's chunks, then job 1
    assert "each dispatch" in ax.get_xlabel()
    plain = plots.gantt({"sim": jobs_}, {"sim": s}, 45 * MS).axes[0]
    assert "each job from its start to its end" in plain.get_xlabel()
