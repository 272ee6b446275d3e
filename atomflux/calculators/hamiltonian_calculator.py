"""ASE calculator for the Hamiltonian head: orbital energies of molecules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from ..hamiltonian.basis import SLOT_LABELS
from ..hamiltonian.model import HamiltonianModel, generalized_eigenvalues
from ..io import load_model
from ..systems import MIN_DISTANCE, Batch


class HamiltonianCalculator(Calculator):
    """Orbital energies from a learned minimal-basis Hamiltonian.

    ``atoms.calc = HamiltonianCalculator("demo-hamiltonian")``, then
    ``atoms.calc.get_homo_lumo()`` (eV), ``get_eigenvalues()``,
    ``get_hamiltonian()`` / ``get_overlap()`` (minimal AO basis, labels from
    ``get_basis_labels()``), ``get_eigenvalue_gradients()`` (eV/Å).

    Parameters
    ----------
    model
        A Hamiltonian model file, a shipped name (``"demo-hamiltonian"``) or a
        :class:`~atomflux.hamiltonian.HamiltonianModel`.
    charge, multiplicity
        The models describe neutral closed-shell molecules: anything else is
        refused with a clear error.
    min_distance
        Atoms closer than this (Å) raise ``ValueError``.

    The eigenvalues approximate the reference level the model was trained on
    (:attr:`reference`, e.g. RHF/cc-pVDZ); the calculator predicts no total
    energy or forces.
    """

    implemented_properties = ["eigenvalues", "hamiltonian", "overlap"]

    def __init__(self, model: str | Path | HamiltonianModel = "demo-hamiltonian", charge: int = 0,
                 multiplicity: int = 1, min_distance: float = MIN_DISTANCE, **kwargs) -> None:
        super().__init__(**kwargs)
        if charge != 0 or multiplicity != 1:
            raise ValueError(f"HamiltonianCalculator handles neutral closed-shell molecules (charge 0, "
                             f"multiplicity 1); got charge {charge}, multiplicity {multiplicity}")
        self.model = model if isinstance(model, torch.nn.Module) else load_model(model)
        if not isinstance(self.model, HamiltonianModel):
            raise ValueError(f"{model} is a {type(self.model).__name__}, not a Hamiltonian model; "
                             "use AtomfluxCalculator for energies and forces")
        self.model = self.model.double().eval()
        self.min_distance = float(min_distance)
        self._bound_atoms: Atoms | None = None

    def set_atoms(self, atoms: Atoms) -> None:
        """Called by ASE on ``atoms.calc = calc``: the getters then work on those atoms."""
        self._bound_atoms = atoms

    def _atoms(self, atoms: Atoms | None) -> Atoms:
        """The given atoms, else those the calculator is attached to, else the last ones computed."""
        for candidate in (atoms, self._bound_atoms, self.atoms):
            if candidate is not None:
                return candidate
        raise ValueError("no molecule: set atoms.calc = HamiltonianCalculator(...) or pass atoms")

    def _property(self, name: str, atoms: Atoms | None = None):
        return self.get_property(name, self._atoms(atoms))

    @property
    def reference(self) -> dict:
        """Reference level of the training targets: ``{"method", "basis", "levels", ...}``."""
        return dict(getattr(self.model, "metadata", {}).get("reference", {}))

    # -- evaluation ---------------------------------------------------------
    def _batch(self, atoms: Atoms) -> Batch:
        if atoms.pbc.any():
            raise ValueError("HamiltonianCalculator handles isolated molecules: switch off periodic boundary "
                             "conditions (atoms.pbc = False)")
        self.model.check_species(atoms.numbers)
        electrons = int(atoms.numbers.sum())
        if electrons % 2:
            raise ValueError(f"{atoms.get_chemical_formula()} has {electrons} electrons: an open-shell molecule "
                             "(radical) cannot be described by a closed-shell Hamiltonian model")
        if np.abs(atoms.get_initial_magnetic_moments()).sum() > 0:
            raise ValueError("initial magnetic moments are set: the model is closed-shell (multiplicity 1)")
        return Batch.from_atoms(atoms, self.model.cutoff, min_distance=self.min_distance)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["eigenvalues"], system_changes)
        batch = self._batch(self.atoms)
        with torch.no_grad():
            out = self.model(batch)
        slots = out["slots"][0]
        h = out["hamiltonian"][0][slots][:, slots]
        s = out["overlap"][0][slots][:, slots]
        self.results = {"eigenvalues": generalized_eigenvalues(h, s).numpy(), "hamiltonian": h.numpy(),
                        "overlap": s.numpy()}

    def get_eigenvalues(self, kpt: int = 0, spin: int = 0, atoms: Atoms | None = None) -> np.ndarray:
        """Orbital energies (eV), ascending, one per minimal-basis function."""
        return self._property("eigenvalues", atoms).copy()

    def get_number_of_bands(self) -> int:
        return len(self._property("eigenvalues"))

    def get_number_of_spins(self) -> int:
        return 1

    def get_spin_polarized(self) -> bool:
        return False

    def get_ibz_k_points(self) -> np.ndarray:
        return np.zeros((1, 3))

    def get_k_point_weights(self) -> np.ndarray:
        return np.ones(1)

    def get_occupation_numbers(self, kpt: int = 0, spin: int = 0) -> np.ndarray:
        """2 for the N/2 lowest orbitals, 0 above."""
        occupations = np.zeros(self.get_number_of_bands())
        occupations[: self._n_occupied()] = 2.0
        return occupations

    def get_homo_lumo(self) -> tuple[float, float]:
        """Highest occupied and lowest unoccupied orbital energies (eV)."""
        levels = self.get_eigenvalues()
        n_occupied = self._n_occupied()
        lumo = float(levels[n_occupied]) if n_occupied < len(levels) else float("nan")
        return float(levels[n_occupied - 1]), lumo

    def _n_occupied(self) -> int:
        return int(self.atoms.numbers.sum()) // 2

    def get_fermi_level(self) -> float:
        """Mid-gap energy (eV)."""
        return float(np.mean(self.get_homo_lumo()))

    def get_hamiltonian(self, atoms: Atoms | None = None) -> np.ndarray:
        """The effective Hamiltonian in the minimal AO basis (eV), [n_orbitals, n_orbitals]."""
        return self._property("hamiltonian", atoms).copy()

    def get_overlap(self, atoms: Atoms | None = None) -> np.ndarray:
        """The minimal-basis overlap matrix, [n_orbitals, n_orbitals]."""
        return self._property("overlap", atoms).copy()

    def get_basis_labels(self, atoms: Atoms | None = None) -> list[str]:
        """Labels of the basis functions, e.g. ``"0 O 2px"``, in the order of H and S."""
        atoms = self._atoms(atoms)
        mask = self.model.basis.slot_mask(torch.as_tensor(atoms.numbers)).numpy()
        return [f"{a} {chemical_symbols[z]} {SLOT_LABELS[k]}" for a, z in enumerate(atoms.numbers)
                for k in range(len(SLOT_LABELS)) if mask[a, k]]

    def get_eigenvalue_gradients(self, atoms: Atoms | None = None) -> np.ndarray:
        """∂ε_k/∂R_a (eV/Å), [n_orbitals, N, 3] (defined where levels are not degenerate)."""
        batch = self._batch(self._atoms(atoms))
        positions = batch.positions.clone().requires_grad_(True)
        n = self.model.basis.n_orbitals(batch.numbers)
        levels = self.model.orbital_energies(batch, positions)[0, :n]
        rows = [torch.autograd.grad(levels[k], positions, retain_graph=k < n - 1)[0] for k in range(n)]
        return torch.stack(rows).numpy()
