"""What the benchmarks print about the machine they ran on."""

from __future__ import annotations

from aegis_core.tools.results import cpu_name

__all__ = ["cpu_name"]
