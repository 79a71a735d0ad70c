"""AegisRT's executor: real kernels on CUDA streams (CuPy) or NumPy worker threads.

:class:`~aegis_exec.engine.ExecEngine` is registered in the ``aegis.engines`` entry-point
group as ``exec`` and driven by the core's shared loop. Backends live in
:mod:`aegis_exec.cupy_backend` (the only module that imports ``cupy``, lazily),
:mod:`aegis_exec.numpy_backend` and :mod:`aegis_exec.mock_backend`; the kernels, written once
against an array module, in :mod:`aegis_exec.kernels`. Importing this package loads neither
CuPy nor the simulator.
"""

__all__: list[str] = []
