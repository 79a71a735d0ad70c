"""``aegis sweep plot``: the Wilson intervals, the plots of a synthetic dataset, the weighted
schedulability, and the refusals of what is not a sweep dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aegis_core.model.errors import InputError
from aegis_core.sweep.plots import (
    acceptance,
    panel_axes,
    plot_command,
    plot_sweep,
    read_sweep,
    weighted,
    wilson,
)
from aegis_core.tools.outdir import mark

pytest.importorskip("pyarrow")
pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ wilson


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.277540),  # z² / (n + z²); the textbook 0.2775
        (10, 10, 0.722460, 1.0),  # n / (n + z²)
        (5, 10, 0.236590, 0.763410),  # the textbook 0.2366 … 0.7634
        (500, 1000, 0.469069, 0.530931),  # 0.5 ± 0.0309: the half-width docs/THEORY.md quotes
        (0, 1000, 0.0, 0.003827),
        (1, 1, 0.206543, 1.0),
    ],
)
def test_wilson_matches_known_intervals(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_wilson_is_exact_at_the_ends_and_symmetric() -> None:
    assert wilson(0, 37)[0] == 0.0 and wilson(37, 37)[1] == 1.0
    lo, hi = wilson(3, 20)
    lo2, hi2 = wilson(17, 20)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    assert wilson(50, 100, z=2.576)[0] < wilson(50, 100)[0]  # 99 % is wider than 95 %


@pytest.mark.parametrize(("k", "n"), [(0, 0), (-1, 5), (6, 5)])
def test_wilson_refuses_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(k, n)


# ----------------------------------------------------------------------- the dataset

ACCEPTED = {  # (n, policy, U) -> sets accepted of 4
    (5, "np-edf", 0.5): 4, (5, "np-edf", 1.0): 1,
    (5, "p-edf", 0.5): 4, (5, "p-edf", 1.0): 4,
    (10, "np-edf", 0.5): 2, (10, "np-edf", 1.0): 0,
    (10, "p-edf", 0.5): 4, (10, "p-edf", 1.0): 3,
}  # fmt: skip
SETS = 4


def rows(check: bool) -> list[dict[str, Any]]:
    out = []
    points = sorted({(n, u) for n, _, u in ACCEPTED})
    for p, (n, u) in enumerate(points):
        for s in range(SETS):
            for policy in ("np-edf", "p-edf"):
                row = {"point": p, "set": s, "seed": 1000 * p + s, "n": n, "utilization": u,
                       "utilization_actual": u + 1e-6, "policy": policy,
                       "schedulable": s < ACCEPTED[n, policy, u], "analysis_points": 3 + s,
                       "analysis_ns": 1000 * (s + 1), "period_kind": "log-uniform"}  # fmt: skip
                if check:
                    row["max_bound_over_sim"] = 1.0 + 0.1 * s if row["schedulable"] else None
                    row["check_ok"] = True
                out.append(row)
    return out


def dataset(tmp_path: Path, check: bool = True, parts: int = 2) -> Path:
    d = tmp_path / "sweep"
    d.mkdir()
    df = pd.DataFrame(rows(check))
    for i in range(parts):  # partitions as the runner writes them
        df.iloc[i::parts].to_parquet(d / f"part-p{i}-b0.parquet", index=False)
    (d / "spec.yaml").write_text("name: synthetic\n")  # and the sweep folder's own files
    meta = {"schema": "aegis-sweep/1", "spec_sha256": "0" * 64, "sets_per_point": SETS,
            "batch": SETS}  # fmt: skip
    (d / "sweep.json").write_text(json.dumps(meta))
    mark(d, [], "aegis sweep")  # the results marker
    return d


def test_plot_sweep_writes_valid_pngs_and_tables(tmp_path: Path) -> None:
    d = dataset(tmp_path)
    notes: list[str] = []
    written = plot_sweep(d, note=notes.append)
    names = [p.name for p in written]
    assert names == ["acceptance.png", "tightness.png", "analysis_time.png", "acceptance.csv",
                     "weighted.csv"]  # fmt: skip
    assert all(p.parent == d / "plots" for p in written)
    for p in written[:3]:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    assert notes == []
    assert not [p for p in (d / "plots").iterdir() if p.name.startswith(".")]  # no temp files
    acc = pd.read_csv(d / "plots" / "acceptance.csv")
    got = {(r.n, r.policy, r.utilization): (r.accepted, r.sets) for r in acc.itertuples()}
    assert got == {k: (v, SETS) for k, v in ACCEPTED.items()}


def test_weighted_schedulability_is_the_hand_computation(tmp_path: Path) -> None:
    d = dataset(tmp_path)
    w = pd.read_csv(plot_sweep(d, note=lambda _: None)[-1])
    got = {(r.n, r.policy): r.W for r in w.itertuples()}
    hand = {  # Σ U·S(U) / Σ U over U = 0.5, 1.0
        (5, "np-edf"): (0.5 * 4 / 4 + 1.0 * 1 / 4) / 1.5,
        (5, "p-edf"): 1.0,
        (10, "np-edf"): (0.5 * 2 / 4 + 0.0) / 1.5,
        (10, "p-edf"): (0.5 * 1 + 1.0 * 3 / 4) / 1.5,
    }
    assert got == pytest.approx(hand, abs=1e-6)
    df = read_sweep(d)
    assert weighted(acceptance(df)).set_index(["n", "policy"])["W"].to_dict() == pytest.approx(hand)


def test_acceptance_carries_the_wilson_interval(tmp_path: Path) -> None:
    acc = acceptance(read_sweep(dataset(tmp_path)))
    r = acc[(acc["n"] == 5) & (acc["policy"] == "np-edf") & (acc["utilization"] == 1.0)].iloc[0]
    assert r["ratio"] == 0.25 and (r["lo"], r["hi"]) == pytest.approx(wilson(1, 4))


def test_a_dataset_without_the_check_column_skips_the_tightness_plot(tmp_path: Path) -> None:
    d = dataset(tmp_path, check=False)
    notes: list[str] = []
    names = [p.name for p in plot_sweep(d, tmp_path / "out", note=notes.append)]
    assert "tightness.png" not in names and "acceptance.png" in names
    assert not (tmp_path / "out" / "tightness.png").exists()
    assert len(notes) == 1 and "no max_bound_over_sim" in notes[0]


def test_plot_command_prints_w_and_the_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = dataset(tmp_path, check=False)
    assert plot_command(str(d)) == 0
    out, err = capsys.readouterr()
    assert "weighted schedulability" in out and "0.833" in out  # (5, np-edf): 1.25 / 1.5
    assert f"wrote {d / 'plots' / 'acceptance.png'}" in out
    assert err.startswith("aegis: note:") and err.count("\n") == 1


# ---------------------------------------------------------------------- the refusals


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        plot_sweep(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nowhere", "no such sweep dataset folder")


def test_a_file_is_not_a_dataset(tmp_path: Path) -> None:
    f = tmp_path / "x.parquet"
    f.write_bytes(b"PAR1")
    _one_line_error(f, "not a folder")


def test_an_empty_or_foreign_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    _one_line_error(d, "is not a sweep folder")
    (d / "notes.txt").write_text("mine\n")
    _one_line_error(d, "is not a sweep folder")
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]  # no plots/ made


def test_a_partition_without_the_columns_or_rows_is_refused(tmp_path: Path) -> None:
    d = dataset(tmp_path, parts=1)  # a sweep folder whose one partition is someone else's
    pd.DataFrame({"a": [1, 2]}).to_parquet(d / "part-p0-b0.parquet")
    _one_line_error(d, "no column 'n', 'utilization', 'policy', 'schedulable'")
    empty = pd.DataFrame(rows(False)).iloc[:0]
    empty.to_parquet(d / "part-p0-b0.parquet")
    _one_line_error(d, "has no rows")


def test_a_corrupt_partition_is_refused_naming_it(tmp_path: Path) -> None:
    d = dataset(tmp_path)
    bad = d / "part-p9-b0.parquet"
    bad.write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(InputError, match="not a readable Parquet partition") as info:
        plot_sweep(d)
    assert "\n" not in str(info.value) and "part-p9-b0.parquet" in str(info.value)


def test_a_few_valued_axis_splits_the_panels_and_a_many_valued_one_is_pooled() -> None:
    df = pd.DataFrame(rows(False))
    df["deadline_kind"] = df["set"].map(lambda s: "implicit" if s % 2 else "constrained")
    notes: list[str] = []
    assert panel_axes(df, notes.append) == ["n", "deadline_kind"] and notes == []
    df["deadline_x"] = [i % 7 / 10 for i in range(len(df))]  # 2 x 2 x 7 = 28 panels: too many
    assert panel_axes(df, notes.append) == ["n", "deadline_kind"]
    assert notes == ["pooled over the varied axes deadline_x (more than 12 panels)"]
    acc = acceptance(df, ["n", "deadline_kind"])
    assert len(acc) == 2 * 2 * 2 * 2 and acc["sets"].sum() == len(df)  # n, kind, policy, U
