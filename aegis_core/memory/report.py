"""What ``aegis memory`` reads and shows of a plan: tensor-usage files, the table, the PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aegis_core.memory.planner import ModelUsage, SharedPlan, Usage
from aegis_core.model.errors import InputError
from aegis_core.model.files import write_atomic
from aegis_core.model.types import fmt_count
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
            raise InputError(f"{where} ({m['name']!r}): field 'tensors' must be a list")
        out.append(ModelUsage(m["name"], tuple(_usage(t, f"{where}.tensors[{k}]")
                                                for k, t in enumerate(m["tensors"]))))  # fmt: skip
        names = [t.name for t in out[-1].tensors]
        if len(set(names)) != len(names):
            raise InputError(f"{where} ({m['name']!r}): tensor names must be unique")
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
        f"memory plan · {plan.mode} sharing · {fmt_count(len(plan.models), 'model')}",
        f"{'model':<16} {'naive MiB':>10} {'planned MiB':>12} {'lower bound':>12} "
        f"{'base MiB':>9}  method",
    ]
    for p in plan.models:
        lines.append(
            f"{_printable(p.name):<16} {_mib(p.naive):>10} {_mib(p.size):>12} "
            f"{_mib(p.lower_bound):>12} {_mib(plan.bases[p.name]):>9}  {p.method}"
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


_UNITS = ((1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))
_LABEL_MIN = 0.07
"""A tensor's name is written inside its rectangle only when the rectangle is at least this
fraction of the offset axis high and as wide as the name (:data:`_CHAR_PX` a character):
labels never spill onto their neighbours."""
_CHAR_PX = 6.5
"""Width of a 7-point label character at :data:`_DPI`, in pixels (a little over)."""
_DPI = 110
_EDGED = 500
"""Up to this many tensors in a panel each rectangle gets an outline (more: the outlines
alone would paint it black)."""


def _unit(nbytes: int) -> tuple[int, str]:
    """The largest unit in which ``nbytes`` is at least 1 (the plot's offset axis)."""
    return next((u for u in _UNITS if nbytes >= u[0]), _UNITS[-1])


ZOOM_BELOW = 0.25
"""A model whose own plan tops out below this fraction of the shared arena is drawn zoomed to
its own top (it would be a sliver at the bottom), the shared top said in words."""


def _size(nbytes: int) -> str:
    scale, unit = _unit(nbytes)
    return f"{nbytes / scale:.3g} {unit}" if scale > 1 else f"{nbytes} B"


def _short(name: str) -> str:
    """A tensor's label: kernel scratch ``ws:<op>:<kind>`` as ``<kind>@<op>``."""
    if name.startswith("ws:") and name.count(":") >= 2:
        _, op, kind = name.split(":", 2)
        return _plain(f"{kind}@{op}")
    return _plain(name.removesuffix(".out"))


def _plain(text: str) -> str:
    """A name drawn as it is: ``$`` would start matplotlib's math mode (an unbalanced one
    fails the plot), control characters escaped."""
    return _printable(text).replace("$", r"\$")


def _printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``): a name from
    a file never reaches the terminal raw."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def plot_plan(plan: SharedPlan, usages: Sequence[ModelUsage], path: str) -> None:
    """The arena layout as a PNG: per model, each tensor a rectangle (ops it lives at × the
    bytes it occupies), coloured apart, named where there is room; the shared arena's top
    and the model's own arena marked (the legend defines both); one offset unit for all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    by = {u.name: u for u in usages}
    count = max(len(plan.models), 1)
    fig, axes = plt.subplots(1, count, figsize=(max(6.0, 4.6 * count), 4.8), squeeze=False)
    colors = [plt.get_cmap("tab20")(k) for k in range(20)]
    panel_px = fig.get_size_inches()[0] * _DPI / count * 0.75  # one axes' width, about
    for ax, p in zip(axes[0], plan.models, strict=False):
        base = plan.bases[p.name]
        own = max(base + p.size, 1)
        zoom = own < ZOOM_BELOW * plan.shared_bytes  # else it would be a sliver at the bottom
        scale, unit = _unit(own if zoom else max(plan.shared_bytes, 1))
        top = (own if zoom else max(plan.shared_bytes, 1)) / scale
        tensors = sorted(by[p.name].tensors, key=lambda t: (t.first, p.offsets[t.name]))
        n = max((t.last for t in tensors), default=0) + 1
        boxes = []
        for t in tensors:
            y, h = (base + p.offsets[t.name]) / scale, t.size / scale
            boxes.append(Rectangle((t.first, y), t.last - t.first + 1, h))
            wide = (t.last - t.first + 1) / n * panel_px >= _CHAR_PX * len(_short(t.name))
            if wide and h / top >= _LABEL_MIN:
                ax.text(t.first + (t.last - t.first + 1) / 2, y + h / 2, _short(t.name),
                        ha="center", va="center", fontsize=7, clip_on=True)  # fmt: skip
        edge = 0.4 if len(boxes) <= _EDGED else 0.0
        ax.add_collection(PatchCollection(
            boxes, facecolors=[colors[k % len(colors)] for k in range(len(boxes))],
            edgecolors="k", linewidths=edge, alpha=0.85))  # fmt: skip
        if zoom:
            ax.text(0.98, 0.97, f"zoomed: the shared arena's top, {_size(plan.shared_bytes)}, "
                    "is above", transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="r")  # fmt: skip
        else:
            ax.axhline(plan.shared_bytes / scale, color="r", linewidth=1.0, linestyle="--")
        ax.axhline(own / scale, color="0.3", linewidth=0.9, linestyle=":")
        ax.set_xlim(0, n)
        ax.set_ylim(0, top * 1.08)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{_plain(p.name)}: {len(tensors)} tensors, planned {_size(p.size)}\n"
                     f"(lower bound {_size(p.lower_bound)}; {p.method})", fontsize=9)  # fmt: skip
        ax.set_xlabel("op index (a tensor lives from its first op to its last)")
        ax.set_ylabel(f"arena offset ({unit})")
    fig.suptitle(
        f"memory plan, {plan.mode} sharing: shared arena {_size(plan.shared_bytes)} vs "
        f"{_size(plan.isolated_bytes)} isolated\n(lower bound {_size(plan.lower_bound_bytes)};"
        " activations and kernel scratch; weights and inputs apart)",
        fontsize=10,
    )
    fig.legend(
        [Line2D([], [], color="r", linestyle="--"), Line2D([], [], color="0.3", linestyle=":")],
        ["top of the shared arena", "top of this model's own plan"],
        loc="lower center", ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    try:  # whole, through a temporary file; a PNG whatever the name (never a link followed)
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=_DPI), "plot")
    finally:
        plt.close(fig)
