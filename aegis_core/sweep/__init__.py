"""``aegis sweep``: experiments at scale (docs/CONTRACTS.md §sweep-spec, docs/THEORY.md
§taskgen). :mod:`.spec` reads a sweep spec and evaluates one generated task set under each
test; the runner and the Parquet store run the points on Dask; :mod:`.plots` draws the
dataset (dask, pyarrow and matplotlib imported lazily: the core never loads them at start)."""
