"""Clean stops of a run on SIGINT and SIGTERM (docs/CONTRACTS.md §cli, exit 130 / 143).

:func:`stop_on_signals` installs handlers for the duration of one run, in the main thread
only, and restores the previous ones after. The first signal requests a stop
(:func:`aegis_core.run.stop.request`): the loop ends the run after the instant it is in, or at
once when it is waiting for the next release, and the runner writes the results of what ran.
A second signal during the same run is a hard stop: the previous handlers are back and the
signal goes to them (SIGINT: ``KeyboardInterrupt`` where the run is, which the CLI reports in
one line; SIGTERM: by default the end of the process). No end record is written then: the
trace is cut, and ``aegis explain --verify`` says so.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from aegis_core.run import stop

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(reason: str) -> int:
    """The shell's status of a process ended by signal ``reason`` (130 for SIGINT, 143 for
    SIGTERM): what a stopped command exits with."""
    return 128 + int(signal.Signals[reason])


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """For one run: SIGINT and SIGTERM request a stop; yields the loop's ``stop`` check.
    Outside the main thread no handler can be installed: the check never fires."""
    stop.reset()
    if threading.current_thread() is not threading.main_thread():
        yield stop.requested
        return
    previous: dict[int, Any] = {}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous.clear()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested() is not None:  # the second one: stop hard, where the run is
            restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)  # the previous handler's turn (by default: the end)
            return
        stop.request(signal.Signals(signum).name)

    for sig in SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:  # e.g. `aegis sim ... &` from a script
            continue  # an ignored signal stays ignored
        previous[sig] = signal.signal(sig, handle)
    try:
        yield stop.requested
    finally:
        restore()
        stop.reset()
