"""Lattice dynamics: force sets (memory-bounded batches), phonons, thermal conductivity with phono3py,
checks that keep force constants honest, convergence scans, thermal expansion and renormalisation."""

from .checks import CutoffCrossingWarning, LatticeWarning
from .convergence import ConvergenceScan, mesh_convergence, supercell_convergence
from .expansion import QuasiHarmonic, cell_from_md, quasi_harmonic
from .forcesets import ForceSet, compute_forces
from .kappa import KappaResult, displacement_probe, thermal_conductivity
from .memory import MemoryBudgetWarning, memory_budget
from .phonons import Phonons, phonons
from .renormalise import EffectiveForceConstants, effective_force_constants

__all__ = ["ConvergenceScan", "CutoffCrossingWarning", "EffectiveForceConstants", "ForceSet", "KappaResult",
           "LatticeWarning", "MemoryBudgetWarning", "Phonons", "QuasiHarmonic", "cell_from_md", "compute_forces",
           "displacement_probe", "effective_force_constants", "memory_budget", "mesh_convergence", "phonons",
           "quasi_harmonic", "supercell_convergence", "thermal_conductivity"]
