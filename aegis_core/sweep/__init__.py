"""Sweeps (``aegis sweep``): many generated task sets tested per point of a spec's axes."""
