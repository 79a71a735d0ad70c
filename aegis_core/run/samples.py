"""Wall-clock cost samples in bounded memory (the loop's decision overheads).

A run makes one decision per dispatch, so keeping every cost would grow with the run.
:class:`CostSamples` keeps up to :data:`CostSamples.RAW` costs raw (an 8-byte array the
loop appends to) and folds older ones into a log-binned histogram: each power of two split
into :data:`SUB` bins, so a folded cost is known to within 1/:data:`SUB` of its value. ``n``,
``max`` and ``mean`` stay exact; p50 / p99 are the observed values while nothing was folded
(a run of up to :data:`CostSamples.RAW` decisions) and, after, the lower edge of the bin
holding the quantile (at most 1/:data:`SUB` = 0.8 % low). These are measurements of the host,
never inputs of the analysis.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

SUB = 128
"""Bins per power of two: the histogram's relative resolution."""
_SHIFT = SUB.bit_length() - 1


def _bins(values: Any) -> Any:
    """The histogram bin of each cost (numpy int64 array in and out): costs below ``SUB``
    have a bin each; a cost in ``[2^k, 2^(k+1))``, ``k >= log2(SUB)``, is in bin
    ``(k - log2(SUB)) · SUB + (cost >> (k - log2(SUB)))`` (integer arithmetic: ``frexp`` gives
    ``k + 1``, the bit length, exactly for costs below 2^53 ns)."""
    import numpy as np

    v = np.maximum(values, 0)
    exp = np.maximum(np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1 - _SHIFT, 0)
    return exp * SUB + (v >> exp)


def _edge(b: int) -> int:
    """The smallest cost in bin ``b`` (the inverse of :func:`_bins` at a bin's low edge)."""
    if b < 2 * SUB:
        return b
    exp = b // SUB - 1
    return (SUB + b % SUB) << exp


class CostSamples:
    """Costs in ns, the recent ones raw, older ones folded (see the module docstring)."""

    RAW = 1 << 16
    """Raw costs kept before they are folded, by default (512 KiB)."""

    __slots__ = ("_counts", "_max", "_n", "_sum", "limit", "raw")

    def __init__(self, limit: int = RAW) -> None:
        self.limit = limit
        self.raw: array[int] = array("q")
        """The costs not folded yet, in order (the loop appends here)."""
        self._counts: Any = None  # numpy int64 histogram of the folded costs
        self._n = 0
        self._sum = 0
        self._max = 0

    def __len__(self) -> int:
        return self._n + len(self.raw)

    def fold(self, keep: int = 0) -> None:
        """Fold all but the last ``keep`` raw costs into the histogram."""
        import numpy as np

        if len(self.raw) <= keep:
            return
        cut = len(self.raw) - keep
        a = np.frombuffer(self.raw, dtype=np.int64)[:cut]
        counts = np.bincount(_bins(a))
        if self._counts is None:
            self._counts = counts
        else:
            if counts.size > self._counts.size:
                counts[: self._counts.size] += self._counts
                self._counts = counts
            else:
                self._counts[: counts.size] += counts
        self._n += int(a.size)
        self._sum += int(a.sum())
        self._max = max(self._max, int(a.max()))
        del a
        del self.raw[:cut]

    def full(self) -> bool:
        """Are :attr:`limit` costs raw (time to :meth:`fold`)?"""
        return len(self.raw) >= self.limit

    def stats(self) -> dict[str, Any]:
        """``n, p50, p99, max, mean`` (quantiles: the next higher observation, or of a folded
        run the lower edge of its bin)."""
        import numpy as np

        if self._counts is None:
            return cost_stats(self.raw)
        self.fold()
        counts, n = self._counts, self._n
        cum = np.cumsum(counts)
        out: dict[str, Any] = {"n": n}
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            rank = int(np.ceil(q * (n - 1)))  # the 'higher' quantile's 0-based rank
            out[name] = _edge(int(np.searchsorted(cum, rank + 1)))
        out["max"] = self._max
        out["mean"] = round(self._sum / n, 1)
        return out


def cost_stats(samples: Sequence[int]) -> dict[str, Any]:
    """``n, p50, p99, max, mean`` of ns samples, exact (quantiles: the next higher observed
    value)."""
    import numpy as np

    if not samples:
        return {"n": 0}
    a = np.array(samples, dtype=np.int64)  # a copy: the caller's samples keep their order
    p50, p99 = np.quantile(a, [0.5, 0.99], method="higher", overwrite_input=True)
    return {
        "n": len(samples),
        "p50": int(p50),
        "p99": int(p99),
        "max": int(a.max()),
        "mean": round(float(a.mean()), 1),
    }


class ExactValues:
    """Integer values (ns) kept for exact statistics in as little memory as they allow.

    While at most :data:`DISTINCT` values are distinct they are counted by value (a periodic
    simulation repeats itself: its response and execution times take few values, so memory
    stays flat at any horizon); past that they go to a 4-byte array, 8-byte once a value
    needs it. :meth:`array` gives them back (in no particular order) for the statistics."""

    DISTINCT = 4096

    __slots__ = ("counts", "values")

    def __init__(self) -> None:
        self.counts: dict[int, int] | None = {}
        self.values: array[int] | None = None

    def add(self, v: int) -> None:
        counts = self.counts
        if counts is not None:
            counts[v] = counts.get(v, 0) + 1
            if len(counts) > self.DISTINCT:
                self._spill()
            return
        values = self.values
        assert values is not None
        try:
            values.append(v)
        except OverflowError:  # past 2.1 s: 8 bytes a value from here on
            self.values = array("q", values)
            self.values.append(v)

    def _spill(self) -> None:
        counts = self.counts
        assert counts is not None
        wide = any(not -(2**31) <= v < 2**31 for v in counts)
        code = "q" if wide else "i"
        self.values = array(code)
        for v, n in counts.items():
            self.values.extend(array(code, [v]) * n)
        self.counts = None

    def __len__(self) -> int:
        if self.counts is not None:
            return sum(self.counts.values())
        assert self.values is not None
        return len(self.values)

    def stats(self) -> dict[str, Any] | None:
        """:func:`array_stats` of the values (None: none). Counted values are not expanded:
        the quantiles are read off the cumulative counts at numpy's ``higher`` index
        (``ceil((n - 1) q)``), the mean is exact, the deviation summed per distinct value."""
        counts = self.counts
        if counts is None:
            return array_stats(self.array())
        if not counts:
            return None
        import numpy as np

        keys = sorted(counts)
        n = sum(counts.values())
        cum = np.cumsum([counts[k] for k in keys])
        p50, p99 = (keys[int(np.searchsorted(cum, int(np.ceil(np.float64(n - 1) * q)) + 1))]
                    for q in (0.5, 0.99))  # fmt: skip
        mean = sum(k * c for k, c in counts.items()) / n
        var = sum(c * (k - mean) ** 2 for k, c in counts.items()) / n
        cv = round(var**0.5 / mean, 6) if mean else 0.0
        return {"n": n, "min": keys[0], "p50": p50, "p99": p99, "max": keys[-1],
                "mean": round(mean, 3), "cv": cv}  # fmt: skip

    def array(self) -> Any:
        """Every value as a numpy integer array (a view of the array, or the counted values
        repeated)."""
        import numpy as np

        if self.counts is not None:
            keys = np.fromiter(self.counts.keys(), dtype=np.int64, count=len(self.counts))
            n = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
            return np.repeat(keys, n)
        assert self.values is not None
        return np.frombuffer(self.values, dtype=np.int32 if self.values.typecode == "i"
                             else np.int64)  # fmt: skip


def array_stats(values: Any) -> dict[str, Any] | None:
    """``n, min, p50, p99, max, mean, cv`` of integer ns values (a numpy array, or an
    ``array``; None: no value). Quantiles use the ``higher`` method (observed values); ``cv``
    is the population standard deviation over the mean. A numpy array is partly sorted in
    place (no copy: a long run's values are its largest memory)."""
    import numpy as np

    if len(values) == 0:
        return None
    a = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=np.int64)
    mean = float(a.mean(dtype=np.float64))
    low, high, std = int(a.min()), int(a.max()), float(a.std(dtype=np.float64))
    p50, p99 = np.quantile(a, [0.5, 0.99], method="higher", overwrite_input=True)
    return {
        "n": int(a.size),
        "min": low,
        "p50": int(p50),
        "p99": int(p99),
        "max": high,
        "mean": round(mean, 3),
        "cv": round(std / mean, 6) if mean else 0.0,
    }
