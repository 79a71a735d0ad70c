"""What engines report back to the scheduler. Immutable, cheap, ordered by fields."""

from __future__ import annotations

from typing import NamedTuple

from aegis_core.model.types import TimeNs


class Release(NamedTuple):
    """Release the ``k``-th job of task number ``task_index`` (scenario list order) at ``t_ns``.

    The arrival generator plans these; engines hand them back when their time comes. ``t_ns``
    stays the planned time: a wall-clock engine that wakes late hands it over at a later
    ``now``, and the job keeps its planned release (the difference is its release lag).
    """

    t_ns: TimeNs
    task_index: int
    k: int


class Completion(NamedTuple):
    """The job (or chunk) with release sequence number ``seq`` finished at ``t_ns``.

    ``started_ns``: when it really began executing, if the engine knows better than the
    dispatch instant (the executor reports device-side start times); None: at dispatch.
    """

    t_ns: TimeNs
    seq: int
    started_ns: TimeNs | None = None


class Fault(NamedTuple):
    """The job with sequence number ``seq`` failed at ``t_ns`` (its kernels raised ``error``)."""

    t_ns: TimeNs
    seq: int
    error: str


class Assumption(NamedTuple):
    """The host broke an overhead bound the analysis charged: ``what`` (an
    :class:`~aegis_core.model.overheads.Overhead` value) took ``observed_ns`` > ``bound_ns``
    for the job with sequence number ``seq``; seen at ``t_ns``."""

    t_ns: TimeNs
    seq: int
    what: str
    observed_ns: TimeNs
    bound_ns: TimeNs


EngineEvent = Release | Completion | Fault | Assumption
