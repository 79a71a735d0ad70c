"""Tensor-usage files (docs/CONTRACTS.md §memory-json) from a hostile user: bounded values,
reads and work; and the O(n log n) planner pieces against their quadratic references."""

from __future__ import annotations

import json
import os
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from aegis_core.memory import planner, report
from aegis_core.memory.planner import ModelUsage, Usage
from aegis_core.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "usage_example.json"


def _file(tmp_path: Path, data: Any, name: str = "usage.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _one(tensors: list[dict[str, Any]], name: str = "m") -> dict[str, Any]:
    return {"models": [{"name": name, "tensors": tensors}]}


def _refused(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    assert main(["memory", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"aegis: error: {path}"), err
    return err


def test_the_shipped_example_plans(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", str(EXAMPLE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in out["models"]] == ["encoder", "head"]
    assert out["mode"] == "serial" and out["shared_bytes"] == out["lower_bound_bytes"] == 147456
    usages, _ = report.read_usages(str(EXAMPLE))
    for u, m in zip(usages, out["models"], strict=True):
        planner.verify(u.tensors, {a["tensor"]: a["offset"] for a in m["assignments"]})


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "t", "size": 1, "first": 0, "last": (1 << 62) + 1}, "field 'last'"),
        ({"name": "t", "size": 10**30, "first": 0, "last": 0}, "field 'size'"),
        ({"name": "t", "size": 1, "first": -1, "last": 0}, "field 'first'"),
        ({"name": "t", "size": 1, "first": 0, "last": 1e12}, "field 'last'"),
        ({"name": "t", "size": True, "first": 0, "last": 0}, "field 'size'"),
        ({"name": "t", "size": "8", "first": 0, "last": 0}, "field 'size'"),
        ({"name": 7, "size": 8, "first": 0, "last": 0}, "field 'name'"),
    ],
)
def test_bad_values_name_the_file_and_the_field(
    tensor: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(capsys, _file(tmp_path, _one([tensor])))
    assert "models[0].tensors[0]" in err and message in err


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_is_refused(
    literal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps(_one([{"name": "t", "size": 1, "first": 0, "last": 0}]))
    err = _refused(capsys, _file(tmp_path, text.replace('"size": 1', f'"size": {literal}')))
    assert "not a valid tensor-usage file" in err


def test_a_duplicate_model_names_the_file_and_both_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = {"name": "t", "size": 1, "first": 0, "last": 0}
    data = {"models": [{"name": "a", "tensors": [t]}, {"name": "b", "tensors": [t]},
                       {"name": "a", "tensors": [t]}]}  # fmt: skip
    err = _refused(capsys, _file(tmp_path, data))
    assert "models[2]: field 'name': model 'a' is also models[0]" in err


def test_too_many_tensors_are_refused_before_any_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "MAX_USAGE_TENSORS", 10)
    tensors = [{"name": f"t{i}", "size": 1, "first": i, "last": i} for i in range(11)]
    err = _refused(capsys, _file(tmp_path, _one(tensors)))
    assert "11 tensors, more than the 10" in err


def test_non_regular_and_oversized_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(capsys, fifo)  # no writer: would block forever
    if Path("/dev/zero").exists():
        (tmp_path / "zero.json").symlink_to("/dev/zero")
        assert "not a regular file" in _refused(capsys, tmp_path / "zero.json")
    monkeypatch.setattr(report, "USAGE_FILE_LIMIT", 100)
    big = _file(tmp_path, _one([{"name": "t" * 200, "size": 1, "first": 0, "last": 0}]))
    assert "larger than 100 bytes" in _refused(capsys, big)


def test_far_op_indices_cost_what_near_ones_do(tmp_path: Path) -> None:
    """``last: 10**12`` once grew a list by op index: now the same plan in memory bounded by
    the number of tensors (ranks), whatever the indices."""
    rng = random.Random(1)
    near = [Usage(f"t{i}", rng.randint(1, 64) * 1024, i, i + rng.randint(1, 5)) for i in range(300)]
    far = [Usage(t.name, t.size, t.first * 10**10, t.last * 10**10) for t in near]
    tracemalloc.start()
    try:
        plan_far = planner.plan_model(ModelUsage("m", tuple(far)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    plan_near = planner.plan_model(ModelUsage("m", tuple(near)))
    assert dict(plan_far.offsets) == dict(plan_near.offsets)
    assert (plan_far.size, plan_far.lower_bound) == (plan_near.size, plan_near.lower_bound)
    assert peak < 32 << 20
    path = _file(tmp_path, _one([{"name": "t", "size": 8, "first": 0, "last": 10**12}]))
    usages, _ = report.read_usages(str(path))
    assert planner.plan_model(usages[0]).size == 8


# ------------------------------------------------------------- the fast planners vs references


def _reference_best_fit(order: list[Usage], alignment: int) -> dict[str, int]:
    """The quadratic best fit the planner had (every placed tensor scanned by offset)."""
    placed: list[tuple[int, Usage]] = []
    offsets: dict[str, int] = {}
    for t in order:
        best, best_gap, prev_end = None, None, 0
        for off, other in placed:
            if not other.overlaps(t):
                continue
            gap = off - prev_end
            if gap >= t.size and (best_gap is None or gap < best_gap):
                best, best_gap = prev_end, gap
            prev_end = max(prev_end, planner.align(off + other.size, alignment))
        offsets[t.name] = prev_end if best is None else best
        placed.append((offsets[t.name], t))
        placed.sort(key=lambda p: p[0])
    return offsets


def _random_sets(seed: int, count: int) -> list[list[Usage]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n, span = rng.randint(1, 50), rng.choice([5, 40, 10**12])
        ts = []
        for i in range(n):
            a = rng.randint(0, span)
            ts.append(Usage(f"t{i}", rng.choice([0, 1, 64, rng.randint(1, 5000)]), a,
                            a + rng.choice([0, 1, 3, rng.randint(0, span)])))  # fmt: skip
        out.append(ts)
    return out


def test_best_fit_places_as_the_quadratic_reference() -> None:
    for ts in _random_sets(3, 200):
        for alignment in (1, 64):
            order = sorted(ts, key=lambda t: (-t.size, t.first, t.name))
            assert planner.best_fit(order, alignment) == _reference_best_fit(order, alignment)


def test_overlap_pairs_lower_bound_and_verify_match_brute_force() -> None:
    rng = random.Random(9)
    for ts in _random_sets(4, 200):
        pairs = sum(a.overlaps(b) for i, a in enumerate(ts) for b in ts[i + 1 :])
        assert planner.overlap_pairs(ts) == pairs
        points = sorted({t.first for t in ts} | {t.last for t in ts})
        live = max(sum(t.size for t in ts if t.first <= p <= t.last) for p in points)
        assert planner.lower_bound(ts) == live
        offsets = {t.name: rng.randint(0, 3000) for t in ts}
        clash = any(a.overlaps(b) and a.size and b.size and
                    offsets[a.name] < offsets[b.name] + b.size and
                    offsets[b.name] < offsets[a.name] + a.size
                    for i, a in enumerate(ts) for b in ts[i + 1 :])  # fmt: skip
        try:
            planner.verify(ts, offsets)
            assert not clash
        except planner.InternalError:
            assert clash


def test_skyline_plans_are_valid_and_stack_what_is_live_together() -> None:
    for ts in _random_sets(5, 200):
        for alignment in (1, 64):
            offsets = planner.skyline_by_size(ts, alignment)
            size = planner.arena_size(ts, offsets)
            planner.verify(ts, offsets, size)
            assert planner.lower_bound(ts) <= size
    dense = [Usage(f"t{i}", 10 + i, 0, 3) for i in range(50)]
    assert planner.arena_size(dense, planner.skyline_by_size(dense)) == sum(t.size for t in dense)


def test_the_planner_work_is_bounded_by_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dense model past PLAN_WORK gets the skyline alone; fewer jittered orders past the
    budget; small models keep every planner (their plans unchanged)."""
    dense = tuple(Usage(f"t{i}", 1 + i % 7, 0, 0) for i in range(1500))  # 1.1 M pairs
    assert planner._pass_work(dense) > planner.PLAN_WORK
    plan = planner.plan_model(ModelUsage("d", dense))
    assert plan.method == "skyline-by-size" and set(plan.candidates) == {"skyline-by-size"}
    assert plan.size == plan.lower_bound == sum(t.size for t in dense)
    chain = tuple(Usage(f"c{i}", 100 + i % 13, i, i + 2) for i in range(2000))
    work = planner._pass_work(chain)
    assert planner._tries(chain, work) == min(32, planner.PLAN_WORK // work - 4)
    monkeypatch.setattr(planner, "PLAN_WORK", 3 * work)
    assert set(planner.plan_model(ModelUsage("c", chain)).candidates) == {
        "greedy-by-size", "greedy-by-breadth",
    }  # fmt: skip
    small = tuple(Usage(f"s{i}", 10 * (i % 5 + 1), i, i + 1) for i in range(40))
    monkeypatch.undo()
    assert planner._tries(small, planner._pass_work(small)) == 100  # 4000 // 40


def test_memory_png_for_small_and_large_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--png`` draws every model (one panel each, wide enough for its title) for a builtin
    of 5 tensors, the example file and a four-model scenario; a model far smaller than the
    shared arena is zoomed to its own plan (docs/TUTORIAL.md §3d)."""
    import matplotlib.image

    yaml = tmp_path / "four.yaml"
    yaml.write_text("name: b\ntasks:\n" + "".join(
        f"  - {{name: {m}, period_ms: 10, model: {m}}}\n"
        for m in ("mlp", "tiny_cnn", "bert_tiny", "mobilenet_v2")))  # fmt: skip
    for source, panels in ((EXAMPLE, 2), (yaml, 4)):
        png = tmp_path / f"{Path(source).stem}.png"
        assert main(["memory", str(source), "--png", str(png)]) == 0
        image = matplotlib.image.imread(png)
        assert image.shape[1] >= 500 * panels and image.shape[0] >= 500
    capsys.readouterr()
    assert report._short("ws:3:cols") == "cols@3" and report._short("fc1.out") == "fc1"
    assert report._size(8192) == "8 KiB" and report._size(100) == "100 B"


def test_memory_png_draws_names_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``$`` (matplotlib's math mode: an unbalanced one failed the plot) or a control
    character in a name is drawn as text."""
    tensors = [{"name": n, "size": 4096, "first": i, "last": i + 1}
               for i, n in enumerate(["a$b", "$x^{", "ws:bad", "new\\nline\x1b"])]  # fmt: skip
    path = _file(tmp_path, {"models": [{"name": "m$1", "tensors": tensors}]})
    png = tmp_path / "p.png"
    assert main(["memory", str(path), "--png", str(png)]) == 0, capsys.readouterr().err
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert report._plain("a$b\n") == "a\\$b\\n"


def test_the_nested_peaks_match_their_per_boundary_definitions() -> None:
    """``max_b H(b)`` and ``max_b L(b)`` (docs/THEORY.md §sharing) by bisection, against the
    per-boundary functions, with and without explicit boundaries."""
    rng = random.Random(2)
    for _ in range(300):
        ts = []
        for i in range(rng.randint(1, 40)):
            a = rng.randint(0, 30)
            ts.append(Usage(f"t{i}", rng.randint(0, 500), a, a + rng.randint(0, 8)))
        n = max(t.last for t in ts) + 1
        cuts = tuple(sorted(rng.sample(range(1, n + 3), min(3, n + 2))))
        u = ModelUsage("m", tuple(ts), boundaries=None if rng.random() < 0.3 else cuts)
        p = planner.plan_model(u)
        bounds = planner._boundaries(u)
        assert planner.peak_high_water(u, p) == max(
            (planner.high_water(u, p, b) for b in bounds), default=0
        )
        assert planner.peak_live_across(u) == max(
            (planner.live_across(u, b) for b in bounds), default=0
        )


def test_the_table_escapes_control_characters_in_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = {"name": "t", "size": 8, "first": 0, "last": 0}
    path = _file(tmp_path, {"models": [{"name": "evil\n\x1b[2Jmodel", "tensors": [t]}]})
    assert main(["memory", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\n\\x1b[2Jmodel" in out
    assert len(out.splitlines()) == 5  # two heads, the model, two totals
