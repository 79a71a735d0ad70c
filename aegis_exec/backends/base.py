"""The compute-backend protocol the executor drives, and what it hands a backend.

A backend owns streams (one per task), events (timing points on a stream) and device memory,
and runs one task's job (or lp-edf chunk) per :meth:`Backend.launch`. Every time it reports is
on the timeline of the :class:`~aegis_exec.clock.Clock` it was built with (the engine's;
device times are mapped onto it), so the engine can put releases, starts and ends on one
clock. Errors leave a backend as :mod:`aegis_core.model.errors` only: :class:`JobFault` from
:meth:`Backend.launch` fails that job; :class:`BackendError` ends the run. The backends
themselves and their registry live in :mod:`aegis_exec.backends`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    from ..arena import Layout


@dataclass(frozen=True, slots=True)
class Finished:
    """One launch ended: ``token`` is the dispatch's job seq; times on the clock's timeline;
    ``error``: the job's kernels failed (reported as that job's fault)."""

    token: int
    start_ns: TimeNs
    end_ns: TimeNs
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskWork:
    """What a backend prepares for one task before the run: its model graph (None: no model,
    or rejected), the op range of each chunk, each chunk's planned duration, and its stream's
    priority rank (0 = the highest; None: the device's default priority), given only under a
    policy with ``stream_priorities`` to a backend with that capability."""

    index: int
    name: str
    graph: Any  # aegis_core.graph.Graph | None
    ranges: tuple[range, ...]
    durations_ns: tuple[TimeNs, ...]
    priority: int | None = None


class Backend(Protocol):
    """Streams, events, memory, launch, synchronize — what the executor needs of a device."""

    name: str
    device: str

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        """Build every task's context (buffers, weights, stream; cupy: the CUDA graphs) and
        warm it up, so the first timed job pays no one-off cost. With a ``layout``
        (:mod:`aegis_exec.arena`) activations and scratch buffers are views into one arena
        at their planned offsets."""
        ...

    def graphs(self) -> dict[int, Any]:
        """Each loaded task's ``CompiledGraph`` by task index (debug checks)."""
        ...

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        """Start chunk ``chunk`` of job ``k`` of ``task`` on the task's stream; non-blocking.
        ``token`` names this launch (unique in a run). ``duration_ns``: the plan's
        execution time for it (given to backends that replay it, see the
        ``replays_exec_time`` capability; others run the kernels). ``after``: the token of
        a launch still in flight that this one is chained behind (decided ahead): it starts
        on the device when that one ends, with no host step in between (and at once if that
        one has ended already). Raises JobFault when this job's kernels fail to launch."""
        ...

    def snapshot(self) -> tuple[int, list[Finished]]:
        """The clock now, and every launch that had ended by then and was not returned
        before (non-blocking). The clock is read first: nothing that ended by it is missed,
        so the engine's deadline checks at that instant cannot race a completion."""
        ...

    def wait(self, until_ns: int) -> None:
        """Block until a launch may have ended or the clock reaches ``until_ns``."""
        ...

    def synchronize(self) -> None:
        """Wait until every launch has ended."""
        ...

    def report(self) -> dict[str, Any]:
        """Device, library versions, memory figures, for the run summary."""
        ...

    def close(self) -> None:
        """Release every stream, event and buffer (idempotent)."""
        ...
