"""The sweep's task-set generators (aegis_core.analysis.generators, docs/THEORY.md §taskgen):
their distributions, ranges and grains, determinism, DNN-shaped sets, the YAML round trip and
the errors of bad parameters."""

from __future__ import annotations

import dataclasses
import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from aegis_core.analysis.admission import admit
from aegis_core.analysis.generators import (
    MAX_DISCARDS,
    ParamsError,
    SetParams,
    deadline,
    make_set,
    model_chain,
    model_flops,
    periods,
    randfixedsum,
    scenario_yaml,
    uunifast_discard,
)
from aegis_core.budget import budgets
from aegis_core.graph.zoo import MODELS, check_models
from aegis_core.model.errors import InputError
from aegis_core.model.scenario import Scenario, load_scenario, parse_scenario

MS = 1_000_000


def draws(fn: Any, count: int, *args: Any, seed: int = 7, **kw: Any) -> list[list[float]]:
    rng = random.Random(seed)
    return [fn(*args, rng, **kw) for _ in range(count)]


# ------------------------------------------------------------------------------ utilisations


@pytest.mark.parametrize("fn", [uunifast_discard, randfixedsum])
@pytest.mark.parametrize(("n", "total", "cap"), [(1, 0.4, 1.0), (2, 1.5, 0.8), (5, 1.0, 0.3),
                                                 (10, 0.7, 1.0), (8, 2.0, 0.5)])  # fmt: skip
def test_utilisations_sum_to_u_and_respect_the_cap(
    fn: Any, n: int, total: float, cap: float
) -> None:
    for us in draws(fn, 300, n, total, cap=cap):
        assert len(us) == n
        assert math.isclose(sum(us), total, rel_tol=1e-9)
        assert all(0 <= u <= cap for u in us)


def assert_simplex_marginals(sample: list[list[float]], n: int, total: float) -> None:
    """Each u_i / U of a uniform point of the simplex is Beta(1, n - 1) (KS, p > 0.01)."""
    for i in range(n):
        res = stats.kstest([us[i] / total for us in sample], stats.beta(1, n - 1).cdf)
        assert res.pvalue > 0.01, (i, res)


def test_uunifast_marginals_follow_the_beta_law() -> None:
    """Each u_i / U of a uniform point of the simplex is Beta(1, n - 1)."""
    n, total = 5, 0.8
    assert_simplex_marginals(draws(uunifast_discard, 3000, n, total), n, total)
    # the law the test detects: a wrong exponent (u_1 = U (1 - r)) is far from it
    wrong = [total * (1 - random.Random(k).random()) / total for k in range(3000)]
    assert stats.kstest(wrong, stats.beta(1, n - 1).cdf).pvalue < 1e-6


def test_randfixedsum_without_a_binding_cap_is_the_simplex_law() -> None:
    n, total = 5, 0.8
    assert_simplex_marginals(draws(randfixedsum, 3000, n, total), n, total)


def _hexagon_cdf(x: Any) -> Any:
    """The marginal CDF of one coordinate of a uniform point of {x in [0, 1]^3, sum 1.5}:
    density (0.5 + x) on [0, 0.5], (1.5 - x) on [0.5, 1], over 0.75."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    low = (0.5 * x + x * x / 2) / 0.75
    high = 0.5 + (1.5 * (x - 0.5) - (x * x - 0.25) / 2) / 0.75
    return np.where(x <= 0.5, low, high)


def test_randfixedsum_is_uniform_on_the_capped_polytope() -> None:
    """n = 3, U = 0.9, cap 0.6: the cube slice of sum 1.5 scaled by 0.6; its exact marginal."""
    sample = draws(randfixedsum, 3000, 3, 0.9, cap=0.6)
    for i in range(3):
        res = stats.kstest([us[i] / 0.6 for us in sample], _hexagon_cdf)
        assert res.pvalue > 0.01, (i, res)
    # the unscaled simplex law (no cap) differs from it: the test can fail
    simplex = draws(randfixedsum, 3000, 3, 1.5, cap=1.0)
    assert stats.kstest([us[0] for us in simplex], _hexagon_cdf).pvalue > 0.01
    flat = draws(uunifast_discard, 3000, 3, 0.9)
    assert stats.kstest([us[0] / 0.6 for us in flat], _hexagon_cdf).pvalue < 1e-6


def test_randfixedsum_and_uunifast_discard_agree_where_both_work() -> None:
    """Both draw uniformly from {0 <= u_i <= 1, sum 2.5} for n = 4 (discard by rejection)."""
    a = draws(randfixedsum, 1500, 4, 2.5, seed=1)
    b = draws(uunifast_discard, 1500, 4, 2.5, seed=2)
    for key in (lambda us: us[0], max, min):
        assert stats.ks_2samp([key(u) for u in a], [key(u) for u in b]).pvalue > 0.01


def test_uunifast_discard_gives_up_near_the_cap_and_randfixedsum_does_not() -> None:
    with pytest.raises(ParamsError, match=rf"utilization_method.*{MAX_DISCARDS} draws"):
        uunifast_discard(10, 9.9, random.Random(0))
    for us in draws(randfixedsum, 50, 10, 9.9):
        assert math.isclose(sum(us), 9.9) and all(0 <= u <= 1 for u in us)
    assert randfixedsum(4, 4.0, random.Random(0)) == pytest.approx([1.0] * 4)


# ---------------------------------------------------------------------- periods, deadlines


@pytest.mark.parametrize("kind", ["log-uniform", "uniform", "harmonic"])
@pytest.mark.parametrize(("lo", "hi", "grain"), [(10 * MS, 100 * MS, 100_000),
                                                 (1_234_567, 9_876_543, 1_000),
                                                 (5 * MS, 5 * MS, MS), (3, 17, 2)])  # fmt: skip
def test_periods_lie_in_the_range_on_the_grain(kind: str, lo: int, hi: int, grain: int) -> None:
    ts = periods(kind, 2000, random.Random(3), lo, hi, grain)
    assert all(lo <= t <= hi and t % grain == 0 for t in ts)
    if kind == "harmonic":
        distinct = sorted(set(ts))
        assert all(b % a == 0 for a in distinct for b in distinct if b >= a)
    if lo < hi and hi - lo > 10 * grain:
        assert len(set(ts)) > 1


def test_log_uniform_periods_weigh_each_decade_the_same() -> None:
    ts = periods("log-uniform", 4000, random.Random(5), MS, 100 * MS, 1_000)
    below = sum(t < 10 * MS for t in ts) / len(ts)
    assert abs(below - 0.5) < 0.04
    uniform = periods("uniform", 4000, random.Random(5), MS, 100 * MS, 1_000)
    assert sum(t < 10 * MS for t in uniform) / 4000 < 0.15


def test_harmonic_periods_use_every_power_in_range() -> None:
    ts = periods("harmonic", 500, random.Random(1), 10 * MS, 100 * MS, MS)
    assert set(ts) == {10 * MS, 20 * MS, 40 * MS, 80 * MS}


def test_a_period_range_without_a_grain_multiple_is_refused() -> None:
    with pytest.raises(ParamsError, match="grain_ns"):
        periods("uniform", 1, random.Random(0), 1_001, 1_999, 1_000)


@pytest.mark.parametrize(("c", "t"), [(1, 10), (3 * MS, 10 * MS), (7, 7), (999, 1000)])
def test_deadlines_lie_in_their_ranges(c: int, t: int) -> None:
    rng = random.Random(11)
    assert deadline("implicit", c, t, rng, 0.3) == t
    for x in (0.0, 0.5, 1.0):
        for _ in range(200):
            d = deadline("constrained", c, t, rng, x)
            assert c + x * (t - c) - 1e-9 <= d <= t and d >= c
    for x in (1.0, 1.5, 3.0):
        ds = [deadline("arbitrary", c, t, rng, x) for _ in range(200)]
        assert all(c <= d <= x * t for d in ds)
        if x > 1 and t > 10:
            assert max(ds) > t  # arbitrary deadlines do pass the period


# ------------------------------------------------------------------------------------ sets

KINDS = [
    SetParams(),
    SetParams(n=8, utilization=0.9, utilization_method="randfixedsum", cap=0.3),
    SetParams(period_kind="uniform", deadline_kind="constrained", deadline_x=0.5),
    SetParams(period_kind="harmonic", deadline_kind="arbitrary", deadline_x=1.5, policy="np-fp"),
    SetParams(jitter_frac=0.25, policy="fifo"),
    SetParams(kernels=(2, 6), policy="lp-edf", deadline_kind="constrained"),
    SetParams(models=("resnet18", "mlp", "bert_tiny"), policy="lp-edf", n=4),
    SetParams(models=tuple(MODELS), kernels=(3, 5), policy="lp-edf", jitter_frac=0.1),
    SetParams(models=("tiny_cnn", "mobilenet_v2"), policy="np-edf", utilization=0.3),
]


def _ids(p: SetParams) -> str:
    return f"{p.policy}-{p.period_kind}-{p.deadline_kind}-{p.models is not None}-{p.kernels}"


def _check_set(s: Scenario, p: SetParams) -> None:
    lo, hi = p.period_ns
    bs = budgets(s)
    assert len(s.tasks) == p.n and s.policy.name == p.policy
    for t, b in zip(s.tasks, bs, strict=True):
        assert lo <= t.period_ns <= hi and t.period_ns % p.grain_ns == 0
        assert 1 <= b.wcet_ns <= t.deadline_ns
        assert t.jitter_ns == math.floor(Fraction(str(p.jitter_frac)) * t.period_ns) < t.period_ns
        assert sum(b.kernels_ns) == b.wcet_ns and min(b.kernels_ns) > 0
        assert (t.model is not None) == (p.models is not None)
    actual = sum(b.wcet_ns / t.period_ns for t, b in zip(s.tasks, bs, strict=True))
    assert actual >= p.utilization * (1 - 1e-9)


@pytest.mark.parametrize("params", KINDS, ids=_ids)
def test_every_kind_of_set_is_valid_and_round_trips_through_yaml(
    params: SetParams, tmp_path: Path
) -> None:
    s = make_set(params, 1234)
    _check_set(s, params)
    text = scenario_yaml(s)
    assert parse_scenario(yaml.safe_load(text)) == s
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_scenario(path)
    assert dataclasses.replace(loaded, path=s.path, source_sha256="") == s
    admit(s)  # the analysis takes every kind


def test_same_seed_same_set_other_seeds_differ() -> None:
    for p in KINDS:
        a, b = make_set(p, 99), make_set(p, 99)
        assert a == b and scenario_yaml(a) == scenario_yaml(b)
        others = {scenario_yaml(make_set(p, seed)) for seed in range(100, 105)}
        assert len(others) == 5 and scenario_yaml(a) not in others


def test_a_set_names_its_seed_and_spans_twenty_periods() -> None:
    s = make_set(SetParams(), 77)
    assert s.name == "set-77" and s.seed == 77
    assert s.duration_ns == 20 * max(t.period_ns for t in s.tasks)


def test_np_fp_priorities_are_deadline_monotonic() -> None:
    from aegis_core.model.policy import fp_priorities

    s = make_set(SetParams(n=6, policy="np-fp", deadline_kind="constrained"), 5)
    prio = fp_priorities(s.tasks)
    order = sorted(range(6), key=lambda i: prio[i])
    assert [s.tasks[i].deadline_ns for i in order] == sorted(t.deadline_ns for t in s.tasks)


def test_dnn_shaped_sets_run_their_models_kernel_chains_under_lp_edf() -> None:
    p = SetParams(models=tuple(MODELS), policy="lp-edf", n=10, utilization=0.6)
    s = make_set(p, 2026)
    check_models(s)
    drawn = {t.model for t in s.tasks}
    assert len(drawn) >= 3
    for t in s.tasks:
        assert t.model is not None and t.kernels_ns is not None and t.wcet_ns is None
        ops = len(model_flops(t.model))
        assert 1 < len(t.kernels_ns) <= ops  # one kernel an operator (zeros dropped)
    verdict = admit(s)
    assert verdict.policy == "lp-edf" and len(verdict.tasks) == 10
    under_np = make_set(dataclasses.replace(p, policy="np-edf"), 2026)
    assert all(t.kernels_ns is None and t.wcet_ns for t in under_np.tasks)
    assert [t.model for t in under_np.tasks] == [t.model for t in s.tasks]


def test_a_model_chain_follows_the_model_flops() -> None:
    flops = model_flops("mlp")  # fc1, relu1, fc2, relu2, fc3: the linears dominate
    chain = model_chain(10 * MS, flops, len(flops))
    assert sum(chain) == 10 * MS and len(chain) == 5
    assert chain[0] > 1000 * chain[1] and chain[2] > 1000 * chain[3]
    grouped = model_chain(10 * MS, model_flops("resnet18"), 4)
    assert len(grouped) == 4 and sum(grouped) == 10 * MS
    tiny = model_chain(3, flops, 5)  # 3 ns over five operators: the small parts round to 0
    assert sum(tiny) == 3 and 1 <= len(tiny) <= 3 and min(tiny) > 0


# ------------------------------------------------------------------------------ properties

FLOAT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def set_params(draw: st.DrawFn) -> SetParams:
    n = draw(st.integers(1, 8))
    cap = draw(st.floats(min_value=0.2, max_value=1.0))
    total = draw(st.floats(min_value=0.01, max_value=n * cap))
    method = "randfixedsum" if total > 0.5 * n * cap else draw(
        st.sampled_from(["uunifast-discard", "randfixedsum"]))  # fmt: skip
    lo = draw(st.integers(1_000, 50 * MS))
    hi = draw(st.integers(lo, 200 * MS))
    grain = draw(st.sampled_from([1, 1_000, 100_000]))
    if hi // grain * grain < lo:
        grain = 1
    kind = draw(st.sampled_from(["implicit", "constrained", "arbitrary"]))
    x = draw(st.one_of(st.none(), FLOAT if kind != "arbitrary" else st.floats(1.0, 4.0)))
    kernels = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(4, 12))))
    models = draw(st.one_of(st.none(), st.lists(st.sampled_from(sorted(MODELS)), min_size=1,
                                                max_size=3, unique=True).map(tuple)))  # fmt: skip
    return SetParams(
        n=n, utilization=total, utilization_method=method, cap=cap,
        period_kind=draw(st.sampled_from(["log-uniform", "uniform", "harmonic"])),
        period_ns=(lo, hi), grain_ns=grain, deadline_kind=kind, deadline_x=x,
        jitter_frac=draw(st.floats(0.0, 0.9)), kernels=kernels, models=models,
        policy=draw(st.sampled_from(["np-edf", "lp-edf", "np-fp", "fifo"])),
    )  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(set_params(), st.integers(0, (1 << 63) - 1))
def test_make_set_gives_valid_scenarios_that_round_trip(params: SetParams, seed: int) -> None:
    s = make_set(params, seed)
    _check_set(s, params)
    assert parse_scenario(yaml.safe_load(scenario_yaml(s))) == s
    assert make_set(params, seed) == s


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"n": 2.5}, "n"),
        ({"utilization": 0.0}, "utilization"),
        ({"utilization": -1.0}, "utilization"),
        ({"utilization": float("nan")}, "utilization"),
        ({"n": 5, "utilization": 1.0, "cap": 0.1}, "cap"),
        ({"cap": 0.0}, "cap"),
        ({"cap": 1.5}, "cap"),
        ({"utilization_method": "uunifast"}, "utilization_method"),
        ({"period_kind": "loguniform"}, "period_kind"),
        ({"period_ns": (100 * MS, 10 * MS)}, "period_ns"),
        ({"period_ns": (0, 10 * MS)}, "period_ns"),
        ({"period_ns": (1, 10**13)}, "period_ns"),
        ({"period_ns": [1, 10, 100]}, "period_ns"),
        ({"period_ns": (1.0, 10)}, "period_ns"),
        ({"grain_ns": 0}, "grain_ns"),
        ({"period_ns": (1_001, 1_999), "grain_ns": 1_000}, "grain_ns"),
        ({"deadline_kind": "implicitly"}, "deadline_kind"),
        ({"deadline_kind": "constrained", "deadline_x": 1.5}, "deadline_x"),
        ({"deadline_kind": "constrained", "deadline_x": -0.1}, "deadline_x"),
        ({"deadline_kind": "arbitrary", "deadline_x": 0.5}, "deadline_x"),
        ({"jitter_frac": 1.0}, "jitter_frac"),
        ({"jitter_frac": -0.1}, "jitter_frac"),
        ({"kernels": (5, 2)}, "kernels"),
        ({"kernels": (0, 2)}, "kernels"),
        ({"models": ("resnet19",)}, "models"),
        ({"models": ()}, "models"),
        ({"policy": "edf"}, "policy"),
    ],
)
def test_bad_params_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ParamsError) as err:
        SetParams(**changes)
    assert err.value.field == field
    assert str(err.value).startswith(f"field '{field}': ")
    assert isinstance(err.value, InputError) and "\n" not in str(err.value)


def test_lists_stand_for_tuples() -> None:
    p = SetParams(period_ns=[MS, 2 * MS], kernels=[2, 3], models=["mlp"])  # type: ignore[arg-type]
    assert p == SetParams(period_ns=(MS, 2 * MS), kernels=(2, 3), models=("mlp",))
    assert hash(p) == hash(SetParams(period_ns=(MS, 2 * MS), kernels=(2, 3), models=("mlp",)))


@pytest.mark.parametrize("seed", [-1, 1 << 63, 1.0, True])
def test_a_bad_seed_is_refused(seed: Any) -> None:
    with pytest.raises(ParamsError, match="field 'seed'"):
        make_set(SetParams(), seed)


def test_uunifast_discard_too_close_to_the_cap_names_the_method() -> None:
    p = SetParams(n=10, utilization=9.9)
    with pytest.raises(ParamsError, match=r"field 'utilization_method'.*randfixedsum"):
        make_set(p, 0)
    make_set(dataclasses.replace(p, utilization_method="randfixedsum"), 0)


# -------------------------------------------------------------------------------- profiles

SAMPLES = [2 * MS + 10_000 * i + (i * 7919) % 30_000 for i in range(40)]


def _profiles(folder: Path, models: tuple[str, ...], scale: int = 1) -> str:
    from aegis_core.run.testing import make_profile

    for k, m in enumerate(models, start=1):
        samples = [v * (k + scale - 1) for v in SAMPLES]
        make_profile(samples, task=m, model=m).save(folder / f"{m}.json")
    return str(folder)


@pytest.mark.parametrize("policy", ["np-edf", "lp-edf", "np-fp"])
def test_profiled_sets_take_the_profile_wcet_and_derive_the_period(
    policy: str, tmp_path: Path
) -> None:
    from aegis_core.budget import WcetFrom

    models = ("mlp", "tiny_cnn")
    p = SetParams(n=6, utilization=0.6, models=models, profiles=_profiles(tmp_path, models),
                  policy=policy, grain_ns=1_000, deadline_kind="constrained")  # fmt: skip
    s = make_set(p, 3)  # draws both models
    check_models(s)
    actual = 0.0
    for t, b in zip(s.tasks, budgets(s), strict=True):
        assert t.measured is not None and t.profile == str(tmp_path / f"{t.model}.json")
        assert b.wcet_from is WcetFrom.PROFILE and b.wcet_ns == t.measured.wcet_ns
        assert b.samples_ns == t.measured.samples_ns and b.wcet_ns <= t.deadline_ns
        assert t.period_ns % 1_000 == 0 and sum(b.kernels_ns) == b.wcet_ns
        assert (len(b.kernels_ns) > 1) == s.policy.chunked
        actual += b.wcet_ns / t.period_ns
    assert 0.6 * 0.9 < actual <= 0.6  # T = ceil(C / u) on the grain: u rounded down a little
    assert len({t.measured.wcet_ns for t in s.tasks if t.measured}) == 2
    path = tmp_path / "set.yaml"
    path.write_text(scenario_yaml(s), encoding="utf-8")
    assert dataclasses.replace(load_scenario(path), path=s.path, source_sha256="") == s
    assert make_set(p, 3) == s
    admit(s)


def test_bad_profiles_name_the_field(tmp_path: Path) -> None:
    folder = _profiles(tmp_path, ("mlp",))
    with pytest.raises(ParamsError, match=r"field 'profiles': needs models"):
        SetParams(profiles=folder)
    with pytest.raises(ParamsError, match=r"field 'profiles': .*tiny_cnn\.json.*no such"):
        SetParams(models=("mlp", "tiny_cnn"), profiles=folder)
    (tmp_path / "tiny_cnn.json").write_bytes((tmp_path / "mlp.json").read_bytes())
    with pytest.raises(ParamsError, match=r"field 'profiles': .*measured model 'mlp'"):
        SetParams(models=("tiny_cnn",), profiles=folder)
    (tmp_path / "resnet18.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"field 'profiles': .*resnet18\.json"):
        SetParams(models=("resnet18",), profiles=folder)
