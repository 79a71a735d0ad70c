"""The notebooks execute headlessly (nbclient) against NumPy-backend results, so they never
rot; the committed files carry no outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aegis_core.model.policy import get_policy
from aegis_core.model.scenario import load_scenario, replace_scenario
from aegis_core.tools.runner import run_scenario

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MS = 1_000_000


def test_notebooks_are_committed_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == ["admission.ipynb", "compare.ipynb", "sweep.ipynb"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def _execute(path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    where = {"metadata": {"path": str(path.parent)}}
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources=where)
    client.execute()
    return nb


def test_compare_notebook_runs_on_numpy_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis_exec.engine import ExecEngine

    s = replace_scenario(load_scenario(ROOT / "scenarios" / "three_models_cpu.yaml"),
                         duration_ns=300 * MS)  # fmt: skip
    root = tmp_path / s.name
    run_scenario(s, "sim", out_dir=root / "sim", perfetto=False)
    run_scenario(s, ExecEngine("numpy"), out_dir=root / "exec-numpy", perfetto=False)
    base = replace_scenario(s, policy=get_policy("unscheduled"))
    run_scenario(base, ExecEngine("numpy"), out_dir=root / "exec-numpy-unscheduled",
                 perfetto=False)  # fmt: skip
    from aegis_core.tools.compare import compare_policies

    compare_policies(s, ["np-edf", "fifo", "unscheduled", "stream-priority"], backend="mock",
                     results=tmp_path)  # fmt: skip
    nb = _execute(ROOT / "notebooks" / "compare.ipynb", monkeypatch,
                  {"AEGIS_RESULTS": str(tmp_path), "AEGIS_SCENARIO": s.name,
                   "AEGIS_BACKEND": "numpy"})  # fmt: skip
    text = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "bound >= sim >= exec" in text and "unscheduled p99 ms" in text
    assert "image/png" in text  # the CDFs and the Gantt were drawn
    last = nb.cells[-1].outputs  # the policies side by side: the table and the grouped bars
    shown = "".join(str(o) for o in last)
    assert "stream-priority" in shown and "exec p99 ms" in shown and "image/png" in shown


def test_admission_notebook_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _execute(ROOT / "notebooks" / "admission.ipynb", monkeypatch,
                  {"AEGIS_SCENARIO": str(ROOT / "scenarios" / "admission.yaml")})  # fmt: skip
    text = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "dbf(t) + B(t)" in text and "image/png" in text  # C's rejection reason, the plot


def test_sweep_notebook_runs_on_a_synthetic_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow")
    from test_sweep_plots import dataset  # a tiny Parquet dataset, no runner needed

    nb = _execute(ROOT / "notebooks" / "sweep.ipynb", monkeypatch,
                  {"AEGIS_SWEEP": str(dataset(tmp_path))})  # fmt: skip
    text = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "np-edf" in text and "p-edf" in text and "0.833" in text  # the tables, W
    assert text.count("image/png") == 3  # acceptance, tightness, analysis time
