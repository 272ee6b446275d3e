"""ASE calculator for any atomflux potential."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..evaluate import evaluate
from ..io import load_model
from ..models import Potential
from ..systems import MIN_DISTANCE, Batch


def resolve_potential(model: str | Path | Potential, dtype: torch.dtype, device: str | torch.device) -> Potential:
    """A potential from a file path, a shipped model name, or a potential object."""
    if isinstance(model, torch.nn.Module):
        return model.to(dtype=dtype, device=device)
    return load_model(model, dtype=dtype, device=device)


class AtomfluxCalculator(Calculator):
    """ASE calculator: ``atoms.calc = AtomfluxCalculator("demo")``.

    Parameters
    ----------
    model
        Path of a model file, name of a shipped model (``"demo"``), or a
        :class:`~atomflux.models.Potential` object.
    dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    min_distance
        Atoms closer than this (Å, default 0.3) raise ``ValueError``.

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å),
    ``energies`` (eV per atom) and, for cells periodic in 3-D, ``stress``
    (eV/Å³, Voigt order) and per-atom ``stresses``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "stresses"]

    def __init__(self, model: str | Path | Potential = "demo", dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dtype, self.device, self.min_distance = dtype, device, float(min_distance)
        self.potential = resolve_potential(model, dtype, device).eval()

    @property
    def species(self) -> list[str] | None:
        return self.potential.species

    def batch(self, atoms: Atoms) -> Batch:
        """Validated batch for ``atoms`` (clear ``ValueError`` on bad input)."""
        self.potential.check_species(atoms.numbers)
        return Batch.from_atoms(atoms, self.potential.cutoff, self.dtype, self.device, self.min_distance)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        periodic_3d = bool(atoms.pbc.all()) and atoms.cell.rank == 3
        wants_stress = bool({"stress", "stresses"} & set(properties or []))
        if wants_stress and not periodic_3d:
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        res = evaluate(self.potential, self.batch(atoms), forces=True, stress=periodic_3d,
                       energies=True, virials=periodic_3d)
        energy = float(res.energy[0])
        self.results = {
            "energy": energy, "free_energy": energy,
            "forces": res.forces.cpu().numpy().astype(np.float64),
            "energies": res.energies.cpu().numpy().astype(np.float64),
        }
        if periodic_3d:
            volume = atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(res.stress[0].cpu().numpy().astype(np.float64))
            self.results["stresses"] = full_3x3_to_voigt_6_stress(
                -res.virials.cpu().numpy().astype(np.float64) / volume)
