"""The Hamiltonian-learning head (arXiv:2311.00844): an effective minimal-basis
Hamiltonian whose eigenvalues reproduce the MO energies of a larger-basis
calculation.

- :mod:`.basis`: minimal-basis slot layout, differentiable overlap matrix;
- :mod:`.model`: :class:`HamiltonianModel` (power-spectrum backbone,
  Slater–Koster blocks with learned, environment-dependent integrals) and
  the generalized eigen-solver;
- :mod:`.data`: training targets from pyscf (cached JSON);
- :mod:`.train`: fitting and error report.

Use a trained model through :class:`atomflux.calculators.HamiltonianCalculator`.
"""

from .model import HamiltonianModel, generalized_eigenvalues

__all__ = ["HamiltonianModel", "generalized_eigenvalues"]
