"""Front ends for ASE (calculators)."""

from .ase_calculator import AtomfluxCalculator
from .hamiltonian_calculator import HamiltonianCalculator

__all__ = ["AtomfluxCalculator", "HamiltonianCalculator"]
