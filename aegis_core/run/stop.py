"""Stopping a run between two instants (docs/CONTRACTS.md §results, ``interrupted``).

A stop is requested (:func:`request`: by a signal handler, :mod:`aegis_core.tools.signals`)
and seen by the loop where it polls (:func:`requested`, the loop's ``stop`` check): it ends
the run after the instant it has finished, never inside one. A wall-clock engine can sleep
until its next release; its blocking waits are marked :data:`interruptible`, and while the
loop has them armed (:func:`armed`) a stop request ends such a wait at once, by raising
:class:`~aegis_core.model.errors.Interrupted` out of it (a wait entered after a request raises
on entry). Nothing happens in a marked wait but waiting, so the run loses nothing: the loop
catches it and ends the run at the instant it was waiting after.

The state is process-wide, as signal handlers are, and only the main thread's waits are cut
(signal handlers run there).
"""

from __future__ import annotations

import threading

from aegis_core.model.errors import Interrupted

__all__ = ["Interrupted", "armed", "interruptible", "request", "requested", "reset"]


class _State:
    __slots__ = ("armed", "reason", "waiting")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.armed = False
        self.waiting = False


_STATE = _State()
_MAIN = threading.main_thread().ident


def request(reason: str) -> None:
    """Ask the run to stop (the first reason is kept). Safe in a signal handler: when the main
    thread is in an armed interruptible wait, this raises :class:`Interrupted` there."""
    st = _STATE
    if st.reason is None:
        st.reason = reason
    if st.waiting:
        st.waiting = False
        raise Interrupted(st.reason)


def requested() -> str | None:
    """The reason a stop was requested for (e.g. ``"SIGINT"``); None: none was."""
    return _STATE.reason


def reset() -> None:
    """Forget a request (before and after a run)."""
    _STATE.reason = None
    _STATE.waiting = False


class _Armed:
    """While entered, interruptible waits may be cut short by a request (the loop's run)."""

    def __enter__(self) -> None:
        _STATE.armed = True

    def __exit__(self, *exc: object) -> None:
        _STATE.armed = _STATE.waiting = False


class _Wait:
    """Marks a blocking wait that a stop request may end (``with interruptible: sleep``)."""

    def __enter__(self) -> None:
        st = _STATE
        if st.armed and threading.get_ident() == _MAIN:
            if st.reason is not None:
                raise Interrupted(st.reason)
            st.waiting = True

    def __exit__(self, *exc: object) -> None:
        _STATE.waiting = False


def armed() -> _Armed:
    return _Armed()


interruptible = _Wait()
"""``with interruptible: time.sleep(...)``: a wait a stop request ends (see the module)."""
