"""One forward pass of a graph on the NumPy kernels with its real weights, for ``aegis import
--verify`` (found by the core through the ``aegis.kernels`` entry point: the core never
imports the executor)."""

from __future__ import annotations

import numpy as np

from aegis_core.graph.ir import Graph

from .kernels import CompiledGraph


def run_graph(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The output of ``graph`` for input ``x`` (float32, the graph input's shape) on the
    float32 NumPy kernels, with the graph's weights (its real ones where it has them)."""
    compiled = CompiledGraph(graph, np)
    compiled.inputs[...] = x
    compiled.run()
    return np.array(compiled.output, dtype=np.float32, copy=True)
