"""One canonical swap Monte Carlo chain: Metropolis over species, trial swaps evaluated in batches.

Each attempt proposes a uniform pair of unlike atoms (:class:`SwapProposer`)
and accepts the swap with probability min(1, e^(−ΔE/k_B T)).  To evaluate
many trials per ``evaluate`` call, ``batch_size`` proposals are drawn from
the current configuration and their ΔE computed together; they are then
used one after the other, and the chain stays exactly the one-at-a-time chain:

- a proposal that involves an atom swapped since the batch was drawn is
  replaced by a uniform draw among the unlike pairs touching those atoms
  (the others are unchanged, so the proposal stays uniform);
- a ΔE whose affected atoms overlap those of a swap accepted since it was
  computed is recomputed (together with the later stale trials, in one call).

Units: eV, K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import units

from .energies import SwapEnergy, Trial
from .proposals import SwapProposer


@dataclass
class SwapCounts:
    """Attempted and accepted swaps."""

    attempted: int = 0
    accepted: int = 0

    @property
    def acceptance(self) -> float:
        """Accepted / attempted (NaN before the first attempt)."""
        return self.accepted / self.attempted if self.attempted else float("nan")


class SwapChain:
    """Metropolis swaps at one temperature on one configuration.

    Parameters
    ----------
    energy
        The energy engine holding the configuration (see :mod:`.energies`).
    temperature
        K.
    rng
        Random generator (proposals and acceptance).
    region
        Atom indices allowed to swap (default: all).
    batch_size
        Trial swaps evaluated per call (1 for engines that evaluate one trial per call anyway:
        a batch there only adds recomputations of stale trials).
    observer
        Called with the energy engine after every attempt (accepted or not),
        e.g. to record the chain of energies or configurations.
    """

    def __init__(self, energy: SwapEnergy, temperature: float, rng: np.random.Generator,
                 region: np.ndarray | None = None, batch_size: int = 32,
                 observer: Callable[[SwapEnergy], None] | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 K, got {temperature}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.energy, self.temperature, self.rng = energy, float(temperature), rng
        self.batch_size = int(batch_size) if energy.batched else 1
        self.observer = observer
        self.proposer = SwapProposer(energy.numbers, region, rng)
        self.counts = SwapCounts()

    @property
    def beta(self) -> float:
        """1 / (k_B T), 1/eV."""
        return 1.0 / (units.kB * self.temperature)

    def attempt(self, n_attempts: int) -> SwapCounts:
        """Attempt ``n_attempts`` swaps; returns the counts of this call (totals in :attr:`counts`)."""
        done = SwapCounts()
        while done.attempted < n_attempts:
            size = min(self.batch_size, n_attempts - done.attempted)
            done.accepted += self._batch(size)
            done.attempted += size
        self.counts.attempted += done.attempted
        self.counts.accepted += done.accepted
        return done

    def _batch(self, size: int) -> int:
        trials: list[Trial] = self.energy.trials(self.proposer.draw(size))
        evaluated_at = np.zeros(size, dtype=np.int64)    # accepted-swap count when each ΔE was computed
        changed_at = np.full(len(self.energy.numbers), -1)  # per atom: the last accepted swap that changed its energy
        everything_changed_at = -1                          # the same for engines without affected sets
        touched: list[int] = []
        accepted = 0

        def stale(k: int) -> bool:
            trial = trials[k]
            if trial.affected is None:
                return everything_changed_at >= evaluated_at[k]
            return bool(changed_at[trial.affected].max() >= evaluated_at[k])

        def touches(k: int) -> bool:
            return trials[k].a in touched or trials[k].b in touched

        for k in range(size):
            redraw = bool(touched) and touches(k)
            if redraw or stale(k):
                if redraw:
                    a, b = self.proposer.draw_touching(np.array(touched))
                    trials[k] = Trial(int(a), int(b), 0.0, None)
                later = [j for j in range(k + 1, size) if not touches(j) and stale(j)]
                swaps = np.array([[trials[j].a, trials[j].b] for j in [k] + later])
                for j, fresh in zip([k] + later, self.energy.trials(swaps)):
                    trials[j], evaluated_at[j] = fresh, accepted
            trial = trials[k]
            if self.rng.random() < np.exp(min(0.0, -self.beta * trial.delta)):
                self.energy.apply(trial)
                self.proposer.swap(trial.a, trial.b)
                touched += [trial.a, trial.b]
                if trial.affected is None:
                    everything_changed_at = accepted
                else:
                    changed_at[trial.affected] = accepted
                accepted += 1
            if self.observer is not None:
                self.observer(self.energy)
        return accepted
