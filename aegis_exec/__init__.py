"""AegisRT's executor: real kernels on CUDA streams (CuPy) or NumPy worker threads.

:class:`~aegis_exec.engine.ExecEngine` is registered in the ``aegis.engines`` entry-point
group as ``exec`` and driven by the core's shared loop, on an injected host clock
(:mod:`aegis_exec.clock`). Backends live in :mod:`aegis_exec.backends` (the one registry of
names and capabilities; ``backends.cupy`` is the only module that imports ``cupy``, lazily);
the kernels, written once against an array module, in :mod:`aegis_exec.kernels`; test doubles
(a virtual clock, a fault-injecting backend wrapper) in :mod:`aegis_exec.testing`. Importing
this package loads neither CuPy nor the simulator.
"""

__all__: list[str] = []
