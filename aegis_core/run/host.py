"""The host a simulated engine replays: the calibrated host overheads, drawn per job.

An executor's host adds four overheads around every job (docs/THEORY.md §overheads):
release lag, decision, launch and completion detection. A simulated engine given a plan with
overheads replays them, so that the simulation predicts the execution: ``sample`` draws each
from the calibrated samples (seeded, one generator per figure, in the order the engine asks),
``bound`` charges every one at its bound (the analysis's worst case). A figure without
samples (overheads given by their bounds alone) replays its bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_core.model.overheads import Overhead
from aegis_core.model.types import TimeNs

if TYPE_CHECKING:
    import numpy as np

    from aegis_core.model.overheads import Overheads

HOST_MODES = ("sample", "bound")

_BLOCK = 4096  # draws made at once (numpy per-call cost dominates single draws)


class HostModel:
    """Per-figure overhead draws for a simulated engine."""

    def __init__(self, overheads: Overheads, seed: int, mode: str = "sample") -> None:
        if mode not in HOST_MODES:
            raise ValueError(f"host mode {mode!r}: choose one of {', '.join(HOST_MODES)}")
        self.overheads = overheads
        self.mode = mode
        self._seed = seed
        self._pool: dict[Overhead, list[int]] = {w: [] for w in Overhead}
        self._rngs: dict[Overhead, np.random.Generator] = {}

    def draw(self, what: Overhead) -> TimeNs:
        """The next replayed value of ``what`` (ns)."""
        samples = self.overheads.samples(what)
        if self.mode == "bound" or not samples:
            return self.overheads.bound(what)
        pool = self._pool[what]
        if not pool:
            pool.extend(self._refill(what, samples))
        return pool.pop()

    def _refill(self, what: Overhead, samples: tuple[int, ...]) -> list[int]:
        import numpy as np

        rng = self._rngs.get(what)
        if rng is None:
            stream = list(Overhead).index(what)
            rng = self._rngs[what] = np.random.default_rng([self._seed, 0x05E1, stream])
        picks = rng.integers(0, len(samples), size=_BLOCK)
        return [samples[i] for i in picks[::-1].tolist()]
