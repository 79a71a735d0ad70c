"""A run's hold on its results directory (docs/CONTRACTS.md §results): claimed, locked,
written through temporary files, committed by renames.

:meth:`ResultsDir.claim` makes the folder, takes its lock (``.aegis-lock``: ``flock``, the
holder's pid and command; a second run is refused at once, naming the holder), refuses a
folder holding result-named files that AegisRT did not write (no marker ``.aegis-results``)
or anything but a regular file at a result name (a symbolic link, a folder), removes the
previous run's results (the marker says they are AegisRT's) and writes the marker. Every
output is then created as ``NAME.tmp`` (``O_CREAT | O_EXCL | O_NOFOLLOW``: never an existing
file, never through a link) and renamed to ``NAME`` by :meth:`commit` when the run is whole;
a run that fails leaves only temporary names (:meth:`abandon`), and the lock goes with
:meth:`release`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from aegis_core import __version__
from aegis_core.model.errors import InputError, one_line
from aegis_core.model.files import open_new

MARKER = ".aegis-results"
LOCK = ".aegis-lock"
SCHEMA = "aegis-results/1"
"""The marker's schema (a newer ``aegis-results/N`` is AegisRT's too)."""
RESULTS = ("summary.json", "jobs.csv", "trace.json", "trace.jsonl")
TMP = ".tmp"
GUARDED = (*RESULTS, *(name + TMP for name in RESULTS))
"""The names a run writes: in a folder without the marker, any of them refuses it."""
_READ_MAX = 4096  # of the marker and of the lock file: what a run reads of them
_LOCK_TRIES = 8  # a lock file removed while it is opened: take the new one (bounded)


class ResultsDir:
    """One run's results directory, from :meth:`claim` to :meth:`release`."""

    def __init__(self, path: Path, created: bool, lock_fd: int) -> None:
        self.path = path
        self.created = created
        """The run made the folder (an abandoned run removes it again)."""
        self._lock_fd = lock_fd
        self._made: list[str] = []  # result names whose NAME.tmp this run created
        self._empty = False

    @classmethod
    def claim(cls, path: Path, command: str) -> ResultsDir:
        """Hold ``path`` for one run of ``command`` (see the module docstring); every refusal
        is an InputError that leaves the folder as it was."""
        created = not os.path.lexists(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = _lock(path, command)
        except BaseException as exc:
            if created:
                with contextlib.suppress(OSError):
                    path.rmdir()
            if isinstance(exc, OSError):
                raise _refused(path, exc) from exc
            raise
        held = cls(path, created, fd)
        try:
            held._take_over(command)
        except BaseException:
            held._empty = created  # nothing written: a folder the run made goes again
            held.release()
            raise
        return held

    def _take_over(self, command: str) -> None:
        ours = owned(self.path)
        for name in (*GUARDED, MARKER + TMP):
            _check(self.path, name, ours)
        try:
            for name in GUARDED:  # the previous run's results: never mixed with this run's
                (self.path / name).unlink(missing_ok=True)
            _write_marker(self.path, command)
        except OSError as exc:
            raise _refused(self.path, exc) from exc

    def create(self, name: str, encoding: str = "utf-8") -> TextIO:
        """``NAME.tmp``, new, for writing; renamed to ``name`` by :meth:`commit`."""
        p = self.path / (name + TMP)
        try:
            f = open_new(p, encoding)
        except OSError as exc:
            raise InputError(f"{p}: cannot create: {exc.strerror or exc}") from exc
        self._made.append(name)
        return f

    def commit(self, summary: str) -> None:
        """Write ``summary`` as ``summary.json.tmp``, then rename every temporary file this run
        wrote (the others closed by now) to its name, ``summary.json`` last: where there is a
        ``summary.json``, the run's other files are whole beside it."""
        f = self.create("summary.json")
        try:
            with f:
                f.write(summary)
        except OSError as exc:
            raise InputError(f"{f.name}: cannot write: {exc.strerror or exc}") from exc
        for name in [n for n in self._made if n != "summary.json"] + ["summary.json"]:
            self._rename(name)

    def _rename(self, name: str) -> None:
        try:
            os.replace(self.path / (name + TMP), self.path / name)
        except OSError as exc:
            raise InputError(f"{self.path / name}: cannot write: {exc.strerror or exc}") from exc
        self._made.remove(name)

    def abandon(self, keep: tuple[str, ...] = ()) -> None:
        """After a failure: remove this run's temporary files but those of ``keep``; with none
        kept, the marker too, and the folder once released if the run made it."""
        for name in self._made:
            if name not in keep:
                with contextlib.suppress(OSError):
                    (self.path / (name + TMP)).unlink()
        if not any(name in keep for name in self._made):
            with contextlib.suppress(OSError):
                (self.path / MARKER).unlink()
            self._empty = self.created

    def release(self) -> None:
        """Give the lock up (its file removed, if it is still ours), once."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd < 0:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path / LOCK):
                (self.path / LOCK).unlink()
        os.close(fd)
        if self._empty:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty: a file the user put there keeps it


def mark(path: Path, names: Sequence[str], command: str, *, create: bool = True) -> None:
    """Make ``path`` a folder AegisRT may write ``names`` in (e.g. compare's outputs, each then
    written whole through a temporary file): refused, touching nothing, when it holds one of
    them that AegisRT did not write (no marker) or anything but a regular file at one; else
    marked (a folder's own files beside them are left alone). ``create=False`` only checks
    (before the work whose results go there; a missing folder is fine)."""
    try:
        if not create and not os.path.lexists(path):
            return
        if create:
            path.mkdir(parents=True, exist_ok=True)
        ours = owned(path)
        for name in (*names, MARKER + TMP):
            _check(path, name, ours)
        if create and not ours:
            _write_marker(path, command)
    except OSError as exc:
        raise _refused(path, exc) from exc


def _write_marker(path: Path, command: str) -> None:
    (path / (MARKER + TMP)).unlink(missing_ok=True)
    marker = open_new(path / (MARKER + TMP))
    with marker:
        json.dump({"schema": SCHEMA, "version": __version__, "command": command}, marker)
        marker.write("\n")
    os.replace(path / (MARKER + TMP), path / MARKER)


def _refused(path: Path, exc: OSError) -> InputError:
    return InputError(f"results directory {path}: {exc.strerror or exc} (choose another with "
                      "--out)")  # fmt: skip


def _lock(path: Path, command: str) -> int:
    """The locked descriptor of ``path/.aegis-lock`` (it now holds this run's pid and command);
    held elsewhere: an InputError naming the holder."""
    lock = path / LOCK
    for _ in range(_LOCK_TRIES):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(f"{lock} is not a regular file; remove it")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"{path} is in use by {holder}") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock):
            if not _ours(fd):
                os.close(fd)
                raise InputError(f"{lock} was not written by AegisRT; choose another --out or "
                                 "remove it")  # fmt: skip
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({one_line(command)})\n".encode())
            return fd
        os.close(fd)  # its holder removed it while we opened it: lock the one there now
    raise InputError(f"{lock}: cannot lock: it keeps being replaced")


def _ours(fd: int) -> bool:
    """A lock file AegisRT wrote (``pid N (…)``), or one just created (empty)."""
    head = os.pread(fd, 4, 0)
    return head in (b"", b"pid ")


def _same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.lstat(path) if os.path.lexists(path) else None
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says (``pid N (command)``), escaped and bounded."""
    try:
        text = os.pread(fd, _READ_MAX, 0).decode("utf-8", "replace").split("\n", 1)[0]
    except OSError:
        text = ""
    return one_line(text) if text.startswith("pid ") else "another run"


def owned(path: Path) -> bool:
    """``path`` is a folder AegisRT marked as its own: it holds the marker (a regular file of
    schema ``aegis-results/N``); absent: False; anything else there: an InputError."""
    marker = path / MARKER
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        fd = -1
    data = b""
    if fd >= 0:
        with os.fdopen(fd, "rb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                data = f.read(_READ_MAX)
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("aegis-results/"):
        return True
    raise InputError(f"{marker} is not AegisRT's results marker; choose another --out or "
                     "remove it")  # fmt: skip


def _check(path: Path, name: str, ours: bool) -> None:
    """``path/name`` is absent, or a regular file in a folder AegisRT marked; else an
    InputError."""
    try:
        mode = os.lstat(path / name).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _refused(path, exc) from exc
    if not ours:
        raise InputError(f"{path} holds {name} that AegisRT did not write; choose another "
                         "--out or remove it")  # fmt: skip
    if not stat.S_ISREG(mode):
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else
                "a directory" if stat.S_ISDIR(mode) else "not a regular file")  # fmt: skip
        raise InputError(f"{path / name} is {kind}: AegisRT writes its results only as "
                         "regular files; choose another --out or remove it")  # fmt: skip
