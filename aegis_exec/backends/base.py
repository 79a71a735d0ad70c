"""The compute-backend protocol the executor drives, and the shared pieces of its backends.

A backend owns streams (one per task), events (timing points on a stream) and device memory,
and runs one task's job (or lp-edf chunk) per :meth:`Backend.launch`. Every time it reports is
on the host's ``time.perf_counter_ns`` timeline (device times are mapped onto it), so the
engine can put releases, starts and ends on one clock.

Backends: ``cupy`` (CUDA streams, events, CUDA graphs; :mod:`aegis_exec.cupy_backend`),
``numpy`` (worker threads as streams; :mod:`aegis_exec.numpy_backend`) and ``mock``
(synthetic durations; :mod:`aegis_exec.mock_backend`). ``auto`` picks cupy when a GPU is
usable, else numpy. Each backend module imports its library lazily, so importing
:mod:`aegis_exec` never loads cupy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aegis_core.errors import InputError
from aegis_core.types import TimeNs

if TYPE_CHECKING:
    from .arena import Layout

BACKENDS = ("auto", "cupy", "numpy", "mock")


@dataclass(frozen=True, slots=True)
class Finished:
    """One launch ended: ``token`` is the dispatch's job seq; times on the host timeline."""

    token: int
    start_ns: TimeNs
    end_ns: TimeNs
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskWork:
    """What a backend prepares for one task before the run: its model graph (None: no model,
    mock only), the op range of each chunk, each chunk's planned duration (mock), and injected
    faults (tests): ``{k: message}``, job ``k`` of this task raises inside its kernels."""

    index: int
    name: str
    graph: Any  # aegis_core.graph.Graph | None
    ranges: tuple[range, ...]
    durations_ns: tuple[TimeNs, ...]
    faults: Mapping[int, str] = field(default_factory=dict)


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
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None
    ) -> None:
        """Start chunk ``chunk`` of job ``k`` of ``task`` on the task's stream; non-blocking.
        ``duration_ns``: the plan's execution time for it (the mock runs for that long; real
        backends run the kernels and ignore it)."""
        ...

    def snapshot(self) -> tuple[int, list[Finished]]:
        """The host clock now, and every launch that had ended by then and was not returned
        before (non-blocking). The clock is read first: nothing that ended by it is missed,
        so the engine's deadline checks at that instant cannot race a completion."""
        ...

    def wait(self, until_ns: int) -> None:
        """Block until a launch may have ended or the host clock reaches ``until_ns``."""
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


def cupy_usable() -> bool:
    """Is CuPy importable and a CUDA device usable? (asks the CuPy backend module, which
    imports cupy only now: the one module that may)."""
    from .cupy_backend import usable

    return usable()


def resolve(name: str) -> str:
    """``auto`` → ``cupy`` when a GPU is usable, else ``numpy``; other names checked."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "auto":
        return "cupy" if cupy_usable() else "numpy"
    if name == "cupy" and not cupy_usable():
        raise InputError(
            "the cupy backend needs CuPy and a usable CUDA GPU, and none was found "
            "(install the extra: pip install -e '.[gpu]'; or use --backend numpy)"
        )
    return name


def make_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name`` (already resolved), its module imported only now."""
    if name == "cupy":
        from .cupy_backend import CupyBackend

        return CupyBackend(**options)
    if name == "numpy":
        from .numpy_backend import NumpyBackend

        return NumpyBackend(**options)
    if name == "mock":
        from .mock_backend import MockBackend

        return MockBackend(**options)
    raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
