"""A graph's real weights: where they are (:class:`~aegis_core.graph.ir.WeightsRef`), read
back checked, and the ONNX imports every command shares.

* ``"onnx"``: the model file is imported again (:func:`imported`, cached per file digest,
  batch and input shape: a process imports each model once); the file must still have the
  digest the graph was made from.
* ``"npz"``: a NumPy ``.npz`` file as ``aegis import -o`` writes it beside a graph file
  (``np.savez``, one ``<tensor>.npy`` per weight tensor), read bounded by the sizes the graph
  declares, never unpickled; its digest must be the one the graph file's ``weights`` entry
  records.

Either way the arrays must be exactly the graph's weight tensors: the same names and shapes,
float32. Anything else is an :class:`InputError` naming the file (and the tensor).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from aegis_core.graph.ir import (
    GRAPH_FILE_LIMIT,
    Graph,
    WeightsRef,
    _exec_bytes,
    parse_json,
    read_bounded,
)
from aegis_core.model.errors import InputError, one_line, quote, show_path
from aegis_core.model.files import open_user_file, read_user_bytes

if TYPE_CHECKING:
    from aegis_core.graph.onnx_import import ImportedModel

__all__ = ["imported", "is_onnx", "load_graph_file", "load_weights", "weights_entry"]

Weights = Mapping[str, np.ndarray]

CACHED_IMPORTS = 4
"""How many imported ONNX models (graph and weights) a process keeps."""

NPY_HEADER = 4096
"""The most an ``.npy`` member may hold beyond its array's bytes (its header)."""

_KINDS = ("onnx", "npz")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def is_onnx(model: str) -> bool:
    """Is the task's ``model`` an ONNX file (named ``*.onnx``)? The one rule for it."""
    return model.lower().endswith(".onnx")


def digest(path: str | Path, what: str) -> str:
    """The sha256 of the user's file ``path`` (read in chunks: any size, little memory)."""
    h = hashlib.sha256()
    try:
        with open_user_file(path, what) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise InputError(f"{show_path(path)}: cannot read the {what}: {exc}") from None
    return h.hexdigest()


# ---------------------------------------------------------------------- the ONNX imports

_IMPORTS: OrderedDict[tuple[str, str, int, tuple[int, ...] | None], ImportedModel] = OrderedDict()
_LOCK = threading.Lock()


def imported(
    path: str | Path, batch: int = 1, input_shape: Sequence[int] | None = None
) -> ImportedModel:
    """The ONNX model at ``path`` imported for ``batch`` samples of ``input_shape``
    (:func:`~aegis_core.graph.onnx_import.import_onnx`), the same object for the same file
    content, batch and shape (the last :data:`CACHED_IMPORTS` kept)."""
    shape = None if input_shape is None else tuple(input_shape)
    return _cached(path, digest(path, "ONNX model"), batch, shape)


def _cached(
    path: str | Path, sha256: str, batch: int, shape: tuple[int, ...] | None
) -> ImportedModel:
    from aegis_core.graph.onnx_import import import_onnx

    key = (str(Path(path).absolute()), sha256, batch, shape)
    with _LOCK:
        if key in _IMPORTS:
            _IMPORTS.move_to_end(key)
            return _IMPORTS[key]
    model = import_onnx(path, input_shape=shape, batch=batch)
    ref = model.graph.weights
    if ref is None or ref.sha256 != sha256:
        raise InputError(f"{show_path(path)}: ONNX model changed while it was read")
    with _LOCK:  # under the shape given and the one it fixed: the weights' lookup finds it
        for k in (key, (*key[:3], model.graph.input_shape)):
            _IMPORTS[k] = model
        while len(_IMPORTS) > 2 * CACHED_IMPORTS:
            _IMPORTS.popitem(last=False)
    return model


# ---------------------------------------------------------------------- reading weights


def load_weights(graph: Graph) -> Weights | None:
    """The real weights of ``graph`` by weight tensor name (read-only float32 arrays), or
    None when it has none (:attr:`Graph.weights` is None: random weights)."""
    ref = graph.weights
    if ref is None:
        return None
    if ref.kind == "onnx":
        _unchanged(ref, graph, digest(ref.path, "ONNX model"))
        params = _cached(ref.path, ref.sha256, graph.batch, graph.input_shape).params
    else:
        params = _read_npz(ref, graph)
    check_weights(graph, params, ref.path)
    return params


def _unchanged(ref: WeightsRef, graph: Graph, now: str) -> None:
    if now != ref.sha256:
        what = "ONNX model" if ref.kind == "onnx" else "weights file"
        raise InputError(
            f"{show_path(ref.path)}: the {what} changed since graph {quote(graph.name)} was "
            f"made from it (sha256 {now[:12]}…, expected {ref.sha256[:12]}…)"
        )


def _expected(graph: Graph) -> dict[str, tuple[int, ...]]:
    return {n: t.shape for n, t in graph.tensors.items() if t.role == "weight"}


def check_weights(graph: Graph, params: Mapping[str, Any], where: str | Path) -> None:
    """``params`` are exactly the graph's weight tensors: names, shapes, float32."""
    want = _expected(graph)
    for name in sorted(set(want) ^ set(params)):
        why = "is not a weight of the graph" if name in params else "is missing"
        raise InputError(f"{show_path(where)}: weights: tensor {quote(name)} {why}")
    for name, shape in want.items():
        a = params[name]
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise InputError(
                f"{show_path(where)}: weights: tensor {quote(name)} is {kind}, must be float32"
            )
        if a.shape != shape:
            raise InputError(
                f"{show_path(where)}: weights: tensor {quote(name)} has shape "
                f"{list(a.shape)}, the graph's is {list(shape)}"
            )


def _read_npz(ref: WeightsRef, graph: Graph) -> Weights:
    want = _expected(graph)
    limit = sum(_exec_bytes(s) + NPY_HEADER + 2 * len(n) + 256 for n, s in want.items())
    data = read_user_bytes(ref.path, "weights file", limit + NPY_HEADER)
    _unchanged(ref, graph, hashlib.sha256(data).hexdigest())
    where = show_path(ref.path)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"{where}: not a valid .npz weights file: {exc}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name in out or name not in want:
                why = "appears twice" if name in out else "is not a weight of the graph"
                raise InputError(f"{where}: weights: tensor {quote(name)} {why}")
            label = f"{where}: weights: tensor {quote(name)}"
            out[name] = _member(archive, info, want[name], label)
    for array in out.values():
        array.flags.writeable = False
    return MappingProxyType(out)


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...], where: str
) -> np.ndarray:
    """One ``.npy`` member: its unpacked size checked before it is opened (no zip bomb), its
    header (shape, dtype, order) before any array is made (a header may claim any shape)."""
    if info.file_size > _exec_bytes(shape) + NPY_HEADER:
        raise InputError(
            f"{where}: {info.file_size} bytes unpacked, more than a {list(shape)} float32 "
            "array takes"
        )
    try:
        with archive.open(info) as f:
            _check_header(f, shape, where)
            nbytes = _exec_bytes(shape)
            data = f.read(nbytes + 1)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: not a readable array: {one_line(str(exc))}") from None
    if len(data) != nbytes:
        raise InputError(f"{where} holds {len(data)} bytes of data, a {list(shape)} float32 "
                         f"array takes {nbytes}")  # fmt: skip
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32, copy=False)


_HEADERS = {(1, 0): "read_array_header_1_0", (2, 0): "read_array_header_2_0"}


def _check_header(f: Any, shape: tuple[int, ...], where: str) -> None:
    """The member's ``.npy`` header says a C-ordered little-endian float32 array of
    ``shape`` (version 1.0 or 2.0; nothing else is read, nothing is unpickled)."""
    version = np.lib.format.read_magic(f)
    if version not in _HEADERS:
        raise InputError(f"{where}: .npy format version {version} (1.0 or 2.0 are read)")
    got, fortran, dtype = getattr(np.lib.format, _HEADERS[version])(f)
    if dtype != np.dtype("<f4"):
        raise InputError(f"{where} is {dtype}, must be float32")
    if tuple(got) != shape:
        raise InputError(f"{where} has shape {list(got)}, the graph's is {list(shape)}")
    if fortran:
        raise InputError(f"{where} is stored in Fortran order; write it C-ordered")


# ---------------------------------------------------------------------- graph files


def weights_entry(ref: WeightsRef, graph_file: str | Path) -> dict[str, str]:
    """The ``weights`` entry of a graph file at ``graph_file`` naming ``ref`` (its path
    relative to the graph file's folder when it lies there or below)."""
    folder = Path(graph_file).absolute().parent
    path = Path(ref.path)
    try:
        shown = str(path.relative_to(folder))
    except ValueError:
        shown = str(path)
    return {"kind": ref.kind, "path": shown, "sha256": ref.sha256}


def load_graph_file(path: str | Path) -> Graph:
    """A graph file (:func:`~aegis_core.graph.ir.load_graph`'s format) with its optional
    ``weights`` entry (``{"kind": "npz" | "onnx", "path": <relative to the graph file's
    folder>, "sha256": <hex digest>}``) as the graph's :class:`WeightsRef`."""
    doc = parse_json(read_bounded(path, GRAPH_FILE_LIMIT, "graph file"), path, "graph file")
    try:
        if not isinstance(doc, dict):
            raise ValueError("the top level is not a JSON object")
        graph = Graph.from_dict(doc)
        if "weights" not in doc:
            return graph
        ref = _ref(doc["weights"], Path(str(path)).absolute().parent)
        return dataclasses.replace(graph, weights=ref)
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"{show_path(path)}: not a valid graph file: {what}") from exc


def _ref(entry: Any, folder: Path) -> WeightsRef:
    if not isinstance(entry, dict) or set(entry) != {"kind", "path", "sha256"}:
        raise ValueError("field 'weights' must be an object with kind, path and sha256")
    kind, path, sha = entry["kind"], entry["path"], entry["sha256"]
    if kind not in _KINDS:
        raise ValueError(
            f"field 'weights.kind' must be one of {', '.join(_KINDS)}, got {quote(kind)}"
        )
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError(f"field 'weights.path' must be a file name, got {quote(path)}")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ValueError(f"field 'weights.sha256' must be 64 hex digits, got {quote(sha)}")
    return WeightsRef(kind, str(folder / path), sha)
