"""Running a sweep (``aegis sweep``): its partitions as Dask tasks, each written to the
Parquet store (:mod:`aegis_core.sweep.store`) as it finishes.

A partition is ``B`` sets (the spec's ``batch``) of one point, one Dask task: few enough
tasks that Dask's overhead per task (about a millisecond) stays small next to its work.
Where it runs: ``workers=1`` in this process, without Dask (the 1-process mode); a
``scheduler`` address: that cluster (``dask scheduler`` / ``dask worker``, started by the
user; unreachable within :data:`CONNECT_TIMEOUT_S`: an InputError naming it); else a
``LocalCluster`` of ``workers`` processes (default: the CPU count), one thread each. Every
set's seed derives from (spec seed, point, set), so the dataset is the same whatever runs it.
At most :data:`IN_FLIGHT` tasks per worker are submitted ahead; on SIGINT or SIGTERM
(:mod:`aegis_core.tools.signals`) nothing more is submitted, the pending tasks are cancelled
and the finished partitions stay: ``--resume`` goes on from them. dask.distributed is
imported only here, and only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aegis_core.model.errors import InputError, Interrupted, one_line
from aegis_core.run import stop
from aegis_core.sweep import store
from aegis_core.tools.progress import steps
from aegis_core.tools.signals import stop_on_signals

CONNECT_TIMEOUT_S = 10
"""How long ``--scheduler ADDRESS`` is tried before the run is refused."""
IN_FLIGHT = 4
"""Tasks submitted ahead per worker (the rest wait: a stop cancels few)."""
DEFAULT_BATCH = 100

Evaluate = Callable[[Any, Any, Sequence[int]], Sequence[Any]]
"""``evaluate_batch(spec, point, set_indices) -> rows`` (:mod:`aegis_core.sweep.spec`)."""
Points = Callable[[Any], Sequence[Any]]
"""``points(spec) -> [Point]``, each with its ``index``."""


@dataclass(frozen=True)
class Task:
    """One partition: the sets ``sets`` of point ``point`` (its index), batch ``batch``."""

    point: int
    batch: int
    sets: tuple[int, ...]


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    total: int
    """Partitions in the sweep."""
    written: int
    """Partitions this run wrote."""
    skipped: int
    """Partitions already there (``resume``)."""
    interrupted: str | None
    """The signal that stopped the run (``"SIGINT"``); None: it finished."""
    where: str
    """What ran it: ``1 process``, ``LocalCluster of N workers`` or the scheduler address."""


def tasks(spec: Any, points_of: Points) -> list[Task]:
    """Every partition of the sweep, point by point, in batches of ``spec.batch`` sets."""
    n, b = spec.sets_per_point, batch_of(spec)
    return [
        Task(p.index, k, tuple(range(k * b, min(n, k * b + b))))
        for p in points_of(spec)
        for k in range(-(-n // b))
    ]


def batch_of(spec: Any) -> int:
    return int(getattr(spec, "batch", None) or DEFAULT_BATCH)


def _spec_module() -> Any:
    import importlib

    return importlib.import_module("aegis_core.sweep.spec")


def run_partition(spec: Any, task: Task, evaluate: Evaluate, points_of: Points) -> Any:
    """The rows of one partition as an Arrow table (in a worker, or in this process)."""
    point = next(p for p in points_of(spec) if p.index == task.point)
    return store.table_of(evaluate(spec, point, task.sets))


def run_sweep(
    spec: Any,
    out_dir: str | Path,
    *,
    source: bytes,
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    sets_per_point: int | None = None,
    progress: IO[str] | None = None,
    evaluate_batch: Evaluate | None = None,
    points: Points | None = None,
    log: IO[str] | None = None,
    client: Any = None,
) -> SweepResult:
    """Run ``spec`` (its file's bytes: ``source``) into the sweep folder ``out_dir`` (see the
    module docstring); ``progress``: where to draw the bar; ``log``: where the dashboard link
    goes (default stderr). ``evaluate_batch`` and ``points`` default to the spec module's.
    ``client``: a ``distributed.Client`` of the caller's to run on (left open)."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if sets_per_point is not None:  # the spec module decides the limits
        spec = _spec_module().with_sets_per_point(spec, sets_per_point)
    evaluate = evaluate_batch or _spec_module().evaluate_batch
    points_of = points or _spec_module().points
    meta = store.Meta(store.sha256(source), spec.sets_per_point, batch_of(spec))
    out = Path(out_dir)
    store.check_folder(out, meta, resume)  # refused before a cluster starts
    every = tasks(spec, points_of)
    job = _Job(spec, evaluate, points_of)
    in_process = workers == 1 and scheduler is None and client is None
    dist = None if in_process else _distributed()
    with stop_on_signals(), _client(dist, scheduler, workers, client) as (client, where):
        if client is not None:
            print(f"aegis: sweep on {where}; dashboard: {_dashboard(client)}",
                  file=log or sys.stderr, flush=True)  # fmt: skip
        st = store.Store.open(out, source, meta, resume=resume, command="aegis sweep")
        try:
            done = st.done() if resume else set()
            todo = [t for t in every if (t.point, t.batch) not in done]
            counter = _Counter(steps(progress, len(every), "partitions", "sweep"), len(done))
            try:
                if client is None:
                    job.in_process(todo, st, counter)
                else:
                    job.on_cluster(client, todo, st, counter)
            finally:
                counter.close()
        finally:
            st.close()
        reason = stop.requested()
    return SweepResult(out, len(every), counter.written, len(every) - len(todo), reason, where)


class _Counter:
    def __init__(self, bar: Any, before: int) -> None:
        self.bar, self.before, self.written = bar, before, 0
        if bar is not None:
            bar.show(before)  # a resumed sweep starts from what it found

    def tick(self) -> None:
        self.written += 1
        if self.bar is not None:
            self.bar.show(self.before + self.written)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(frozen=True)
class _Job:
    spec: Any
    evaluate: Evaluate
    points_of: Points

    def in_process(self, todo: list[Task], st: store.Store, counter: _Counter) -> None:
        for t in todo:
            if stop.requested() is not None:
                return
            st.write(t.point, t.batch, run_partition(self.spec, t, self.evaluate, self.points_of))
            counter.tick()

    def on_cluster(self, client: Any, todo: list[Task], st: store.Store, counter: _Counter) -> None:
        width = IN_FLIGHT * max(1, len(client.scheduler_info().get("workers", {})))
        queue = iter(todo)
        ac = _distributed().as_completed()
        owner: dict[Any, Task] = {}
        self._submit(client, ac, queue, width, owner)
        try:
            for fut in _completed(ac):
                t = owner.pop(fut)
                try:
                    table = fut.result()
                except BaseException:
                    if stop.requested() is not None:  # Ctrl-C reached the workers too
                        break
                    raise
                st.write(t.point, t.batch, table)
                counter.tick()
                if stop.requested() is None:
                    self._submit(client, ac, queue, 1, owner)
        finally:
            if owner:
                client.cancel(list(owner))

    def _submit(
        self, client: Any, ac: Any, queue: Iterator[Task], n: int, owner: dict[Any, Task]
    ) -> None:
        for _ in range(n):
            t = next(queue, None)
            if t is None:
                return
            fut = client.submit(run_partition, self.spec, t, self.evaluate, self.points_of,
                                pure=False)  # fmt: skip
            owner[fut] = t
            ac.add(fut)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(f"aegis sweep needs dask.distributed for more than one worker "
                         f"({store.PIP_HINT}), or --workers 1") from None  # fmt: skip
    return distributed


def _completed(ac: Any) -> Iterator[Any]:
    """The futures as they finish, until a stop request (which also ends the wait)."""
    it = iter(ac)
    with stop.armed():
        while stop.requested() is None:
            try:
                with stop.interruptible:
                    fut = next(it)
            except StopIteration:
                return
            except Interrupted:
                return
            yield fut


def _connect(dist: Any, address: str) -> Any:
    """``Client(address)`` within :data:`CONNECT_TIMEOUT_S` of wall time, whatever answers
    there: the handshake runs on a daemon thread, so a peer that accepts the connection but
    never speaks Dask (a web server, the dashboard port) cannot hang the command, and any
    failure (a reply read as a huge message, an unknown protocol) is one line, exit 2."""
    done: list[Any] = []

    def attempt() -> None:
        try:
            done.append(dist.Client(address, timeout=CONNECT_TIMEOUT_S))
        except BaseException as exc:  # reported below, on the caller's thread
            done.append(exc)

    thread = threading.Thread(target=attempt, name="aegis-sweep-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5)
    result = done[0] if done else TimeoutError("no Dask handshake")
    if isinstance(result, BaseException):
        raise InputError(f"--scheduler {one_line(address)}: cannot reach a Dask scheduler "
                         f"there within {CONNECT_TIMEOUT_S} s ({type(result).__name__}); "
                         "start `dask scheduler` there, or leave --scheduler out for a local "
                         "cluster") from None  # fmt: skip
    return result


class _client:
    """``with _client(distributed, address, workers) as (client, where)``: a client of the
    cluster at ``address``, or of a new LocalCluster; both closed on the way out. No
    ``distributed``: no client (the 1-process mode); a ``given`` client: that one, kept open."""

    def __init__(
        self, dist: Any, address: str | None, workers: int | None, given: Any = None
    ) -> None:
        self._dist, self._address, self._workers, self._given = dist, address, workers, given
        self._cluster: Any = None
        self._client: Any = None

    def __enter__(self) -> tuple[Any, str]:
        if self._dist is None:
            return None, "1 process"
        if self._given is not None:
            n = len(self._given.scheduler_info().get("workers", {}))
            return self._given, f"the caller's cluster of {n} worker{'s' * (n != 1)}"
        if self._address is not None:
            self._client = _connect(self._dist, self._address)
            return self._client, f"the cluster at {self._address}"
        import logging

        n = self._workers or os.cpu_count() or 1
        with _workers_ignore_sigint():
            self._cluster = self._dist.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR,
            )  # fmt: skip
        try:
            self._client = self._dist.Client(self._cluster)
        except BaseException:
            self._cluster.close()
            raise
        return self._client, f"a LocalCluster of {n} worker{'s' * (n != 1)}"

    def __exit__(self, *exc: object) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """While the LocalCluster starts its worker processes: SIGINT ignored, which they inherit
    (an ignored signal stays ignored across exec), so that Ctrl-C, sent to the whole process
    group, reaches only this process: it stops the sweep and closes the cluster, without a
    traceback from each worker. Only the main thread can do this (elsewhere: nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _dashboard(client: Any) -> str:
    try:
        link = client.dashboard_link
    except Exception:  # no dashboard service (bokeh not installed)
        link = None
    return str(link) if link else "none (pip install bokeh for Dask's dashboard)"
