"""Front ends for ASE (calculators)."""

from .ase_calculator import AtomfluxCalculator

__all__ = ["AtomfluxCalculator"]
