"""The results directory never touches what AegisRT did not write (docs/CONTRACTS.md §results):
the marker, result-named files it did not write, symbolic links, the lock, a full disk, and
``--policy`` folders."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_scenario

from aegis_core.model.errors import BackendError, InputError
from aegis_core.model.files import open_new, write_text_atomic
from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.run.engine import load_engine
from aegis_core.run.testing import FakeEngine
from aegis_core.tools.cli import main
from aegis_core.tools.outdir import GUARDED, LOCK, MARKER, RESULTS, ResultsDir
from aegis_core.tools.runner import default_out_dir, run_scenario

ROOT = Path(__file__).resolve().parent.parent
FIFO = ROOT / "scenarios" / "fifo.yaml"
RUN = ["--duration-ms", "200", "--quiet"]


def sim(out: Path, *extra: str) -> int:
    return main(["sim", str(FIFO), "--out", str(out), *RUN, *extra])


def snapshot(d: Path) -> dict[str, Any]:
    """Every entry of ``d``: a file's bytes, a link's target, a folder as such."""
    got: dict[str, Any] = {}
    for p in sorted(d.iterdir()):
        if p.is_symlink():
            got[p.name] = ("link", os.readlink(p))
        elif p.is_dir():
            got[p.name] = "dir"
        else:
            got[p.name] = p.read_bytes()
    return got


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    got = capsys.readouterr()
    assert got.out == "" and got.err.count("\n") == 1 and "Traceback" not in got.err, got.err
    assert got.err.startswith("aegis: error: ")
    return got.err[len("aegis: error: ") : -1]


# ------------------------------------------------------ files it did not write: refused


@pytest.mark.parametrize("name", GUARDED)
def test_a_folder_with_a_result_named_file_it_did_not_write_is_refused_untouched(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / name).write_text("the user's own\n")
    (tmp_path / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    assert sim(tmp_path) == 2
    assert one_error(capsys) == (
        f"{tmp_path} holds {name} that AegisRT did not write; choose another --out or remove it"
    )
    assert snapshot(tmp_path) == before  # no marker, no lock, nothing replaced


@pytest.mark.parametrize("extra", [["--no-trace"], ["--no-perfetto"], []], ids=str)
def test_no_trace_never_deletes_a_users_trace(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "trace.jsonl").write_text('{"mine": true}\n')
    (tmp_path / "trace.json").write_text("{}\n")
    before = snapshot(tmp_path)
    assert sim(tmp_path, *extra) == 2
    assert "that AegisRT did not write" in one_error(capsys)
    assert snapshot(tmp_path) == before


def test_a_foreign_marker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("not json", '{"schema": "someone-else/1"}', "[1]", ""):
        (tmp_path / MARKER).write_text(text)
        (tmp_path / "summary.json").write_text("{}")
        before = snapshot(tmp_path)
        assert sim(tmp_path) == 2
        assert one_error(capsys) == (f"{tmp_path / MARKER} is not AegisRT's results marker; "
                                     "choose another --out or remove it")  # fmt: skip
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["missing", "empty", "unrelated files"])
def test_a_new_an_empty_or_an_unrelated_folder_is_fine_and_its_files_stay(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a" / "b" if kind == "missing" else tmp_path
    if kind == "unrelated files":
        (out / "notes.txt").write_text("mine\n")
        (out / "summary.json.bak").write_text("mine too\n")
        (out / "sub").mkdir()
        (out / "sub" / "summary.json").write_text("{}")  # a result name, one level down
    mine = {k: v for k, v in snapshot(out).items()} if out.exists() else {}
    for extra in ([], ["--no-trace"]):  # the second run replaces the first's results
        assert sim(out, *extra) == 0
        capsys.readouterr()
        got = snapshot(out)
        assert {k: got[k] for k in mine} == mine
        theirs = set(got) - set(mine)
        written = {"summary.json", "jobs.csv", MARKER}
        assert theirs == (written if extra else written | {"trace.jsonl", "trace.json"})
    marker = json.loads((out / MARKER).read_text())
    assert marker["schema"] == "aegis-results/1" and marker["command"].startswith("aegis sim ")
    assert json.loads((out / "summary.json").read_text())["schema"] == "aegis-summary/1"


class _Crashing(FakeEngine):
    """Fails at its 5th advance: after the first releases (``before``: at its start)."""

    def __init__(self, before: bool = False) -> None:
        super().__init__()
        self.before, self.calls = before, 0

    def start(self, plan: Any) -> None:
        if self.before:
            raise BackendError("the device fell off the bus")
        super().start(plan)

    def advance(self, until: Any) -> Any:
        self.calls += 1
        if self.calls == 5:
            raise BackendError("the device fell off the bus")
        return super().advance(until)


@pytest.mark.parametrize("before", [False, True], ids=["after a release", "at start"])
def test_a_crash_after_set_up_deletes_no_user_file_and_no_final_name(
    before: bool, tmp_path: Path
) -> None:
    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=1000)
    (tmp_path / "notes.txt").write_text("mine\n")
    run_scenario(s, "sim", out_dir=tmp_path)  # a previous run of ours: replaced
    with pytest.raises(BackendError):
        run_scenario(s, _Crashing(before), out_dir=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    if before:  # nothing ran: nothing of the run is left, not even the marker
        assert names == {"notes.txt"}
    else:  # the records up to the failure, under their temporary name only
        assert names == {"notes.txt", MARKER, "trace.jsonl.tmp"}
        lines = (tmp_path / "trace.jsonl.tmp").read_text().splitlines()
        kinds = [json.loads(line)["kind"] for line in lines]
        assert "release" in kinds and "end" not in kinds
    assert sim(tmp_path) == 0  # the next run takes the folder over


# --------------------------------------------------------------- symbolic links: never followed


@pytest.mark.parametrize("name", ["trace.jsonl", "jobs.csv.tmp", "trace.jsonl.tmp", "summary.json"])
def test_a_link_planted_in_a_results_folder_is_refused_and_never_written_through(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text("precious\n")
    assert sim(out) == 0  # a folder of ours (marked)
    capsys.readouterr()
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(victim)
    before = snapshot(out)
    assert sim(out) == 2
    assert one_error(capsys) == (
        f"{out / name} is a symbolic link: AegisRT writes its results only as regular files; "
        "choose another --out or remove it"
    )
    assert victim.read_text() == "precious\n" and snapshot(out) == before


def test_a_dangling_link_creates_nothing_where_it_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere" / "made.jsonl"
    target.parent.mkdir()
    (tmp_path / "trace.jsonl.tmp").symlink_to(target)  # an unmarked folder
    assert sim(tmp_path) == 2
    assert "holds trace.jsonl.tmp that AegisRT did not write" in one_error(capsys)
    assert not target.exists()


def test_the_out_folder_itself_may_be_a_link_to_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert sim(tmp_path / "link") == 0  # the user's choice: written inside the folder
    assert {"summary.json", "jobs.csv", "trace.jsonl", MARKER} <= {p.name for p in real.iterdir()}
    assert (tmp_path / "link").is_symlink()


def test_open_new_never_opens_an_existing_file_or_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("victim", "link", "dangling"):
        with pytest.raises(FileExistsError):
            open_new(tmp_path / name)
    assert victim.read_text() == "precious" and not (tmp_path / "nowhere").exists()
    with open_new(tmp_path / "fresh") as f:
        f.write("x")
    assert (tmp_path / "fresh").read_text() == "x"


def test_an_atomic_write_replaces_a_link_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "compare.csv").symlink_to(victim)
    write_text_atomic(tmp_path / "compare.csv", "a,b\n")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "compare.csv").is_symlink()
    assert (tmp_path / "compare.csv").read_text() == "a,b\n"


# ------------------------------------------------------------------------------------ the lock


def test_a_second_holder_is_refused_at_once_and_named(tmp_path: Path) -> None:
    """flock is per open file description: each claim opens the lock file anew, so two
    claims in one process conflict as two processes do."""
    first = ResultsDir.claim(tmp_path, "aegis sim first.yaml")
    lock = (tmp_path / LOCK).read_text()
    assert lock == f"pid {os.getpid()} (aegis sim first.yaml)\n"
    try:
        with pytest.raises(InputError) as refused:
            ResultsDir.claim(tmp_path, "aegis sim second.yaml")
        assert str(refused.value) == (
            f"{tmp_path} is in use by pid {os.getpid()} (aegis sim first.yaml)"
        )
        assert (tmp_path / LOCK).read_text() == lock  # the holder's, as it was
    finally:
        first.release()
    assert not (tmp_path / LOCK).exists()  # given up: removed
    ResultsDir.claim(tmp_path, "aegis sim second.yaml").release()  # free again


def test_a_lock_held_by_another_process_refuses_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    holder = (
        "import sys; from pathlib import Path; from aegis_core.tools.outdir import ResultsDir\n"
        f"r = ResultsDir.claim(Path({str(out)!r}), 'aegis sim busy.yaml\\nforged line')\n"
        "print('held', flush=True); sys.stdin.read(); r.release()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        before = snapshot(out)
        assert sim(out) == 2
        assert one_error(capsys) == (
            f"{out} is in use by pid {proc.pid} (aegis sim busy.yaml\\nforged line)"
        )
        assert snapshot(out) == before  # the holder's folder as it left it
    finally:
        proc.communicate("", timeout=120)  # a guard against a hang, not a timing
    assert proc.returncode == 0
    assert sim(out) == 0  # released: the folder is free


def test_a_run_holds_its_folder_for_the_run_only(tmp_path: Path) -> None:
    seen: list[str] = []

    class Peeking(FakeEngine):
        def start(self, plan: Any) -> None:
            with pytest.raises(InputError, match="is in use by pid"):
                ResultsDir.claim(tmp_path, "aegis sim other.yaml")
            seen.append((tmp_path / LOCK).read_text())
            super().start(plan)

    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=100)
    run_scenario(s, Peeking(), out_dir=tmp_path)
    assert seen == [f"pid {os.getpid()} (aegis fake <memory>)\n"]
    assert not (tmp_path / LOCK).exists()


# ----------------------------------------------------------------- a full disk, a folder in the way


class _Full:
    """A test double around a real file: its writes fail with ENOSPC once ``room`` characters
    have gone through (a disk that fills up as the run goes)."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, text: str) -> int:
        if len(text) > self._room:
            self._f.write(text[: self._room])  # what fitted reaches the file
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(text)
        return int(self._f.write(text))

    def __enter__(self) -> _Full:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@pytest.mark.parametrize("room", [0, 1000])
@pytest.mark.parametrize("name", RESULTS)
def test_a_full_disk_is_one_error_and_leaves_no_result(
    name: str, room: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    real = ResultsDir.create

    def filling(self: ResultsDir, which: str, encoding: str = "utf-8") -> Any:
        f = real(self, which, encoding)
        return _Full(f, room) if which == name else f

    (tmp_path / "notes.txt").write_text("mine\n")
    assert sim(tmp_path) == 0  # a previous run of ours
    capsys.readouterr()
    monkeypatch.setattr(ResultsDir, "create", filling)
    assert sim(tmp_path) == 2
    assert one_error(capsys) == (f"{tmp_path / name}.tmp: cannot write: "
                                 f"{os.strerror(errno.ENOSPC)}")  # fmt: skip
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt"}  # no partial, no stale one
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("name", ["trace.jsonl.tmp", "summary.json", "jobs.csv.tmp"])
def test_a_folder_where_a_file_goes_is_refused_before_anything_is_written(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sim(tmp_path) == 0
    capsys.readouterr()
    (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / name).mkdir()
    before = snapshot(tmp_path)
    assert sim(tmp_path) == 2
    assert one_error(capsys).startswith(f"{tmp_path / name} is a directory: ")
    assert snapshot(tmp_path) == before  # the earlier results stay whole


def test_a_results_path_through_a_file_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("x")
    assert sim(tmp_path / "f" / "run") == 2
    assert one_error(capsys).startswith(f"results directory {tmp_path / 'f' / 'run'}: ")
    assert (tmp_path / "f").read_text() == "x"


# ------------------------------------------------------------------------ --policy: its own folder


def test_default_folders_name_an_overriding_policy() -> None:
    s = load_scenario(FIFO)  # policy: fifo
    sim_engine, mock = load_engine("sim"), load_engine("exec", backend="mock")
    own = s.policy
    assert default_out_dir(s, sim_engine) == Path("results/fifo/sim")
    assert default_out_dir(s, sim_engine, own) == Path("results/fifo/sim")  # not overridden
    other = replace_scenario(s, policy=get_policy("np-edf"))
    assert default_out_dir(other, sim_engine, own) == Path("results/fifo/sim-np-edf")
    assert default_out_dir(other, mock, own, Path("r")) == Path("r/fifo/exec-mock-np-edf")
    assert default_out_dir(other, sim_engine) == Path("results/fifo/sim")  # no override known


def test_policy_runs_get_their_own_folder_and_out_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    runs = {
        ("sim",): "results/fifo/sim",
        ("sim", "--policy", "fifo"): "results/fifo/sim",  # the scenario's own policy
        ("sim", "--policy", "np-edf"): "results/fifo/sim-np-edf",
        ("exec", "--backend", "mock", "--policy", "unscheduled"):
            "results/fifo/exec-mock-unscheduled",
        ("sim", "--policy", "np-edf", "--out", "mine"): "mine",
    }  # fmt: skip
    for args, folder in runs.items():
        assert main([args[0], str(FIFO), *args[1:], *RUN]) == 0
        assert f"results: {folder}/" in capsys.readouterr().out
        summary = json.loads((tmp_path / folder / "summary.json").read_text())
        assert summary["policy"] == (args[args.index("--policy") + 1] if "--policy" in args
                                     else "fifo")  # fmt: skip
    default = json.loads((tmp_path / "results/fifo/sim/summary.json").read_text())
    assert default["policy"] == "fifo"  # never replaced by an override's run


MS = 1_000_000


@pytest.mark.parametrize("rerun", [False, True])
def test_compare_never_replaces_a_users_summary(rerun: bool, tmp_path: Path) -> None:
    from aegis_core.tools.compare import compare

    s = replace_scenario(load_scenario(FIFO), duration_ns=200 * MS)
    mine = tmp_path / "fifo" / "sim"
    mine.mkdir(parents=True)
    (mine / "summary.json").write_text('{"mine": true}\n')
    with pytest.raises(InputError, match=r"holds summary\.json that AegisRT did not write"):
        compare(s, backend="mock", results=tmp_path, rerun=rerun)
    assert snapshot(mine) == {"summary.json": b'{"mine": true}\n'}


def test_compare_under_an_overriding_policy_runs_in_its_own_folders(tmp_path: Path) -> None:
    from aegis_core.tools.compare import compare

    s = replace_scenario(load_scenario(FIFO), duration_ns=200 * MS)
    other = replace_scenario(s, policy=get_policy("np-edf"))
    c = compare(other, backend="mock", results=tmp_path, own_policy=s.policy)
    assert (c.sim_dir, c.exec_dir) == (tmp_path / "fifo" / "sim-np-edf",
                                       tmp_path / "fifo" / "exec-mock-np-edf")  # fmt: skip
    assert json.loads((c.sim_dir / "summary.json").read_text())["policy"] == "np-edf"
    assert not (tmp_path / "fifo" / "sim").exists()


@pytest.mark.parametrize("name", [LOCK, MARKER])
def test_a_link_at_the_lock_or_the_marker_is_refused_and_not_followed(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    victim.write_text('{"schema": "aegis-results/1"}\n')  # even a marker's text, elsewhere
    out.mkdir()
    (out / name).symlink_to(victim)
    before = snapshot(out)
    assert sim(out) == 2
    assert str(out) in one_error(capsys)
    assert victim.read_text() == '{"schema": "aegis-results/1"}\n' and snapshot(out) == before


@pytest.mark.parametrize("flush", ["record", "instant"])
def test_the_trace_streams_to_its_temporary_name_in_each_flush_mode(
    flush: str, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    class Reading(FakeEngine):
        calls = 0

        def advance(self, until: Any) -> Any:
            self.calls += 1
            if self.calls == 5:  # mid-run: what a crash now would leave
                assert not (tmp_path / "trace.jsonl").exists()
                seen.append((tmp_path / "trace.jsonl.tmp").read_text().splitlines(keepends=True))
            return super().advance(until)

    s = make_scenario([{"name": "a", "period_ms": 10, "wcet_ms": 2}], duration_ms=1000)
    run_scenario(s, Reading(), out_dir=tmp_path, trace_flush=flush)
    [mid] = seen
    assert mid and all(line.endswith("\n") and json.loads(line) for line in mid)  # whole
    final = (tmp_path / "trace.jsonl").read_text().splitlines(keepends=True)
    assert final[: len(mid)] == mid and json.loads(final[-1])["kind"] == "end"
    assert not (tmp_path / "trace.jsonl.tmp").exists()


def test_compare_out_refuses_a_folder_of_the_users_files(tmp_path: Path) -> None:
    """``compare --out DIR`` holding the user's own compare.csv or cdf.png (no marker): exit 2
    before anything runs, the files untouched; a link at an output name is refused too."""
    from aegis_core.tools.cli import main

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "tiny_gpu.yaml"
    for name in ("compare.csv", "cdf.png", "gantt.png"):
        user = tmp_path / f"u-{name}"
        user.mkdir()
        (user / name).write_text("mine\n")
        argv = ["compare", str(scenario), "--backend", "mock", "--out", str(user),
                "--results", str(tmp_path / "r"), "--quiet"]  # fmt: skip
        assert main(argv) == 2
        assert (user / name).read_text() == "mine\n"
        assert sorted(p.name for p in user.iterdir()) == [name]
        assert not (tmp_path / "r").exists()  # refused before any run
    linked = tmp_path / "linked"
    linked.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (linked / ".aegis-results").write_text('{"schema": "aegis-results/1"}\n')
    (linked / "gantt.png").symlink_to(victim)
    argv = ["compare", str(scenario), "--backend", "mock", "--out", str(linked),
            "--results", str(tmp_path / "r2"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert victim.read_text() == "keep\n"


@pytest.mark.parametrize("name", [".aegis-lock", ".aegis-results.tmp"])
def test_a_users_file_at_the_lock_or_marker_names_is_kept(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of the user's named like the lock or the marker's temporary file, in a folder
    AegisRT never marked: refused, the file kept byte for byte."""
    from aegis_core.tools.cli import main

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "tiny_gpu.yaml"
    out = tmp_path / "u"
    out.mkdir()
    (out / name).write_text("my notes\n")
    assert main(["sim", str(scenario), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and name in err[0]
    assert "AegisRT did not write" in err[0] or "was not written by AegisRT" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (out / name).read_text() == "my notes\n"


def test_compare_never_reads_a_planted_fifo_as_a_run(tmp_path: Path) -> None:
    """A FIFO at a run folder's summary.json: compare does not block on it (reuse needs the
    marker and a regular file) and refuses the folder, exit 2."""
    from aegis_core.tools.cli import main

    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "tiny_gpu.yaml"
    sim = tmp_path / "r" / "tiny_gpu" / "sim"
    sim.mkdir(parents=True)
    os.mkfifo(sim / "summary.json")
    argv = ["compare", str(scenario), "--backend", "mock", "--results", str(tmp_path / "r"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert sorted(p.name for p in sim.iterdir()) == ["summary.json"]
