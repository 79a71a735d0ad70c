"""Reading user files with errors that name the file (``InputError``, exit 2)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from aegis_core.model.errors import InputError


def read_text(path: str | Path, what: str = "file") -> str:
    """The file's text; a missing, unreadable or undecodable file is an InputError."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """The file's JSON document; invalid JSON is an InputError naming its line."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def write_json_atomic(path: str | Path, data: Any, what: str = "file", *, indent: int = 1) -> None:
    """Write ``data`` as indented JSON through a temporary file renamed over ``path``: never
    half a file; an OSError is an InputError naming the file."""
    text = json.dumps(data, indent=indent) + "\n"  # fails (if at all) before any file
    write_text_atomic(path, text, what)


def write_text_atomic(path: str | Path, text: str, what: str = "file") -> None:
    """Write ``text`` through a fresh temporary file in ``path``'s folder (``mkstemp``:
    created exclusively, never through a symbolic link) renamed over ``path``: a reader never
    sees half a file, and a symbolic link at ``path`` is replaced, never written through. An
    OSError is an InputError naming the file."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")), what)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], what: str = "file") -> None:
    """:func:`write_text_atomic` for any writer of bytes (e.g. a figure's ``savefig``)."""
    import tempfile

    p = Path(path)
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise InputError(f"{p}: cannot write the {what}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_new(path: str | Path, encoding: str = "utf-8") -> TextIO:
    """A file created at ``path`` for writing text (``O_CREAT | O_EXCL | O_NOFOLLOW``): never
    an existing file, never through a symbolic link (both raise ``FileExistsError``), mode
    0644 less the umask. The caller renames it into place when it is whole."""
    fd = os.open(path, _NEW, 0o644)
    try:
        f = open(fd, "w", encoding=encoding, closefd=True)  # noqa: SIM115 (the caller's)
    except BaseException:
        os.close(fd)
        raise
    f.buffer.raw.name = str(path)  # type: ignore[attr-defined]  # (else its fd number)
    return f


class FieldReader:
    """Typed reads of a JSON object's fields; every error names the file and the field."""

    def __init__(self, data: Any, path: str, what: str = "the file", prefix: str = "") -> None:
        if not isinstance(data, dict):
            where = f"field '{prefix}'" if prefix else what
            raise InputError(f"{path}: {where} must be a JSON object")
        self.data, self.path, self.what, self.prefix = data, path, what, prefix

    def sub(self, key: str, data: Any) -> FieldReader:
        """A reader of the nested object ``data`` found at ``key`` (a dotted name)."""
        if data is None:
            raise self.fail(key, "is required")
        return FieldReader(data, self.path, self.what, key)

    def schema(self, expected: str) -> None:
        """The object's ``schema`` is ``expected`` (else an InputError naming the field)."""
        found = self.get("schema", str)
        if found != expected:
            raise self.fail("schema", f"expected {expected!r}, got {found!r}")

    def fail(self, key: str, message: str) -> InputError:
        name = f"{self.prefix}.{key}" if self.prefix and not key.startswith(self.prefix) else key
        return InputError(f"{self.path}: field '{name}': {message}")

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        v = self.data.get(key)
        if v is None:
            if optional:
                return None
            raise self.fail(key, "is required")
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise self.fail(key, f"must be {kind.__name__}, got {type(v).__name__}")
        return v

    def integer(self, key: str, least: int = 0, most: int | None = None) -> int:
        """An integer in ``[least, most]`` (``least`` 0 or 1: ``>= 0`` or ``> 0``)."""
        v: Any = self.data.get(key)
        if not _int(v) or v < least or (most is not None and v > most):
            top = "" if most is None else f" and <= {most}"
            raise self.fail(key, f"must be an integer {_least(least)}{top}, got {v!r}")
        return int(v)

    def non_negative(self, key: str, most: int | None = None) -> int:
        return self.integer(key, 0, most)

    def integers(self, key: str, least: int = 0, *, optional: bool = False) -> tuple[int, ...]:
        """A list of integers ``>= least`` (durations in ns)."""
        v = self.get(key, list, optional=optional) or []
        for i, item in enumerate(v):
            if not _int(item) or item < least:
                raise self.fail(f"{key}[{i}]", f"must be an integer {_least(least)} ns, "
                                f"got {item!r}")  # fmt: skip
        return tuple(v)

    def counts(self, key: str, *, optional: bool = False) -> tuple[int, ...]:
        """A list of integers >= 0 (ns)."""
        return self.integers(key, 0, optional=optional)


def _least(least: int) -> str:
    return "> 0" if least == 1 else f">= {least}"


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
