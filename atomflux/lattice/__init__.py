"""Lattice dynamics: force sets (batched), phonons, thermal conductivity with phono3py."""

from .forcesets import ForceSet, compute_forces
from .kappa import KappaResult, mesh_convergence, thermal_conductivity
from .phonons import Phonons, phonons

__all__ = ["ForceSet", "KappaResult", "Phonons", "compute_forces", "mesh_convergence", "phonons", "thermal_conductivity"]
