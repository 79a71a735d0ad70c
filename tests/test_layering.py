"""The layering: the core stays engine-free, and no package has an import cycle (the import
graph is built from the source with ``ast``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = (
    "simpy",
    "cupy",
    "aegis_sim",
    "aegis_exec",
    "onnx",
    "onnxruntime",
    "dask",
    "distributed",
    "pyarrow",
)


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_core_loads_no_engine() -> None:
    modules = loaded_after(
        "import aegis_core, aegis_core.tools.cli, aegis_core.tools.runner, "
        "aegis_core.run.testing, aegis_core.run.engine, aegis_core.run.loop, "
        "aegis_core.run.scheduler, aegis_core.tools.results, aegis_core.sweep.runner, "
        "aegis_core.sweep.store"
    )
    assert "aegis_core.run.scheduler" in modules  # the probe really imported the core
    assert not modules & set(FORBIDDEN)


def test_the_onnx_importer_loads_onnx_only_when_it_imports_a_model() -> None:
    modules = loaded_after("import aegis_core.graph.onnx_import")
    assert "aegis_core.graph.onnx_import" in modules
    assert not modules & set(FORBIDDEN)


def test_the_simulator_does_not_import_the_executor() -> None:
    modules = loaded_after("import aegis_sim")
    assert "simpy" in modules and "aegis_core" in modules
    assert "aegis_exec" not in modules and "cupy" not in modules


def test_the_sim_engine_is_found_through_its_entry_point() -> None:
    from aegis_core.run.engine import engine_names, load_engine

    assert "sim" in engine_names()
    assert type(load_engine("sim")).__module__ == "aegis_sim.engine"


def test_unknown_engine_is_an_input_error() -> None:
    import pytest

    from aegis_core.model.errors import EngineNotFound, InputError
    from aegis_core.run.engine import load_engine

    with pytest.raises(EngineNotFound, match=r"no engine named 'gpu9'; available: .*sim"):
        load_engine("gpu9")
    assert issubclass(EngineNotFound, InputError)


def test_the_executor_loads_no_cupy_and_not_the_simulator() -> None:
    modules = loaded_after(
        "import aegis_exec, aegis_exec.engine, aegis_exec.backends, aegis_exec.backends.numpy, "
        "aegis_exec.backends.mock, aegis_exec.backends.cupy, aegis_exec.backends.cuda, "
        "aegis_exec.backends.sgemm, aegis_exec.kernels, aegis_exec.profiler, aegis_exec.testing"
    )
    assert "aegis_exec.backends.cupy" in modules  # the probe really imported it
    assert "cupy" not in modules and "simpy" not in modules and "aegis_sim" not in modules


def test_cupy_is_named_only_in_the_cupy_backend() -> None:
    naming = sorted(
        str(p.relative_to(ROOT))
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if "import cupy" in p.read_text(encoding="utf-8")
    )
    assert naming == ["aegis_exec/backends/cupy.py"]


def test_the_exec_engine_is_found_through_its_entry_point() -> None:
    from aegis_core.run.engine import engine_names, load_engine

    assert "exec" in engine_names()
    engine = load_engine("exec", backend="mock")
    assert type(engine).__module__ == "aegis_exec.engine" and engine.backend == "mock"


# ------------------------------------------------------------------------- the import graph

PACKAGES = ("aegis", "aegis_core", "aegis_sim", "aegis_exec")
ENGINES = ("aegis_sim", "aegis_exec")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Every dotted name an import statement may load (``from a import b``: a and a.b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports: module-level and function-level imports
    alike (a function-level import still runs), not those under ``if TYPE_CHECKING``."""
    paths = {_module(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
                names = _imported(node, module, path.name == "__init__.py")
                graph[module].update(n for n in names if n in graph and n != module)
    return graph


def cycles(graph: dict[str, set[str]], package: str) -> list[list[str]]:
    """The strongly connected components of more than one module inside ``package``
    (Tarjan): each is at least one import cycle."""
    inside = {m: {n for n in e if n.split(".")[0] == package}
              for m, e in graph.items() if m.split(".")[0] == package}  # fmt: skip
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(inside[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(inside):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_sees_the_imports() -> None:
    graph = import_graph()
    assert "aegis_exec.backends" in graph["aegis_exec.engine"]  # from .backends import ...
    assert "aegis_core.run.cursor" in graph["aegis_sim.engine"]  # an absolute import
    assert "aegis_exec.arena" in graph["aegis_exec.engine"]  # a function-level import
    assert "aegis_core.run.engine" not in graph["aegis_core.run.scheduler"]  # TYPE_CHECKING only
    probe = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles({f"p.{k}": {f"p.{x}" for x in v} for k, v in probe.items()}, "p") == [
        ["p.a", "p.b", "p.c"]
    ]


@pytest.mark.parametrize("package", ["aegis_core", "aegis_exec", "aegis_sim"])
def test_no_import_cycles_inside_a_package(package: str) -> None:
    assert cycles(import_graph(), package) == []


def test_the_api_reaches_the_engines_only_through_their_entry_points() -> None:
    graph = import_graph()
    assert "aegis_core.tools.runner" in graph["aegis"]  # the probe sees the API's imports
    assert not {n for n in graph["aegis"] if n.split(".")[0] in ENGINES}
    modules = loaded_after("import aegis")
    # pandas (the API's results tables) imports pyarrow itself where it is installed
    assert "aegis_core.tools.plots" in modules and not modules & (set(FORBIDDEN) - {"pyarrow"})


def test_the_core_never_imports_an_engine_package() -> None:
    graph = import_graph()
    leaks = sorted(
        (m, n)
        for m, edges in graph.items()
        if m.split(".")[0] == "aegis_core"
        for n in edges
        if n.split(".")[0] in ENGINES
    )
    assert leaks == []


LAYERS = ("model", "graph", "memory", "budget", "analysis", "record", "run", "tools")
"""aegis_core's packages, lowest first: each imports only from layers below it, except that
``model.scenario`` checks input shapes against ``graph.zoo`` (which needs only model.errors,
model.files and model.types)."""


def test_the_core_packages_are_layered() -> None:
    graph = import_graph()

    def layer(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if parts[0] == "aegis_core" and len(parts) > 1 else None

    upward = sorted(
        (m, n)
        for m, edges in graph.items()
        for n in edges
        if (a := layer(m)) in LAYERS and (b := layer(n)) in LAYERS
        and LAYERS.index(b) > LAYERS.index(a)
        and not (m == "aegis_core.model.scenario" and n.startswith("aegis_core.graph."))
    )  # fmt: skip
    assert upward == []
    # graph.ir is imported by model.scenario (through graph.zoo): it reads only the modules
    # below scenario, no cycle
    low = {"aegis_core.model.errors", "aegis_core.model.files", "aegis_core.model.types"}
    assert set(import_graph()["aegis_core.graph.ir"]) <= low
    assert set(import_graph()["aegis_core.model.files"]) <= low
