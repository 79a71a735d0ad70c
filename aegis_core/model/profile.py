"""WCET profiles: one versioned JSON per (model, batch, backend, device) and mode.

Written by ``aegis profile`` (the samples a backend measured and the pWCET of
:mod:`aegis_core.analysis.pwcet`); read by scenarios (``profile:``), whose admission then uses the
profile's WCET and whose simulation replays its samples. Loading validates every field and
names the file and the field of anything wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegis_core.model.errors import quote
from aegis_core.model.files import FieldReader, write_json_atomic
from aegis_core.model.types import MAX_TIME_NS

if TYPE_CHECKING:
    from aegis_core.analysis.pwcet import WcetEstimate

SCHEMA = "aegis-profile/1"
MODES = ("isolated", "contention")

EXCEEDANCES = (1e-3, 1e-6, 1e-9)
"""The pWCET table of a profile: per-run exceedance probabilities."""

MIN_SAMPLES = 10
"""The fewest samples a profile (and an estimate) is made from."""


def p_key(p: float) -> str:
    """``1e-3`` → ``"1e-03"``: the pWCET table's keys."""
    return f"{p:.0e}"


@dataclass(frozen=True)
class Profile:
    """One task's measured execution times and the WCET chosen from them (all ns)."""

    task: str
    model: str | None
    batch: int
    backend: str
    device: str
    mode: str
    samples_ns: tuple[int, ...]
    wcet_ns: int
    method: str
    exceedance: float
    converged: bool
    supported: bool
    pwcet_ns: Mapping[str, int]
    co_runners: tuple[str, ...] = ()
    warmup_ns: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    stats: Mapping[str, float] = field(default_factory=dict)
    checks: Sequence[Mapping[str, Any]] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    clock: Mapping[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    created: str = ""
    aegis_version: str = ""
    path: str | None = field(default=None, compare=False)
    """Where it was loaded from (None: built in memory)."""

    @classmethod
    def from_estimate(cls, est: WcetEstimate, *, samples_ns: Sequence[int], **meta: Any) -> Profile:
        d = est.as_dict()
        return cls(
            samples_ns=tuple(int(v) for v in samples_ns),
            wcet_ns=est.wcet_ns,
            method=est.method,
            exceedance=est.exceedance,
            converged=est.converged,
            supported=est.supported,
            pwcet_ns=dict(est.pwcet),
            warnings=est.warnings,
            stats=d["stats"],
            checks=d["checks"],
            settings=d["settings"],
            created=meta.pop("created", None) or datetime.now(UTC).isoformat(timespec="seconds"),
            **meta,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "task": self.task,
            "model": self.model,
            "batch": self.batch,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "backend": self.backend,
            "device": self.device,
            "mode": self.mode,
            "co_runners": list(self.co_runners),
            "created": self.created,
            "aegis_version": self.aegis_version,
            "clock": dict(self.clock),
            "exceedance": self.exceedance,
            "wcet_ns": self.wcet_ns,
            "method": self.method,
            "converged": self.converged,
            "supported": self.supported,
            "warnings": list(self.warnings),
            "pwcet_ns": dict(self.pwcet_ns),
            "stats": dict(self.stats),
            "checks": [dict(c) for c in self.checks],
            "settings": dict(self.settings),
            "n": len(self.samples_ns),
            "warmup_ns": list(self.warmup_ns),
            "samples_ns": list(self.samples_ns),
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file renamed over ``path``): never half a profile."""
        write_json_atomic(path, self.as_dict(), "profile")

    @classmethod
    def from_dict(cls, data: Any, path: str = "<memory>") -> Profile:
        r = FieldReader(data, path, "a profile")
        r.schema(SCHEMA)
        samples = r.integers("samples_ns", 1)
        if len(samples) < MIN_SAMPLES:
            raise r.fail("samples_ns", f"needs at least {MIN_SAMPLES} samples, has {len(samples)}")
        mode = r.get("mode", str)
        if mode not in MODES:
            raise r.fail("mode", f"must be one of {', '.join(MODES)}, got {quote(mode)}")
        pwcet = r.get("pwcet_ns", dict)
        for p in EXCEEDANCES:
            v = pwcet.get(p_key(p))
            if not _positive_int(v) or v > MAX_TIME_NS:
                raise r.fail(f"pwcet_ns.{p_key(p)}", f"must be an integer > 0 and <= "
                             f"{MAX_TIME_NS}, got {quote(v)}")  # fmt: skip
        shape = r.get("input_shape", list, optional=True)
        if shape is not None and not all(_positive_int(v) for v in shape):
            raise r.fail("input_shape", f"must be a list of integers > 0, got {quote(shape)}")
        exceedance = r.get("exceedance", float)
        if not 0 < exceedance < 1:
            raise r.fail("exceedance", f"must lie in (0, 1), got {quote(exceedance)}")
        for key in ("co_runners", "warnings"):
            items = r.get(key, list, optional=True) or []
            if not all(isinstance(v, str) for v in items):
                raise r.fail(key, "must be a list of strings")
        return cls(
            task=r.get("task", str),
            model=r.get("model", str, optional=True),
            batch=r.integer("batch", 1),
            input_shape=tuple(shape) if shape else None,
            backend=r.get("backend", str),
            device=r.get("device", str),
            mode=mode,
            co_runners=tuple(r.get("co_runners", list, optional=True) or ()),
            samples_ns=samples,
            warmup_ns=r.integers("warmup_ns", 1, optional=True),
            wcet_ns=r.integer("wcet_ns", 1, MAX_TIME_NS),
            method=r.get("method", str),
            exceedance=exceedance,
            converged=r.get("converged", bool),
            supported=r.get("supported", bool),
            pwcet_ns=pwcet,
            warnings=tuple(r.get("warnings", list, optional=True) or ()),
            stats=r.get("stats", dict, optional=True) or {},
            checks=r.get("checks", list, optional=True) or [],
            settings=r.get("settings", dict, optional=True) or {},
            clock=r.get("clock", dict, optional=True) or {},
            created=r.get("created", str, optional=True) or "",
            aegis_version=r.get("aegis_version", str, optional=True) or "",
            path=None if path == "<memory>" else path,
        )


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def load_profile(path: str | Path) -> Profile:
    from aegis_core.model.files import read_json

    return Profile.from_dict(read_json(path, "profile file"), str(path))
