"""``aegis sweep``'s runner and store: the same dataset from 1 process, a 2-worker LocalCluster
and a scheduler + 2 workers started as processes; an interrupted sweep resumed equals an
uninterrupted one; a folder that is not a sweep's is refused untouched; an unreachable
scheduler is one line, exit 2, within the connect timeout. The sets come from the stand-in
spec of :mod:`aegis_core.sweep.testing` (deterministic per (seed, point, set)). Every Dask
run is bounded (:data:`BOUND_S`, a thread or subprocess timeout) and its cluster closed."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("distributed")

from aegis_core.model.errors import InputError
from aegis_core.run import stop
from aegis_core.sweep import runner, store, testing
from aegis_core.sweep.runner import SweepResult, run_sweep
from aegis_core.tools import cli

ROOT = Path(__file__).resolve().parent.parent
BOUND_S = 60
SPEC = testing.ToySpec(sets_per_point=9, batch=4)  # 3 points x 3 batches (4, 4, 1 sets)
SOURCE = b"name: toy\n"


def bounded(fn: Callable[[], Any], timeout: float = BOUND_S) -> Any:
    """``fn()`` in a thread, failing the test past ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"not done within {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def sweep(out: Path, spec: Any = SPEC, **kw: Any) -> SweepResult:
    kw.setdefault("evaluate_batch", testing.evaluate_batch)
    kw.setdefault("points", testing.points)
    kw.setdefault("source", SOURCE)
    result: SweepResult = run_sweep(spec, out, **kw)
    return result


def rows(out: Path) -> Any:
    """The dataset without its one measured column."""
    return store.read_dataset(out).drop(columns="analysis_ns")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("ref") / "sweep"
    r = sweep(out, workers=1)
    assert (r.total, r.written, r.skipped, r.interrupted) == (9, 9, 0, None)
    return rows(out)


# ----------------------------------------------------------------------- the same dataset


def test_the_one_process_dataset_has_one_sorted_row_per_set_and_test(reference: Any) -> None:
    assert len(reference) == 3 * 9 * 2
    keys = list(zip(reference["point"], reference["set"], reference["policy"], strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert set(reference["policy"]) == {"np-edf", "np-fp"}
    assert reference["max_bound_over_sim"].isna().any()  # None cells read back as missing
    assert reference["seed"].tolist() == [
        testing.set_seed(SPEC.seed, p, s) for p, s in zip(reference["point"], reference["set"],
                                                          strict=True)
    ]  # fmt: skip


def test_a_partition_is_one_batch_of_one_point_in_sorted_order(tmp_path: Path) -> None:
    sweep(tmp_path / "s", workers=1)
    names = sorted(n for n in os.listdir(tmp_path / "s") if n.startswith("part-"))
    assert names == sorted(store.part_name(p, b) for p in range(3) for b in range(3))
    import pyarrow.parquet as pq

    last = pq.read_table(tmp_path / "s" / "part-p1-b2.parquet").to_pydict()
    assert last["set"] == [8, 8] and last["policy"] == ["np-edf", "np-fp"]
    first = pq.read_table(tmp_path / "s" / "part-p0-b0.parquet").to_pydict()
    assert first["set"] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert (tmp_path / "s" / "spec.yaml").read_bytes() == SOURCE
    assert not [n for n in os.listdir(tmp_path / "s") if n.endswith(".tmp")]


def test_a_2_worker_local_cluster_gives_the_same_dataset(tmp_path: Path, reference: Any) -> None:
    log: list[str] = []
    stream = types.SimpleNamespace(write=log.append, flush=lambda: None)
    r = bounded(lambda: sweep(tmp_path / "s", workers=2, log=stream))
    assert r.where == "a LocalCluster of 2 workers" and r.written == 9
    assert "dashboard: " in "".join(log)
    assert rows(tmp_path / "s").equals(reference)


def _start(args: Sequence[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "dask", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_a_scheduler_and_2_worker_processes_give_the_same_dataset(
    tmp_path: Path, reference: Any
) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])]
    try:
        for _ in range(2):
            procs.append(_start(["worker", address, "--nthreads", "1", "--no-dashboard",
                                 "--host", "127.0.0.1"]))  # fmt: skip
        r = bounded(lambda: sweep(tmp_path / "s", scheduler=address, log=io.StringIO()))
        assert r.where == f"the cluster at {address}" and r.written == 9
        assert rows(tmp_path / "s").equals(reference)
    finally:
        _stop(procs)


# ------------------------------------------------------------------------------- resume


def _stopping_at(k: int, how: str) -> Callable[..., Any]:
    """The stand-in's evaluate, stopped at the k-th batch it is given: a stop request (the
    first SIGINT: that batch finishes) or a KeyboardInterrupt (a second one: it does not)."""
    seen = [0]

    def evaluate(spec: Any, point: Any, sets: Sequence[int]) -> Any:
        seen[0] += 1
        if seen[0] == k:
            if how == "stop":
                stop.request("SIGINT")
            else:
                raise KeyboardInterrupt
        return testing.evaluate_batch(spec, point, sets)

    return evaluate


@pytest.mark.parametrize(("how", "kept"), [("stop", 4), ("keyboard", 3)])
def test_an_interrupted_sweep_resumed_equals_an_uninterrupted_one(
    tmp_path: Path, reference: Any, how: str, kept: int
) -> None:
    out = tmp_path / "s"
    if how == "stop":
        r = sweep(out, workers=1, evaluate_batch=_stopping_at(4, how))
        assert (r.interrupted, r.written) == ("SIGINT", kept)
    else:
        with pytest.raises(KeyboardInterrupt):
            sweep(out, workers=1, evaluate_batch=_stopping_at(4, how))
    assert len(_parts(out)) == kept
    again = sweep(out, workers=1, resume=True)
    assert (again.skipped, again.written, again.interrupted) == (kept, 9 - kept, None)
    assert rows(out).equals(reference)


def _parts(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.startswith("part-") and n.endswith(".parquet"))


def test_resume_on_the_callers_cluster_skips_the_finished_partitions(
    tmp_path: Path, reference: Any
) -> None:
    out = tmp_path / "s"
    sweep(out, workers=1, evaluate_batch=_stopping_at(2, "stop"))
    before = {n: (out / n).stat().st_mtime_ns for n in _parts(out)}
    import distributed

    cluster = bounded(lambda: distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ))  # fmt: skip
    try:
        with distributed.Client(cluster) as client:
            r = bounded(lambda: sweep(out, resume=True, client=client, log=io.StringIO()))
            assert client.status == "running"  # the caller's client: left open
    finally:
        cluster.close()
    assert (r.skipped, r.written, r.where) == (2, 7, "the caller's cluster of 1 worker")
    assert {n: (out / n).stat().st_mtime_ns for n in before} == before  # not rewritten
    assert rows(out).equals(reference)


def test_a_rerun_without_resume_starts_again(tmp_path: Path, reference: Any) -> None:
    out = tmp_path / "s"
    sweep(out, workers=1, evaluate_batch=_stopping_at(2, "stop"))
    r = sweep(out, workers=1)
    assert (r.skipped, r.written) == (0, 9)
    assert rows(out).equals(reference)


def test_a_half_written_partition_never_counts_and_is_cleared(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(out, workers=1, evaluate_batch=_stopping_at(1, "stop"))
    (out / "part-p0-b1.parquet.tmp").write_bytes(b"PAR1 cut short")
    assert len(store.read_dataset(out)) == 8  # the .tmp is not read
    r = sweep(out, workers=1, resume=True)
    assert (r.skipped, r.written) == (1, 8)
    assert not (out / "part-p0-b1.parquet.tmp").exists()


@pytest.mark.parametrize(
    "change",
    [{"source": b"name: other\n"}, {"sets_per_point": 5}, {"spec": dataclasses.replace(SPEC,
                                                                                      batch=3)}],
    ids=["another spec file", "other sets per point", "another batch"],
)  # fmt: skip
def test_resume_refuses_a_folder_of_another_spec(tmp_path: Path, change: dict[str, Any]) -> None:
    out = tmp_path / "s"
    sweep(out, workers=1)
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    with pytest.raises(InputError, match=r"made by another spec.*sweep\.json differs"):
        sweep(out, workers=1, resume=True, **change)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


# -------------------------------------------------------------------------- the folder


@pytest.mark.parametrize("kind", ["user files", "another command's results"])
def test_a_folder_that_is_not_a_sweep_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    if kind != "user files":
        (out / ".aegis-results").write_text('{"schema": "aegis-results/1"}\n')
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    for resume in (False, True):
        with pytest.raises(InputError, match=r"not empty and not a sweep folder"):
            sweep(out, workers=1, resume=resume)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    with pytest.raises(InputError, match="is not a sweep folder"):
        store.read_dataset(out)


def test_an_empty_folder_and_a_missing_one_are_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert sweep(tmp_path / "empty", workers=1).written == 9
    assert sweep(tmp_path / "a" / "b", workers=1, resume=True).written == 9
    assert not (tmp_path / "a" / "b" / ".aegis-lock").exists()  # the lock went with the run


def test_a_sweep_folder_without_partitions_reads_as_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path / "s", workers=1, evaluate_batch=_stopping_at(1, "keyboard"))
    with pytest.raises(InputError, match="no finished partition yet"):
        store.read_dataset(tmp_path / "s")


# ------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"workers": 0}, "--workers must be >= 1, got 0"),
     ({"sets_per_point": 0}, "--sets-per-point: must be an integer >= 1")],
)  # fmt: skip
def test_bad_counts_are_refused_before_anything_is_written(
    tmp_path: Path, kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        sweep(tmp_path / "s", **kw)
    assert not (tmp_path / "s").exists()


def test_sets_per_point_overrides_the_spec(tmp_path: Path) -> None:
    r = sweep(tmp_path / "s", workers=1, sets_per_point=2)
    assert (r.total, r.written) == (3, 3)
    assert sorted(set(store.read_dataset(tmp_path / "s")["set"])) == [0, 1]


def test_an_unreachable_scheduler_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 2)
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(InputError, match=rf"--scheduler {address}: cannot reach a Dask sch"):
        bounded(lambda: sweep(tmp_path / "s", scheduler=address))
    assert time.monotonic() - t0 < BOUND_S
    assert not (tmp_path / "s").exists()  # refused before the folder is made


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.0 200 OK\r\n\r\n" + b"\xff" * 64])
def test_a_listener_that_is_not_a_dask_scheduler_is_refused_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: bytes
) -> None:
    """A port that accepts and then stays silent (or answers something else, e.g. a web
    server): one line, exit 2, within the connect timeout — never a hang or a traceback."""
    import socket
    import threading

    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if reply:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match=rf"--scheduler {address}: cannot reach a Dask"):
            bounded(lambda: sweep(tmp_path / "s", scheduler=address))
        assert time.monotonic() - t0 < BOUND_S
        assert not (tmp_path / "s").exists()
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_the_tasks_cover_every_set_once_in_batches() -> None:
    ts = runner.tasks(dataclasses.replace(SPEC, sets_per_point=10, batch=3), testing.points)
    assert [(t.point, t.batch, t.sets) for t in ts[:4]] == [
        (0, 0, (0, 1, 2)), (0, 1, (3, 4, 5)), (0, 2, (6, 7, 8)), (0, 3, (9,))]  # fmt: skip
    assert len(ts) == 12
    assert runner.batch_of(types.SimpleNamespace(batch=None)) == runner.DEFAULT_BATCH


def test_rows_must_be_dataclasses_or_mappings() -> None:
    @dataclasses.dataclass(frozen=True)
    class Row:
        point: int
        set: int
        policy: str

    t = store.table_of([Row(0, 1, "b"), Row(0, 1, "a"), Row(0, 0, "z")])
    assert t.to_pydict() == {"point": [0, 0, 0], "set": [0, 1, 1], "policy": ["z", "a", "b"]}

    @dataclasses.dataclass(frozen=True)
    class Nested:
        point: int
        params: tuple[tuple[str, Any], ...]

        def as_dict(self) -> dict[str, Any]:
            return {"point": self.point, **dict(self.params)}

    flat = store.table_of([Nested(1, (("a", 2),)), Nested(0, (("a", None),))])
    assert flat.to_pydict() == {"point": [0, 1], "a": [None, 2]}
    with pytest.raises(TypeError, match="a dataclass or a mapping, got int"):
        store.table_of([1])


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def fake_specs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """``aegis_core.sweep.spec`` replaced by the stand-in (load_spec reads nothing but the
    name); yields the dump calls."""
    dumped: list[Any] = []
    module = types.ModuleType("aegis_core.sweep.spec")
    module.load_spec = lambda path: SPEC  # type: ignore[attr-defined]
    module.points = testing.points  # type: ignore[attr-defined]
    module.evaluate_batch = testing.evaluate_batch  # type: ignore[attr-defined]
    module.dump = lambda spec, p, s: dumped.append((p, s)) or (p, s)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aegis_core.sweep.spec", module)
    gen = types.ModuleType("aegis_core.analysis.generators")
    gen.scenario_yaml = lambda made: f"name: p{made[0]}-s{made[1]}\n"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aegis_core.analysis.generators", gen)
    yield dumped


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    p = tmp_path / "toy.yaml"
    p.write_bytes(SOURCE)
    return p


def test_the_cli_runs_a_sweep_in_one_process(
    tmp_path: Path, spec_file: Path, fake_specs: list[Any], capsys: pytest.CaptureFixture[str],
    reference: Any,
) -> None:  # fmt: skip
    out = tmp_path / "s"
    assert cli.main(["sweep", str(spec_file), "--workers", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sweep toy · 1 process · 9 of 9 partitions" in text and f"dataset: {out}/" in text
    assert rows(out).equals(reference)
    assert cli.main(["sweep", str(spec_file), "--workers", "1", "--out", str(out),
                     "--resume"]) == 0  # fmt: skip
    assert "(9 already there)" in capsys.readouterr().out


def test_the_cli_dumps_a_set_without_running(
    tmp_path: Path, spec_file: Path, fake_specs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sweep", str(spec_file), "--dump", "7", "--out", str(tmp_path / "s")]) == 0
    assert cli.main(["sweep", str(spec_file), "--dump", "20"]) == 0
    assert capsys.readouterr().out == "name: p0-s7\nname: p2-s2\n"  # 9 sets a point
    assert fake_specs == [(0, 7), (2, 2)]
    assert not (tmp_path / "s").exists()


def test_an_interrupted_cli_sweep_exits_130_saying_how_to_go_on(
    tmp_path: Path, spec_file: Path, fake_specs: list[Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(sys.modules["aegis_core.sweep.spec"], "evaluate_batch",
                        _stopping_at(2, "stop"))  # fmt: skip
    out = tmp_path / "s"
    assert cli.main(["sweep", str(spec_file), "--workers", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == f"aegis: interrupted (SIGINT): 2 of 9 partitions finished in {out}/; go on " \
                  "with --resume\n"  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--workers", "0"], "--workers must be >= 1, got 0"),
     (["extra"], "aegis sweep takes one spec file, got also 'extra'")],
)  # fmt: skip
def test_cli_bad_arguments_exit_2_in_one_line(
    tmp_path: Path, spec_file: Path, fake_specs: list[Any], capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:  # fmt: skip
    assert cli.main(["sweep", str(spec_file), *argv, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aegis: error: {message}") and err.count("\n") == 1


def test_cli_sweep_plot_needs_its_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", "plot"]) == 2
    assert capsys.readouterr().err.startswith("aegis: error: aegis sweep plot needs the sweep")


def test_cli_an_unreachable_scheduler_exits_2_in_one_line_naming_it(
    tmp_path: Path, spec_file: Path, fake_specs: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    argv = ["sweep", str(spec_file), "--scheduler", address, "--out", str(tmp_path / "s")]
    assert bounded(lambda: cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"aegis: error: --scheduler {address}: ")


# -------------------------------------------------------------- SIGINT, for real


SCRIPT = """
import sys, time
from aegis_core.sweep import runner, testing
def slow(spec, point, sets):
    time.sleep(0.3)
    return testing.evaluate_batch(spec, point, sets)
if __name__ == "__main__":
    spec = testing.ToySpec(sets_per_point=9, batch=4)
    r = runner.run_sweep(spec, sys.argv[1], source=b"name: toy\\n", workers=int(sys.argv[2]),
                         resume=True, evaluate_batch=slow, points=testing.points,
                         log=open("/dev/null", "w"))
    print(r.written, r.interrupted)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigint_keeps_the_finished_partitions_and_resume_completes(
    tmp_path: Path, reference: Any, workers: int
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, str(script), str(out), str(workers)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + BOUND_S
        while not (out.exists() and _parts(out)) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)  # as Ctrl-C: the whole group, any workers too
        stdout, stderr = p.communicate(timeout=BOUND_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "Traceback" not in stderr, stderr  # the workers ignore it
    written, reason = stdout.split()
    assert reason == "SIGINT" and 1 <= int(written) < 9 and len(_parts(out)) == int(written)
    again = sweep(out, workers=1, resume=True)
    assert again.skipped == int(written) and rows(out).equals(reference)


def test_progress_counts_partitions_and_starts_from_those_found(tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep(out, workers=1, evaluate_batch=_stopping_at(3, "stop"))
    shown = io.StringIO()
    sweep(out, workers=1, resume=True, progress=shown)
    text = shown.getvalue()
    assert "sweep" in text and "3/9 partitions" in text  # drawn first with the 3 found


# ------------------------------------------------------- the real spec (once it is merged)

REAL_SPEC = """\
name: small
seed: 3
sets_per_point: {sets}
batch: {batch}
axes:
  utilization: [0.3, 0.7]
  n: [3, 5]
fixed:
  period_ms: [10, 100]
tests: [np-edf, np-fp, p-edf]
run: admission
"""


def _real_spec(tmp_path: Path, sets: int, batch: int) -> Path:
    pytest.importorskip("aegis_core.sweep.spec")
    pytest.importorskip("aegis_core.analysis.generators")
    p = tmp_path / "small.yaml"
    p.write_text(REAL_SPEC.format(sets=sets, batch=batch))
    return p


def _cli(*argv: str, timeout: float = BOUND_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "aegis_core.tools.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_the_real_spec_gives_the_same_dataset_in_1_process_a_local_cluster_and_a_scheduler(
    tmp_path: Path,
) -> None:
    spec = _real_spec(tmp_path, 12, 5)
    for workers in ("1", "2"):
        r = _cli("sweep", str(spec), "--workers", workers, "--out", str(tmp_path / workers))
        assert r.returncode == 0, r.stderr
        assert "12 of 12 partitions" in r.stdout
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])]
    try:
        procs += [_start(["worker", address, "--nthreads", "1", "--no-dashboard", "--host",
                          "127.0.0.1"]) for _ in range(2)]  # fmt: skip
        r = _cli("sweep", str(spec), "--scheduler", address, "--out", str(tmp_path / "c"))
        assert r.returncode == 0, r.stderr
    finally:
        _stop(procs)
    one, two = rows(tmp_path / "1"), rows(tmp_path / "2")
    assert len(one) == 4 * 12 * 3 and one.equals(two) and one.equals(rows(tmp_path / "c"))
    assert {"point", "set", "seed", "n", "utilization", "policy", "schedulable"} <= set(one)


def test_the_real_spec_interrupted_by_sigint_and_resumed_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    spec = _real_spec(tmp_path, 400, 10)
    out = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "aegis_core.tools.cli", "sweep", str(spec),
                          "--workers", "1", "--out", str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + BOUND_S
        while not (out.exists() and _parts(out)) and time.monotonic() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=BOUND_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert err.startswith("aegis: interrupted (SIGINT): ") and err.endswith("--resume\n")
    assert 1 <= len(_parts(out)) < 160
    r = _cli("sweep", str(spec), "--workers", "1", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    whole = _cli("sweep", str(spec), "--workers", "1", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert rows(out).equals(rows(tmp_path / "whole"))
