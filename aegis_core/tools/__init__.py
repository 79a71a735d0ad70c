"""What users call: the runner, results, Perfetto export, explain, check, compare, profiling,
the CLI."""
