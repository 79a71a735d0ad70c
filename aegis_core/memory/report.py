"""What ``aegis memory`` reads and shows of a plan: tensor-usage files, the table, the PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aegis_core.memory.planner import ModelUsage, SharedPlan, Usage
from aegis_core.model.errors import InputError
from aegis_core.model.types import fmt_mib as _mib

USAGE_FILE_LIMIT = 32 << 20
"""32 MiB: the largest tensor-usage file read."""
MAX_USAGE_TENSORS = 100_000
"""The most tensors a tensor-usage file may list (all models together)."""
MAX_USAGE_VALUE = 1 << 62
"""Largest ``size``, ``first`` or ``last`` (int64 with headroom)."""


def read_usages(path: str) -> tuple[list[ModelUsage], bool]:
    """The tensor-usage file at ``path`` (``-``: standard input), read bounded
    (:data:`USAGE_FILE_LIMIT`, a regular file) and checked (:func:`usages_from_json`)."""
    from aegis_core.graph.ir import parse_json, read_bounded

    what = "tensor-usage file"
    return usages_from_json(
        parse_json(read_bounded(path, USAGE_FILE_LIMIT, what), path, what), path
    )


def usages_from_json(data: Any, path: str) -> tuple[list[ModelUsage], bool]:
    """The tensor-usage file (docs/CONTRACTS.md §memory-json); InputError names file and field."""
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise InputError(f"{path}: expected an object with a 'models' list")
    interleave = data.get("interleave", False)
    if not isinstance(interleave, bool):
        raise InputError(f"{path}: field 'interleave' must be true or false")
    count = sum(len(m["tensors"]) for m in data["models"]
                if isinstance(m, Mapping) and isinstance(m.get("tensors"), list))  # fmt: skip
    if count > MAX_USAGE_TENSORS:
        raise InputError(
            f"{path}: {count} tensors, more than the {MAX_USAGE_TENSORS} a file may list"
        )
    out: list[ModelUsage] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(data["models"]):
        where = f"{path}: models[{i}]"
        if not isinstance(m, Mapping) or not isinstance(m.get("name"), str):
            raise InputError(f"{where}: needs a 'name' (string) and 'tensors'")
        if m["name"] in seen:
            raise InputError(f"{where}: field 'name': model {m['name']!r} is also "
                             f"models[{seen[m['name']]}]: model names must be unique")  # fmt: skip
        seen[m["name"]] = i
        if not isinstance(m.get("tensors"), list):
            raise InputError(f"{where} ({m['name']}): field 'tensors' must be a list")
        out.append(ModelUsage(m["name"], tuple(_usage(t, f"{where}.tensors[{k}]")
                                                for k, t in enumerate(m["tensors"]))))  # fmt: skip
        names = [t.name for t in out[-1].tensors]
        if len(set(names)) != len(names):
            raise InputError(f"{where} ({m['name']}): tensor names must be unique")
    return out, interleave


def _usage(t: Any, where: str) -> Usage:
    if not isinstance(t, Mapping):
        raise InputError(f"{where}: must be an object with name, size, first, last")
    for key in ("size", "first", "last"):
        v = t.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_USAGE_VALUE:
            raise InputError(
                f"{where}: field '{key}' must be an integer in [0, 2**62], got {v!r:.40}"
            )
    if not isinstance(t.get("name"), str):
        raise InputError(f"{where}: field 'name' must be a string")
    if t["first"] > t["last"]:
        raise InputError(f"{where}: first ({t['first']}) is after last ({t['last']})")
    return Usage(t["name"], t["size"], t["first"], t["last"])


# ----------------------------------------------------------------------------- scenarios


def format_plan(plan: SharedPlan) -> str:
    """The readable table of ``aegis memory``."""
    lines = [
        f"memory plan · {plan.mode} sharing · {len(plan.models)} models",
        f"{'model':<16} {'naive MiB':>10} {'planned MiB':>12} {'lower bound':>12} "
        f"{'base MiB':>9}  method",
    ]
    for p in plan.models:
        lines.append(
            f"{p.name:<16} {_mib(p.naive):>10} {_mib(p.size):>12} {_mib(p.lower_bound):>12} "
            f"{_mib(plan.bases[p.name]):>9}  {p.method}"
        )
    gap = plan.shared_bytes / plan.lower_bound_bytes - 1 if plan.lower_bound_bytes else 0.0
    lines += [
        f"activations and kernel scratch: isolated {_mib(plan.isolated_bytes)} MiB, shared "
        f"{_mib(plan.shared_bytes)} MiB, lower bound {_mib(plan.lower_bound_bytes)} MiB; "
        f"reduction {plan.reduction:.1%}, {gap:.1%} above the lower bound",
        f"persistent (not shared): weights {_mib(plan.weights_bytes)} MiB, inputs "
        f"{_mib(plan.inputs_bytes)} MiB",
    ]
    return "\n".join(lines)


def plot_plan(plan: SharedPlan, usages: Sequence[ModelUsage], path: str) -> None:
    """The arena layout as a PNG: per model, each tensor a rectangle (op index × offset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    by = {u.name: u for u in usages}
    fig, axes = plt.subplots(1, len(plan.models), figsize=(4 * max(len(plan.models), 1), 4),
                             squeeze=False)  # fmt: skip
    for ax, p in zip(axes[0], plan.models, strict=True):
        base = plan.bases[p.name]
        n = max((t.last for t in by[p.name].tensors), default=0) + 1
        for t in by[p.name].tensors:
            y = (base + p.offsets[t.name]) / (1 << 20)
            ax.add_patch(Rectangle((t.first, y), t.last - t.first + 1, t.size / (1 << 20),
                                   alpha=0.6, edgecolor="k", linewidth=0.3))  # fmt: skip
        ax.set_xlim(0, n)
        ax.set_ylim(0, plan.shared_bytes / (1 << 20) or 1)
        ax.axhline(plan.shared_bytes / (1 << 20), color="r", linewidth=0.8)
        ax.set_title(f"{p.name} ({p.method})", fontsize=9)
        ax.set_xlabel("op index")
        ax.set_ylabel("offset (MiB)")
    fig.suptitle(f"{plan.mode} sharing: {_mib(plan.shared_bytes)} MiB shared vs "
                 f"{_mib(plan.isolated_bytes)} MiB isolated")  # fmt: skip
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
