"""Memory planning (aegis_core.memory) against the worked examples of docs/THEORY.md (§planners,
§sharing), randomized plans, Scenario 3 (docs/CONTRACTS.md §targets) and ``aegis memory``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from aegis_core.graph.zoo import build_model
from aegis_core.memory import planner, sharing
from aegis_core.memory.planner import ModelPlan, ModelUsage, Usage
from aegis_core.model.errors import InputError, InternalError
from aegis_core.model.scenario import load_scenario
from aegis_core.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = [Usage("t0", 64, 0, 1), Usage("t1", 32, 0, 2), Usage("t2", 48, 1, 3),
           Usage("t3", 16, 2, 3), Usage("t4", 64, 3, 4), Usage("t5", 8, 4, 4)]  # fmt: skip
OPTIMAL = {"t2": 0, "t3": 48, "t0": 48, "t4": 64, "t1": 112, "t5": 0}


def test_reference_example_bounds_and_greedy_plans() -> None:
    assert planner.breadths(EXAMPLE) == [96, 144, 96, 128, 72]
    assert planner.lower_bound(EXAMPLE) == 144
    by_size = planner.greedy_by_size(EXAMPLE)
    assert by_size == {"t0": 0, "t4": 0, "t2": 64, "t1": 112, "t3": 144, "t5": 64}
    assert planner.arena_size(EXAMPLE, by_size) == 160
    assert planner.arena_size(EXAMPLE, planner.greedy_by_breadth(EXAMPLE)) == 160
    planner.verify(EXAMPLE, OPTIMAL, 144)  # docs/THEORY.md's optimal layout is valid
    plan = planner.plan_model(ModelUsage("A", tuple(EXAMPLE)))
    # the multi-order planner finds the optimal 144 where both TFLite heuristics
    # stop at 160
    assert (plan.naive, plan.size, plan.lower_bound, plan.method) == (
        232, 144, 144, "greedy-multi-order",
    )  # fmt: skip
    assert plan.candidates == {
        "greedy-by-size": 160, "greedy-by-breadth": 160, "greedy-multi-order": 144,
    }  # fmt: skip


def test_reference_nested_example() -> None:
    """docs/THEORY.md §sharing: model A (six tensors, optimal plan 144), preempted only after op 2,
    where t2 and t3 occupy [0, 64); model B (shorter deadline, 100 B) stacks at 64: 164 B,
    against 144 serial and 244 private."""
    a = ModelUsage("A", tuple(EXAMPLE), boundaries=(3,), deadline_ns=20)
    b = ModelUsage("B", (Usage("x", 100, 0, 0),), deadline_ns=10)
    plan_a = ModelPlan("A", 144, "optimal", OPTIMAL, 232, 144)
    assert [planner.high_water(a, plan_a, k) for k in (1, 2, 3, 4)] == [144, 144, 64, 128]
    bases, shared, bound = sharing._nested([a, b], [plan_a, planner.plan_model(b)])
    assert (bases, shared) == ({"A": 0, "B": 64}, 164)
    assert bound == 164  # 64 B live across the boundary + B's 100
    # end to end: the planner puts A's boundary-crossing tensors low by itself
    plan = sharing.plan_models([a, b], "nested")
    assert (plan.bases, plan.shared_bytes) == ({"A": 0, "B": 64}, 164)
    assert plan.models[0].method == "boundary-first"


def test_verify_catches_overlap_and_out_of_arena() -> None:
    with pytest.raises(InternalError, match="live together and overlap"):
        planner.verify(EXAMPLE, {**OPTIMAL, "t3": 40}, 160)
    with pytest.raises(InternalError, match="outside the arena"):
        planner.verify(EXAMPLE, OPTIMAL, 100)


def _random_tensors(rng: random.Random, n_ops: int) -> list[Usage]:
    """DNN-like: each op produces one tensor read by the next op and, sometimes, a later one
    (skip connections); sizes vary by 16x."""
    out = []
    for i in range(n_ops):
        last = min(n_ops - 1, i + 1 + (rng.randrange(6) if rng.random() < 0.2 else 0))
        out.append(Usage(f"o{i}", rng.choice([1, 2, 4, 8, 16]) * 1024 * rng.randint(1, 4), i, last))
    return out


def test_random_plans_are_valid_and_between_the_bounds() -> None:
    rng = random.Random(7)
    for _ in range(200):
        tensors = [Usage(f"t{i}", rng.randint(1, 1000), a := rng.randint(0, 30),
                         a + rng.randint(0, 8)) for i in range(rng.randint(1, 40))]  # fmt: skip
        for plan in planner.PLANNERS.values():
            offsets = plan(tensors, rng.choice([1, 64]))
            size = planner.arena_size(tensors, offsets)
            planner.verify(tensors, offsets, size)
            assert (
                planner.lower_bound(tensors)
                <= size
                <= sum(planner.align(t.size, 64) for t in tensors)
            )


def test_serial_sharing_of_random_three_model_sets_is_near_the_bound() -> None:
    """Within 10 % of the lower bound on every set (greedy by size alone: up to +43 %)."""
    rng = random.Random(11)
    gaps = []
    for _ in range(100):
        usages = [ModelUsage(f"m{j}", tuple(_random_tensors(rng, rng.randint(10, 60))))
                  for j in range(3)]  # fmt: skip
        plan = sharing.plan_models(usages, "serial")
        assert plan.shared_bytes == max(p.size for p in plan.models)
        assert plan.lower_bound_bytes <= plan.shared_bytes <= plan.isolated_bytes
        gaps.append(plan.shared_bytes / plan.lower_bound_bytes - 1)
    assert max(gaps) <= 0.10
    assert sorted(gaps)[50] == 0.0


def test_interleaved_models_never_overlap() -> None:
    """nested sharing: a job of a shorter-deadline task, placed at its base, never touches the
    bytes that any longer-deadline task keeps live across one of its preemption points."""
    rng = random.Random(3)
    for _ in range(50):
        usages = []
        for j in range(rng.randint(2, 4)):
            ts = tuple(_random_tensors(rng, rng.randint(5, 30)))
            n = max(t.last for t in ts) + 1
            bounds = tuple(sorted(rng.sample(range(1, n), min(2, n - 1))))
            usages.append(ModelUsage(f"m{j}", ts, boundaries=bounds,
                                     deadline_ns=rng.choice([5, 10, 20, 40])))  # fmt: skip
        plan = sharing.plan_models(usages, "nested")
        plans = {p.name: p for p in plan.models}
        for i in usages:
            for j in usages:
                if (j.deadline_ns or 0) >= (i.deadline_ns or 0):
                    continue  # j cannot preempt i
                pi, pj = plans[i.name], plans[j.name]
                bi, bj = plan.bases[i.name], plan.bases[j.name]
                for b in i.boundaries or ():
                    kept = [(bi + pi.offsets[t.name], t.size) for t in i.tensors
                            if t.first < b <= t.last]  # fmt: skip
                    for t in j.tensors:
                        lo = bj + pj.offsets[t.name]
                        assert all(lo >= o + s or lo + t.size <= o for o, s in kept)
        assert plan.shared_bytes >= plan.lower_bound_bytes


def test_concurrent_mode_stacks_everything() -> None:
    usages = [ModelUsage("a", (Usage("x", 100, 0, 1),)), ModelUsage("b", (Usage("y", 50, 0, 0),))]
    plan = sharing.plan_models(usages, "concurrent")
    assert plan.bases == {"a": 0, "b": 100} and plan.shared_bytes == 150
    assert plan.reduction == 0.0 and plan.lower_bound_bytes == 150


def test_graph_usage_keeps_weights_and_input_out_of_the_arena() -> None:
    g = build_model("tiny_cnn")
    u = planner.usage_of(g)
    assert u.weights_bytes == g.weights_bytes
    assert u.inputs_bytes == g.tensors[g.input].nbytes
    assert sum(t.size for t in u.tensors) + u.inputs_bytes == g.activation_bytes
    assert all(t.name != g.input for t in u.tensors)


def test_scenario_3_reduction(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "scenarios" / "memory.yaml"
    scenario = load_scenario(path)
    # the models' activations alone (the planner's quality): 42.1 % less than isolated
    pure = [planner.usage_of(build_model(t.model or "", t.batch, t.input_shape), t.name)
            for t in scenario.tasks]  # fmt: skip
    assert sharing.plan_models(pure, "serial", planner.ALIGN).reduction >= 0.40
    # what the executor allocates (kernel scratch included), the one usage path every
    # consumer reads: 34.8 % less, at the lower bound
    plan = sharing.ScenarioMemory.of(scenario).plan()
    print(f"isolated {plan.isolated_bytes}, shared {plan.shared_bytes}, "
          f"bound {plan.lower_bound_bytes}, reduction {plan.reduction:.3f}")  # fmt: skip
    assert plan.reduction > 0.15  # the bar of docs/CONTRACTS.md §targets
    assert plan.shared_bytes == plan.lower_bound_bytes
    capsys.readouterr()
    assert main(["memory", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out)[:5] == ["isolated_bytes", "shared_bytes", "lower_bound_bytes", "reduction",
                             "weights_bytes"]  # fmt: skip
    assert out["shared_bytes"] == plan.shared_bytes
    assert out["reduction"] == pytest.approx(1 - out["shared_bytes"] / out["isolated_bytes"])


def test_cli_memory_table_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "arena.png"
    assert main(["memory", str(ROOT / "scenarios" / "memory.yaml"), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("memory plan · serial sharing · 3 models")
    assert "reduction 34.8%, 0.0% above the lower bound" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_memory_usage_file_gives_assignments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"models": [
        {"name": "m1", "tensors": [{"name": t.name, "size": t.size, "first": t.first,
                                    "last": t.last} for t in EXAMPLE]},
        {"name": "m2", "tensors": [{"name": "x", "size": 100, "first": 0, "last": 0}]},
    ]}  # fmt: skip
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(data))
    assert main(["memory", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # docs/THEORY.md §sharing: serial 144, private arenas 244
    assert (out["isolated_bytes"], out["shared_bytes"], out["lower_bound_bytes"]) == (244, 144, 144)
    m1 = out["models"][0]
    offsets = {a["tensor"]: a["offset"] for a in m1["assignments"]}
    planner.verify(EXAMPLE, offsets, 144)
    assert {a["tensor"]: a["size"] for a in m1["assignments"]} == {t.name: t.size for t in EXAMPLE}
    data["interleave"] = True
    path.write_text(json.dumps(data))
    assert main(["memory", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shared_bytes"] == 244 and out["models"][1]["assignments"][0]["offset"] == 144


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected an object with a 'models' list"),
        ({"models": [{"tensors": []}]}, "models[0]: needs a 'name'"),
        (
            {
                "models": [
                    {"name": "m", "tensors": [{"name": "t", "size": -1, "first": 0, "last": 0}]}
                ]
            },
            "field 'size'",
        ),
        (
            {
                "models": [
                    {"name": "m", "tensors": [{"name": "t", "size": 1, "first": 3, "last": 1}]}
                ]
            },
            "first (3) is after last (1)",
        ),
        ({"models": [], "interleave": "yes"}, "field 'interleave'"),
    ],
)
def test_cli_memory_bad_usage_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, message: str
) -> None:
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(data))
    assert main(["memory", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_memory_other_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such tensor-usage file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["memory", str(tmp_path / "bad.json")]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    s = tmp_path / "s.yaml"
    s.write_text("name: x\ntasks:\n  - {name: a, period_ms: 10, wcet_ms: 1}\n")
    assert main(["memory", str(s)]) == 2
    assert "no task has a model" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown sharing mode"):
        sharing.plan_models([], "parallel")


# ----------------------------------------------------------------------------- admission


def _budget_scenario(**extra: object) -> dict[str, object]:
    return {
        "name": "budgets",
        "tasks": [
            {"name": "small", "model": "tiny_cnn", "period_ms": 10, "wcet_ms": 1},
            {"name": "big", "model": "resnet18", "period_ms": 40, "wcet_ms": 4},
            {"name": "plain", "period_ms": 20, "wcet_ms": 1},
        ],
        **extra,
    }


def test_task_over_its_memory_budget_is_rejected_with_that_reason() -> None:
    from aegis_core.analysis.admission import admit
    from aegis_core.model.scenario import parse_scenario

    data = _budget_scenario()
    data["tasks"][1]["budget"] = {"memory_mb": 32}  # type: ignore[index]
    adm = admit(parse_scenario(data))
    small, big, plain = adm.tasks
    assert small.admitted and plain.admitted and not big.admitted
    assert big.test.startswith("memory")
    g = build_model("resnet18")
    own = (
        g.weights_bytes
        + g.tensors[g.input].nbytes
        + planner.plan_model(planner.usage_of(g, executor=True), planner.ALIGN).size
    )  # what the executor allocates: its planned arena holds the kernels' scratch too
    assert big.memory_bytes == own
    from aegis_exec.arena import layout
    from aegis_exec.backends import TaskWork

    lay = layout([TaskWork(0, "big", g, (range(len(g.ops)),), (1,))], "np-edf", [None])
    assert own == g.weights_bytes + g.tensors[g.input].nbytes + lay.nbytes
    assert big.reason == (
        f"planned memory {own / 2**20:.3f} MiB (weights, input and activation arena with "
        f"scratch) "
        f"> its budget 32.000 MiB"
    )
    assert plain.memory_bytes == 0


def test_task_whose_addition_exceeds_the_device_is_rejected() -> None:
    from aegis_core.analysis.admission import admit
    from aegis_core.model.scenario import parse_scenario

    s = parse_scenario(_budget_scenario(gpu={"memory_mb": 40}))
    adm = admit(s)
    assert [v.admitted for v in adm.tasks] == [True, False, True]
    assert "> gpu.memory_mb 40.000 MiB" in adm.tasks[1].reason
    m = sharing.ScenarioMemory.of(s)
    assert m.total_bytes([0, 2]) <= 40 << 20 < m.total_bytes([0, 1])
    # with room for both, serial sharing counts one activation arena, not two
    both = admit(parse_scenario(_budget_scenario(gpu={"memory_mb": 1024})))
    assert all(v.admitted for v in both.tasks)
    assert m.total_bytes([0, 1]) < m.task_bytes(0) + m.task_bytes(1)


def test_no_budgets_no_memory_planning() -> None:
    from aegis_core.analysis.admission import MEMORY_TEST, admit
    from aegis_core.model.scenario import parse_scenario

    s = parse_scenario(_budget_scenario())
    adm = admit(s)
    assert all(v.memory_bytes is None and v.test != MEMORY_TEST for v in adm.tasks)
    assert adm.memory is not None  # the plan is still reported (admit --json)
