"""Model graphs: the IR (tensors, ops, lifetimes, chunks, JSON), the builtin zoo and what the
executor's kernels allocate (scratch)."""
