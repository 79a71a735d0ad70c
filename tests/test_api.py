"""The public Python API (``import aegis``, docs/API.md §Python API): scenarios from files and
dicts, runs as DataFrames that equal their ``jobs.csv``, results read back, plots of any run,
and bad input as an InputError naming what is wrong."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

import aegis
from aegis_core.tools.frames import JOB_DTYPES
from aegis_core.tools.results import JOB_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000
DOC: dict[str, Any] = {
    "name": "api", "policy": "np-edf", "duration_ms": 200, "seed": 0,
    "tasks": [
        {"name": "A", "period_ms": 20, "wcet_ms": 8},
        {"name": "B", "period_ms": 30, "deadline_ms": 25, "wcet_ms": 6},
        {"name": "C", "period_ms": 100, "wcet_ms": 15},
    ],
}  # fmt: skip


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _as_csv_text(df: pd.DataFrame) -> list[dict[str, str]]:
    """The frame's cells as jobs.csv writes them (NA: empty, booleans lower case)."""
    out = []
    for row in df.itertuples(index=False):
        cells = {}
        for k, v in zip(df.columns, row, strict=True):
            cells[k] = "" if v is pd.NA else ("true" if v is True else "false" if v is False
                                              else str(v))  # fmt: skip
        out.append(cells)
    return out


def test_round_trip_run_written_read_back_equals_jobs_csv_and_the_run_in_memory(
    tmp_path: Path,
) -> None:
    written = aegis.simulate(DOC, out=tmp_path / "sim")
    assert written.path == tmp_path / "sim" and written.label == "sim"
    back = aegis.read(tmp_path / "sim")
    assert tuple(back.jobs.columns) == JOB_COLUMNS
    assert {c: str(t) for c, t in back.jobs.dtypes.items()} == JOB_DTYPES
    assert _as_csv_text(back.jobs) == _csv_rows(tmp_path / "sim" / "jobs.csv")
    assert back.summary == json.loads((tmp_path / "sim" / "summary.json").read_text())
    pd.testing.assert_frame_equal(written.jobs, back.jobs)
    memory = aegis.simulate(DOC)  # not written: the same jobs, the same statistics
    assert memory.path is None
    pd.testing.assert_frame_equal(memory.jobs, back.jobs)
    pd.testing.assert_frame_equal(memory.tasks, back.tasks)
    rejected = back.jobs[back.jobs["task"] == "C"]
    assert (rejected["status"] == "rejected").all() and rejected["start_ns"].isna().all()


def test_tasks_frame_holds_the_summarys_statistics(tmp_path: Path) -> None:
    run = aegis.simulate(DOC, out=tmp_path / "r")
    t = run.tasks
    assert list(t.index) == ["A", "B", "C"]
    for s in run.summary["tasks"]:
        row = t.loc[s["name"]]
        assert row["jobs"] == s["jobs"] and row["misses"] == s["misses"]
        if s["response_ns"]:
            assert row["response_p99_ns"] == s["response_ns"]["p99"]
            assert row["exec_max_ns"] == s["exec_ns"]["max"]
            assert row["response_cv"] == pytest.approx(s["response_ns"]["cv"])
    assert pd.isna(t.loc["C", "bound_ns"]) and pd.isna(t.loc["C", "response_p99_ns"])
    assert str(t["bound_ns"].dtype) == "Int64" and str(t["response_max_ns"].dtype) == "Int64"
    by_task = run.jobs.groupby("task")["response_ns"].max()
    assert by_task["A"] == t.loc["A", "response_max_ns"]  # one fact, two views


def test_a_dict_scenario_is_the_file_scenario(tmp_path: Path) -> None:
    from_file = aegis.load(ROOT / "scenarios" / "admission.yaml")
    doc = {**DOC, "name": "admission", "duration_ms": 2000}
    from_dict = aegis.load(doc)
    assert [t.name for t in from_dict.tasks] == [t.name for t in from_file.tasks]
    pd.testing.assert_frame_equal(aegis.verdicts(from_dict), aegis.verdicts(from_file))
    assert aegis.load(from_file) is from_file
    v = aegis.verdicts(doc)
    assert list(v["admitted"]) == [True, True, False]
    assert v.loc["A", "response_bound_ns"] == 14 * MS and pd.isna(v.loc["C", "response_bound_ns"])
    assert "dbf(t) + B(t)" in v.loc["C", "reason"]
    assert aegis.admit(doc).rejected == aegis.admit(from_file).rejected


@pytest.mark.parametrize(
    ("doc", "task", "field"),
    [
        ({"name": "x"}, None, "tasks"),
        ({"name": "x", "tasks": []}, None, "tasks"),
        ({"name": "Bad Name", "tasks": DOC["tasks"]}, None, "name"),
        ({"name": "x", "tasks": [{"name": "a", "period_ms": -1, "wcet_ms": 1}]}, "a", "period_ms"),
        ({"name": "x", "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": "x"}]}, "a", "wcet_ms"),
        ({"name": "x", "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": 1, "colour": 1}]},
         "a", "colour"),
        ({**DOC, "policy": "round-robin"}, None, "policy"),
        ({**DOC, "duration_ms": 0}, None, "duration_ms"),
    ],
)  # fmt: skip
def test_a_bad_dict_is_a_scenario_error_naming_the_field(
    doc: dict[str, Any], task: str | None, field: str
) -> None:
    with pytest.raises(aegis.ScenarioError) as info:
        aegis.load(doc)
    assert info.value.field == field and info.value.task == task
    assert f"field '{field}'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(aegis.InputError):  # every entry point validates the same way
        aegis.simulate(doc)


@pytest.mark.parametrize("bad", [[1, 2], 42, None, "no/such/scenario.yaml"])
def test_a_scenario_that_is_neither_a_mapping_nor_a_file_is_an_input_error(bad: Any) -> None:
    with pytest.raises(aegis.InputError):
        aegis.load(bad)


def test_reading_what_is_not_a_results_directory_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(aegis.InputError, match=r"summary\.json: no such summary"):
        aegis.read(tmp_path / "none")
    d = tmp_path / "d"
    d.mkdir()
    (d / "summary.json").write_text("{not json")
    with pytest.raises(aegis.InputError, match=r"summary\.json: invalid JSON at line 1"):
        aegis.read(d)
    (d / "summary.json").write_text('{"tasks": 3}')
    with pytest.raises(aegis.InputError, match=r"summary\.json: not a summary"):
        aegis.read(d)
    (d / "summary.json").write_text('{"tasks": []}')
    with pytest.raises(aegis.InputError, match=r"jobs\.csv: cannot read"):
        aegis.read(d)
    (d / "jobs.csv").write_text("a,b\n1,2\n")
    with pytest.raises(aegis.InputError, match=r"jobs\.csv: (columns|not a jobs)"):
        aegis.read(d)
    (d / "jobs.csv").write_text(",".join(JOB_COLUMNS) + "\nA#0,A,zero,1,,,,,false,done,0\n")
    with pytest.raises(aegis.InputError, match=r"jobs\.csv: not a jobs\.csv"):
        aegis.read(d)


def test_execute_on_the_mock_backend_and_plot_it_beside_the_simulation() -> None:
    sim = aegis.simulate(DOC)
    ex = aegis.execute(DOC, backend="mock")
    assert ex.label == "exec-mock" and ex.summary["backend"] == "mock"
    assert set(ex.jobs["task"]) == {"A", "B", "C"}
    fig = aegis.plot_cdf([sim, ex])
    assert len(fig.axes) == 3 and "sim, exec-mock" in fig.get_suptitle()
    fig = aegis.plot_gantt({"sim": sim, "exec": ex}, first_ms=50)
    assert fig.axes[0].get_xlim() == (0.0, 50.0)
    twice = aegis.plot_gantt([sim, sim], first_ms=50)  # two runs of one engine: both drawn
    labels = [t.get_text() for t in twice.axes[0].get_yticklabels()]
    assert "sim: A" in labels and "sim (2): A" in labels


def test_compare_through_the_api_writes_its_plots_with_the_window_asked(tmp_path: Path) -> None:
    doc = {**DOC, "tasks": DOC["tasks"][:2]}
    c = aegis.compare(doc, backend="mock", results=tmp_path, gantt_ms=40)
    assert c.reused == {"sim": False, "exec": False}
    for name in ("cdf.png", "gantt.png"):
        assert (c.out_dir / name).read_bytes()[:4] == b"\x89PNG"
    sim, ex = aegis.read(c.sim_dir), aegis.read(c.exec_dir)
    assert ex.label == "exec-mock" and len(sim.jobs) == len(ex.jobs)
    again = aegis.compare(doc, backend="mock", results=tmp_path)
    assert again.reused == {"sim": True, "exec": True}


def test_plot_demand_shows_the_admitted_set_and_each_rejected_task_added() -> None:
    fig = aegis.plot_demand(ROOT / "scenarios" / "admission.yaml")
    (ax,) = fig.axes
    curves = [ln.get_label() for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"]
    assert curves == ["admitted", "admitted + C"]
    lp = aegis.plot_demand(ROOT / "scenarios" / "lp_edf.yaml", horizon_ms=40)
    (ax,) = lp.axes
    (curve,) = [ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"]
    # the binding point admit names: t = 8 ms, dbf 2 ms + B 5 ms (the planner's first chunk)
    assert (curve.get_xdata()[0], curve.get_ydata()[0]) == (8.0, 7.0)
    assert ax.get_xlim() == (0.0, 40.0)


def test_the_api_is_one_import() -> None:
    for name in aegis.__all__:
        assert hasattr(aegis, name), name


def test_plot_policies_reads_a_policies_csv_or_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(aegis.InputError, match=r"policies\.csv: cannot read"):
        aegis.plot_policies(tmp_path / "policies.csv")
    (tmp_path / "policies.csv").write_text("x,y\n1,2\n")
    with pytest.raises(aegis.InputError, match=r"not a policies\.csv"):
        aegis.plot_policies(tmp_path / "policies.csv")


def test_the_example_in_docs_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    code = text.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "admission.yaml").write_bytes(
        (ROOT / "scenarios" / "admission.yaml").read_bytes()
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/API.md", "exec"), {})
    for name in ("cdf.png", "gantt.png", "demand.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "results" / "admission" / "sim" / "jobs.csv").is_file()


@pytest.mark.parametrize("nothing", [[], {}, ()])
def test_plotting_no_run_is_an_input_error(nothing: Any) -> None:
    for plot in (aegis.plot_cdf, aegis.plot_gantt):
        with pytest.raises(aegis.InputError, match="no run to plot"):
            plot(nothing)


@pytest.mark.parametrize("policy", ["np-fp", "fifo", "unscheduled"])
def test_plot_demand_refuses_a_policy_not_admitted_by_a_demand_test(policy: str) -> None:
    with pytest.raises(aegis.InputError, match=r"not a demand test .*no dbf\(t\) \+ B\(t\)"):
        aegis.plot_demand({**DOC, "policy": policy})


def test_a_run_read_with_its_trace_shows_each_dispatch(tmp_path: Path) -> None:
    lp = ROOT / "scenarios" / "lp_edf.yaml"
    traced = aegis.simulate(lp, out=tmp_path / "t")
    untraced = aegis.simulate(lp, out=tmp_path / "u", trace=False)
    memory = aegis.simulate(lp)
    assert traced.trace == tmp_path / "t" / "trace.jsonl"
    assert untraced.trace is None and memory.trace is None
    xlabel = aegis.plot_gantt(traced, first_ms=40).axes[0].get_xlabel()
    assert "each dispatch" in xlabel
    mixed = aegis.plot_gantt({"t": traced, "m": memory}, first_ms=40).axes[0].get_xlabel()
    assert "dispatches in t, whole jobs in the others" in mixed


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: aegis.simulate(DOC, seed=-1), r"seed must be an integer >= 0, got -1"),
        (lambda: aegis.simulate(DOC, seed=1.5), r"seed must be an integer >= 0, got 1\.5"),
        (lambda: aegis.execute(DOC, backend="mock", seed=True), r"seed must be .* got True"),
        (lambda: aegis.simulate(DOC, exec_time="fast"), r"unknown execution-time mode 'fast'"),
        (lambda: aegis.execute(DOC, backend="gpu9"), r"unknown backend 'gpu9'"),
        (lambda: aegis.execute(DOC, backend="mock", host="max"), r"unknown host tuning 'max'"),
        (lambda: aegis.plot_gantt(aegis.simulate(DOC), first_ms=0), r"must be a number of ms > 0"),
    ],
)  # fmt: skip
def test_bad_options_are_input_errors_that_say_which(call: Any, message: str) -> None:
    with pytest.raises(aegis.InputError, match=message):
        call()


def test_a_seed_gives_the_run_it_names() -> None:
    doc = {**DOC, "tasks": [{**DOC["tasks"][0], "arrival": "sporadic", "slack_ms": 5}]}
    a, b = aegis.simulate(doc, seed=3), aegis.simulate(doc, seed=3)
    c = aegis.simulate(doc, seed=4)
    pd.testing.assert_frame_equal(a.jobs, b.jobs)
    assert a.summary["seed"] == 3 and not a.jobs["release_ns"].equals(c.jobs["release_ns"])


def test_reading_a_results_folder_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    """A FIFO at summary.json or jobs.csv is refused (regular files only), never waited on."""
    import os

    for name in ("summary.json", "jobs.csv"):
        d = tmp_path / name.split(".")[0]
        d.mkdir()
        if name == "jobs.csv":
            (d / "summary.json").write_text('{"tasks": []}')
        os.mkfifo(d / name)
        with pytest.raises(aegis.InputError, match=rf"{name.replace('.', '[.]')}: .*FIFO"):
            aegis.read(d)
