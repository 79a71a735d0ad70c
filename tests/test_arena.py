"""The executor's planned activation arena (aegis_exec.arena): views at planned offsets,
numerically identical results, the debug overlap check, and what the run reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from aegis_core.graph.zoo import build_model
from aegis_core.model.errors import InternalError
from aegis_core.model.scenario import load_scenario, parse_scenario
from aegis_core.run.plan import RunPlan
from aegis_core.tools.runner import run_scenario
from aegis_exec import arena
from aegis_exec.backends import TaskWork
from aegis_exec.engine import ExecEngine, task_work
from aegis_exec.kernels import CompiledGraph

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    ("tiny_cnn", None),
    ("mlp", (64,)),
    ("bert_tiny", (16, 128)),
    ("mobilenet_v2", (3, 32, 32)),
]


def _work(models: list[tuple[str, tuple[int, ...] | None]]) -> list[TaskWork]:
    out = []
    for i, (name, shape) in enumerate(models):
        g = build_model(name, 1, shape)
        out.append(TaskWork(i, f"t{i}", g, (range(len(g.ops)),), (1,)))
    return out


def _placed(work: list[TaskWork], policy: str) -> tuple[arena.Layout, dict[int, CompiledGraph]]:
    lay = arena.layout(work, policy, [10**7 * (i + 1) for i in range(len(work))])
    buf = arena.arena_buffer(np, lay.nbytes)
    graphs = {
        w.index: CompiledGraph(w.graph, np, seed=w.index,
                               placement=arena.Placement(buf, lay.offsets[w.index], np.float32))
        for w in work
    }  # fmt: skip
    return lay, graphs


def test_planned_views_give_identical_results_in_a_shared_arena() -> None:
    """Every model shares one serial arena (all at base 0): running them in turn, each
    output is bit-identical to the same model on buffers of its own."""
    work = _work(MODELS)
    lay, placed = _placed(work, "np-edf")
    assert lay.plan.mode == "serial" and set(lay.plan.bases.values()) == {0}
    alone = {w.index: CompiledGraph(w.graph, np, seed=w.index) for w in work}
    for g in alone.values():
        g.run()
    for _ in range(2):  # twice: the others' runs in between overwrite the shared bytes
        for i, g in placed.items():
            g.run()
            assert np.array_equal(g.output, alone[i].output)
    assert arena.check(lay, placed) == sum(len(u.tensors) for u in lay.usages.values())
    assert all(g.nbytes < alone[i].nbytes for i, g in placed.items())  # activations moved out


@pytest.mark.parametrize("policy", ["unscheduled", "lp-edf"])
def test_concurrent_and_nested_layouts_pass_the_address_check(policy: str) -> None:
    work = _work(MODELS[:3])
    if policy == "lp-edf":  # the longest-deadline task preemptible at two boundaries
        g = work[2].graph
        assert g is not None
        work[2] = dataclasses.replace(work[2], ranges=tuple(g.chunks(3)))
    lay, placed = _placed(work, policy)
    assert arena.check(lay, placed) > 0
    if policy == "unscheduled":
        assert lay.plan.shared_bytes >= sum(p.size for p in lay.plan.models)
    else:
        assert lay.plan.shared_bytes < lay.plan.isolated_bytes


def test_the_address_check_catches_an_overlap() -> None:
    work = _work(MODELS[:2])
    lay, placed = _placed(work, "np-edf")
    bad = dataclasses.replace(lay.plan, mode="concurrent")  # both at base 0 yet concurrent
    with pytest.raises(InternalError, match="arena overlap"):
        arena.check(dataclasses.replace(lay, plan=bad), placed)
    inside = dict(lay.offsets[0])
    u = lay.usages[0]
    a, b = next((x, y) for x in u.tensors for y in u.tensors if x is not y and x.overlaps(y))
    inside[b.name] = inside[a.name]  # two tensors live together, one address
    buf = arena.arena_buffer(np, lay.nbytes)
    graph = work[0].graph
    assert graph is not None
    g = CompiledGraph(graph, np, placement=arena.Placement(buf, inside, np.float32))
    with pytest.raises(InternalError, match="arena overlap"):
        arena.check(dataclasses.replace(lay, usages={0: u}), {0: g})


@pytest.mark.parametrize("scenario", ["memory", "lp_edf", "unscheduled", "tiny_gpu"])
def test_exec_numpy_runs_in_the_planned_arena(scenario: str) -> None:
    s = load_scenario(ROOT / "scenarios" / f"{scenario}.yaml")
    s = dataclasses.replace(s, duration_ns=60_000_000)
    summary = run_scenario(s, ExecEngine("numpy", check_memory=True), write=False).summary
    plan = summary["exec"]["memory_plan"]
    assert summary["exec"]["memory_check"] > 0
    expected = {"memory": "serial", "lp_edf": "nested", "unscheduled": "concurrent",
                "tiny_gpu": "serial"}[scenario]  # fmt: skip
    assert plan["sharing"] == expected
    assert plan["lower_bound_bytes"] <= plan["arena_bytes"] <= plan["isolated_bytes"]
    if scenario == "memory":  # activations + im2col scratch: less shareable than activations
        assert plan["reduction"] > 0.15
    assert all(t["failed"] == 0 for t in summary["tasks"])


def test_memory_plan_off_gives_every_buffer_its_own_allocation() -> None:
    s = parse_scenario({"name": "m", "duration_ms": 30, "tasks": [
        {"name": "a", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 5}]})  # fmt: skip
    on = run_scenario(s, ExecEngine("numpy"), write=False).summary["exec"]
    off = run_scenario(s, ExecEngine("numpy", memory_plan=False), write=False).summary["exec"]
    assert off["memory_plan"] is None and on["memory_plan"]["arena_bytes"] > 0
    assert on["memory"]["buffers_bytes"] < off["memory"]["buffers_bytes"]


def test_layout_follows_the_plan_chunks() -> None:
    s = load_scenario(ROOT / "scenarios" / "lp_edf.yaml")
    from aegis_core.analysis.admission import admit

    plan = RunPlan.build(s, admission=admit(s))
    work = task_work(plan, "numpy")
    lay = arena.layout(work, "lp-edf", [t.deadline_ns for t in s.tasks])
    bounds = {u.name: u.boundaries for u in lay.usages.values()}
    assert bounds["planner"] == tuple(r.start for r in work[2].ranges[1:])
    assert len(bounds["planner"] or ()) == len(plan.chunks[2]) - 1 == 1
    assert bounds["safety"] == () and bounds["tracker"] == ()
