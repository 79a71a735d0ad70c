"""The one exception tree of AegisRT.

::

    AegisError                      base of everything AegisRT raises on purpose
    ├── InputError                  bad user input; the CLI prints it and exits 2
    │   ├── FileError               a file the user named cannot be read: names it
    │   └── ScenarioError           a scenario file: names file, task and field
    ├── EngineError                 an engine could not run a plan
    │   ├── EngineNotFound          no engine registered under that name
    │   ├── BackendError            a compute backend failed (CUDA errors are
    │   │                           translated into this at the backend seam)
    │   └── JobFault                one job's kernels failed at launch; the
    │                               executor turns it into that job's `fault`
    └── InternalError               an invariant of the core broke (a bug)

    Interrupted (a BaseException)   a stop request (SIGINT, SIGTERM) cut a wait of the
                                    run short; the loop catches it and ends the run there
                                    (aegis_core.run.stop)

Deadline misses, rejections and job faults are *not* exceptions: they are job
statuses and trace records.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MAX_MESSAGE = 2000
"""An error message is cut to this many characters (after escaping)."""

QUOTE_LIMIT = 60
"""A value quoted in a message shows at most this many characters."""

PATH_LIMIT = 160
"""A path in a message shows at most this many characters (its head and tail)."""

ONNX_PIP_HINT = "pip install 'aegisrt[onnx]'"
"""How to install the optional ``onnx`` extra (``onnx``, ``onnxruntime``): the hint of every
error that needs one of them."""

ORT_LOG_SEVERITY = 4
"""The ``log_severity_level`` of every onnxruntime session AegisRT opens: fatal only. ORT logs
an error it is about to raise (a model it refuses) as coloured lines on stderr, even at 3;
AegisRT reports the exception itself, on one line."""

_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` safe for a terminal: control characters (newlines, escapes, bidi
    controls) and lone surrogates written as ``\\n``, ``\\x1b``, ``\\u202e``; at most
    ``limit`` characters. Idempotent: a safe message is returned as it is."""
    text = _CONTROL.sub(_escape, message)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def flatten(message: str, limit: int = MAX_MESSAGE) -> str:
    """A library's multi-line message on one line: whitespace runs (its newlines) as one
    space, then :func:`one_line`."""
    return one_line(" ".join(message.split()), limit)


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` escaped (:func:`one_line`) and cut to ``limit`` characters (``…`` marks a cut)."""
    return one_line(text, limit)


def show_path(path: Any) -> str:
    """A path for a message: escaped; a long one keeps its head and tail around ``…``."""
    text = one_line(str(path), 1 << 30)
    if len(text) <= PATH_LIMIT:
        return text
    half = PATH_LIMIT // 2
    return f"{text[:half]}…{text[-half:]} ({len(text)} characters)"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_LIMIT


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` bounded: nested and long values are cut (never expanded in full, so
    a value sharing parts, as YAML aliases make, costs little), escaped, ``limit`` chars."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int past str()'s digit limit
        text = f"<{type(value).__name__} too large to show>"
    return shorten(text, limit)


class AegisError(Exception):
    """Base class of every error AegisRT raises on purpose. Its text is one line: control
    characters are escaped and it is cut to :data:`MAX_MESSAGE` characters."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class InputError(AegisError):
    """Bad input from the user (file, flag, value). The CLI exits with status 2."""

    exit_code = 2


class FileError(InputError):
    """A file the user named cannot be read (missing, not a regular file, too large, not
    text): ``path: reason``."""

    def __init__(self, path: Any, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{show_path(path)}: {reason}")


class ScenarioError(InputError):
    """A scenario file is invalid. The message names the file, the task and the field."""

    def __init__(
        self, path: str, message: str, *, task: str | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.task = task
        self.field = field
        self.reason = message
        where = [show_path(path)]
        if task is not None:
            where.append(f"task '{shorten(task)}'")
        if field is not None:
            where.append(f"field '{shorten(field)}'")
        super().__init__(": ".join([*where, message]))


class EngineError(AegisError):
    """An engine could not execute a run plan."""


class EngineNotFound(EngineError, InputError):
    """No engine is registered under the requested name (entry-point group ``aegis.engines``)."""


class BackendError(EngineError):
    """A compute backend failed; backend-specific errors are translated into this."""


class JobFault(EngineError):
    """One job's kernels raised. Never escapes a run: the executor records that job as failed
    (a ``fault`` trace record, charged to its task's execution context); every other job,
    of its task or another, runs as usual."""


class InternalError(AegisError):
    """An invariant of the core was violated: a bug in AegisRT, never the user's fault."""


class Interrupted(BaseException):
    """A stop request ended a blocking wait of a run (:mod:`aegis_core.run.stop`). A
    BaseException, as KeyboardInterrupt is: no ``except Exception`` of an engine or a backend
    swallows it; the loop catches it and ends the run at the instant it was waiting after."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
