"""AegisRT's SimPy engine: replays execution-time models under the shared policy core."""

from .engine import SimPyEngine

__all__ = ["SimPyEngine"]
