"""Progress on a terminal for ``sim``, ``exec``, ``check``, ``compare`` and ``profile``
(docs/CONTRACTS.md §cli): one line on stderr, drawn by tqdm, only when stderr is a terminal,
the environment variable ``CI`` is unset (or empty) and ``--quiet`` is not given.

:func:`terminal` decides where progress goes (None: nowhere); :class:`Bar` draws it, redrawn
at most every :data:`REFRESH_NS` of wall time; :func:`run_progress` is the loop's ``progress``
hook of one run (run time done / horizon, jobs released, misses so far, ETA). tqdm is
imported only when a bar is drawn.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

from aegis_core.model.types import TimeNs, fmt_count

REFRESH_NS = 100_000_000
"""A bar is redrawn at most this often (ns of wall time)."""


def terminal(
    quiet: bool = False, stream: IO[str] | None = None, env: Mapping[str, str] | None = None
) -> IO[str] | None:
    """``stream`` (default: stderr) when progress should be shown on it: a terminal, ``CI``
    not set in ``env`` (default: the environment), not ``quiet``; else None."""
    stream = sys.stderr if stream is None else stream
    env = os.environ if env is None else env
    if quiet or env.get("CI") or not _isatty(stream):
        return None
    return stream


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no such method, or a closed stream
        return False


class Bar:
    """One progress line on ``stream`` (tqdm): ``total`` in ``unit``; :meth:`show` redraws at
    most every :data:`REFRESH_NS`; :meth:`close` clears it."""

    def __init__(self, stream: IO[str], total: float, unit: str, desc: str) -> None:
        from tqdm import tqdm

        fmt = ("{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit} "
               "[{elapsed}<{remaining}{postfix}]")  # fmt: skip
        self._tqdm = tqdm(total=total, unit=unit, desc=desc, file=stream, leave=False,
                          mininterval=REFRESH_NS / 1e9, bar_format=fmt,
                          dynamic_ncols=True)  # fmt: skip
        self.total = total
        self.next_ns = 0
        """The wall time (``time.perf_counter_ns``) before which :meth:`show` draws nothing."""

    def show(self, done: float, note: str = "") -> None:
        now = time.perf_counter_ns()
        if now < self.next_ns:
            return
        self.next_ns = now + REFRESH_NS
        bar = self._tqdm
        bar.n = min(done, self.total)
        bar.set_postfix_str(note, refresh=False)
        bar.refresh()

    def write(self, line: str) -> None:
        """A line above the bar (the bar is redrawn below it)."""
        self._tqdm.write(line, file=self._tqdm.fp)

    def close(self) -> None:
        self._tqdm.close()


class Counts(Protocol):
    """What a run's progress line reads of its scheduler."""

    @property
    def released(self) -> int: ...
    @property
    def missed(self) -> int: ...


def run_progress(
    stream: IO[str], desc: str, horizon_ns: TimeNs, counts: Counts
) -> tuple[Callable[[TimeNs], None], Bar]:
    """The loop's ``progress`` hook for one run on ``stream`` (its run time against the
    horizon, in ms; ``counts``: the scheduler's jobs released and misses so far), and its
    bar (to close)."""
    bar = Bar(stream, horizon_ns / 1e6, "ms", desc)
    clock = time.perf_counter_ns

    def tick(now: TimeNs) -> None:
        if clock() >= bar.next_ns:  # cheap: most calls stop here
            bar.show(
                now / 1e6,
                f"{fmt_count(counts.released, 'job')}, {fmt_count(counts.missed, 'miss')}",
            )

    return tick, bar


def steps(stream: IO[str] | None, total: int, unit: str, desc: str) -> Bar | None:
    """A bar of ``total`` counted steps (None when ``stream`` is None)."""
    return None if stream is None else Bar(stream, total, unit, desc)
