"""The ONNX Runtime backend: each task's model is one ``InferenceSession``, on its own stream.

This is the only module that imports ``onnxruntime``, and only when the backend is built
(``usable()`` tries the import). Each task gets one session (``CUDAExecutionProvider`` first
when the installed onnxruntime has it, e.g. ``onnxruntime-gpu``, else
``CPUExecutionProvider``), with one intra-op and one inter-op thread and sequential execution,
run on the task's :class:`~aegis_exec.backends.workers.WorkerStream` (the stream machinery
the numpy backend uses: one thread per stream, host timestamps as its events).

* The model: the task graph's ONNX file (``graph.weights.onnx_path``, an imported model, with
  its real weights; given to ORT as an absolute path), or else the graph exported by
  :func:`aegis_core.graph.onnx_export.to_onnx` with the weights the numpy backend uses: a
  graph file's real ones (:func:`aegis_core.graph.weights.load_weights`, e.g. the npz ``aegis
  import -o`` writes), else the seeded random ones (:func:`aegis_exec.kernels.init_params`,
  seed = the task's index), so both backends compute the same outputs. The input is that
  seed's input too (:func:`aegis_exec.kernels.seeded_input`). Real weights are checked
  against the digest the graph was made from, as the numpy backend checks them.
* Input and outputs are bound once (IO binding, preallocated on the session's device): a run
  allocates no input or output. ORT keeps its own memory (no planned arena), runs a whole
  model per launch (no lp-edf chunks) and has no CUDA graphs here: see the capabilities in
  :mod:`aegis_exec.backends`.
* Errors: anything ORT raises while loading is a BackendError (one line); an exception of a
  job's ``run``, on its stream's thread, is that job's fault (``Finished.error``, one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import (
    ONNX_PIP_HINT,
    ORT_LOG_SEVERITY,
    AegisError,
    BackendError,
    JobFault,
    flatten,
)

from ..clock import WALL, Clock
from .base import TaskWork
from .workers import ThreadedBackend, cpu_name

if TYPE_CHECKING:
    from aegis_core.graph.ir import Graph

    from ..arena import Layout

PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
"""Execution providers in order of preference: the first one the installed onnxruntime has."""
THREADS = 1
"""Intra-op and inter-op threads of each session: each stream is one thread of compute."""


def usable() -> bool:
    """Is ``onnxruntime`` importable?"""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def refuses(graph: Graph) -> str | None:
    """Why this backend cannot run ``graph`` (checked before the run), or None: a graph with
    no ONNX file of its own (a builtin, a graph file, with random or npz weights) must be
    exportable, with ``onnx`` installed."""
    if _onnx_file(graph) is not None:
        return None
    from aegis_core.graph.onnx_export import unexportable

    problem = unexportable(graph)
    if problem is not None:
        return problem
    try:
        import onnx  # noqa: F401
    except ImportError:
        return f"exporting it to ONNX needs the onnx package: {ONNX_PIP_HINT}"
    return None


@contextlib.contextmanager
def ort_errors(where: str) -> Iterator[None]:
    """The seam: anything but an AegisError raised while doing ``where`` becomes a
    BackendError, on one line (ORT's messages span several)."""
    try:
        yield
    except AegisError:
        raise
    except MemoryError as exc:
        raise BackendError(f"not enough memory while {where}: {flatten(str(exc))}") from exc
    except Exception as exc:
        raise BackendError(
            f"onnxruntime failed while {where}: {type(exc).__name__}: {flatten(str(exc))}"
        ) from exc


def _onnx_file(graph: Graph) -> str | None:
    """The ONNX file ORT loads for ``graph`` (absolute), if it has one of its own."""
    path = graph.weights.onnx_path if graph.weights is not None else None
    return None if path is None else str(Path(path).absolute())


def _model(graph: Graph, seed: int) -> tuple[Any, Any]:
    """The model ORT loads (an absolute path or serialized bytes) and the task's input (host
    float32): the numpy backend's weights and input for the same seed."""
    from aegis_core.graph.onnx_export import to_onnx
    from aegis_core.graph.weights import load_weights

    from ..kernels import init_params, seeded_input

    real = load_weights(graph)  # None: random weights; else checked against its digest
    path = _onnx_file(graph)
    if real is None:
        params, x = init_params(graph, seed)
        return to_onnx(graph, params), x
    return (path if path is not None else to_onnx(graph, real)), seeded_input(graph, seed)


class _Session:
    """One task's InferenceSession with its input and outputs bound once."""

    def __init__(self, ort: Any, model: Any, x: Any, providers: Sequence[str]) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = THREADS
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = ORT_LOG_SEVERITY  # ORT's log is not AegisRT's output
        self.session = ort.InferenceSession(model, sess_options=opts, providers=list(providers))
        self.provider: str = self.session.get_providers()[0]
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs; this backend feeds one")
        device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        first = self.session.run(None, {inputs[0].name: x})  # the outputs' shapes
        self.binding = self.session.io_binding()
        self.input = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
        self.binding.bind_ortvalue_input(inputs[0].name, self.input)
        self.outputs = [ort.OrtValue.ortvalue_from_shape_and_type(list(v.shape), v.dtype, device, 0)
                        for v in first]  # fmt: skip
        for meta, value in zip(self.session.get_outputs(), self.outputs, strict=True):
            self.binding.bind_ortvalue_output(meta.name, value)
        self.nbytes = x.nbytes + sum(v.nbytes for v in first)

    def run(self) -> None:
        """One inference into the bound outputs; an error is this job's fault (one line)."""
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as exc:
            raise JobFault(f"onnxruntime: {type(exc).__name__}: {flatten(str(exc))}") from None

    def output(self) -> Any:
        """The first output, as a host NumPy array (a copy; checks)."""
        return self.outputs[0].numpy()


class OnnxRuntimeBackend(ThreadedBackend):
    """Each task's model as an ONNX Runtime session, one :class:`WorkerStream` per task."""

    name = "onnxruntime"

    def __init__(self, *, clock: Clock = WALL, **options: Any) -> None:
        super().__init__(clock=clock)
        try:
            import onnxruntime as ort  # the one place onnxruntime is imported
        except ImportError:
            raise BackendError(
                f"the onnxruntime backend needs onnxruntime: {ONNX_PIP_HINT}"
            ) from None
        self.ort = ort
        available = set(ort.get_available_providers())
        self.providers = tuple(p for p in PROVIDERS if p in available)
        if not self.providers:
            raise BackendError(f"onnxruntime offers none of the providers {', '.join(PROVIDERS)}")
        gpu = self.providers[0] == "CUDAExecutionProvider"
        self.device = f"CUDA via onnxruntime ({ort.get_device()})" if gpu else cpu_name()
        self.provider = self.providers[0]
        self._sessions: list[_Session | None] = []
        self._work: list[TaskWork] = []
        self._bytes = 0

    def prepare(self, work: Sequence[TaskWork], layout: Layout | None = None) -> None:
        self._shorten_switch()
        self._work = list(work)
        for w in work:
            if w.graph is None:
                self._sessions.append(None)
                self._streams.append(None)
                continue
            if len(w.ranges) != 1:
                raise BackendError(f"task '{w.name}': the onnxruntime backend runs a whole model "
                                   f"per launch, not {len(w.ranges)} chunks")  # fmt: skip
            where = (f"loading model {w.graph.name} (batch {w.graph.batch}) for task "
                     f"'{w.name}'")  # fmt: skip
            with ort_errors(where):
                session = _Session(self.ort, *_model(w.graph, w.index), self.providers)
            self.provider = session.provider  # the same for every session
            self._bytes += session.nbytes
            self._sessions.append(session)
            self._streams.append(self._open(w.name, session.run))

    def launch(
        self, task: int, chunk: int, token: int, k: int, duration_ns: int | None = None,
        after: int | None = None,
    ) -> None:  # fmt: skip
        w, stream, session = self._work[task], self._streams[task], self._sessions[task]
        if stream is None or session is None:
            raise BackendError(f"task '{w.name}' has no model: the onnxruntime backend needs one")
        self._submit(stream, token, session.run, after)

    def graphs(self) -> dict[int, Any]:
        """No CompiledGraph: ORT owns the model's buffers."""
        return {}

    def sessions(self) -> dict[int, _Session]:
        """Each loaded task's session by task index (checks)."""
        return {i: s for i, s in enumerate(self._sessions) if s is not None}

    def report(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "versions": {"onnxruntime": self.ort.__version__},
            "provider": self.provider,
            "threads_per_stream": {"intra_op": THREADS, "inter_op": THREADS},
            "memory": {"bound_io_bytes": self._bytes},
            "cuda_graphs": False,
        }

    def _forget(self) -> None:
        self._sessions = []
