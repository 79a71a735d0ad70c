"""Sweeps: many generated task sets evaluated under each policy, stored as a Parquet dataset
and plotted (``aegis sweep``; docs/THEORY.md §taskgen)."""
