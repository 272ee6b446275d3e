"""Canonical (fixed-composition) swap Monte Carlo for any atomflux potential or ASE calculator.

- :mod:`.proposals`: uniform proposals of unlike pairs in a region.
- :mod:`.energies`: ΔE of trial swaps (density updates, local environments, batched whole systems,
  any ASE calculator).
- :mod:`.chain`: the Metropolis chain, trial swaps evaluated in batches.
- :mod:`.run`: :func:`~.run.run_swap_mc`, the one driver: in memory or a resumable folder, one
  temperature or replica exchange, hybrid MC/MD.
- :mod:`.swap_mc`: :func:`swap_monte_carlo`, in memory and counted in attempts (a thin call of it).
"""

from .chain import SwapChain, SwapCounts
from .energies import CalculatorSwapEnergy, DensitySwapEnergy, FullSwapEnergy, LocalSwapEnergy, swap_energy
from .swap_mc import SwapMCResult, swap_monte_carlo

__all__ = ["SwapChain", "SwapCounts", "DensitySwapEnergy", "LocalSwapEnergy", "FullSwapEnergy", "CalculatorSwapEnergy",
           "swap_energy", "SwapMCResult", "swap_monte_carlo"]
