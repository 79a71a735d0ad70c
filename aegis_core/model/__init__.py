"""What a scenario states: named types and units, the exception tree, policies as data, the
scenario file, WCET profile files, reading user files."""
