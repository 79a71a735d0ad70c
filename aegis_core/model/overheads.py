"""Host overheads: what the executor's host adds around every job, measured by
``aegis calibrate`` and charged by the analysis (docs/THEORY.md §overheads).

Four figures, each a bound (integer ns) from measured samples by the WCET estimator's rule:

* ``release-lag``: a job's planned release → the loop hands it to the scheduler (release
  jitter in the analysis);
* ``decision``: the instant's events gathered → the dispatch call (events handled, the pick
  and its record);
* ``launch``: the dispatch call → the job starts on the device;
* ``completion``: the job ends on the device → the loop sees it.

The slot is held from the decision instant to the instant the completion is seen, so the
analysis charges each dispatched unit (a job, or an lp-edf chunk) ``decision + launch +
completion`` on top of its execution time, and the release lag as release jitter.

An overheads file (``aegis-overheads/1``, JSON) holds the machine, backend and library
fingerprint, each figure's summary, bound and flags, and (optionally) its samples for the
simulator to replay. Loading validates every field and names the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from aegis_core.model.errors import quote
from aegis_core.model.files import FieldReader, read_json, write_json_atomic
from aegis_core.model.types import TimeNs

SCHEMA = "aegis-overheads/1"

MAX_KEPT_SAMPLES = 20_000
"""At most this many samples per figure are written (evenly thinned, collection order kept):
enough for the simulator to replay, a file of a few hundred KiB."""


MAX_BOUND_NS = 1_000_000_000
"""A bound above a second is no host overhead: refused as a broken file."""


class Overhead(StrEnum):
    """The four host overheads, in the order a job meets them."""

    RELEASE_LAG = "release-lag"
    DECISION = "decision"
    LAUNCH = "launch"
    COMPLETION = "completion"


PER_DISPATCH = (Overhead.DECISION, Overhead.LAUNCH, Overhead.COMPLETION)
"""The figures charged to every dispatched unit's execution time."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One overhead: its bound and how it was estimated (all ns)."""

    what: Overhead
    bound_ns: TimeNs
    n: int = 0
    method: str = "given"
    converged: bool = True
    supported: bool = True
    warnings: tuple[str, ...] = ()
    stats: Mapping[str, float] = field(default_factory=dict)
    samples_ns: tuple[TimeNs, ...] = ()
    """Measured samples kept for replay (collection order; may be thinned)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "bound_ns": self.bound_ns,
            "n": self.n,
            "method": self.method,
            "converged": self.converged,
            "supported": self.supported,
            "warnings": list(self.warnings),
            "stats": dict(self.stats),
            "samples_ns": list(self.samples_ns),
        }


@dataclass(frozen=True)
class Overheads:
    """The four overhead bounds of one machine and backend."""

    figures: Mapping[Overhead, Figure]
    backend: str = ""
    device: str = ""
    machine: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, str] = field(default_factory=dict)
    exceedance: float = 1e-3
    created: str = ""
    aegis_version: str = ""
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        missing = [w.value for w in Overhead if w not in self.figures]
        if missing:
            raise ValueError(f"overheads lack {', '.join(missing)}")

    @classmethod
    def of_bounds(cls, bounds: Mapping[Overhead, TimeNs], **meta: Any) -> Overheads:
        """Overheads given by their bounds alone (no samples): tests, and a trace's record."""
        return cls({w: Figure(w, int(bounds[w])) for w in Overhead}, **meta)

    def bound(self, what: Overhead) -> TimeNs:
        return self.figures[what].bound_ns

    @property
    def per_dispatch_ns(self) -> TimeNs:
        """What each dispatched unit is charged on top of its execution time."""
        return sum(self.bound(w) for w in PER_DISPATCH)

    @property
    def release_lag_ns(self) -> TimeNs:
        """The release jitter the host adds."""
        return self.bound(Overhead.RELEASE_LAG)

    def bounds(self) -> dict[str, TimeNs]:
        """``{figure name: bound}`` (records and the admission's JSON)."""
        return {w.value: self.bound(w) for w in Overhead}

    def samples(self, what: Overhead) -> tuple[TimeNs, ...]:
        return self.figures[what].samples_ns

    @property
    def label(self) -> str:
        """Where these overheads came from, for tables."""
        return self.path or (f"{self.backend} on {self.device}" if self.backend else "given")

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "aegis_version": self.aegis_version,
            "backend": self.backend,
            "device": self.device,
            "machine": dict(self.machine),
            "fingerprint": dict(self.fingerprint),
            "exceedance": self.exceedance,
            "figures": {w.value: self.figures[w].as_dict() for w in Overhead},
        }

    def save(self, path: str | Path) -> None:
        """Write atomically: never half a file."""
        write_json_atomic(path, self.as_dict(), "overheads file")

    @classmethod
    def from_dict(cls, data: Any, path: str = "<memory>") -> Overheads:
        r = FieldReader(data, path, "an overheads file")
        r.schema(SCHEMA)
        exceedance = r.get("exceedance", float)
        if not 0 < exceedance < 1:
            raise r.fail("exceedance", f"must lie in (0, 1), got {quote(exceedance)}")
        raw = r.get("figures", dict)
        figures = {w: _figure(r.sub(f"figures.{w.value}", raw.get(w.value)), w) for w in Overhead}
        extra = sorted(set(raw) - {w.value for w in Overhead})
        if extra:
            raise r.fail(f"figures.{extra[0]}", "unknown figure; expected "
                         + ", ".join(w.value for w in Overhead))  # fmt: skip
        fingerprint = r.get("fingerprint", dict, optional=True) or {}
        if not all(isinstance(v, str) for v in fingerprint.values()):
            raise r.fail("fingerprint", "must map names to version strings")
        return cls(
            figures,
            backend=r.get("backend", str),
            device=r.get("device", str, optional=True) or "",
            machine=r.get("machine", dict, optional=True) or {},
            fingerprint=fingerprint,
            exceedance=exceedance,
            created=r.get("created", str, optional=True) or "",
            aegis_version=r.get("aegis_version", str, optional=True) or "",
            path=None if path == "<memory>" else path,
        )


def _figure(r: FieldReader, what: Overhead) -> Figure:
    warnings = r.get("warnings", list, optional=True) or []
    if not all(isinstance(v, str) for v in warnings):
        raise r.fail("warnings", "must be a list of strings")
    return Figure(
        what,
        bound_ns=r.non_negative("bound_ns", most=MAX_BOUND_NS),
        n=r.non_negative("n"),
        method=r.get("method", str),
        converged=r.get("converged", bool),
        supported=r.get("supported", bool),
        warnings=tuple(warnings),
        stats=r.get("stats", dict, optional=True) or {},
        samples_ns=r.counts("samples_ns", optional=True),
    )


def thin(samples: Sequence[int], keep: int = MAX_KEPT_SAMPLES) -> tuple[int, ...]:
    """At most ``keep`` of ``samples``, evenly spaced in collection order."""
    if len(samples) <= keep:
        return tuple(samples)
    step = len(samples) / keep
    return tuple(samples[int(i * step)] for i in range(keep))


def load_overheads(path: str | Path) -> Overheads:
    """Read and validate an overheads file; an InputError names the file and the field."""
    return Overheads.from_dict(read_json(path, "overheads file"), str(path))
