"""The executor's compute backends: the one registry of names, factories and capabilities.

* ``cupy``: CUDA streams, events and CUDA graphs (:mod:`aegis_exec.backends.cupy`, the only
  module that imports ``cupy``, and only when the backend is built);
* ``numpy``: real kernels on the CPU, one worker thread per stream
  (:mod:`aegis_exec.backends.numpy`);
* ``onnxruntime``: each task's model as an ONNX Runtime session, one worker thread per stream
  (:mod:`aegis_exec.backends.onnxruntime`, the only module that imports ``onnxruntime``);
* ``mock``: no computation, each launch takes its planned duration
  (:mod:`aegis_exec.backends.mock`).

``auto`` picks the first usable of :data:`AUTO`. Code outside this module never tests a
backend's name: it asks :func:`spec` for the backend's :class:`Capabilities`. Each backend
module is imported only when its backend is built, so importing :mod:`aegis_exec` loads
neither CuPy nor a backend it does not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from aegis_core.model.errors import ONNX_PIP_HINT, InputError

from ..clock import WALL, Clock
from .base import Backend, Finished, TaskWork

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend does, for the engine, the profiler and the CLI to decide on."""

    executes_models: bool
    """Runs each task's model: every task that runs needs one (else: planned durations)."""
    cuda_graphs: bool
    """Can replay a job as one CUDA graph (the ``graphs`` option; off: eager launches)."""
    memory_plan: bool
    """Places activations and scratch buffers in the planned shared arena."""
    replays_exec_time: bool
    """Runs each launch for the plan's execution time (``duration_ns`` of launch)."""
    stream_priorities: bool = False
    """Creates each task's stream with the priority of its :class:`TaskWork` (``priority``:
    0 = the highest) and lets the device order the jobs in flight by it: a policy with
    ``stream_priorities`` (``stream-priority``) runs only on such a backend; elsewhere the
    executor refuses it with a one-line error (never silently as plain ``unscheduled``)."""
    op_chunks: bool = True
    """Runs a job as chunks of its model's operators (lp-edf's preemption points); without
    it a job whose budget has more than one chunk is refused with a one-line error (never
    run as a whole model per chunk)."""


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    module: str
    """Module under :mod:`aegis_exec.backends` with the backend class ``cls`` and
    ``usable()``."""
    cls: str
    caps: Capabilities
    unusable: str = ""
    """Why it may be unavailable, and what to do (InputError text)."""

    def usable(self) -> bool:
        """Every backend module has ``usable()``: can it run here?"""
        ok: bool = self._module().usable()
        return ok

    def refuses(self, graph: Any) -> str | None:
        """Why this backend cannot run ``graph`` (an :class:`aegis_core.graph.Graph`), checked
        before the run; None: it can. A backend module may define ``refuses(graph)``."""
        check = getattr(self._module(), "refuses", None)
        return None if check is None else check(graph)

    def _module(self) -> Any:
        return import_module(f"{__name__}.{self.module}")

    def build(self, clock: Clock, **options: Any) -> Backend:
        backend: Backend = getattr(self._module(), self.cls)(clock=clock, **options)
        return backend


REGISTRY: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec(
            "cupy", "cupy", "CupyBackend",
            Capabilities(executes_models=True, cuda_graphs=True, memory_plan=True,
                         replays_exec_time=False, stream_priorities=True),
            "the cupy backend needs CuPy and a usable CUDA GPU, and none was found "
            "(install the extra: pip install -e '.[gpu]'; or use --backend numpy)",
        ),
        BackendSpec(
            "numpy", "numpy", "NumpyBackend",
            Capabilities(executes_models=True, cuda_graphs=False, memory_plan=True,
                         replays_exec_time=False),
        ),
        BackendSpec(
            "onnxruntime", "onnxruntime", "OnnxRuntimeBackend",
            Capabilities(executes_models=True, cuda_graphs=False, memory_plan=False,
                         replays_exec_time=False, op_chunks=False),
            "the onnxruntime backend needs the onnxruntime package, and it is not installed "
            f"(install the extra: {ONNX_PIP_HINT}; or use --backend numpy)",
        ),
        BackendSpec(
            "mock", "mock", "MockBackend",
            Capabilities(executes_models=False, cuda_graphs=False, memory_plan=False,
                         replays_exec_time=True),
        ),
    )
}  # fmt: skip

AUTO_ORDER = ("cupy", "numpy")
"""``auto``: the first of these that is usable."""


def names() -> tuple[str, ...]:
    """Every name ``--backend`` takes: ``auto`` and the registered backends."""
    return (AUTO, *REGISTRY)


def spec(name: str) -> BackendSpec:
    """The registered backend ``name`` (not ``auto``: :func:`resolve` it first)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}; choose one of: {', '.join(names())}") from None


def usable(name: str) -> bool:
    """Can backend ``name`` run here (cupy: CuPy importable and a CUDA device usable)?"""
    return spec(name).usable()


def resolve(name: str) -> str:
    """``auto`` → the first usable of :data:`AUTO_ORDER`; other names checked, and refused
    (InputError saying why) when they cannot run here."""
    if name == AUTO:
        return next((n for n in AUTO_ORDER if usable(n)), AUTO_ORDER[-1])
    s = spec(name)
    if not usable(name):
        raise InputError(s.unusable or f"the {name} backend cannot run here")
    return name


def make_backend(name: str, clock: Clock = WALL, **options: Any) -> Backend:
    """The backend called ``name`` (already resolved) on ``clock``, its module imported now."""
    return spec(name).build(clock, **options)


__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "REGISTRY",
    "Backend",
    "BackendSpec",
    "Capabilities",
    "Finished",
    "TaskWork",
    "make_backend",
    "names",
    "resolve",
    "spec",
    "usable",
]
