"""Named types and unit conversion. All times inside AegisRT are integer nanoseconds."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

TimeNs = int
"""A time or duration in integer nanoseconds."""

NS_PER_MS = 1_000_000
NS_PER_US = 1_000

MAX_TIME_NS: TimeNs = 1 << 62
"""The largest time a scenario may give, and the largest the run may plan from it: 2**62 ns,
about 146 years. Each time field, and per task the sum of the duration and the times the
run adds to it, must stay at or below it, so every planned time (and the sum of two) fits
int64 (docs/CONTRACTS.md §scenario)."""

MAX_TIME_TEXT = "2**62 ns (about 146 years)"


def ms_to_ns(value: float | int) -> TimeNs:
    """Convert milliseconds (as written in YAML) to integer ns, exactly for decimal input.

    ``33.3`` becomes ``33_300_000``: the decimal text of the float is used, so no binary
    rounding error reaches the analysis. Sub-nanosecond digits are rounded half-even.
    """
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - guarded by validation
        raise ValueError(f"not a number: {value!r}") from exc
    return int((d * NS_PER_MS).to_integral_value())


BYTES_PER_MIB = 1 << 20


def fmt_ms(ns: int | float | None, unit: str = "") -> str:
    """A duration for tables: ``12.345`` (3 decimals, ms), ``-`` for None; ``unit`` appended."""
    return "-" if ns is None else f"{ns / NS_PER_MS:.3f}{unit}"


def fmt_mib(n: int | float, unit: str = "") -> str:
    """A byte count for tables: ``9.188`` (3 decimals, MiB); ``unit`` appended."""
    return f"{n / BYTES_PER_MIB:.3f}{unit}"


def fmt_count(n: int, word: str, many: str | None = None) -> str:
    """A count with its noun in the right number: ``1 miss``, ``0 misses``, ``2 jobs``
    (``many``: an irregular plural; else ``es`` after s, x, ch, sh and ``s`` otherwise)."""
    if n == 1:
        return f"{n} {word}"
    if many is None:
        many = word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{n} {many}"
