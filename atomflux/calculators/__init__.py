"""Front ends for ASE (calculators)."""

from .ase_calculator import AtomfluxCalculator
from .committee import Committee, make_calculator
from .hamiltonian_calculator import HamiltonianCalculator

__all__ = ["AtomfluxCalculator", "Committee", "HamiltonianCalculator", "make_calculator"]
