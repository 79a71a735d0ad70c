"""Reading user files with errors that name the file (``InputError``, exit 2)."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from aegis_core.model.errors import FileError, InputError, quote, shorten, show_path
from aegis_core.model.types import MAX_TIME_NS

MAX_YAML_BYTES = 1 << 20
"""The largest scenario YAML file read (1 MiB: a hand-written file is a few KiB; PyYAML
parses about 0.2 MiB a second)."""

MAX_JSON_BYTES = 64 << 20
"""The largest JSON file read (profiles, overheads files, graph and tensor-usage files)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO"), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _os_error(path: str | Path, what: str, exc: OSError) -> FileError:
    """An OSError met reading the user's file ``path`` as a FileError naming it."""
    if exc.errno == errno.ENOENT:
        return FileError(path, f"no such {what}")
    if exc.errno == errno.ENAMETOOLONG:
        return FileError(path, f"cannot read the {what}: file name too long for the system")
    if exc.errno == errno.EISDIR:
        return _irregular(path, what, "a directory")
    return FileError(path, f"cannot read the {what}: {exc.strerror or exc}")


def _irregular(path: str | Path, what: str, kind: str) -> FileError:
    return FileError(path, f"cannot read {kind} as a {what}: not a regular file")


def user_file(path: str | Path, what: str = "file") -> Path:
    """``path`` if it names a regular file (symlinks followed); else a FileError naming it:
    missing, a name too long, a directory, a FIFO or a device (never opened)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise _os_error(path, what, exc) from None
    except ValueError:  # a NUL, or a character the file system cannot encode
        raise FileError(path, "not a valid file name") from None
    kind = _not_regular(mode)
    if kind is not None:
        raise _irregular(path, what, kind)
    return Path(path)


def read_user_bytes(
    path: str | Path, what: str = "file", limit: int | None = MAX_JSON_BYTES
) -> bytes:
    """The bytes of the user's file ``path``, read safely: only a regular file (checked
    before it is opened, and again on the open descriptor, opened non-blocking so that a
    FIFO swapped in never blocks), at most ``limit`` bytes (None: the file's size). Every
    failure is a FileError naming the file. Use it for every file a user gives."""
    try:
        with open_user_file(path, what) as f:
            data = f.read(-1 if limit is None else limit + 1)
    except OSError as exc:
        raise _os_error(path, what, exc) from None
    if limit is not None and len(data) > limit:
        raise FileError(path, f"larger than {_size(limit)}, the most a {what} may hold")
    return data


def open_user_file(path: str | Path, what: str = "file") -> BinaryIO:
    """The user's file ``path`` opened for reading bytes, a regular file only: checked before
    it is opened and again on the open descriptor (opened non-blocking, so that a FIFO swapped
    in never blocks); a FileError naming the file otherwise. The caller bounds what it reads
    (:func:`read_user_bytes`, or ``readline(limit)``)."""
    user_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(path, what, exc) from None
    f = os.fdopen(fd, "rb")
    kind = _not_regular(os.fstat(fd).st_mode)
    if kind is not None:
        f.close()
        raise _irregular(path, what, kind)
    return f


def read_user_text(path: str | Path, what: str = "file", limit: int | None = MAX_JSON_BYTES) -> str:
    """:func:`read_user_bytes` decoded as UTF-8 (an undecodable byte is a FileError naming
    the file and the line)."""
    data = read_user_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileError(path, f"not UTF-8 text (line {line}: {exc.reason})") from None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of the user's file ``path`` (:func:`read_user_text`, no size cap beyond
    the regular file's own size)."""
    return read_user_text(path, what, None)


def read_json(path: str | Path, what: str = "file", limit: int = MAX_JSON_BYTES) -> Any:
    """The file's JSON document (:func:`read_user_text`, at most ``limit`` bytes); invalid
    JSON is an InputError naming its line."""
    text = read_user_text(path, what, limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise FileError(path, "invalid JSON: nested too deep") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise FileError(path, f"invalid JSON: {shorten(str(exc), 120)}") from None


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
            raise InputError(f"{show_path(path)}: {where} must be a JSON object")
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
            raise self.fail("schema", f"expected {expected!r}, got {quote(found)}")

    def fail(self, key: str, message: str) -> InputError:
        name = f"{self.prefix}.{key}" if self.prefix and not key.startswith(self.prefix) else key
        return InputError(f"{show_path(self.path)}: field '{shorten(name)}': {message}")

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
        if not is_int(v) or v < least or (most is not None and v > most):
            top = "" if most is None else f" and <= {most}"
            raise self.fail(key, f"must be an integer {_least(least)}{top}, got {quote(v)}")
        return int(v)

    def non_negative(self, key: str, most: int | None = None) -> int:
        return self.integer(key, 0, most)

    def integers(
        self, key: str, least: int = 0, *, optional: bool = False, most: int = MAX_TIME_NS
    ) -> tuple[int, ...]:
        """A list of integers in ``[least, most]`` (durations in ns: at most 2**62)."""
        v = self.get(key, list, optional=optional) or []
        for i, item in enumerate(v):
            if not is_int(item) or item < least or item > most:
                raise self.fail(f"{key}[{i}]", f"must be an integer {_least(least)} and <= "
                                f"{most} ns, got {quote(item)}")  # fmt: skip
        return tuple(v)

    def counts(self, key: str, *, optional: bool = False) -> tuple[int, ...]:
        """A list of integers >= 0 and <= 2**62 (ns)."""
        return self.integers(key, 0, optional=optional)


def _least(least: int) -> str:
    return "> 0" if least == 1 else f">= {least}"


def is_int(v: Any) -> bool:
    """``v`` is an integer, not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)
