"""Canonical (fixed-composition) swap Monte Carlo for any atomflux potential or ASE calculator.

- :mod:`.proposals`: uniform proposals of unlike pairs in a region.
- :mod:`.energies`: ΔE of trial swaps (local environments, batched whole systems, any ASE calculator).
- :mod:`.chain`: the Metropolis chain, trial swaps evaluated in batches.
- :mod:`.swap_mc`: :func:`swap_monte_carlo`, the driver with records and progress.
"""

from .chain import SwapChain, SwapCounts
from .energies import CalculatorSwapEnergy, DensitySwapEnergy, FullSwapEnergy, LocalSwapEnergy, swap_energy
from .swap_mc import SwapMCResult, swap_monte_carlo

__all__ = ["SwapChain", "SwapCounts", "DensitySwapEnergy", "LocalSwapEnergy", "FullSwapEnergy", "CalculatorSwapEnergy",
           "swap_energy", "SwapMCResult", "swap_monte_carlo"]
