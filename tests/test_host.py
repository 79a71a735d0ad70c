"""The host settings of the executor's loop thread (``aegis_exec.host``): what is applied, what
a refusing host gives (a quiet fallback, recorded with its reason), what is restored, and the
engine and CLI hooks. The OS is a fake here (both paths on any machine); one test drives the
real OS and asserts only what holds whether or not it permits real-time scheduling."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import make_scenario

from aegis_core.model.errors import InputError
from aegis_core.tools.cli import main
from aegis_core.tools.runner import run_scenario
from aegis_exec import host
from aegis_exec.engine import ExecEngine
from aegis_exec.host import HostSettings
from aegis_exec.testing import VirtualClock

FIFO, RR = getattr(os, "SCHED_FIFO", 1), getattr(os, "SCHED_RR", 2)


class FakeOs:
    """A HostOs with one thread's state; ``refuse``: call name -> errno it fails with."""

    def __init__(self, cpus: set[int], refuse: dict[str, int] | None = None,
                 rlimits: dict[str, int | None] | None = None) -> None:  # fmt: skip
        self.cpus = frozenset(cpus)
        self.scheduler = (0, 0)
        self.locked = False
        self.refuse = refuse or {}
        self.rlimits = rlimits or {}
        self.calls: list[tuple[Any, ...]] = []

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.refuse:
            code = self.refuse[name]
            raise (PermissionError if code == errno.EPERM else OSError)(code, os.strerror(code))

    def gettid(self) -> int:
        return 4242

    def getaffinity(self, tid: int) -> frozenset[int]:
        self._call("getaffinity", tid)
        return self.cpus

    def setaffinity(self, tid: int, cpus: frozenset[int]) -> None:
        self._call("setaffinity", tid, cpus)
        self.cpus = frozenset(cpus)

    def getscheduler(self, tid: int) -> tuple[int, int]:
        self._call("getscheduler", tid)
        return self.scheduler

    def setscheduler(self, tid: int, policy: int, priority: int) -> None:
        self._call("setscheduler", tid, policy, priority)
        self.scheduler = (policy, priority)

    def mlockall(self, flags: int) -> None:
        self._call("mlockall", flags)
        self.locked = True

    def munlockall(self) -> None:
        self._call("munlockall")
        self.locked = False

    def rlimit(self, name: str) -> int | None:
        return self.rlimits.get(name)

    def state(self) -> tuple[frozenset[int], tuple[int, int], bool]:
        return self.cpus, self.scheduler, self.locked


def test_auto_runs_the_thread_fifo_pinned_to_its_last_cpu() -> None:
    fake = FakeOs({0, 2, 5, 7})
    a = host.apply(HostSettings(), fake)
    assert fake.state() == (frozenset({7}), (FIFO, host.DEFAULT_PRIORITY), False)
    assert not any(c[0] == "mlockall" for c in fake.calls)  # memory: only when asked
    assert a.as_dict()["applied"] == {
        "affinity": [7], "realtime": "fifo", "priority": 10, "memory_locked": False,
    }  # fmt: skip
    assert a.refused == {} and a.skipped == {}
    back = host.restore(a, fake)
    assert fake.state() == (frozenset({0, 2, 5, 7}), (0, 0), False)
    assert back.restored and back.restore_failed == {}
    n = len(fake.calls)
    assert host.restore(back, fake) is back and len(fake.calls) == n  # twice: nothing more


def test_auto_leaves_the_thread_free_where_few_cpus_are_allowed() -> None:
    fake = FakeOs({0, 1})
    a = host.apply(HostSettings(), fake)
    assert fake.cpus == {0, 1} and not any(c[0] == "setaffinity" for c in fake.calls)
    assert a.cpus is None and set(a.skipped) == {"affinity"} and a.refused == {}
    assert a.policy == "fifo" and not a.memory_locked


def test_locked_memory_is_locked_for_the_run_and_unlocked_after() -> None:
    fake = FakeOs({0, 1})
    a = host.apply(dataclasses.replace(host.OFF, lock_memory=True), fake)
    assert fake.calls == [("mlockall", host.MCL_CURRENT)] and a.memory_locked
    host.restore(a, fake)
    assert fake.calls[-1] == ("munlockall",) and not fake.locked


def test_an_unprivileged_host_refuses_quietly_with_the_reason() -> None:
    fake = FakeOs(
        set(range(8)),
        refuse={"setscheduler": errno.EPERM, "mlockall": errno.ENOMEM, "setaffinity": errno.EINVAL},
        rlimits={"rtprio": 0, "memlock": 8 << 20},
    )
    a = host.apply(HostSettings(lock_memory=True), fake)  # no exception
    assert fake.state() == (frozenset(range(8)), (0, 0), False)
    assert a.refused == {
        "realtime": "SCHED_FIFO priority 10: not permitted (EPERM; RLIMIT_RTPRIO 0)",
        "lock_memory": "mlockall(MCL_CURRENT): cannot allocate memory "
        f"(ENOMEM; RLIMIT_MEMLOCK {8 << 20})",
        "affinity": "sched_setaffinity: invalid argument (EINVAL)",
    }
    assert a.as_dict()["applied"] == {
        "affinity": None, "realtime": None, "priority": None, "memory_locked": False,
    }  # fmt: skip
    fake.calls.clear()
    assert host.restore(a, fake).restored and fake.calls == []  # nothing to undo


def test_a_platform_without_the_calls_is_a_refusal_too() -> None:
    fake = FakeOs({0, 1, 2}, refuse={"getscheduler": errno.ENOSYS})
    a = host.apply(dataclasses.replace(host.OFF, realtime="rr"), fake)
    assert a.refused == {
        "realtime": "SCHED_RR priority 10: not available on this platform (ENOSYS)"
    }


def test_explicit_settings_are_applied_as_given() -> None:
    fake = FakeOs({0, 1})
    s = HostSettings(affinity=frozenset({0}), realtime="rr", priority=42, lock_memory=False)
    a = host.apply(s, fake)
    assert fake.state() == (frozenset({0}), (RR, 42), False)
    assert (a.cpus, a.policy, a.priority, a.memory_locked) == (frozenset({0}), "rr", 42, False)
    assert a.as_dict()["requested"] == {
        "affinity": [0], "realtime": "rr", "priority": 42, "lock_memory": False,
    }  # fmt: skip


def test_off_touches_nothing() -> None:
    fake = FakeOs({0, 1, 2, 3})
    a = host.apply(host.OFF, fake)
    assert fake.calls == [] and a.as_dict()["refused"] == {}
    assert host.settings("off") is None and host.settings(None) is None
    assert host.settings("auto") == HostSettings()


def test_a_failed_restore_is_recorded_not_raised() -> None:
    fake = FakeOs({0, 1, 2})
    a = host.apply(HostSettings(lock_memory=True), fake)
    fake.refuse["munlockall"] = errno.EPERM
    back = host.restore(a, fake)
    assert back.restore_failed == {"lock_memory": "munlockall: not permitted (EPERM)"}
    assert back.as_dict()["restore_failed"] == back.restore_failed
    assert fake.scheduler == (0, 0) and fake.cpus == {0, 1, 2}  # the rest still undone


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"realtime": "deadline"}, "host realtime must be one of"),
        ({"priority": 0}, r"host priority must be in 1\.\.99, got 0"),
        ({"priority": 100}, r"host priority must be in 1\.\.99, got 100"),
        ({"affinity": "all"}, "host affinity must be one of"),
        ({"affinity": frozenset()}, "non-empty set of CPU numbers"),
        ({"affinity": frozenset({-1})}, "non-empty set of CPU numbers"),
    ],
)
def test_bad_settings_are_input_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        HostSettings(**kwargs)


def test_an_unknown_mode_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown host tuning 'max'; choose one of: auto, off"):
        ExecEngine("mock", host="max")


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling calls")
def test_the_real_host_is_restored_whatever_it_permits() -> None:
    """On this machine, privileged or not: the thread ends as it began, and every setting
    asked for is either applied or refused with a reason."""
    tid = threading.get_native_id()
    before = (os.sched_getaffinity(tid), os.sched_getscheduler(tid))
    s = HostSettings(affinity=frozenset({max(before[0])}), realtime="fifo", lock_memory=False)
    a = host.apply(s)
    try:
        assert (a.policy is not None) != ("realtime" in a.refused)
        assert (a.cpus is not None) != ("affinity" in a.refused)
        if a.policy is not None:
            assert os.sched_getscheduler(tid) == FIFO
    finally:
        back = host.restore(a)
    assert back.restore_failed == {}
    assert (os.sched_getaffinity(tid), os.sched_getscheduler(tid)) == before


SCENARIO = make_scenario(
    [{"name": "a", "period_ms": 10, "wcet_ms": 2}, {"name": "b", "period_ms": 20, "wcet_ms": 3}],
    duration_ms=60,
)


class Probe:
    """Wraps a backend; records the fake OS's state at every launch (during the run)."""

    def __init__(self, inner: Any, fake: FakeOs) -> None:
        self.inner, self.fake, self.seen = inner, fake, set[Any]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def launch(self, *args: Any) -> None:
        self.seen.add(self.fake.state())
        self.inner.launch(*args)


def test_the_engine_applies_for_the_run_and_restores_at_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeOs({0, 1, 2, 3})
    monkeypatch.setattr(host, "SYSTEM", fake)
    probes: list[Probe] = []

    def wrap(b: Any) -> Any:
        probes.append(Probe(b, fake))
        return probes[-1]

    eng = ExecEngine("mock", clock=VirtualClock(), wrap=wrap, host="auto")
    summary = run_scenario(SCENARIO, eng, write=False).summary
    assert probes[0].seen == {(frozenset({3}), (FIFO, 10), False)}  # every launch: applied
    assert fake.state() == (frozenset({0, 1, 2, 3}), (0, 0), False)  # after: restored
    assert summary["exec"]["host"]["applied"] == {
        "affinity": [3], "realtime": "fifo", "priority": 10, "memory_locked": False,
    }  # fmt: skip
    run_scenario(SCENARIO, eng, write=False)  # a second run applies (and restores) again
    assert [c[0] for c in fake.calls].count("setscheduler") == 4
    assert fake.scheduler == (0, 0)


def test_the_engine_leaves_the_host_alone_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOs({0, 1, 2, 3})
    monkeypatch.setattr(host, "SYSTEM", fake)
    summary = run_scenario(SCENARIO, ExecEngine("mock", clock=VirtualClock()), write=False).summary
    assert summary["exec"]["host"] is None and fake.calls == []


def _exec(tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "s.yaml"
    doc = {"name": "h", "duration_ms": 20, "tasks": [{"name": "a", "period_ms": 10, "wcet_ms": 1}]}
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    rc = main(["exec", str(path), "--backend", "mock", "--out", str(out), "--no-trace", *flags])
    summary = json.loads((out / "summary.json").read_text()) if rc == 0 else {}
    return rc, summary


def test_exec_tunes_the_host_by_default_and_not_when_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeOs({0, 1}, refuse={"setscheduler": errno.EPERM}, rlimits={"rtprio": 0})
    monkeypatch.setattr(host, "SYSTEM", fake)
    rc, summary = _exec(tmp_path)
    assert rc == 0
    h = summary["exec"]["host"]
    assert h["requested"]["realtime"] == "auto" and h["applied"]["realtime"] is None
    assert h["refused"] == {
        "realtime": "SCHED_FIFO priority 10: not permitted (EPERM; RLIMIT_RTPRIO 0)"
    }
    out = capsys.readouterr().out
    assert "host: nothing applied; refused: SCHED_FIFO priority 10: not permitted" in out
    fake.calls.clear()
    rc, summary = _exec(tmp_path, "--host-tuning", "off")
    assert rc == 0 and summary["exec"]["host"] is None and fake.calls == []
    assert "host:" not in capsys.readouterr().out


def test_exec_with_an_unknown_host_tuning_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exec(tmp_path, "--host-tuning", "max")[0] == 2
    assert "unknown host tuning 'max'" in capsys.readouterr().err
