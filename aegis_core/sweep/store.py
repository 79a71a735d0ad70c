"""A sweep's results folder (docs/CONTRACTS.md §results): a Parquet dataset, one file a
partition, written whole or not at all.

Layout of ``OUT/``: ``spec.yaml`` (the spec file, as given), ``sweep.json`` (its sha256, the
sets per point and the batch: what ``--resume`` compares), the results marker and lock of
:mod:`aegis_core.tools.outdir`, and ``part-p<point>-b<batch>.parquet``, one per finished
partition (the sets ``batch * B`` to ``batch * B + B - 1`` of one point). A partition is
written as ``NAME.tmp`` and renamed: a file with the final name is always whole. pyarrow is
imported only when a partition is written or read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import InputError, one_line, show_path
from aegis_core.tools import outdir

if TYPE_CHECKING:
    import pandas
    import pyarrow

SPEC = "spec.yaml"
META = "sweep.json"
SCHEMA = "aegis-sweep/1"
TMP = outdir.TMP
_PART = re.compile(r"part-p(\d+)-b(\d+)\.parquet")
SORT_KEYS = ("point", "set", "policy")
"""A partition's rows, and the dataset read back, are in this order."""
PIP_HINT = "pip install 'aegisrt[sweep]'"


def part_name(point: int, batch: int) -> str:
    return f"part-p{point}-b{batch}.parquet"


@dataclass(frozen=True)
class Meta:
    """What a sweep folder was made by: the spec file's sha256, the sets per point and the
    sets per partition (a resumed run must have all three the same)."""

    spec_sha256: str
    sets_per_point: int
    batch: int

    def as_dict(self) -> dict[str, object]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ours(path: Path) -> bool:
    """``path`` is a sweep folder: AegisRT's marker and a ``sweep.json``."""
    return outdir.owned(path) and (path / META).is_file() and not (path / META).is_symlink()


def _read_meta(path: Path) -> Meta | None:
    try:
        doc = json.loads((path / META).read_bytes()[:4096])
        return Meta(str(doc["spec_sha256"]), int(doc["sets_per_point"]), int(doc["batch"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_folder(path: Path, meta: Meta, resume: bool) -> None:
    """Refuse ``path`` (touching nothing) unless it is absent, empty or a sweep folder; with
    ``resume``, a sweep folder made by another spec (or other counts) too."""
    try:
        entries = os.listdir(path) if os.path.lexists(path) else []
    except OSError as exc:
        raise InputError(f"results directory {show_path(path)}: {exc.strerror or exc} "
                         "(choose another with --out)") from exc  # fmt: skip
    if not set(entries) - {outdir.MARKER, outdir.LOCK}:  # empty, or just claimed
        return
    if not _ours(path):
        raise InputError(f"{show_path(path)} is not empty and not a sweep folder (no "
                         f"{outdir.MARKER} and {META}); choose another --out")  # fmt: skip
    if resume and _read_meta(path) != meta:
        raise InputError(f"{show_path(path)}: made by another spec, --sets-per-point or batch "
                         f"({META} differs); rerun without --resume, or another --out")  # fmt: skip


class Store:
    """One run's hold on its sweep folder (claimed through :class:`outdir.ResultsDir`: the lock
    and the marker), from :meth:`open` to :meth:`close`."""

    def __init__(self, held: outdir.ResultsDir) -> None:
        self._held = held
        self.path = held.path

    @classmethod
    def open(cls, path: Path, source: bytes, meta: Meta, *, resume: bool, command: str) -> Store:
        check_folder(path, meta, resume)
        held = outdir.ResultsDir.claim(path, command)
        store = cls(held)
        try:
            check_folder(path, meta, resume)  # again, under the lock
            store._prepare(source, meta, resume)
        except BaseException:
            held.release()
            raise
        return store

    def _prepare(self, source: bytes, meta: Meta, resume: bool) -> None:
        for name in os.listdir(self.path):
            stale = name.endswith(TMP) and (_PART.fullmatch(name[: -len(TMP)]) or
                                            name[: -len(TMP)] in (SPEC, META))  # fmt: skip
            if stale or (not resume and _PART.fullmatch(name)):
                (self.path / name).unlink()
        self._write(SPEC, source)
        self._write(META, (json.dumps(meta.as_dict()) + "\n").encode())

    def done(self) -> set[tuple[int, int]]:
        """The (point, batch) of every partition present."""
        found = (_PART.fullmatch(n) for n in os.listdir(self.path))
        return {(int(m[1]), int(m[2])) for m in found if m}

    def write(self, point: int, batch: int, table: pyarrow.Table) -> None:
        """One partition, whole: ``NAME.tmp`` then renamed."""
        import pyarrow.parquet as pq

        name = part_name(point, batch)
        with _new(self.path / (name + TMP)) as f:
            pq.write_table(table, f)
        os.replace(self.path / (name + TMP), self.path / name)

    def _write(self, name: str, data: bytes) -> None:
        (self.path / (name + TMP)).unlink(missing_ok=True)
        with _new(self.path / (name + TMP)) as f:
            f.write(data)
        os.replace(self.path / (name + TMP), self.path / name)

    def close(self) -> None:
        self._held.release()


def _new(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


def _plain(row: Any) -> dict[str, Any]:
    """A row as its columns: its ``as_dict()`` (the spec's rows flatten their parameters so),
    else a dataclass's fields or a mapping's items."""
    as_dict = getattr(row, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"a sweep row must be a dataclass or a mapping, got {type(row).__name__}")


def table_of(rows: Iterable[Any]) -> pyarrow.Table:
    """The rows (see :func:`_plain`; one set and test each) as a table in
    :data:`SORT_KEYS` order (the keys a row has)."""
    import pyarrow as pa

    plain = [_plain(r) for r in rows]
    keys = [k for k in SORT_KEYS if plain and k in plain[0]]
    plain.sort(key=lambda r: tuple(r[k] for k in keys))
    return pa.Table.from_pylist(plain)


def _table(pq: Any, part: Path) -> Any:
    """One partition; an unreadable one is an InputError naming it (pyarrow's ArrowInvalid
    is a ValueError)."""
    try:
        return pq.read_table(part)
    except (OSError, ValueError) as exc:
        raise InputError(f"{show_path(part)}: not a readable Parquet partition: "
                         f"{one_line(str(exc))}") from None  # fmt: skip


def read_dataset(path: str | Path) -> pandas.DataFrame:
    """Every partition of the sweep folder ``path`` as one DataFrame sorted by (point, set,
    policy); InputError when it is not a sweep folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not os.path.isdir(path) or not _ours(path):
        raise InputError(f"{show_path(path)} is not a sweep folder (see `aegis sweep --help`)")
    names = sorted(n for n in os.listdir(path) if _PART.fullmatch(n))
    tables: Sequence[pa.Table] = [_table(pq, path / n) for n in names]
    if not tables:
        raise InputError(f"{show_path(path)}: no finished partition yet")
    df: pandas.DataFrame = pa.concat_tables(tables, promote_options="default").to_pandas()
    keys = [k for k in SORT_KEYS if k in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)
