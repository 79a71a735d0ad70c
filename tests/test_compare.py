"""``aegis compare``: sim and exec side by side with the bound, reused when current."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.run.testing import RunJob, unexplained_misses
from aegis_core.tools.cli import main
from aegis_core.tools.compare import COLUMNS, _row, compare, order_statement
from aegis_core.tools.explain import load, verify

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000


def test_compare_numpy_writes_table_and_plots(tmp_path: Path) -> None:
    s = replace_scenario(load_scenario(ROOT / "scenarios" / "three_models_cpu.yaml"),
                         duration_ns=300 * MS)  # fmt: skip
    c = compare(s, backend="numpy", results=tmp_path)
    assert c.reused == {"sim": False, "exec": False}
    assert [r["task"] for r in c.rows] == ["detector", "classifier", "transformer"]
    with open(c.out_dir / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    for name in ("cdf.png", "gantt.png"):
        assert (c.out_dir / name).read_bytes()[:4] == b"\x89PNG"
    # the simulator replays the declared WCETs: bound >= sim max is the analysis's promise,
    # on any host; exec against sim is the host's speed (benchmarks/bench_wall.py measures it)
    for r in c.rows:
        assert r["admitted"] and r["sim_misses"] == 0, r
        assert r["bound_ns"] >= r["sim_max_ns"] > 0, r
        assert r["bound_ge_sim_ge_exec"] == (r["sim_max_ns"] >= r["exec_max_ns"]), r
    assert c.ordered == all(r["bound_ge_sim_ge_exec"] for r in c.rows)
    # the executed run: every decision re-derives, and every miss has a recorded cause
    records = load(c.exec_dir)
    assert verify(records).ok
    with open(c.exec_dir / "jobs.csv", newline="") as f:
        jobs = [RunJob.row(r) for r in csv.DictReader(f)]
    assert sum(j.missed for j in jobs) == sum(r["exec_misses"] for r in c.rows)
    assert all(j.end_ns is not None for j in jobs)  # every released job ran to its end
    overran = {r["job"] for r in records if r["kind"] == "overrun"}
    bounds = {r["task"]: r["bound_ns"] for r in c.rows}
    assert unexplained_misses(jobs, overran, bounds) == []
    again = compare(s, backend="numpy", results=tmp_path)
    assert again.reused == {"sim": True, "exec": True} and again.rows == c.rows
    longer = replace_scenario(s, duration_ns=400 * MS)
    assert compare(longer, backend="numpy", results=tmp_path).reused == {"sim": False,
                                                                       "exec": False}  # fmt: skip
    assert compare(longer, backend="numpy", results=tmp_path, rerun=True).reused["sim"] is False
    # results of another run in the same folders are never taken for this one
    from aegis_core.tools.runner import run_scenario

    run_scenario(replace_scenario(longer, policy=get_policy("unscheduled")), "sim",
                 out_dir=c.sim_dir.parent.parent / longer.name / "sim", perfetto=False)  # fmt: skip
    assert compare(longer, backend="numpy", results=tmp_path).reused["sim"] is False


def test_the_order_check() -> None:
    s = {"name": "a", "admitted": True, "bound_ns": 10, "misses": 0,
         "response_ns": {"p99": 8, "max": 9}}  # fmt: skip
    e = {"name": "a", "misses": 0, "response_ns": {"p99": 5, "max": 7}, "exec_ns": {"cv": 0.1}}
    assert _row(s, e)["bound_ge_sim_ge_exec"] is True
    assert _row(s, e)["exec_minus_sim_p99_ns"] == -3
    e["response_ns"] = {"p99": 9, "max": 10}  # exec above sim: the order fails
    assert _row(s, e)["bound_ge_sim_ge_exec"] is False
    assert _row({**s, "bound_ns": None}, e)["bound_ge_sim_ge_exec"] is False


def test_the_order_statement_attributes_each_exceedance() -> None:
    s = {"name": "detector", "admitted": True, "bound_ns": 10, "misses": 0, "exceeded": 0,
         "unattributed": 0, "causes": {}, "response_ns": {"max": 9}}  # fmt: skip
    e = {**s, "response_ns": {"max": 7}}
    assert order_statement(s, e) == "detector: bound >= sim >= exec held"
    late = {**e, "response_ns": {"max": 12}, "exceeded": 3, "unattributed": 0,
            "causes": {"release-lag": 2, "overrun": 1}}  # fmt: skip
    assert order_statement(s, late) == (
        "exec above bound for detector: 3 jobs, all attributed (2 release-lag, 1 overrun)"
    )
    bug = {**late, "unattributed": 1, "causes": {"release-lag": 2}}
    assert order_statement(s, bug) == (
        "exec above bound for detector: 3 jobs, 1 unattributed (analysis bug), "
        "2 attributed (2 release-lag)"
    )
    assert order_statement(s, {**e, "response_ns": {"max": 10}}) == (
        "detector: within the bound, exec above sim (max 0.000 > 0.000 ms)"
    )
    assert order_statement({**s, "bound_ns": None}, e) == (
        "detector: no analytical bound (nothing promised)"
    )
    assert order_statement({**s, "admitted": False}, e) == "detector: rejected"


def test_cli_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "scenarios" / "tiny_gpu.yaml"
    code = main(["compare", str(path), "--backend", "mock", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == (0 if out.splitlines()[-1].endswith("held for every admitted task") else 1)
    assert out.splitlines()[0].startswith("task") and "cnn" in out and "bound>=sim>=exec" in out
    lines = out.splitlines()
    for task in ("cnn", "mlp"):  # one order statement per task (the mock host may be slow)
        said = [ln for ln in lines if ln.startswith(f"{task}: ") or f" for {task}: " in ln]
        assert len(said) == 1, out
    assert (tmp_path / "tiny_gpu" / "compare" / "compare.csv").is_file()


# ----------------------------------------------------------------- compare --policies

VALUE = ROOT / "scenarios" / "value.yaml"
BASELINES = ["np-edf", "fifo", "unscheduled", "stream-priority"]


def test_compare_policies_side_by_side(tmp_path: Path) -> None:
    from aegis_core.tools.compare import (
        POLICY_COLUMNS,
        compare_policies,
        format_policies,
        load_policy_rows,
    )
    from aegis_core.tools.runner import run_scenario

    s = replace_scenario(load_scenario(VALUE), duration_ns=700 * MS)
    pc = compare_policies(s, BASELINES, backend="mock", results=tmp_path)
    assert pc.policies == tuple(BASELINES) and pc.backend == "mock"
    assert [(r["policy"], r["task"]) for r in pc.rows] == [
        (p, t) for p in BASELINES for t in ("detector", "classifier", "transformer")
    ]
    # sim columns: exactly the simulated runs of each policy (deterministic)
    for p in BASELINES:
        sim = run_scenario(replace_scenario(s, policy=get_policy(p)), "sim", write=False)
        want = {t["name"]: (t["misses"], t["response_ns"]["p99"]) for t in sim.summary["tasks"]}
        got = {r["task"]: (r["sim_misses"], r["sim_p99_ns"]) for r in pc.rows if r["policy"] == p}
        assert got == want, p
    assert pc.misses("np-edf") == 0 and all(pc.misses(p) > 0 for p in BASELINES[1:])
    # exec: every policy ran on the mock but stream-priority, which it refuses, with the reason
    assert list(pc.refused) == ["stream-priority"]
    assert "needs CUDA stream priorities" in pc.refused["stream-priority"]
    for r in pc.rows:
        ran = r["policy"] != "stream-priority"
        assert (r["exec_misses"] is not None) == ran and (r["exec_jobs"] == r["sim_jobs"]) == ran
        assert r["admitted"] and (r["bound_ns"] is not None) == (r["policy"] == "np-edf")
        if r["sim_jobs"]:
            assert r["sim_miss_ratio"] == round(r["sim_misses"] / r["sim_jobs"], 6)
    assert pc.misses("stream-priority", "exec") is None
    with open(pc.out_dir / "policies.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == POLICY_COLUMNS
    assert load_policy_rows(pc.out_dir / "policies.csv") == pc.rows
    assert (pc.out_dir / "policies.png").read_bytes()[:4] == b"\x89PNG"
    text = format_policies(pc)
    assert text.splitlines()[0].split()[:3] == ["task", "policy", "deadline"]
    assert "refused stream-priority" in text and len(text.splitlines()) == 12 + 4
    again = compare_policies(s, BASELINES, backend="mock", results=tmp_path)
    assert all(v == {"sim": True, "exec": True} for k, v in again.reused.items()
               if k != "stream-priority")  # fmt: skip
    assert again.reused["stream-priority"] == {"sim": True}
    # the plain comparison's outputs are untouched by it
    assert not (pc.out_dir / "compare.csv").exists()


def test_compare_policies_bad_names(tmp_path: Path) -> None:
    from aegis_core.model.errors import InputError
    from aegis_core.tools.compare import compare_policies

    s = load_scenario(VALUE)
    with pytest.raises(InputError, match="unknown policy 'edf'"):
        compare_policies(s, ["np-edf", "edf"], backend="mock", results=tmp_path)
    with pytest.raises(InputError, match="distinct policy names"):
        compare_policies(s, ["fifo", "fifo"], backend="mock", results=tmp_path)


def test_cli_compare_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(VALUE), "--backend", "mock", "--results", str(tmp_path),
                 "--policies", "np-edf,fifo", "--duration-ms", "200"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("task") and "misses sim/exec-mock" in out
    assert (tmp_path / "value" / "compare" / "policies.csv").is_file()
    assert (tmp_path / "value" / "policies" / "fifo" / "exec-mock" / "summary.json").is_file()


def _onnx_mlp(folder: Path, seed: int) -> Path:
    """A two-layer MLP as an exporter writes it (dynamic batch), its weights drawn by ``seed``."""
    import numpy as np
    from onnx import helper
    from onnx_util import init, save

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]  # fmt: skip
    inits = [init(rng, "w1", 8, 16), init(rng, "b1", 8), init(rng, "w2", 4, 8), init(rng, "b2", 4)]
    return save(folder, nodes, inits, ["N", 16], ["N", 4])


def _model_scenario(folder: Path, model: str, input_shape: bool) -> Path:
    task = f"model: {model}, " + ("input_shape: [16], " if input_shape else "")
    path = folder / "m.yaml"
    path.write_text(f"name: m\nduration_ms: 30\ntasks:\n  - {{name: a, {task}period_ms: 10, "
                    "deadline_ms: 100, wcet_ms: 5}\n", encoding="utf-8")  # fmt: skip
    return path


def test_a_model_file_edited_in_place_changes_the_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from aegis_core.model.errors import ScenarioError
    from aegis_core.tools.runner import run_fingerprint

    onnx_file = _onnx_mlp(tmp_path, 0)
    scenario = load_scenario(_model_scenario(tmp_path, "net.onnx", True))
    first = run_fingerprint(scenario, 0, True, "sample")
    assert run_fingerprint(scenario, 0, True, "sample") == first
    c = compare(scenario, backend="numpy", results=tmp_path / "r")
    assert c.reused == {"sim": False, "exec": False}
    assert compare(scenario, backend="numpy", results=tmp_path / "r").reused["exec"] is True
    _onnx_mlp(tmp_path, 1)  # the same file, other weights: never the run that was
    assert run_fingerprint(scenario, 0, True, "sample") != first
    assert compare(scenario, backend="numpy", results=tmp_path / "r").reused == {
        "sim": False, "exec": False}  # fmt: skip
    # a graph file and its npz (aegis import -o): the weights' digest is in the fingerprint
    graph_file = tmp_path / "g.json"
    argv = ["import", str(onnx_file), "--input-shape", "2x16", "-o", str(graph_file)]
    assert main(argv) == 0
    graph_scenario = load_scenario(_model_scenario(tmp_path, "g.json", False))
    before = run_fingerprint(graph_scenario, 0, True, "sample")
    _onnx_mlp(tmp_path, 2)
    assert main(argv) == 0  # new weights, the graph file names their new digest
    capsys.readouterr()
    after = run_fingerprint(graph_scenario, 0, True, "sample")
    assert after != before
    npz = tmp_path / "g.weights.npz"
    data = bytearray(npz.read_bytes())
    data[-100] ^= 1
    npz.write_bytes(bytes(data))  # edited behind the graph file's back
    with pytest.raises(ScenarioError, match="weights file changed since graph"):
        run_fingerprint(graph_scenario, 0, True, "sample")  # refused, never taken as current
    from aegis_core.tools.runner import _model_digest

    builtin = load_scenario(ROOT / "scenarios" / "three_models_cpu.yaml")
    assert [_model_digest(builtin, t) for t in builtin.tasks] == [None] * 3  # names say it all
