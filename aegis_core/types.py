"""Named types and unit conversion. All times inside AegisRT are integer nanoseconds."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

TimeNs = int
"""A time or duration in integer nanoseconds."""

NS_PER_MS = 1_000_000
NS_PER_US = 1_000


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
