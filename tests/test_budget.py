"""Task budgets decided once (aegis_core.budget), policies as data (aegis_core.model.policy) and the
one memory path (aegis_core.memory.sharing.ScenarioMemory): the rule step by step, its invariants,
and every consumer reading the same figures."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_core.analysis.admission import admit
from aegis_core.budget import (
    SCALED_NOTE,
    WcetFrom,
    budgets,
    split_in_proportion,
    task_budget,
    with_chunks,
)
from aegis_core.model import policy as policies
from aegis_core.model.errors import ScenarioError
from aegis_core.model.scenario import load_scenario, parse_scenario, replace_scenario
from aegis_core.run.plan import RunPlan
from aegis_core.run.testing import make_profile
from aegis_core.tools.cli import main
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000
SAMPLES = [int(3 * MS + 20_000 * i + (i * 7919) % 50_000) for i in range(60)]


def one(task: dict[str, Any], policy: str = "np-edf") -> Any:
    return parse_scenario({"name": "b", "policy": policy, "tasks": [task]})


# ----------------------------------------------------------------------------- the rule


def test_step_1_the_wcet_comes_from_wcet_ms_then_the_profile_then_the_kernels() -> None:
    prof = make_profile(SAMPLES)
    declared = one({"name": "a", "period_ms": 10, "wcet_ms": 2})
    b = budgets(declared)[0]
    assert (b.wcet_ns, b.wcet_from, b.samples_ns, b.note) == (2 * MS, WcetFrom.WCET_MS, None, None)
    both = dataclasses.replace(declared.tasks[0], measured=prof)  # wcet_ms beside a profile
    assert task_budget(both, 0, policies.NP_EDF).wcet_ns == 2 * MS
    measured = dataclasses.replace(both, wcet_ns=None)
    b = task_budget(measured, 0, policies.NP_EDF)
    assert (b.wcet_ns, b.wcet_from) == (prof.wcet_ns, WcetFrom.PROFILE)
    assert b.samples_ns == tuple(SAMPLES)
    kernels = budgets(one({"name": "a", "period_ms": 10, "kernels_ms": [1, 2]}))[0]
    assert (kernels.wcet_ns, kernels.wcet_from) == (3 * MS, WcetFrom.KERNELS_MS)
    with pytest.raises(ScenarioError, match=r"task 'a': field 'wcet_ms': an execution time"):
        budgets(one({"name": "a", "period_ms": 10, "model": "mlp"}))


def test_step_2_and_3_kernels_are_the_chunk_chain_only_under_a_chunked_policy() -> None:
    task = {"name": "a", "period_ms": 10, "kernels_ms": [3, 2, 3]}
    lp, np_ = budgets(one(task, "lp-edf"))[0], budgets(one(task))[0]
    assert lp.kernels_ns == np_.kernels_ns == (3 * MS, 2 * MS, 3 * MS)
    assert lp.chunks_ns == lp.kernels_ns and np_.chunks_ns == (8 * MS,)
    merged = with_chunks([lp], [(5 * MS, 3 * MS)])[0]
    assert merged.chunks_ns == (5 * MS, 3 * MS) and merged.kernels_ns == lp.kernels_ns
    assert with_chunks([lp], [None])[0] is lp
    with pytest.raises(ValueError, match="do not sum to the WCET"):
        with_chunks([lp], [(5 * MS, 2 * MS)])


def test_a_profile_keeps_the_kernels_scaled_to_its_wcet() -> None:
    prof = make_profile(SAMPLES)
    s = one({"name": "a", "period_ms": 10, "kernels_ms": [3, 2, 3]}, "lp-edf")
    s = dataclasses.replace(s, tasks=(dataclasses.replace(s.tasks[0], measured=prof),))
    b = budgets(s)[0]
    assert b.wcet_from is WcetFrom.PROFILE and b.note == SCALED_NOTE
    assert sum(b.kernels_ns) == b.wcet_ns == prof.wcet_ns and len(b.kernels_ns) == 3
    assert b.kernels_ns == split_in_proportion(prof.wcet_ns, (3, 2, 3))
    assert admit(s).tasks[0].note == SCALED_NOTE


@given(
    total=st.integers(min_value=0, max_value=10**15),
    weights=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=12),
)
def test_split_in_proportion_is_exact_and_monotone(total: int, weights: list[int]) -> None:
    parts = split_in_proportion(total, weights)
    assert sum(parts) == total and len(parts) == len(weights)
    assert all(p >= 0 for p in parts)
    whole = sum(weights)
    for p, w in zip(parts, weights, strict=True):  # each part within 1 of its exact share
        assert abs(p * whole - total * w) <= whole


@given(wcet=st.integers(min_value=1, max_value=10**12))
def test_overrun_is_one_definition_per_job(wcet: int) -> None:
    b = dataclasses.replace(budgets(one({"name": "a", "period_ms": 10, "wcet_ms": 1}))[0],
                            wcet_ns=wcet)  # fmt: skip
    assert b.time_budget_ns == wcet
    assert not b.overran(wcet) and b.overran(wcet + 1)


def test_the_plan_scheduler_and_contexts_read_the_admitted_budgets() -> None:
    s = load_scenario(ROOT / "scenarios" / "lp_edf.yaml")
    adm = admit(s)
    plan = RunPlan.build(s, admission=adm)
    assert plan.budgets == adm.budgets
    assert plan.chunks[2] == adm.tasks[2].chunks_ns == (5 * MS, 3 * MS)
    result = run_scenario(s, "sim", write=False)
    assert [c["budget"]["time_ns"] for c in result.summary["contexts"]] == [
        b.wcet_ns for b in adm.budgets
    ]
    planner = [j for j in result.jobs if j.task == "planner"]
    assert planner and all(j.n_chunks == 2 for j in planner)


# ----------------------------------------------------------------------------- policies


def test_every_policy_carries_its_facts() -> None:
    for p in policies.POLICIES.values():
        assert policies.get_policy(p.name) is p and str(p) == p.name
        assert p.chunked == (p.analysis is policies.Analysis.LP_EDF)
        assert p.concurrent == (p.sharing is policies.Sharing.CONCURRENT)
        assert (p.patterns is policies.Patterns.NONE) == (p.analysis is policies.Analysis.NONE)
    assert policies.LP_EDF.sharing is policies.Sharing.NESTED


def test_the_scenario_validates_policy_names_against_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ScenarioError, match="field 'policy': must be one of np-edf, lp-edf"):
        one({"name": "a", "period_ms": 10, "wcet_ms": 1}, "edf")
    extra = dataclasses.replace(policies.FIFO, name="lifo", rule="lifo: test")
    monkeypatch.setitem(policies.POLICIES, "lifo", extra)
    assert one({"name": "a", "period_ms": 10, "wcet_ms": 1}, "lifo").policy is extra


def _policy_name_comparisons(path: Path) -> list[str]:
    names = set(policies.POLICIES)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            strings = {o.value for o in operands if isinstance(o, ast.Constant)}
            for o in operands:
                if isinstance(o, ast.Tuple | ast.List | ast.Set):
                    strings |= {e.value for e in o.elts if isinstance(e, ast.Constant)}
            if strings & names:
                found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if keys & names:
                found.append(f"{path.name}:{node.lineno} (a table keyed by policy name)")
    return found


def test_no_module_outside_the_policy_module_compares_policy_names() -> None:
    found = []
    for package in ("aegis_core", "aegis_sim", "aegis_exec"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name != "policy.py":
                found += _policy_name_comparisons(path)
    assert found == []


# ----------------------------------------------------------------------------- one memory path


def _arena(out: Path) -> int:
    summary = json.loads((out / "summary.json").read_text())
    return int(summary["exec"]["memory_plan"]["arena_bytes"])


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_admission_and_the_executor_plan_the_same_arena(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``aegis admit --json`` and an executed run's summary report the same arena bytes,
    for every scenario (a 1 ms run on numpy: the arena is planned before the first job)."""
    assert main(["admit", str(path), "--json"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    s = replace_scenario(load_scenario(path), duration_ns=1 * MS)
    run_scenario(s, ExecEngine("numpy"), out_dir=tmp_path, trace=False)
    assert doc["memory"]["arena_bytes"] == _arena(tmp_path)
    assert doc["memory"]["sharing"] == str(s.policy.sharing)


def test_the_perfetto_counter_and_aegis_memory_use_the_executor_sizing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """three_models: the activations counter peaks at the arena the executor allocates
    (serial sharing: the largest model's), and ``aegis memory`` reports that arena."""
    path = ROOT / "scenarios" / "three_models.yaml"
    s = load_scenario(path)
    run_scenario(s, "sim", out_dir=tmp_path / "sim")
    events = json.loads((tmp_path / "sim" / "trace.json").read_text())["traceEvents"]
    counter = [e for e in events if e.get("ph") == "C" and "activation" in e.get("name", "")]
    peak = max(max(e["args"].values()) for e in counter)
    assert main(["memory", str(path), "--json"]) == 0
    shared = json.loads(capsys.readouterr().out)["shared_bytes"]
    assert main(["admit", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory"]["arena_bytes"] == shared
    assert peak == shared


def test_kernels_must_match_a_declared_wcet_even_beside_a_profile(tmp_path: Path) -> None:
    """``wcet_ms`` wins over a profile, so ``kernels_ms`` must sum to it (never scaled)."""
    make_profile(SAMPLES, task="a", model="mlp").save(tmp_path / "a.json")
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: k\ntasks:\n  - {name: a, model: mlp, period_ms: 20, wcet_ms: 8,"
        " kernels_ms: [3, 3, 3, 3], profile: a.json}\n"
    )
    with pytest.raises(ScenarioError, match="field 'kernels_ms': kernels sum to 12000000 ns"):
        load_scenario(path)
    s = one({"name": "a", "period_ms": 20, "wcet_ms": 8})
    odd = dataclasses.replace(s.tasks[0], kernels_ns=(3 * MS, 3 * MS))  # built in code
    with pytest.raises(ScenarioError, match="kernels sum to 6000000 ns, wcet_ms is 8000000"):
        task_budget(odd, 0, policies.LP_EDF)


def test_the_memory_report_needs_the_graphs_only_when_budgets_do(tmp_path: Path) -> None:
    from aegis_core.graph.zoo import build_model

    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(build_model("tiny_cnn").to_dict()))
    doc = {"name": "g", "tasks": [{"name": "a", "model": str(graph), "period_ms": 10,
                                   "wcet_ms": 1}]}  # fmt: skip
    s = parse_scenario(doc)
    assert admit(s).memory is not None
    graph.unlink()  # a graph that cannot be read here any more
    assert admit(s).memory is None and admit(s).schedulable
    graph.write_text(json.dumps(build_model("tiny_cnn").to_dict()))
    gated = parse_scenario({**doc, "gpu": {"memory_mb": 64}})
    graph.unlink()
    with pytest.raises(ScenarioError, match="task 'a'"):
        admit(gated)
