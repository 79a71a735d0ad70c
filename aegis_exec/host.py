"""A steadier host for the executor's loop thread: the one module that talks to the OS about
CPU affinity, real-time scheduling and locked memory.

:func:`apply` takes a :class:`HostSettings` (the decision) and returns an :class:`Applied`
record of what it did and what the OS refused, with the reason (e.g. ``SCHED_FIFO priority 10:
not permitted (EPERM; RLIMIT_RTPRIO 0)``); :func:`restore` undoes it. Nothing here raises
because the host says no: an unprivileged run (a container, CI) falls back quietly to the
default scheduler, and the run summary says so (``exec.host``).

What each setting does (Linux; measured in ``benchmarks/bench_host.py``):

* ``affinity``: the loop thread's CPUs (``sched_setaffinity`` on its thread id, so only that
  thread: backend threads started before it keep theirs). ``auto`` pins it to the last CPU
  of its allowed set, and only where the set has at least :data:`MIN_CPUS_TO_PIN` CPUs: on
  a 2-core host a pinned loop can no longer escape to the other core when a busy process
  shares its own; measured there, pinning bought nothing, alone or with ``SCHED_FIFO``, so
  there ``auto`` leaves it free (docs/BENCHMARKS.md §host).
* ``realtime``: ``SCHED_FIFO`` (``auto``, ``fifo``) or ``SCHED_RR`` at ``priority`` for the
  loop thread: it then preempts every normal process the moment a release or a completion is
  due (measured on mock: release-lag p99 from ms to µs, a loaded host's misses gone; on
  numpy the stream threads, at normal priority, still hold the GIL and the cores). The
  kernel's real-time throttling (``sched_rt_runtime_us``) keeps a spinning loop from locking
  up its CPU. A thread started during the run would inherit it (the engine starts none).
* ``lock_memory``: ``mlockall(MCL_CURRENT)`` once the backend is prepared: every page mapped
  then (interpreter, libraries, models, arenas) is faulted in and cannot be reclaimed, so no
  page fault (major or minor) lands on the run. Not ``MCL_FUTURE``: later allocations would
  be locked too, and an unprivileged limit could then make them fail. Process-wide. Off by
  default: measured, it bought nothing on mock or numpy while it made every mapped page
  resident (numpy ``three_models_cpu``: RSS 132 -> 345 MB, mostly thread stacks), and with
  CUDA's mappings it is untried.

Tests inject the OS (:class:`HostOs`): a fake that refuses exercises the fallback path on any
machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aegis_core.model.errors import InputError

MODES = ("auto", "off")
"""What ``aegis exec --host-tuning`` takes: ``auto`` (:class:`HostSettings` defaults) or ``off``."""

REALTIME = ("auto", "off", "fifo", "rr")
AFFINITY = ("auto", "off")

DEFAULT_PRIORITY = 10
"""Real-time priority of the loop thread: above every normal process (any real-time priority
is), below the kernel's own real-time threads (migration, watchdog: 99; threaded IRQs: 50)."""

PRIORITY_RANGE = (1, 99)
"""Linux's ``SCHED_FIFO`` / ``SCHED_RR`` priorities."""

MIN_CPUS_TO_PIN = 3
"""``auto`` affinity pins the loop thread only where it may run on at least this many CPUs."""

MCL_CURRENT = 1
"""``mlockall`` flag on x86-64 and arm64 Linux (other architectures: :data:`_MCL_ARCHES`)."""

_MCL_ARCHES = frozenset({"x86_64", "amd64", "aarch64", "arm64", "i686", "i386"})

SCHED_OTHER = getattr(os, "SCHED_OTHER", 0)
_LINUX_CLASSES = (("fifo", getattr(os, "SCHED_FIFO", 1)), ("rr", getattr(os, "SCHED_RR", 2)))
"""Linux's real-time scheduling classes by their ``realtime`` name (OS classes, not AegisRT
scheduling policies)."""
_CLASS_OF = dict(_LINUX_CLASSES)
_CLASS_NAMES = {SCHED_OTHER: "other", **{v: k for k, v in _LINUX_CLASSES}}


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What to ask of the host for the loop thread (see the module docstring).

    ``affinity``: ``auto``, ``off`` or the CPUs to pin to; ``realtime``: ``auto`` (FIFO when
    permitted), ``off``, ``fifo`` or ``rr``; ``priority``: the real-time priority (1-99);
    ``lock_memory``: ``mlockall(MCL_CURRENT)`` (default off). A refusal of any of them is
    recorded, never raised."""

    affinity: str | frozenset[int] = "auto"
    realtime: str = "auto"
    priority: int = DEFAULT_PRIORITY
    lock_memory: bool = False

    def __post_init__(self) -> None:
        a = self.affinity
        if isinstance(a, str):
            if a not in AFFINITY:
                raise InputError(
                    f"host affinity must be one of {AFFINITY} or a set of CPUs, got {a!r}"
                )
        elif not a or not all(isinstance(c, int) and c >= 0 for c in a):
            raise InputError(
                f"host affinity must be a non-empty set of CPU numbers >= 0, got {sorted(a)}"
            )
        if self.realtime not in REALTIME:
            raise InputError(f"host realtime must be one of {REALTIME}, got {self.realtime!r}")
        lo, hi = PRIORITY_RANGE
        if not lo <= self.priority <= hi:
            raise InputError(f"host priority must be in {lo}..{hi}, got {self.priority}")

    @property
    def policy(self) -> str | None:
        """The real-time policy asked for (``fifo`` / ``rr``), None when off."""
        return None if self.realtime == "off" else "rr" if self.realtime == "rr" else "fifo"

    def as_dict(self) -> dict[str, Any]:
        a = self.affinity
        return {
            "affinity": a if isinstance(a, str) else sorted(a),
            "realtime": self.realtime,
            "priority": self.priority,
            "lock_memory": self.lock_memory,
        }


OFF = HostSettings(affinity="off", realtime="off", lock_memory=False)


def settings(mode: HostSettings | str | None) -> HostSettings | None:
    """The settings for ``mode``: a :class:`HostSettings` as is; ``auto``: the defaults;
    ``off`` or None: None (the host is left alone). Anything else is an InputError."""
    if mode is None or isinstance(mode, HostSettings):
        return mode
    if mode == "auto":
        return HostSettings()
    if mode == "off":
        return None
    raise InputError(f"unknown host tuning {mode!r}; choose one of: {', '.join(MODES)}")


class HostOs(Protocol):
    """The OS calls :func:`apply` and :func:`restore` make (thread ids, not pids: each call
    acts on one thread). Failures raise OSError with its errno."""

    def gettid(self) -> int: ...
    def getaffinity(self, tid: int) -> frozenset[int]: ...
    def setaffinity(self, tid: int, cpus: frozenset[int]) -> None: ...
    def getscheduler(self, tid: int) -> tuple[int, int]:
        """(policy, priority)."""
        ...

    def setscheduler(self, tid: int, policy: int, priority: int) -> None: ...
    def mlockall(self, flags: int) -> None: ...
    def munlockall(self) -> None: ...
    def rlimit(self, name: str) -> int | None:
        """The soft limit ``RLIMIT_<NAME>`` (None: unlimited or unknown)."""
        ...


def _missing(what: str) -> OSError:
    return OSError(errno.ENOSYS, f"{what} is not available on this platform")


class LinuxHost:
    """:class:`HostOs` on the running system (``os``, and libc's ``mlockall`` via ctypes)."""

    def __init__(self) -> None:
        self._libc: Any = None

    def gettid(self) -> int:
        return threading.get_native_id()

    def getaffinity(self, tid: int) -> frozenset[int]:
        if not hasattr(os, "sched_getaffinity"):
            raise _missing("sched_getaffinity")
        return frozenset(os.sched_getaffinity(tid))

    def setaffinity(self, tid: int, cpus: frozenset[int]) -> None:
        if not hasattr(os, "sched_setaffinity"):
            raise _missing("sched_setaffinity")
        os.sched_setaffinity(tid, cpus)

    def getscheduler(self, tid: int) -> tuple[int, int]:
        if not hasattr(os, "sched_getscheduler"):
            raise _missing("sched_getscheduler")
        return os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority

    def setscheduler(self, tid: int, policy: int, priority: int) -> None:
        if not hasattr(os, "sched_setscheduler"):
            raise _missing("sched_setscheduler")
        os.sched_setscheduler(tid, policy, os.sched_param(priority))

    def _lib(self) -> Any:
        if self._libc is None:
            if platform.system() != "Linux" or platform.machine().lower() not in _MCL_ARCHES:
                raise _missing("mlockall")
            self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return self._libc

    def _call(self, name: str, *args: int) -> None:
        if getattr(self._lib(), name)(*args) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def mlockall(self, flags: int) -> None:
        self._call("mlockall", flags)

    def munlockall(self) -> None:
        self._call("munlockall")

    def rlimit(self, name: str) -> int | None:
        try:
            import resource

            soft = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))[0]
        except (ImportError, AttributeError, OSError, ValueError):
            return None
        return None if soft == resource.RLIM_INFINITY else soft


SYSTEM: HostOs = LinuxHost()
"""The OS :func:`apply` uses unless given one (tests pass a fake)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply` did to one thread (``tid``), and what to put back."""

    requested: HostSettings
    tid: int
    cpus: frozenset[int] | None = None  # pinned to these (None: affinity untouched)
    previous_cpus: frozenset[int] | None = None
    policy: str | None = None  # "fifo" / "rr" applied (None: scheduler untouched)
    priority: int | None = None
    previous_scheduler: tuple[int, int] | None = None
    memory_locked: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # setting -> why the OS said no
    skipped: dict[str, str] = field(default_factory=dict)  # setting -> why it was not asked
    restored: bool = False
    restore_failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The run summary's ``exec.host``."""
        return {
            "requested": self.requested.as_dict(),
            "applied": {
                "affinity": sorted(self.cpus) if self.cpus is not None else None,
                "realtime": self.policy,
                "priority": self.priority,
                "memory_locked": self.memory_locked,
            },
            "refused": dict(self.refused),
            "skipped": dict(self.skipped),
            **({"restore_failed": dict(self.restore_failed)} if self.restore_failed else {}),
        }


def report(applied: Applied | None) -> dict[str, Any] | None:
    """``exec.host`` of the run summary: None when the host was left alone."""
    return applied.as_dict() if applied is not None else None


def _why(what: str, exc: OSError, limit: str | None = None, host: HostOs | None = None) -> str:
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "?"
    text = "not permitted" if code == errno.EPERM else (os.strerror(code) if code else str(exc))
    if code == errno.ENOSYS:
        text = "not available on this platform"
    hint = ""
    if limit is not None and host is not None and code in (errno.EPERM, errno.ENOMEM):
        value = host.rlimit(limit)
        hint = f"; RLIMIT_{limit.upper()} {'unlimited' if value is None else value}"
    return f"{what}: {text.lower()} ({name}{hint})"


def pin_target(settings: HostSettings, allowed: frozenset[int]) -> frozenset[int] | str:
    """The CPUs to pin to, or why not to pin (``auto``: the last allowed CPU, where at least
    :data:`MIN_CPUS_TO_PIN` are allowed)."""
    a = settings.affinity
    if not isinstance(a, str):
        return a
    if len(allowed) < MIN_CPUS_TO_PIN:
        return f"auto: {len(allowed)} CPU(s) allowed, fewer than {MIN_CPUS_TO_PIN}: left free"
    return frozenset({max(allowed)})


def apply(settings: HostSettings, host: HostOs | None = None) -> Applied:
    """Apply ``settings`` to the calling thread; never raises for what the OS refuses (the
    record says what and why)."""
    os_ = host if host is not None else SYSTEM
    tid = os_.gettid()
    refused: dict[str, str] = {}
    skipped: dict[str, str] = {}
    got: dict[str, Any] = {}
    if settings.lock_memory:
        try:
            os_.mlockall(MCL_CURRENT)
            got["memory_locked"] = True
        except OSError as exc:
            refused["lock_memory"] = _why("mlockall(MCL_CURRENT)", exc, "memlock", os_)
    if settings.affinity != "off":
        try:
            allowed = os_.getaffinity(tid)
            target = pin_target(settings, allowed)
            if isinstance(target, str):
                skipped["affinity"] = target
            else:
                os_.setaffinity(tid, target)
                got["cpus"], got["previous_cpus"] = target, allowed
        except OSError as exc:
            refused["affinity"] = _why("sched_setaffinity", exc)
    policy = settings.policy
    if policy is not None:
        label = f"SCHED_{policy.upper()} priority {settings.priority}"
        try:
            previous = os_.getscheduler(tid)
            os_.setscheduler(tid, _CLASS_OF[policy], settings.priority)
            got["policy"], got["priority"] = policy, settings.priority
            got["previous_scheduler"] = previous
        except OSError as exc:
            refused["realtime"] = _why(label, exc, "rtprio", os_)
    return Applied(settings, tid, refused=refused, skipped=skipped, **got)


def restore(applied: Applied, host: HostOs | None = None) -> Applied:
    """Undo ``applied`` (scheduler, affinity, then the memory lock); a record marked
    restored, with anything the OS refused (never raises). Restoring twice does nothing."""
    if applied.restored:
        return applied
    os_ = host if host is not None else SYSTEM
    failed: dict[str, str] = {}
    if applied.previous_scheduler is not None:
        policy, priority = applied.previous_scheduler
        try:
            os_.setscheduler(applied.tid, policy, priority)
        except OSError as exc:
            failed["realtime"] = _why(f"back to {_CLASS_NAMES.get(policy, policy)}", exc)
    if applied.previous_cpus is not None:
        try:
            os_.setaffinity(applied.tid, applied.previous_cpus)
        except OSError as exc:
            failed["affinity"] = _why("sched_setaffinity", exc)
    if applied.memory_locked:
        try:
            os_.munlockall()
        except OSError as exc:
            failed["lock_memory"] = _why("munlockall", exc)
    return replace(applied, restored=True, restore_failed=failed)
