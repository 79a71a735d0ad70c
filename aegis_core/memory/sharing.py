"""Sharing one activation arena across models as the policy allows (serial, nested, concurrent),
and :class:`ScenarioMemory`: the one usage path every consumer plans from."""

from __future__ import annotations

from collections.abc import Sequence

from aegis_core.memory.planner import (
    MODES,
    ModelPlan,
    ModelUsage,
    SharedPlan,
    _boundaries,
    align,
    high_water,
    live_across,
    plan_model,
)
from aegis_core.model.errors import InputError


def plan_models(usages: Sequence[ModelUsage], mode: str, alignment: int = 1) -> SharedPlan:
    """``serial``: one model at a time (np-edf, np-fp, fifo); ``nested``: lp-edf preemption at
    chunk boundaries by strictly shorter deadlines; ``concurrent``: no sharing."""
    if mode not in MODES:
        raise InputError(f"unknown sharing mode {mode!r}; choose one of {', '.join(MODES)}")
    names = [u.name for u in usages]
    if len(set(names)) != len(names):
        raise InputError("model names must be unique")
    shortest = min((u.deadline_ns for u in usages if u.deadline_ns is not None), default=None)

    def preemptible(u: ModelUsage) -> bool:  # nested: some task may preempt it at a boundary
        return (mode == "nested" and bool(_boundaries(u)) and shortest is not None
                and (u.deadline_ns or 0) > shortest)  # fmt: skip

    plans = [plan_model(u, alignment, preemptible=preemptible(u)) for u in usages]
    isolated = sum(align(p.size, alignment) for p in plans)  # each its own aligned arena
    if mode == "serial":
        bases = {p.name: 0 for p in plans}
        shared = max((p.size for p in plans), default=0)
        bound = max((p.lower_bound for p in plans), default=0)
    elif mode == "concurrent":
        bases, at = {}, 0
        for p in plans:
            bases[p.name] = at
            at += align(p.size, alignment)
        shared = at - (align(plans[-1].size, alignment) - plans[-1].size if plans else 0)
        bound = sum(p.lower_bound for p in plans)
    else:
        bases, shared, bound = _nested(usages, plans, alignment)
    return SharedPlan(
        mode, tuple(plans), bases, isolated, shared, bound,
        sum(u.weights_bytes for u in usages), sum(u.inputs_bytes for u in usages),
    )  # fmt: skip


def _nested(
    usages: Sequence[ModelUsage], plans: Sequence[ModelPlan], alignment: int = 1
) -> tuple[dict[str, int], int, int]:
    """docs/THEORY.md §sharing, fixed addresses, by decreasing deadline: ``base_j = max over i with
    D_i > D_j of (base_i + max_b H_i(b))`` (a job is preempted only by one of a task with a
    strictly shorter deadline, so preemptions nest); arena ``max_j (base_j + A_j)``. The lower
    bound is the worst nesting of live bytes, a DP in increasing deadline:
    ``W(i) = max(LB_i, max_b L_i(b) + max over D_j < D_i of W(j))``."""
    if any(u.deadline_ns is None for u in usages):
        raise InputError("interleaved sharing needs every model's relative deadline")
    dl = [u.deadline_ns or 0 for u in usages]
    n = len(usages)
    keep = [max((high_water(usages[i], plans[i], b) for b in _boundaries(usages[i])), default=0)
            for i in range(n)]  # fmt: skip
    live = [max((live_across(usages[i], b) for b in _boundaries(usages[i])), default=0)
            for i in range(n)]  # fmt: skip
    order = sorted(range(n), key=lambda i: (-dl[i], i))
    base: dict[int, int] = {}
    for pos, j in enumerate(order):
        below = [base[i] + keep[i] for i in order[:pos] if dl[i] > dl[j]]
        base[j] = align(max(below, default=0), alignment)
    shared = max((base[i] + plans[i].size for i in range(n)), default=0)
    worst: dict[int, int] = {}
    for i in reversed(order):
        inner = [worst[j] for j in worst if dl[j] < dl[i]]
        worst[i] = (
            max(plans[i].lower_bound, live[i] + max(inner)) if inner else plans[i].lower_bound
        )
    return {usages[i].name: base[i] for i in range(n)}, shared, max(worst.values(), default=0)
