"""AegisRT's executor (real kernels on CUDA streams / NumPy threads).

Placeholder: the executor engine lands with its own issue. It will import ``aegis_core`` and
register itself in the ``aegis.engines`` entry-point group as ``exec``; ``cupy`` will be
imported lazily, only inside its CuPy backend module.
"""

__all__: list[str] = []
