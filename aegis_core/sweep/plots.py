"""The plots of a sweep dataset (``aegis sweep plot DIR``, docs/THEORY.md §taskgen): the
acceptance ratio vs nominal utilisation per policy with 95 % Wilson score intervals, the CDF of
the bound's tightness (``max_bound_over_sim``, when ``check`` ran), the analysis time per set
(median and p99) vs utilisation, and the weighted schedulability ``W = Σ U·S(U) / Σ U``.

One panel per ``n`` and per other varied axis (while there are at most :data:`MAX_PANELS`
panels; further varied axes are pooled, with a note). Everything is computed from the dataset's
rows (one per set and policy); matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aegis_core.model.errors import FileError, InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REQUIRED = ("n", "utilization", "policy", "schedulable")
"""The columns every sweep dataset has and the plots need."""
MEASURES = frozenset({
    "point", "set", "seed", "utilization", "utilization_actual", "policy", "schedulable",
    "analysis_points", "analysis_ns", "max_bound_over_sim", "check_ok", "misses",
})  # fmt: skip
"""The columns that are measurements or identities, not axes; every other column is an axis."""
MAX_PANELS = 12
"""At most this many panels a figure: the varied axes beyond are pooled."""
PLOTS = "plots"
"""The folder of the dataset the plots go to."""
SWEEP_PIP_HINT = "pip install 'aegisrt[sweep]'"
US = 1_000
MIN_SPAN = 0.1
"""The narrowest x range of the tightness CDF (ratios of bound to worst simulated response)."""

Note = Callable[[str], object]


def _stderr_note(text: str) -> None:
    print(f"aegis: note: {text}", file=sys.stderr)


# ------------------------------------------------------------------------ the statistics


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials at normal quantile ``z``
    (1.96: 95 %): ``(p + z²/2n ± z·sqrt(p(1 − p)/n + z²/4n²)) / (1 + z²/n)``, exactly 0 at
    ``k = 0`` and 1 at ``k = n``."""
    if not (n >= 1 and 0 <= k <= n):
        raise ValueError(f"wilson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def panel_axes(df: pd.DataFrame, note: Note = _stderr_note) -> list[str]:
    """The columns that split the figures into panels: ``n``, then each other varied axis
    while the panels stay at most :data:`MAX_PANELS` (a note names the axes pooled)."""
    varied = [c for c in df.columns if c not in MEASURES and df[c].nunique(dropna=False) > 1]
    keys = ["n"]
    pooled = []
    for c in (c for c in varied if c != "n"):
        if df.groupby([*keys, c], dropna=False).ngroups <= MAX_PANELS:
            keys.append(c)
        else:
            pooled.append(c)
    if pooled:
        note(f"pooled over the varied axes {', '.join(pooled)} (more than {MAX_PANELS} panels)")
    return keys


def acceptance(df: pd.DataFrame, keys: Sequence[str] = ("n",)) -> pd.DataFrame:
    """Per panel ``keys``, policy and nominal utilisation: ``accepted`` of ``sets``, the
    ``ratio`` and its 95 % Wilson interval ``lo`` … ``hi``."""
    by = [*keys, "policy", "utilization"]
    g = df.groupby(by, dropna=False, sort=True)["schedulable"]
    out = pd.DataFrame({"accepted": g.sum().astype("int64"), "sets": g.size().astype("int64")})
    out = out.reset_index()
    out["ratio"] = out["accepted"] / out["sets"]
    bounds = [wilson(int(k), int(n)) for k, n in zip(out["accepted"], out["sets"], strict=True)]
    out["lo"] = [b[0] for b in bounds]
    out["hi"] = [b[1] for b in bounds]
    return out


def weighted(acc: pd.DataFrame, keys: Sequence[str] = ("n",)) -> pd.DataFrame:
    """The weighted schedulability ``W = Σ_U U·S(U) / Σ_U U`` per panel ``keys`` and policy,
    from :func:`acceptance`'s table (Bastoni, Brandenburg and Anderson; docs/THEORY.md
    §taskgen)."""
    by = [*keys, "policy"]
    num = (acc["utilization"] * acc["ratio"]).groupby([acc[k] for k in by], dropna=False).sum()
    den = acc.groupby(by, dropna=False)["utilization"].sum()
    return (num / den).rename("W").reset_index()


def acceptance_table(df: pd.DataFrame) -> pd.DataFrame:
    """The acceptance ratios as a table: one row per panel and utilisation, one column per
    policy (for the notebook and docs/BENCHMARKS.md)."""
    keys = panel_axes(df, note=lambda _: None)
    acc = acceptance(df, keys)
    return acc.pivot_table(index=[*keys, "utilization"], columns="policy", values="ratio")


# --------------------------------------------------------------------------- the dataset


def read_sweep(dataset_dir: str | Path) -> pd.DataFrame:
    """The rows of the sweep dataset in ``dataset_dir`` (what ``aegis sweep`` wrote), with
    the columns the plots need; a missing, empty or non-dataset folder is an InputError
    naming it."""
    d = Path(dataset_dir)
    if not d.exists():
        raise FileError(d, "no such sweep dataset folder")
    if not d.is_dir():
        raise FileError(d, "not a folder: a sweep dataset is the folder `aegis sweep` wrote")
    df = _read_partitions(d)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FileError(d, f"not a sweep dataset: no column {', '.join(map(repr, missing))}")
    if df.empty:
        raise FileError(d, "the sweep dataset has no rows: nothing to plot")
    for c in df.columns:  # a range axis read back as arrays
        if pd.api.types.is_object_dtype(df[c]):
            df[c] = df[c].map(_hashable)
    order = [c for c in ("point", "set", "policy") if c in df.columns]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def _hashable(v: Any) -> Any:
    """A list-like cell (a range axis such as ``period_ns``) as a tuple: groupable."""
    if isinstance(v, str | bytes) or not hasattr(v, "__len__"):
        return v
    return tuple(v.tolist() if hasattr(v, "tolist") else v)


def _read_partitions(d: Path) -> pd.DataFrame:
    """The dataset's partitions, read by the store (the one reader of a sweep folder)."""
    if importlib.util.find_spec("pyarrow") is None:
        raise InputError(f"reading a sweep dataset needs pyarrow: {SWEEP_PIP_HINT}")
    from aegis_core.sweep.store import read_dataset

    return read_dataset(d)


# ----------------------------------------------------------------------------- figures


def _panels(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """Each panel's title (``n = 5, deadline_kind = implicit``) and rows."""
    out = []
    for values, rows in df.groupby(list(keys), dropna=False, sort=True):
        vals = values if isinstance(values, tuple) else (values,)
        out.append((", ".join(f"{k} = {v}" for k, v in zip(keys, vals, strict=True)), rows))
    return out


def _grid(count: int, width: float = 4.6, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    import matplotlib.pyplot as plt

    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


MARKERS = "osD^vPX*"


def _colours(df: pd.DataFrame) -> dict[str, str]:
    """One colour per policy, the same in every figure."""
    return {p: f"C{i % 10}" for i, p in enumerate(sorted(df["policy"].unique()))}


def _markers(df: pd.DataFrame) -> dict[str, str]:
    """One marker per policy (curves that coincide stay visible)."""
    return {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(sorted(df["policy"].unique()))}


def acceptance_figure(df: pd.DataFrame, keys: Sequence[str] = ("n",)) -> Figure:
    """Acceptance ratio vs nominal utilisation, a line per policy with its 95 % Wilson band,
    one panel per value of ``keys``."""
    acc = acceptance(df, keys)
    colour, marker = _colours(df), _markers(df)
    panels = _panels(acc, keys)
    fig, axes = _grid(len(panels))
    for ax, (label, rows) in zip(axes, panels, strict=True):
        for policy, r in rows.groupby("policy", sort=True):
            c = colour[str(policy)]
            ax.fill_between(r["utilization"], r["lo"], r["hi"], color=c, alpha=0.2, lw=0)
            ax.plot(r["utilization"], r["ratio"], marker=marker[str(policy)], ms=4, mfc="none",
                    color=c, label=str(policy))  # fmt: skip
        sets = int(rows["sets"].min())
        ax.set_title(f"{label} (≥ {sets} sets a point)", fontsize=9)
        ax.set_xlabel("nominal utilisation U")
        ax.set_ylabel("acceptance ratio")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("acceptance ratio vs U, 95 % Wilson intervals", fontsize=10)
    return fig


def has_tightness(df: pd.DataFrame) -> bool:
    """Whether ``check`` ran: the dataset has ``max_bound_over_sim`` values."""
    return "max_bound_over_sim" in df.columns and bool(df["max_bound_over_sim"].notna().any())


def tightness_figure(df: pd.DataFrame, keys: Sequence[str] = ("n",)) -> Figure:
    """The empirical CDF of ``max_bound_over_sim`` (bound / worst simulated response, the
    largest over a set's tasks) per policy, one panel per value of ``keys``; 1 (dotted) is a
    bound reached exactly."""
    import numpy as np

    colour = _colours(df)
    rows = df[df["max_bound_over_sim"].notna()]
    panels = _panels(rows, keys)
    fig, axes = _grid(len(panels))
    for ax, (label, part) in zip(axes, panels, strict=True):
        for policy, r in part.groupby("policy", sort=True):
            x = np.sort(r["max_bound_over_sim"].to_numpy(dtype=float))
            y = np.arange(1, x.size + 1) / x.size
            ax.step(x, y, where="post", color=colour[str(policy)],
                    label=f"{policy} ({x.size} sets)")  # fmt: skip
        ax.axvline(1.0, color="0.5", linestyle=":", linewidth=1)
        _ratio_axis(ax, part["max_bound_over_sim"])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("bound / worst simulated response (max over the set's tasks)")
        ax.set_ylabel("fraction of checked sets ≤ x")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("bound tightness: CDF of max_bound_over_sim", fontsize=10)
    return fig


def _ratio_axis(ax: Axes, ratios: pd.Series) -> None:
    """Plain ratios on the x axis (no offset), at least :data:`MIN_SPAN` wide around 1 and
    the data: bounds reached exactly sit at 1.0000001, not at an offset of 1e-7."""
    lo, hi = min(float(ratios.min()), 1.0), max(float(ratios.max()), 1.0)
    pad = max(0.0, MIN_SPAN - (hi - lo)) / 2
    ax.set_xlim(lo - pad, hi + pad)
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")


def timing(df: pd.DataFrame, keys: Sequence[str] = ("n",)) -> pd.DataFrame:
    """The median and p99 of ``analysis_ns`` per panel, policy and nominal utilisation."""
    g = df.groupby([*keys, "policy", "utilization"], dropna=False, sort=True)["analysis_ns"]
    return pd.DataFrame({"median_ns": g.median(), "p99_ns": g.quantile(0.99)}).reset_index()


def timing_figure(df: pd.DataFrame, keys: Sequence[str] = ("n",)) -> Figure:
    """Analysis time per set vs nominal utilisation: the median (solid) and p99 (dashed) per
    policy, in µs on a log axis, one panel per value of ``keys``."""
    colour = _colours(df)
    panels = _panels(timing(df, keys), keys)
    fig, axes = _grid(len(panels))
    for ax, (label, rows) in zip(axes, panels, strict=True):
        for policy, r in rows.groupby("policy", sort=True):
            c = colour[str(policy)]
            ax.plot(r["utilization"], r["median_ns"] / US, color=c, label=f"{policy} median")
            ax.plot(r["utilization"], r["p99_ns"] / US, color=c, linestyle="--",
                    label=f"{policy} p99")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("nominal utilisation U")
        ax.set_ylabel("analysis time per set (µs)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.suptitle("analysis time per set (measured: the only non-deterministic column)",
                 fontsize=10)  # fmt: skip
    return fig


# ------------------------------------------------------------------------------ writing


def _save(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG at ``path`` (whole, through a temporary file), then released."""
    import matplotlib.pyplot as plt

    from aegis_core.model.files import write_atomic

    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), "plot")
    finally:
        plt.close(fig)
    return path


def plot_sweep(
    dataset_dir: str | Path, out_dir: str | Path | None = None, *, note: Note = _stderr_note
) -> list[Path]:
    """Write the sweep's plots into ``out_dir`` (default ``DATASET/plots/``):
    ``acceptance.png``, ``tightness.png`` (only when ``check`` ran: else a note),
    ``analysis_time.png``, and the tables ``acceptance.csv`` and ``weighted.csv`` (W per
    panel and policy). Returns the paths written, in that order."""
    import matplotlib

    matplotlib.use("Agg")
    df = read_sweep(dataset_dir)
    out = Path(out_dir) if out_dir is not None else Path(dataset_dir) / PLOTS
    keys = panel_axes(df, note)
    written = [_save(acceptance_figure(df, keys), out / "acceptance.png")]
    if has_tightness(df):
        written.append(_save(tightness_figure(df, keys), out / "tightness.png"))
    else:
        note("no max_bound_over_sim values (the sweep ran no check): tightness.png not drawn")
    if "analysis_ns" in df.columns:
        written.append(_save(timing_figure(df, keys), out / "analysis_time.png"))
    else:
        note("no analysis_ns column: analysis_time.png not drawn")
    acc = acceptance(df, keys)
    written.append(_csv(acc, out / "acceptance.csv"))
    written.append(_csv(weighted(acc, keys), out / "weighted.csv"))
    return written


def _csv(table: pd.DataFrame, path: Path) -> Path:
    from aegis_core.model.files import write_text_atomic

    write_text_atomic(path, table.to_csv(index=False, float_format="%.6g"), "table")
    return path


def plot_command(dataset_dir: str | Path) -> int:
    """``aegis sweep plot DIR``: :func:`plot_sweep` into ``DIR/plots/``, then the weighted
    schedulability table and the paths written on stdout; 0. Bad input raises InputError
    (the CLI prints it on one line, exit 2)."""
    written = plot_sweep(dataset_dir)
    table = pd.read_csv(next(p for p in written if p.name == "weighted.csv"))
    print("weighted schedulability W = Σ U·S(U) / Σ U")
    print(table.to_string(index=False, float_format=_three))
    for p in written:
        print(f"wrote {p}")
    return 0


def _three(x: Any) -> str:
    return f"{x:.3f}"
