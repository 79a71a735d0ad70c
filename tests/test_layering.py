"""The core stays engine-free (DESIGN §1)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("simpy", "cupy", "aegis_sim", "aegis_exec")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_core_loads_no_engine() -> None:
    modules = loaded_after(
        "import aegis_core, aegis_core.cli, aegis_core.runner, aegis_core.testing, "
        "aegis_core.engine, aegis_core.loop, aegis_core.scheduler, aegis_core.results"
    )
    assert "aegis_core.scheduler" in modules  # the probe really imported the core
    assert not modules & set(FORBIDDEN)


def test_the_simulator_does_not_import_the_executor() -> None:
    modules = loaded_after("import aegis_sim")
    assert "simpy" in modules and "aegis_core" in modules
    assert "aegis_exec" not in modules and "cupy" not in modules


def test_the_sim_engine_is_found_through_its_entry_point() -> None:
    from aegis_core.engine import engine_names, load_engine

    assert "sim" in engine_names()
    assert type(load_engine("sim")).__module__ == "aegis_sim.engine"


def test_unknown_engine_is_an_input_error() -> None:
    import pytest

    from aegis_core.engine import load_engine
    from aegis_core.errors import EngineNotFound, InputError

    with pytest.raises(EngineNotFound, match=r"no engine named 'gpu9'; available: .*sim"):
        load_engine("gpu9")
    assert issubclass(EngineNotFound, InputError)


def test_the_executor_loads_no_cupy_and_not_the_simulator() -> None:
    modules = loaded_after(
        "import aegis_exec, aegis_exec.engine, aegis_exec.backend, aegis_exec.numpy_backend, "
        "aegis_exec.mock_backend, aegis_exec.cupy_backend, aegis_exec.kernels"
    )
    assert "aegis_exec.cupy_backend" in modules  # the probe really imported it
    assert "cupy" not in modules and "simpy" not in modules and "aegis_sim" not in modules


def test_cupy_is_named_only_in_the_cupy_backend() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    naming = sorted(
        str(p.relative_to(root))
        for pkg in ("aegis_core", "aegis_sim", "aegis_exec")
        for p in (root / pkg).glob("*.py")
        if "import cupy" in p.read_text(encoding="utf-8")
    )
    assert naming == ["aegis_exec/cupy_backend.py"]


def test_the_exec_engine_is_found_through_its_entry_point() -> None:
    from aegis_core.engine import engine_names, load_engine

    assert "exec" in engine_names()
    engine = load_engine("exec", backend="mock")
    assert type(engine).__module__ == "aegis_exec.engine" and engine.backend == "mock"
