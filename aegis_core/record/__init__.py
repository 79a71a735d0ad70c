"""The decision trace: the record schema, its one replay, and the sinks."""
