"""Canonical swap Monte Carlo of one structure in memory, counted in attempts: a thin call of
:func:`~.run.run_swap_mc` (the one driver loop) with an energy observer.

Units: eV, K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from .energies import DEFAULT_ATOMS_PER_CALL, SwapEnergy


@dataclass
class SwapMCResult:
    """What a swap Monte Carlo run gives.

    Attributes
    ----------
    atoms : Atoms
        The final configuration (positions as given, species swapped).
    energies : ndarray [n_records]
        Potential energy (eV) after every ``record_every``-th attempt; entry 0 is the start.
    attempts : ndarray [n_records] (int)
        Attempts done when each energy was recorded.
    attempted, accepted : int
        Swap attempts and accepted swaps.
    temperature : float
        K.
    """

    atoms: Atoms
    energies: np.ndarray
    attempts: np.ndarray
    attempted: int
    accepted: int
    temperature: float

    @property
    def acceptance(self) -> float:
        """Accepted / attempted swaps."""
        return self.accepted / self.attempted if self.attempted else float("nan")


def swap_monte_carlo(atoms: Atoms, model, temperature: float, n_attempts: int, *, seed: int = 0,
                     region: Sequence[int] | None = None, batch_size: int = 32, record_every: int = 1,
                     atoms_per_call: int = DEFAULT_ATOMS_PER_CALL, show_progress: bool = True) -> SwapMCResult:
    """Metropolis swaps of unlike atoms at fixed composition and fixed positions.

    Each attempt exchanges the species of a uniformly drawn pair of unlike
    atoms (of ``region``) and is accepted with probability
    min(1, exp(−ΔE / k_B T)).  ΔE comes from the local environments that change
    for strictly local atomflux potentials, from batched whole-system energies
    for other atomflux potentials, and from one energy call per trial for any
    other ASE calculator (see :mod:`.energies`).

    Parameters
    ----------
    atoms
        The structure (not modified).
    model
        An atomflux potential, an ``AtomfluxCalculator`` or any ASE calculator.
    temperature
        K, > 0.
    n_attempts
        Swap attempts, ≥ 0.
    seed
        Seed of the random generator: the same seed gives the same chain.
    region
        Indices of the atoms allowed to swap (default: all); it must hold two elements or more.
    batch_size
        Trial swaps evaluated per energy call (the chain is the same Markov chain for any value).
    record_every
        Record the energy every this many attempts.
    atoms_per_call
        Atoms per call when whole systems are evaluated in batches.
    show_progress
        Show a progress bar (tqdm) or status lines with the acceptance rate.

    Returns
    -------
    SwapMCResult
    """
    if n_attempts < 0:
        raise ValueError(f"n_attempts must be >= 0, got {n_attempts}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    energies: list[float] = []
    attempts: list[int] = []
    done = -1                                 # the observer sees the start, then every attempt

    def record(state: SwapEnergy) -> None:
        nonlocal done
        done += 1
        if done % record_every == 0:
            energies.append(state.energy)
            attempts.append(done)

    from .run import run_swap_mc

    per_sweep = len(atoms) if region is None else len(np.unique(np.asarray(region)))
    run = run_swap_mc(atoms, model, None, temperature, max(1, -(-n_attempts // max(per_sweep, 1))), seed=seed,
                      region=region, batch_size=batch_size, max_attempts=n_attempts, atoms_per_call=atoms_per_call,
                      observer=record, show_progress=show_progress, label="swap Monte Carlo")
    return SwapMCResult(run.atoms, np.array(energies), np.array(attempts, dtype=np.int64), run.attempted,
                        run.accepted, float(temperature))
