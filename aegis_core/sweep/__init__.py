"""``aegis sweep``: experiments at scale (docs/CONTRACTS.md §sweep-spec). :mod:`.spec` reads a
sweep spec and evaluates one generated task set under each test; the runner and the Parquet
store run the points on Dask (imported lazily: the core never loads dask or pyarrow)."""
