"""WCET profiles: the JSON round trip, scenarios that point at them, admission with their WCET,
replay in the simulator and the mock backend, and ``aegis profile`` on the CPU backends."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from aegis_core.analysis import pwcet as wcet
from aegis_core.analysis.admission import admit
from aegis_core.analysis.pwcet import estimate
from aegis_core.budget import WcetFrom, budgets
from aegis_core.model.errors import InputError, ScenarioError
from aegis_core.model.profile import load_profile
from aegis_core.model.scenario import load_scenario, parse_scenario, with_profiles
from aegis_core.run.plan import RunPlan, SampledModel, WcetModel
from aegis_core.run.testing import make_profile
from aegis_core.tools.cli import main
from aegis_core.tools.explain import load, verify
from aegis_core.tools.profiling import (
    BUSY_SHARE,
    HostSample,
    format_profiles,
    proc_stat_meter,
    profile_scenario,
)
from aegis_core.tools.runner import run_scenario
from aegis_exec.engine import ExecEngine
from aegis_exec.profiler import Profiler

MS = 1_000_000
SAMPLES = [int(3 * MS + 20_000 * i + (i * 7919) % 50_000) for i in range(60)]


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def profiled_scenario(tmp_path: Path, **task: Any) -> Path:
    make_profile(SAMPLES, task="a", model="mlp").save(tmp_path / "a.json")
    data = {
        "name": "prof",
        "duration_ms": 2000,
        "tasks": [
            {"name": "a", "model": "mlp", "period_ms": 10, "profile": "a.json", **task},
            {"name": "b", "period_ms": 20, "wcet_ms": 2},
        ],
    }
    return write_yaml(tmp_path / "s.yaml", data)


# ----------------------------------------------------------------------------- the file


def test_profile_round_trip(tmp_path: Path) -> None:
    p = make_profile(SAMPLES, task="a", model="resnet18", batch=2, mode="contention")
    p = dataclasses.replace(p, co_runners=("b", "c"), warmup_ns=(9, 8), clock={"x": 1})
    p.save(tmp_path / "p.json")
    q = load_profile(tmp_path / "p.json")
    assert q.as_dict() == p.as_dict()
    assert q.path == str(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["schema"] == "aegis-profile/1" and d["n"] == len(SAMPLES)
    assert set(d["pwcet_ns"]) == {"1e-03", "1e-06", "1e-09"}
    assert d["wcet_ns"] == estimate(SAMPLES).wcet_ns
    assert not list(tmp_path.glob(".p.json.*"))  # the temporary file was renamed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "aegis-profile/2"}, "field 'schema': expected 'aegis-profile/1'"),
        ({"samples_ns": [1, 2, 3]}, "field 'samples_ns': needs at least 10 samples"),
        ({"samples_ns": [1000] * 10 + [-1]}, "field 'samples_ns[10]': must be an integer > 0"),
        ({"mode": "busy"}, "field 'mode': must be one of isolated, contention"),
        ({"wcet_ns": 1.5}, "field 'wcet_ns': must be an integer > 0"),
        ({"pwcet_ns": {"1e-03": 5}}, "field 'pwcet_ns.1e-06'"),
        ({"converged": "yes"}, "field 'converged': must be bool"),
        ({"task": None}, "field 'task': is required"),
        ({"exceedance": 5.0}, "field 'exceedance': must lie in"),
        ({"input_shape": ["x", -3]}, "field 'input_shape': must be a list of integers > 0"),
        ({"warnings": [1]}, "field 'warnings': must be a list of strings"),
    ],
)
def test_bad_profile_fields_are_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    d = make_profile(SAMPLES).as_dict() | change
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_profile(path)


def test_unreadable_profiles(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such profile file"):
        load_profile(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"schema": \n')
    with pytest.raises(InputError, match="invalid JSON at line 2"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(InputError, match="must be a JSON object"):
        load_profile(tmp_path / "list.json")


def test_save_into_an_unwritable_place_is_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write the profile"):
        make_profile(SAMPLES).save(tmp_path / "file" / "p.json")


# ----------------------------------------------------------------------------- scenarios


def test_scenario_takes_the_profile_wcet_and_admission_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = load_scenario(profiled_scenario(tmp_path))
    wcet = estimate(SAMPLES).wcet_ns
    b = budgets(s)[0]
    assert (b.wcet_ns, b.wcet_from, b.samples_ns) == (wcet, WcetFrom.PROFILE, tuple(SAMPLES))
    assert s.tasks[0].wcet_ns is None  # the scenario keeps what the file says
    assert main(["admit", str(tmp_path / "s.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"][0]["wcet_ns"] == wcet
    assert admit(s).tasks[0].wcet_ns == wcet


def test_explicit_wcet_wins_over_the_profile(tmp_path: Path) -> None:
    s = load_scenario(profiled_scenario(tmp_path, wcet_ms=5))
    b = budgets(s)[0]
    assert (b.wcet_ns, b.wcet_from, b.samples_ns) == (5 * MS, WcetFrom.WCET_MS, tuple(SAMPLES))


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"model": "tiny_cnn"}, "the profile measured model 'mlp', the task runs 'tiny_cnn'"),
        ({"batch": 4}, "the profile measured batch 1, the task runs 4"),
        ({"input_shape": [32]}, r"the profile measured input shape \[1024\], the task runs \[32\]"),
    ],
)
def test_profile_that_does_not_fit_the_task_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], task: dict[str, Any], message: str
) -> None:
    path = profiled_scenario(tmp_path, **task)
    assert main(["admit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "task 'a'" in err and "field 'profile'" in err
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_a_profile_above_the_deadline_is_rejected_the_same_either_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same profile gives the same verdict through ``profile:`` and ``--profiles``: a
    measured WCET above the deadline is an admission rejection (exit 1), not bad input."""
    inline = profiled_scenario(tmp_path, deadline_ms=3)
    data = yaml.safe_load(inline.read_text())
    del data["tasks"][0]["profile"]
    data["tasks"][0]["wcet_ms"] = 1
    flagged = write_yaml(tmp_path / "flag.yaml", data)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.json").write_bytes((tmp_path / "a.json").read_bytes())
    outs = []
    for argv in (
        ["admit", str(inline)],
        ["admit", str(flagged), "--profiles", str(tmp_path / "dir")],
    ):
        assert main([*argv, "--json"]) == 1
        outs.append(json.loads(capsys.readouterr().out)["tasks"][0])
    # the same verdict; only the provenance says which file the profile was read from
    assert outs[0].pop("profile") == str(tmp_path / "a.json")
    assert outs[1].pop("profile") == str(tmp_path / "dir" / "a.json")
    assert outs[0] == outs[1]
    assert not outs[0]["admitted"] and outs[0]["wcet_from"] == "profile"
    assert outs[0]["reason"].endswith("exceeds the relative deadline 3 ms: never feasible")
    # the recorded rejection re-derives from the trace (the reason carries no provenance)
    run_scenario(load_scenario(inline), "sim", out_dir=tmp_path / "run", perfetto=False)
    assert verify(load(tmp_path / "run")).ok


def test_lp_edf_profiles_keep_the_kernel_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mock profiles of lp_edf.yaml: the planner is admitted with chunks, as inline; its
    kernels_ms are scaled to the profile's WCET, and the admit table says so."""
    yaml_path = Path(__file__).resolve().parent.parent / "scenarios" / "lp_edf.yaml"
    out = tmp_path / "P"
    assert main(["profile", str(yaml_path), "--backend", "mock", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["admit", str(yaml_path), "--profiles", str(out)]) == 0
    table = capsys.readouterr().out
    assert "3 of 3 admitted" in table
    assert "WCET from the profile; kernels_ms scaled to the profile's WCET" in table
    s = with_profiles(load_scenario(yaml_path), out)
    adm = admit(s)
    planner = adm.budgets[2]
    assert planner.wcet_from is WcetFrom.PROFILE and len(planner.kernels_ns) == 3
    assert sum(planner.kernels_ns) == planner.wcet_ns
    assert len(planner.chunks_ns) > 1 and adm.tasks[2].chunks_ns == planner.chunks_ns
    # the run plan executes that chain
    assert RunPlan.build(s, admission=adm).chunks[2] == planner.chunks_ns


def test_broken_profile_named_through_the_scenario(tmp_path: Path) -> None:
    path = profiled_scenario(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(
        ScenarioError, match=r"task 'a': field 'profile': .*a\.json: field 'schema'"
    ):
        load_scenario(path)


def test_profiles_directory_overrides_wcet_ms(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    make_profile(SAMPLES, task="b").save(folder / "b.json") if folder.mkdir() is None else None
    s = parse_scenario({"name": "x", "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 1},
        {"name": "b", "period_ms": 20, "wcet_ms": 9, "model": "mlp"},
    ]})  # fmt: skip
    t = with_profiles(s, folder)
    assert t.tasks[0] == s.tasks[0]
    assert budgets(t)[1].wcet_ns == estimate(SAMPLES).wcet_ns and t.tasks[1].wcet_ns is None
    assert t.tasks[1].profile == str(folder / "b.json")
    with pytest.raises(InputError, match="no such directory"):
        with_profiles(s, tmp_path / "none")
    with pytest.raises(InputError, match=r"no profile for any task \(looked for a.json, b.json\)"):
        with_profiles(s, tmp_path)


# ----------------------------------------------------------------------------- replay


def test_sim_replays_the_profile_samples(tmp_path: Path) -> None:
    s = load_scenario(profiled_scenario(tmp_path))
    jobs = run_scenario(s, "sim", write=False).jobs
    a = np.array([j.end_ns - j.start_ns for j in jobs if j.task == "a"])
    b = {j.end_ns - j.start_ns for j in jobs if j.task == "b"}
    assert len(a) == 200 and b == {2 * MS}
    assert set(a.tolist()) <= set(SAMPLES)  # resampled, never invented
    assert stats.ks_2samp(a, SAMPLES).pvalue > 0.01  # the samples' distribution
    assert len(set(a.tolist())) > 40  # not one value replayed


def test_exec_time_wcet_forces_the_worst_case(tmp_path: Path) -> None:
    s = load_scenario(profiled_scenario(tmp_path))
    result = run_scenario(s, "sim", write=False, exec_time="wcet")
    assert {j.end_ns - j.start_ns for j in result.jobs if j.task == "a"} == {budgets(s)[0].wcet_ns}
    assert result.summary["exec_time"] == "wcet"
    with pytest.raises(InputError, match="unknown execution-time mode 'mean'"):
        RunPlan.build(s, exec_time_mode="mean")


def test_replay_is_seeded_and_shared_by_sim_and_mock_exec(tmp_path: Path) -> None:
    path = profiled_scenario(tmp_path)
    s = dataclasses.replace(load_scenario(path), duration_ns=150 * MS)
    sim = {j.id: j.end_ns - j.start_ns for j in run_scenario(s, "sim", write=False).jobs}
    mock = run_scenario(s, ExecEngine("mock"), write=False)
    replayed = {j.id: j.end_ns - j.start_ns for j in mock.jobs}
    assert replayed == sim
    other = run_scenario(s, "sim", write=False, seed=1).jobs
    assert [j.end_ns - j.start_ns for j in other if j.task == "a"] != [
        v for k, v in sim.items() if k.startswith("a#")
    ]


def test_lp_edf_chunks_split_a_draw_exactly() -> None:
    s = parse_scenario({"name": "x", "policy": "lp-edf", "tasks": [
        {"name": "a", "period_ms": 10, "kernels_ms": [1, 2, 4]}]})  # fmt: skip
    measured = dataclasses.replace(make_profile(SAMPLES), samples_ns=(7_000_001, 3_500_000))
    s = dataclasses.replace(s, tasks=(dataclasses.replace(s.tasks[0], measured=measured),))
    plan = RunPlan.build(s)
    model = plan.exec_time
    assert isinstance(model, SampledModel) and isinstance(model.base, WcetModel)

    class D:
        def __init__(self, k: int, chunk: int) -> None:
            self.k, self.task_index, self.chunk = k, 0, chunk

    for k in range(len(plan.releases)):
        parts = [model(D(k, c)) for c in range(3)]  # type: ignore[arg-type]
        assert sum(parts) == model.draw(0, k) and all(p > 0 for p in parts)


# ----------------------------------------------------------------------------- aegis profile


def test_profile_on_mock_writes_constant_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_yaml(tmp_path / "s.yaml", {"name": "m", "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 1},
        {"name": "b", "period_ms": 20, "wcet_ms": 2}]})  # fmt: skip
    out = tmp_path / "profiles"
    code = main(["profile", str(path), "--backend", "mock", "--out", str(out), "--warmup", "2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "a                isolated     30    2" in text and "--profiles" in text
    a = load_profile(out / "a.json")
    assert a.samples_ns == (1 * MS,) * 30 and a.wcet_ns == 1_200_000 and a.converged
    assert a.warmup_ns == (1 * MS,) * 2 and a.backend == "mock" and a.mode == "isolated"
    # ...which admit and sim then use
    assert main(["admit", str(path), "--profiles", str(out), "--json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)["tasks"]
    assert [v["wcet_ns"] for v in verdicts] == [1_200_000, 2_400_000]
    assert main(["sim", str(path), "--profiles", str(out), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["exec_time"] == "sample" and summary["misses"] == 0
    assert summary["tasks"][0]["exec_ns"]["max"] == 1 * MS  # replayed, not the WCET


def test_profile_numpy_isolated_and_contention(tmp_path: Path) -> None:
    s = parse_scenario({"name": "n", "tasks": [
        {"name": "a", "model": "mlp", "input_shape": [64], "period_ms": 10},
        {"name": "b", "model": "tiny_cnn", "period_ms": 10}]})  # fmt: skip
    measured = profile_scenario(
        s, backend="numpy", out_dir=tmp_path, samples=40, warmup=2, contention=True,
        progress=None,
    )  # fmt: skip
    assert [(m.profile.task, m.profile.mode, m.path.name) for m in measured] == [
        ("a", "isolated", "a.isolated.json"), ("a", "contention", "a.json"),
        ("b", "isolated", "b.isolated.json"), ("b", "contention", "b.json"),
    ]  # fmt: skip
    for m in measured:
        p = m.profile
        assert 30 <= len(p.samples_ns) <= 40 and len(p.warmup_ns) >= 2  # + a transient
        assert p.wcet_ns >= max(p.samples_ns) and p.backend == "numpy"
        assert p.co_runners == (() if p.mode == "isolated" else ("b",) if p.task == "a" else ("a",))
        assert load_profile(m.path).as_dict() == p.as_dict()


def test_profiler_keeps_co_runners_busy() -> None:
    """With contention, a co-runner is relaunched whenever it is seen ended: it is in flight at
    every launch of the measured task, and (1 ms against a's 2 ms) ends during each sample."""
    s = parse_scenario({"name": "n", "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 2},
        {"name": "b", "period_ms": 10, "wcet_ms": 1}]})  # fmt: skip
    with Profiler(s, "mock") as prof:
        impl: Any = prof._impl
        events: list[tuple[str, int]] = []  # ("launch", task) and ("end", task), in order
        tasks: dict[int, int] = {}
        launch, snapshot = impl.launch, impl.snapshot

        def logged_launch(task: int, chunk: int, token: int, k: int, *a: Any) -> None:
            tasks[token] = task
            events.append(("launch", task))
            launch(task, chunk, token, k, *a)

        def logged_snapshot() -> Any:
            now, done = snapshot()
            events.extend(("end", tasks[f.token]) for f in done)
            return now, done

        impl.launch, impl.snapshot = logged_launch, logged_snapshot
        gen = prof.samples(0, contention=True)
        assert list(itertools.islice(gen, 3)) == [2 * MS] * 3
        gen.close()
        assert prof.co_runners(0) == [1]
    in_flight, ends_of_b, sampled = 0, 0, 0
    for i, (what, task) in enumerate(events):
        if task == 1:
            in_flight += 1 if what == "launch" else -1
            ends_of_b += what == "end"
            if what == "end" and sampled < 3:  # relaunched at once, before anything else
                assert events[i + 1 :][:1] in ([("launch", 1)], [("end", 0)]), events[i:]
        elif what == "launch":
            assert in_flight == 1, events[: i + 1]  # b runs beside every sample of a
            ends_of_b = 0
        else:
            assert ends_of_b >= 1, events[: i + 1]  # b (1 ms) ended during a's 2 ms
            sampled += 1
    assert sampled == 3
    with pytest.raises(InputError, match="needs an open profiler"):
        next(Profiler(s, "mock").samples(0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "numpy"], "task 'b': field 'model': profiling on numpy runs the task's"),
        (["--samples", "20"], "--samples must be >= 30, got 20"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
    ],
)
def test_profile_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = write_yaml(tmp_path / "s.yaml", {"name": "m", "tasks": [
        {"name": "a", "model": "mlp", "period_ms": 10, "wcet_ms": 1},
        {"name": "b", "period_ms": 20}]})  # fmt: skip
    out = tmp_path / "profiles"
    args = args if "--backend" in args else [*args, "--backend", "mock"]
    assert main(["profile", str(path), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_mock_profile_needs_a_wcet(tmp_path: Path) -> None:
    s = parse_scenario({"name": "m", "tasks": [{"name": "a", "period_ms": 10}]})
    with pytest.raises(ScenarioError, match="field 'wcet_ms': the mock backend replays"):
        Profiler(s, "mock")


def test_numpy_profile_applies_the_rule_to_its_samples(tmp_path: Path) -> None:
    """Real runs (numpy, a builtin model), profiled as `aegis profile` does: 5 warm-up runs,
    jobs paced at the task's period, samples until converged; the profile is the estimator's
    rule applied to exactly the samples it recorded, whatever this host's timings were. (Its
    coverage of fresh runs is a property of the host: benchmarks/bench_wall.py measures it.)"""
    s = parse_scenario({"name": "h", "tasks": [{"name": "m", "model": "mlp", "period_ms": 10}]})
    [measured] = profile_scenario(
        s, backend="numpy", out_dir=tmp_path, progress=None, meter=lambda: None
    )  # (no host-load reading: the supported flag is the rule's alone)
    p = measured.profile
    assert measured.path == tmp_path / "m.json" and load_profile(measured.path) == p
    assert (p.task, p.model, p.backend, p.mode, p.co_runners) == ("m", "mlp", "numpy",
                                                                  "isolated", ())  # fmt: skip
    assert len(p.warmup_ns) >= 5 and p.clock["pace_ns"] == 10 * MS
    assert all(isinstance(v, int) and v > 0 for v in (*p.samples_ns, *p.warmup_ns))
    settings = wcet.Settings(max_samples=100)
    assert settings.min_samples <= len(p.samples_ns) <= settings.max_samples
    # sampling stopped where the convergence rule says, and not before
    conv = wcet.Convergence(p.exceedance, settings)
    taken = [*p.warmup_ns[5:], *p.samples_ns]  # a discarded start-up transient, then the rest
    stops = [conv.add(v) for v in taken]
    assert stops[-1] and not any(stops[:-1]) and p.converged == conv.converged
    assert conv.samples == list(p.samples_ns) and conv.discarded == list(p.warmup_ns[5:])
    # the WCET and the pWCET table are the rule's, recomputed from the recorded samples
    est = estimate(p.samples_ns, p.exceedance, settings)
    assert (p.wcet_ns, p.method, p.supported) == (est.wcet_ns, est.method, est.supported)
    assert dict(p.pwcet_ns) == dict(est.pwcet) and p.wcet_ns >= max(p.samples_ns)
    assert p.stats["max"] == max(p.samples_ns) and p.stats["min"] == min(p.samples_ns)


# ------------------------------------------------- profiles you can trust (injected samples)


class FakeProfiler:
    """The profiler protocol over injected durations: ``durations[(task, contention)]``."""

    device = "fake device"

    def __init__(self, durations: dict[tuple[int, bool], Sequence[float]], *,
                 host_timed: bool = True) -> None:  # fmt: skip
        self.durations = durations
        self.host_timed = host_timed
        self.tasks = sorted({t for t, _ in durations})

    def __enter__(self) -> FakeProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def report(self) -> dict[str, Any]:
        return {"backend": "fake"}

    def co_runners(self, task: int) -> list[int]:
        return [t for t in self.tasks if t != task]

    def samples(
        self, task: int, *, contention: bool = False, pace_ns: int = 0
    ) -> Generator[int, None, None]:
        yield from (int(v) for v in self.durations[(task, contention)])


def meter(others: float) -> Iterator[HostSample]:
    """Readings 1 s apart on 2 CPUs, this process using 1 CPU and others ``others`` of both."""
    for i in itertools.count():
        yield HostSample(float(i), i * (1 + 2 * others), float(i), 2)


def _meter(others: float) -> Any:
    it = meter(others)
    return lambda: next(it)


def _iid(seed: int, ms: float, n: int = 300) -> np.ndarray:
    return (ms + np.random.default_rng(seed).gamma(2, 0.05, n)) * MS


TWO = {"name": "t", "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": 1},
                              {"name": "b", "period_ms": 10, "wcet_ms": 1}]}  # fmt: skip


def test_contention_below_isolated_is_reported_and_the_isolated_bound_used(
    tmp_path: Path,
) -> None:
    fake = FakeProfiler({(0, False): _iid(1, 5.0), (0, True): _iid(2, 4.0),  # below
                         (1, False): _iid(3, 2.0), (1, True): _iid(4, 3.0)})  # fmt: skip
    measured = profile_scenario(parse_scenario(TWO), out_dir=tmp_path, contention=True,
                                progress=None, profiler=fake, meter=_meter(0.0))  # fmt: skip
    iso_a, con_a, iso_b, con_b = (m.profile for m in measured)
    own = estimate(con_a.samples_ns, 1e-3, wcet.Settings()).wcet_ns
    assert own < iso_a.wcet_ns  # measured below the isolated bound...
    assert con_a.wcet_ns == iso_a.wcet_ns and measured[1].measured_wcet_ns == own  # ...not used
    assert con_a.method == f"isolated {iso_a.method}"
    assert all(con_a.pwcet_ns[k] >= iso_a.pwcet_ns[k] for k in iso_a.pwcet_ns)
    [w] = [w for w in con_a.warnings if w.startswith("contention WCET")]
    assert f"{own / 1e6:.3f} ms is below the isolated {iso_a.wcet_ns / 1e6:.3f} ms" in w
    assert "the isolated bound is used" in w
    assert load_profile(tmp_path / "a.json").wcet_ns == iso_a.wcet_ns  # what admission reads
    # the other task's contention profile is its own (above its isolated one)
    assert con_b.wcet_ns > iso_b.wcet_ns and measured[3].measured_wcet_ns is None
    assert not any(w.startswith("contention WCET") for w in con_b.warnings)
    text = format_profiles(measured)
    assert f"contention moves a's WCET by x{own / iso_a.wcet_ns:.3f}" in text
    assert "BELOW the isolated WCET: the isolated bound is used" in text
    assert text.count("BELOW") == 1


def test_a_busy_host_makes_the_profile_unsupported(tmp_path: Path) -> None:
    s = parse_scenario(TWO)
    fake = FakeProfiler({(0, False): _iid(5, 5.0), (1, False): _iid(6, 2.0)})
    quiet = profile_scenario(s, out_dir=tmp_path, progress=None, profiler=fake,
                             meter=_meter(0.05))  # fmt: skip
    assert [m.profile.supported for m in quiet] == [True, True]
    assert quiet[0].profile.clock["others_cpu_share"] == pytest.approx(0.05)
    busy = profile_scenario(s, out_dir=tmp_path, progress=None, profiler=fake,
                            meter=_meter(BUSY_SHARE + 0.05))  # fmt: skip
    for m in busy:
        assert m.profile.supported is False and wcet.reason(m.profile.checks) == "machine busy"
        assert m.profile.warnings[-1].endswith("other processes used 30% of the CPUs (limit 25%)")
    assert "NO (machine busy)" in format_profiles(busy)
    # replayed durations (the mock backend) do not depend on the host: no host-load check
    mock = profile_scenario(s, backend="mock", out_dir=tmp_path, progress=None,
                            meter=_meter(0.9))  # fmt: skip
    assert all(m.profile.supported for m in mock)
    assert not any(c["name"] == "host-load" for m in mock for c in m.profile.checks)


def test_profile_discards_a_start_up_transient_and_says_so(tmp_path: Path) -> None:
    start = np.concatenate([_iid(7, 7.0, 15), _iid(8, 5.0)])  # 15 slow runs after the warm-up
    fake = FakeProfiler({(0, False): start})
    s = parse_scenario({"name": "t", "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": 1}]})
    [m] = profile_scenario(s, out_dir=tmp_path, progress=None, profiler=fake, warmup=3,
                           meter=_meter(0.0))  # fmt: skip
    p = m.profile
    gone = len(p.warmup_ns) - 3
    assert 12 <= gone <= 18 and p.warmup_ns == tuple(int(v) for v in start[: 3 + gone])
    assert p.converged and p.supported and max(p.samples_ns) < 6 * MS
    assert any(w.startswith(f"a start-up transient of {gone} runs") for w in p.warnings)
    # without the discard the same runs drift: the rule would flag them
    assert "drift" in estimate(start[3:100]).reason


def test_host_meter_reads_the_cpu_accounting() -> None:
    a = HostSample(0.0, 10.0, 3.0, 2)
    assert a.others_share(HostSample(2.0, 13.0, 4.0, 2)) == pytest.approx(0.5)  # 2 of 4 s
    assert a.others_share(HostSample(2.0, 10.5, 4.0, 2)) == 0.0  # never below 0
    assert a.others_share(a) == 0.0
    now = proc_stat_meter()  # Linux (CI): a reading; its values depend on the host, not checked
    assert now is None or (now.cpus >= 1 and now.busy_s >= 0 and now.own_s >= 0)


def test_admit_table_says_where_each_c_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--profiles DIR`` with a profile for only some tasks: the "C from" column names the
    profile file for those, ``wcet_ms`` / ``kernels_ms`` for the others; the trace records
    it as provenance, so the run still verifies."""
    path = write_yaml(tmp_path / "s.yaml", {"name": "m", "tasks": [
        {"name": "a", "period_ms": 10, "wcet_ms": 1},
        {"name": "b", "period_ms": 20, "wcet_ms": 2},
        {"name": "c", "period_ms": 40, "kernels_ms": [1, 2]}]})  # fmt: skip
    out = tmp_path / "profiles"
    assert main(["profile", str(path), "--backend", "mock", "--out", str(out)]) == 0
    (out / "a.json").unlink()
    (out / "c.json").unlink()
    capsys.readouterr()
    assert main(["admit", str(path), "--profiles", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "C from" in lines[1]
    col = lines[1].index("C from")
    rows = {ln.split()[0]: ln[col:].split()[0] for ln in lines[2:5]}
    assert rows == {"a": "wcet_ms", "b": str(out / "b.json"), "c": "kernels_ms"}
    assert main(["admit", str(path), "--profiles", str(out), "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)["tasks"]
    assert [t.get("profile") for t in tasks] == [None, str(out / "b.json"), None]
    run = tmp_path / "run"
    assert main(["sim", str(path), "--profiles", str(out), "--out", str(run), "--quiet"]) == 0
    assert main(["explain", str(run), "--verify"]) == 0
