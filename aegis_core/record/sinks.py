"""Trace sinks: where a run's records go (``trace.jsonl``: one JSON record per line).

The schema, the encoder and the decoder are :mod:`~aegis_core.record.schema`'; a sink only
numbers, buffers and writes. The loop hands each instant's records to :meth:`TraceSink.write`
and then calls :meth:`TraceSink.flush`; the runner writes the admission records first.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from aegis_core.model.errors import InputError
from aegis_core.record.schema import Encoder, TraceRecord


def write_text(stream: TextIO, text: str, *, flush: bool = False) -> None:
    """``stream.write(text)`` (and ``flush()``); a failure (disk full, a closed pipe) is an
    InputError naming the file."""
    try:
        stream.write(text)
        if flush:
            stream.flush()
    except OSError as exc:
        name = getattr(stream, "name", "the output")
        raise InputError(f"{name}: cannot write: {exc.strerror or exc}") from exc


def close_text(stream: TextIO) -> None:
    """``stream.close()``; a failure (what was buffered cannot be written) is an InputError
    naming the file."""
    try:
        stream.close()
    except OSError as exc:
        name = getattr(stream, "name", "the output")
        raise InputError(f"{name}: cannot write: {exc.strerror or exc}") from exc


class TraceSink(Protocol):
    """Where a run's records go."""

    def write(self, records: Sequence[TraceRecord]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class NullTrace:
    """Discards every record (the trace-off configuration)."""

    def write(self, records: Sequence[TraceRecord]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TeeTrace:
    """Hands every record to each of its sinks, in order (``trace.jsonl`` and ``trace.json``
    are written from one record stream)."""

    def __init__(self, *sinks: TraceSink) -> None:
        self.sinks = sinks

    def write(self, records: Sequence[TraceRecord]) -> None:
        for s in self.sinks:
            s.write(records)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        """Close every sink, even when one fails (the first error is raised after)."""
        error: BaseException | None = None
        for s in self.sinks:
            try:
                s.close()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


FLUSH_MODES = ("record", "instant", "batch")


class JsonlTrace:
    """Writes records to a text stream, one line each, numbered from 0 (``rec``).

    When records reach the OS (``flush``, see :data:`FLUSH_MODES`):

    * ``"record"``: after every record;
    * ``"instant"``: when the loop has finished an instant of the run (:meth:`flush`), before
      time moves on: every decision is on disk before the next one is taken;
    * ``"batch"``: in blocks of :attr:`BATCH` records (the fast choice for simulation).

    Records are encoded when they are written out (a block at a time in batch mode), and only
    ever written whole, and :meth:`close` (also run when the loop raises)
    writes what is pending, so the file is a valid JSONL prefix after an error; only a hard
    kill can lose the records of the last block.
    """

    BATCH = 512

    def __init__(self, stream: TextIO, *, owns: bool = False, flush: str = "instant") -> None:
        if flush not in FLUSH_MODES:
            raise ValueError(f"flush must be one of {', '.join(FLUSH_MODES)}, got {flush!r}")
        self.stream = stream
        self._pending: list[TraceRecord] = []
        self._per_record = flush == "record"
        self._min_block = self.BATCH if flush == "batch" else 1
        self._owns = owns
        self._closed = False
        self._encoder = Encoder()

    @classmethod
    def open(cls, path: str | Path, *, flush: str = "instant") -> JsonlTrace:
        """A trace file written as the run goes (see the class docstring for ``flush``)."""
        return cls(open(path, "w", encoding="utf-8"), owns=True, flush=flush)

    def write(self, records: Sequence[TraceRecord]) -> None:
        if self._per_record:
            line, out = self._encoder.line, self.stream
            for r in records:
                write_text(out, line(r), flush=True)
        else:
            self._pending += records

    def flush(self) -> None:
        """End of an instant: hand pending records to the OS (in batch mode, full blocks)."""
        if len(self._pending) >= self._min_block:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            text = "".join(self._encoder.lines(self._pending))
            self._pending.clear()
            write_text(self.stream, text, flush=True)

    def close(self) -> None:
        """Write what is pending and close the file (once: closing again does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._drain()
        if self._owns:
            close_text(self.stream)


class MemoryTrace(JsonlTrace):
    """A JSONL trace kept in memory; :meth:`records` parses it back (for tests and tools)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())

    def records(self) -> list[dict[str, Any]]:
        self._drain()
        return read_records(self.stream.getvalue().splitlines())  # type: ignore[attr-defined]


def read_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects of a trace's lines (:func:`aegis_core.record.schema.decode_all` types
    them)."""
    return [json.loads(line) for line in lines if line.strip()]


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return read_records(f)
