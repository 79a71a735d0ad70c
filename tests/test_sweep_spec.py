"""Sweep specs (docs/CONTRACTS.md §sweep-spec): reading them (hostile input), their points and
seeds, and the per-set evaluation under each test."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import pickle
import random
import types
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_core.analysis.admission import admit
from aegis_core.analysis.bounds import ATask, utilisation
from aegis_core.analysis.taskgen import random_taskset, scenario_of
from aegis_core.model.errors import InputError
from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import BUILTIN_MODELS, Scenario
from aegis_core.sweep import spec as sweep
from aegis_core.sweep.spec import (
    SpecError,
    columns,
    dump,
    evaluate,
    evaluate_batch,
    generate,
    load_spec,
    parse_spec,
    points,
    preemptive_edf,
    set_seed,
    with_sets_per_point,
)


class FakeParamsError(InputError):
    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}")


_X = {"implicit": 0.0, "constrained": 0.0, "arbitrary": 2.0}


@dataclasses.dataclass(frozen=True)
class FakeSetParams:
    """A minimal stand-in for generators.SetParams (the "gen" helper's module), used only
    where that module is not there: its fields, defaults and the checks tested here."""

    n: int = 5
    utilization: float = 0.5
    utilization_method: str = "uunifast-discard"
    cap: float = 1.0
    period_kind: str = "log-uniform"
    period_ns: tuple[int, int] = (10_000_000, 100_000_000)
    grain_ns: int = 100_000
    deadline_kind: str = "implicit"
    deadline_x: float | None = None
    jitter_frac: float = 0.0
    kernels: tuple[int, int] | None = None
    models: tuple[str, ...] | None = None
    policy: str = "np-edf"

    def __post_init__(self) -> None:
        if self.utilization > self.n * self.cap:
            raise FakeParamsError("cap", f"{self.cap!r} is below utilization/n")
        for field, allowed in (("period_kind", ("log-uniform", "uniform", "harmonic")),
                               ("deadline_kind", tuple(_X))):  # fmt: skip
            if getattr(self, field) not in allowed:
                raise FakeParamsError(field, f"must be one of {', '.join(allowed)}")
        lo, hi = (1.0, 100.0) if self.deadline_kind == "arbitrary" else (0.0, 1.0)
        if self.deadline_x is not None and not lo <= self.deadline_x <= hi:
            raise FakeParamsError("deadline_x", f"must lie in [{lo:g}, {hi:g}] for "
                                  f"{self.deadline_kind} deadlines")  # fmt: skip
        if -(-self.period_ns[0] // self.grain_ns) > self.period_ns[1] // self.grain_ns:
            raise FakeParamsError("grain_ns", f"no multiple of {self.grain_ns} ns lies in the "
                                  "period range")  # fmt: skip
        if self.models and not set(self.models) <= set(BUILTIN_MODELS):
            raise FakeParamsError("models", "unknown model")

    @property
    def x(self) -> float:
        return _X[self.deadline_kind] if self.deadline_x is None else self.deadline_x


def fake_make_set(params: FakeSetParams, seed: int) -> Scenario:
    """taskgen's sets (UUniFast, log-uniform periods) in place of generators.make_set."""
    rng = random.Random(seed)
    x = params.x
    kinds = {"implicit": (1.0, 1.0), "constrained": (x, 1.0), "arbitrary": (1.0, x)}
    ts = random_taskset(rng, params.n, params.utilization, period_ns=params.period_ns,
                        grain_ns=params.grain_ns, deadline_factor=kinds[params.deadline_kind],
                        kernels=params.kernels)  # fmt: skip
    return dataclasses.replace(scenario_of(ts, params.policy, name=f"set-{seed}"), seed=seed)


FAKE = types.SimpleNamespace(
    SetParams=FakeSetParams, ParamsError=FakeParamsError, make_set=fake_make_set
)


@pytest.fixture(autouse=True, scope="module")
def generators() -> Iterator[None]:
    """The real generators where they are merged, else the stand-in."""
    try:
        importlib.import_module("aegis_core.analysis.generators")
    except ImportError:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sweep, "_generators", lambda: FAKE)
            yield
        return
    yield


def spec_of(**over: Any) -> sweep.Spec:
    data: dict[str, Any] = {
        "name": "t",
        "seed": 7,
        "sets_per_point": 4,
        "axes": {"utilization": [0.3, 0.6], "n": [2, 3, 4]},
        "fixed": {"period_ms": [1, 20]},
    }
    data.update(over)
    return parse_spec(data, "s.yaml")


# ------------------------------------------------------------------------------ points, seeds


def test_points_are_the_product_of_the_axes_in_a_fixed_order() -> None:
    pts = points(spec_of())
    assert [p.index for p in pts] == list(range(6))
    got = [(p.params["n"], p.params["utilization"]) for p in pts]
    assert got == [(2, 0.3), (2, 0.6), (3, 0.3), (3, 0.6), (4, 0.3), (4, 0.6)]
    # the order is the parameters', not the file's: writing the axes the other way round
    # gives the same points
    again = spec_of(axes={"n": [2, 3, 4], "utilization": [0.3, 0.6]})
    assert points(again) == pts
    assert pts[0].params["period_ns"] == (1_000_000, 20_000_000)
    assert "deadline_kind" not in pts[0].params  # SetParams's default
    assert list(pts[0].params) == ["n", "utilization", "period_ns"]
    assert hash(pts[0]) == hash(points(spec_of())[0])  # frozen, hashable
    assert pickle.loads(pickle.dumps(pts[0])) == pts[0]  # sent to Dask workers
    assert pickle.loads(pickle.dumps(spec_of())) == spec_of()
    assert dict(pts[0].params)["n"] == 2 and "nope" not in pts[0].params


def test_set_seed_is_stable_and_distinct() -> None:
    assert set_seed(0, 0, 0) == 9133873079985036119  # golden
    digest = hashlib.sha256(b"aegis-sweep/1:7:3:11").digest()  # the documented derivation
    assert set_seed(7, 3, 11) == int.from_bytes(digest[:8], "big") >> 1
    assert set_seed(7, 3, 11) == set_seed(7, 3, 11)
    seeds = {set_seed(1, p, i) for p in range(40) for i in range(40)}
    assert len(seeds) == 1600
    assert all(0 <= s < 1 << 63 for s in seeds)
    assert set_seed(1, 2, 3) != set_seed(1, 3, 2) != set_seed(2, 2, 3)


# ------------------------------------------------------------------------------ evaluation


def test_evaluate_is_deterministic_except_analysis_ns() -> None:
    spec = spec_of()
    pt = points(spec)[3]
    a = [r.as_dict() for r in evaluate(spec, pt, 2)]
    b = [r.as_dict() for r in evaluate(spec, pt, 2)]
    assert [r["policy"] for r in a] == ["np-edf", "np-fp", "lp-edf", "p-edf"]
    for r in a + b:
        assert tuple(r) == columns(spec) and r["analysis_ns"] > 0
        del r["analysis_ns"]
    assert a == b
    assert a[0]["seed"] == set_seed(7, 3, 2) and a[0]["point"] == 3 and a[0]["set"] == 2
    assert a[0]["n"] == 3 and a[0]["utilization"] == 0.6
    assert a[0]["utilization_actual"] >= 0.6  # C = ceil(u T)
    other = [r.as_dict() for r in evaluate(spec, pt, 3)]
    assert other[0]["seed"] != a[0]["seed"]
    batch = evaluate_batch(spec, pt, [2, 3])
    assert [(r.set, r.policy) for r in batch][:5] == [
        (2, "np-edf"), (2, "np-fp"), (2, "lp-edf"), (2, "p-edf"), (3, "np-edf")]  # fmt: skip


def test_schedulable_agrees_with_admit() -> None:
    spec = spec_of(axes={"utilization": [0.5, 0.8, 0.95], "n": [3]},
                   fixed={"period_ms": [1, 50], "chunking": [2, 6]})  # fmt: skip
    seen = set()
    for pt in points(spec):
        for i in range(6):
            scenario = generate(spec, pt, i)
            for row in evaluate(spec, pt, i):
                if row.policy == "p-edf":
                    assert (row.schedulable, row.analysis_points) == preemptive_edf(scenario)
                    continue
                adm = admit(dataclasses.replace(scenario, policy=get_policy(row.policy)))
                assert row.schedulable == adm.schedulable
                spent = adm.as_dict()["analysis_points"]
                assert isinstance(spent, dict) and row.analysis_points == spent["spent"]
                seen.add(row.schedulable)
    assert seen == {True, False}  # both verdicts met


def _pedf(ts: list[ATask]) -> bool:
    return preemptive_edf(scenario_of(ts, "np-edf"))[0]


def test_p_edf_is_exact_for_implicit_deadlines() -> None:
    rng = random.Random(5)
    verdicts = set()
    for k in range(150):
        ts = random_taskset(rng, rng.randint(1, 8), rng.uniform(0.7, 1.2))
        ok = _pedf(ts)
        assert ok == (utilisation(ts) <= 1), k
        verdicts.add(ok)
    assert verdicts == {True, False}
    full = [ATask("a", 2, 4, 4), ATask("b", 3, 6, 6)]  # U = 1 exactly: accepted
    assert utilisation(full) == 1 and _pedf(full)
    assert not _pedf([ATask("a", 2, 4, 4), ATask("b", 3, 5, 5)])  # U = 1.1


def test_p_edf_constrained_deadlines_by_hand() -> None:
    # U = 0.8 but dbf(3) = 2 + 2 = 4 > 3: rejected
    assert not _pedf([ATask("a", 2, 5, 3), ATask("b", 2, 5, 3)])
    # dbf(2) = 2, dbf(3) = 3, dbf(6) = 4, dbf(10) = 6, dbf(11) = 7 ... <= t: accepted
    assert _pedf([ATask("a", 2, 4, 2), ATask("b", 1, 8, 3)])
    # one ns more at t = 3 breaks it: dbf(3) = 2 + 2 = 4 > 3
    assert not _pedf([ATask("a", 2, 4, 2), ATask("b", 2, 8, 3)])
    # an NP-EDF rejection that preemption accepts: a long job blocks a short deadline
    ts = [ATask("a", 1, 10, 2), ATask("b", 5, 20, 20)]
    assert _pedf(ts)
    assert not admit(scenario_of(ts, "np-edf")).schedulable


def test_np_edf_schedulable_implies_p_edf_schedulable() -> None:
    spec = spec_of(axes={"utilization": [0.4, 0.7, 0.9, 1.0], "n": [2, 4, 6]},
                   fixed={"period_ms": [1, 100], "deadline_kind": "constrained",
                          "deadline_x": 0.3},
                   tests=["np-edf", "p-edf"], sets_per_point=12)  # fmt: skip
    counts = {(True, True): 0, (False, True): 0, (False, False): 0}
    for pt in points(spec):
        for i in range(spec.sets_per_point):
            np_edf, p_edf = (r.schedulable for r in evaluate(spec, pt, i))
            assert p_edf or not np_edf
            counts[(np_edf, p_edf)] += 1
    assert all(counts.values()), counts  # each allowed combination met


def test_check_and_sim_columns_only_when_run() -> None:
    small = {"axes": {"utilization": [0.4, 1.6], "n": [2]}, "fixed": {"period_ms": [1, 4]}}
    plain = evaluate(spec_of(**small), points(spec_of(**small))[0], 0)
    assert not {"max_bound_over_sim", "check_ok", "misses"} & set(plain[0].as_dict())
    spec = spec_of(**small, run=["check", "sim"], check_runs=1)
    assert spec.run == ("admission", "check", "sim")
    assert columns(spec)[-3:] == ("max_bound_over_sim", "check_ok", "misses")
    light, heavy = (evaluate(spec, p, 0) for p in points(spec))
    for row in light:
        r = row.as_dict()
        assert tuple(r) == columns(spec)
        if r["policy"] == "p-edf":  # analysis only: nothing simulated
            assert r["max_bound_over_sim"] is r["check_ok"] is r["misses"] is None
            continue
        assert r["schedulable"] and r["check_ok"] is True and r["misses"] == 0
        assert r["max_bound_over_sim"] >= 1.0  # a safe bound is never below the simulation
    overloaded = {r.policy: r.as_dict() for r in heavy}
    assert overloaded["np-edf"]["misses"] > 0 and not overloaded["np-edf"]["schedulable"]
    only_sim = spec_of(**small, run="sim")
    assert columns(only_sim)[-1] == "misses" and "check_ok" not in columns(only_sim)


def test_dump_is_the_evaluated_set() -> None:
    spec = spec_of()
    scenario = dump(spec, 4, 1)
    assert scenario == generate(spec, points(spec)[4], 1)
    assert scenario.seed == set_seed(7, 4, 1) and scenario.name == "t-p4-s1"
    assert len(scenario.tasks) == 4
    with pytest.raises(InputError, match=r"point 6 is out of range: the spec has 6 points"):
        dump(spec, 6, 0)
    with pytest.raises(InputError, match=r"set 4 is out of range"):
        dump(spec, 0, 4)


def test_with_the_real_generators() -> None:
    pytest.importorskip("aegis_core.analysis.generators")
    spec = spec_of(fixed={"period_ms": [1, 20], "chunking": [2, 4]})
    pt = points(spec)[2]
    a, b = evaluate(spec, pt, 0), evaluate(spec, pt, 0)
    assert [r.schedulable for r in a] == [r.schedulable for r in b]
    assert len(generate(spec, pt, 0).tasks) == 3


# ------------------------------------------------------------------------------ bad specs


def fails(data: Any, field: str | None, message: str = "") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "bad.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("bad.yaml: ")
    if field is not None:
        assert f"field '{field}'" in text, text
    assert message in text, text
    return info.value


def base(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"axes": {"utilization": [0.5], "n": [2]}}
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (base(axes={"utilization": [0.5, 0.6, "x", 0.7], "n": [2]}), "axes.utilization[2]",
         "must be a number > 0"),
        (base(axes={"utilization": [0.5, 0.0], "n": [2]}), "axes.utilization[1]", "> 0"),
        (base(axes={"utilization": [0.5, float("nan")], "n": [2]}), "axes.utilization[1]", ""),
        (base(axes={"utilization": [0.5, 2.5], "n": [2]}), "axes.utilization[1]",
         "below utilization/n"),
        (base(axes={"utilization": [0.5, 1.5], "n": [2]}, fixed={"cap": 0.5}), "fixed.cap",
         "below utilization/n"),
        (base(axes={"utilization": [0.5, 0.6, 0.5], "n": [2]}), "axes.utilization[2]",
         "duplicate of axes.utilization[0]"),
        (base(axes={"utilization": [0.5], "n": [2, 3, 2]}), "axes.n[2]", "duplicate of axes.n[0]"),
        (base(axes={"utilization": [0.5], "n": [True]}), "axes.n[0]", "must be an integer"),
        (base(axes={"utilization": 0.5, "n": [2]}), "axes.utilization", "non-empty list"),
        (base(axes={"utilization": [], "n": [2]}), "axes.utilization", "non-empty list"),
        (base(axes={"utilization": [0.5], "n": [2], "policy": ["np-edf"]}), "axes.policy",
         "unknown key"),
        (base(axes={"utilisation": [0.5], "n": [2]}), "axes.utilisation",
         "did you mean 'utilization'?"),
        (base(axes={"n": [2]}), "axes.utilization", "is required"),
        (base(axes={"utilization": [0.5], "n": [2], "period_ms": [[1, 10], [5]]}),
         "axes.period_ms[1]", "[lo, hi] pair"),
        (base(axes={"utilization": [0.5], "n": [2], "period_ms": [[10, 1]]}),
         "axes.period_ms[0]", "lo must be <= hi"),
        (base(axes={"utilization": [0.5], "n": [2], "period_kind": ["log-uniform", "weird"]}),
         "axes.period_kind[1]", "must be one of log-uniform, uniform, harmonic"),
        (base(axes={"utilization": [0.5], "n": [2], "chunking": [None, [0, 3]]}),
         "axes.chunking[1][0]", "integer >= 1"),
        (base(axes={"utilization": [0.5], "n": [2], "models": [["resnet18"], ["gpt9"]]}),
         "axes.models[1]", "unknown model"),
        (base(axes={"utilization": [0.5], "n": [2], "models": [["resnet18", 3]]}),
         "axes.models[0][1]", "must be a name"),
        (base(fixed={"deadline_kind": "soon"}), "fixed.deadline_kind",
         "must be one of implicit, constrained, arbitrary"),
        (base(axes={"utilization": [0.5], "n": [2], "jitter": [1.0]}), "axes.jitter[0]", "< 1"),
        (base(fixed={"period_ms": [1, 10], "period_ns": [1, 10]}), "fixed.period_ns",
         "fixed.period_ms sets it already"),
        (base(fixed={"n": 3}), "fixed.n", "axes.n sets it already"),
        (base(fixed={"deadline_kind": "constrained", "deadline_x": 1.5}), "fixed.deadline_x",
         "must lie in [0, 1] for constrained deadlines"),
        (base(fixed={"deadline_kind": "arbitrary", "deadline_x": 0.5}), "fixed.deadline_x",
         "must lie in [1, 100] for arbitrary deadlines"),
        (base(fixed={"grain_ns": 10**9}), "fixed.grain_ns", "no multiple of"),
        (base(fixed={"period_ms": [0.01, 0.02]}), "fixed.period_ms", "no multiple of"),
        (base(fixed=[1]), "fixed", "must be a mapping"),
        (base(sets_per_point=0), "sets_per_point", "must be an integer >= 1 and <= 1000000"),
        (base(sets_per_point=10**6 + 1), "sets_per_point", "<= 1000000"),
        (base(sets_per_point=10**400), "sets_per_point", "<= 1000000"),
        (base(seed=-1), "seed", ">= 0"),
        (base(tests=["np-edf", "edf"]), "tests[1]", "must be one of np-edf, np-fp, lp-edf, p-edf"),
        (base(tests=["np-edf", "np-edf"]), "tests[1]", "duplicate of tests[0]"),
        (base(tests=[]), "tests", "non-empty list"),
        (base(run="everything"), "run", "must be one of admission, check, sim"),
        (base(run=["check", 3]), "run[1]", "must be one of"),
        (base(batch=0), "batch", ">= 1"),
        (base(name="Bad Name"), "name", "must match"),
        (base(colour="red"), "colour", "unknown key"),
        (base(axes={"utilization": [0.5] * 0 + [0.1 * i for i in range(1, 1001)],
                    "n": list(range(1, 1001))}), "axes", "more than 100000 points"),
        ([1, 2], None, "the document must be a mapping"),
        ("axes", None, "the document must be a mapping"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_field(data: Any, field: str | None, message: str) -> None:
    fails(data, field, message)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    text = "name: u\nseed: 3\naxes:\n  utilization: [0.5, 0.9]\n  n: [4]\nrun: check\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.name == "u" and spec.seed == 3 and spec.run == ("admission", "check")
    assert len(spec.source_sha256) == 64 and spec.batch == sweep.DEFAULT_BATCH["check"]
    assert len(points(spec)) == 2 and spec.tests == tuple(sweep.TESTS)
    assert with_sets_per_point(spec, 3).sets_per_point == 3
    with pytest.raises(InputError, match="--sets-per-point: must be an integer >= 1"):
        with_sets_per_point(spec, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
         "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
         "e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "aliases repeat more than"),
        ("axes: {n: [0x10], utilization: [0.5]}\n", "write integers in decimal"),
        ("axes: {n: [2], n: [3]}\n", "duplicate key 'n'"),
        ("axes: [\n", "invalid YAML at line"),
        ("- 1\n- 2\n", "the document must be a mapping"),
        ("axes: {n: [2], utilization: [0.5]}\nsets_per_point: 0\n", "field 'sets_per_point'"),
    ],
)  # fmt: skip
def test_hostile_spec_files(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(p))


def test_unreadable_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such sweep spec"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="a directory"):
        load_spec(tmp_path)
    big = write(tmp_path, "#" * (1 << 20) + "\n")
    with pytest.raises(SpecError, match="larger than 1 MiB"):
        load_spec(big)


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_values = st.recursive(_scalars, lambda v: st.lists(v, max_size=4) | st.dictionaries(
    st.sampled_from([*sweep.KEYS, "x"]), v, max_size=4), max_leaves=12)  # fmt: skip
_keys = st.sampled_from([*sweep._TOP, "zzz"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=6) | _values)
def test_fuzzed_specs_fail_only_as_spec_errors(data: Any) -> None:
    try:
        spec = parse_spec(data, "f.yaml")
    except SpecError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith("f.yaml: ")
        return
    assert points(spec) and 1 <= spec.sets_per_point <= sweep.MAX_SETS_PER_POINT


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0.01, 2.0) | st.integers(-1, 3) | st.text(max_size=3), max_size=5),
    st.lists(st.integers(-1, 5) | st.floats(), max_size=4),
)
def test_fuzzed_axes_are_valid_or_named(us: list[Any], ns: list[Any]) -> None:
    try:
        spec = parse_spec({"axes": {"utilization": us, "n": ns}}, "f.yaml")
    except SpecError as exc:
        assert exc.field is not None and exc.field.startswith("axes")
        return
    assert len(points(spec)) == len(us) * len(ns)
    assert all(Fraction(p.params["utilization"]) <= p.params["n"] for p in points(spec))
