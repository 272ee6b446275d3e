"""ASE calculator for any atomflux potential."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..evaluate import evaluate, heat_flux
from ..foreign import potential_from_object
from ..io import load_model, native_dtypes, parse_dtype, place
from ..models import Potential
from ..systems import MIN_DISTANCE, Batch


def resolve_potential(model, dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu",
                      trust: bool = False) -> Potential:
    """A potential from a file path, a shipped model name, a model spec (``"sevennet:7net-0"``),
    a potential object, or a third-party torch model or ASE calculator that :mod:`atomflux.foreign` adapts.

    ``dtype`` ``None`` keeps the model's own dtype (float64 for atomflux models,
    float32 for SevenNet); ``"float32"``/``"float64"`` or torch dtypes choose one.
    """
    if isinstance(model, Potential):
        potential = place(model, dtype, device)
    elif isinstance(model, (str, Path)):
        potential = load_model(model, dtype=dtype, device=device, trust=trust)
    else:
        adapted = potential_from_object(model)
        if adapted is None:
            kind = "ASE calculator" if hasattr(model, "get_potential_energy") else "object"
            raise ValueError(f"AtomfluxCalculator cannot adapt the {kind} {type(model).__name__} (atomflux adapts "
                             "SevenNet and MACE models); use it directly as an ASE calculator (atomflux md/kappa and "
                             "Committee accept any), or wrap its torch model as in the README 'Bring your own model'")
        potential = place(adapted, dtype, device)
    if not getattr(potential, "predicts_energy", True):
        raise ValueError(f"{model} is a {type(potential).__name__}: it predicts orbital energies, not the energy; "
                         "use atomflux.calculators.HamiltonianCalculator")
    return potential


class AtomfluxCalculator(Calculator):
    """ASE calculator: ``atoms.calc = AtomfluxCalculator("demo")``.

    Parameters
    ----------
    model
        Path of a model file, name of a shipped model (``"demo"``), a model
        spec (``"sevennet:7net-0"``, ``"mace:PATH"``), a
        :class:`~atomflux.models.Potential` object, or a SevenNet/MACE model or
        ASE calculator (adapted to atomflux).
    dtype
        ``None`` (default): the model's own dtype (float64 for atomflux
        models, float32 for SevenNet); or ``"float32"``/``"float64"`` (or
        the torch dtypes).
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    min_distance
        Atoms closer than this (Å, default 0.3) raise ``ValueError``.
    uncertainty
        For uncertainty-capable models (shallow ensemble, LLPR): ``"full"``
        (default) adds energy, per-atom energy, forces and stress
        uncertainties and ensemble members; ``"energy"`` only the energy
        ones (no extra backward pass: fastest for MD); ``False`` none.
    track_heat_flux
        Keep what :meth:`heat_flux` needs at every evaluation (set by the
        transport MD driver), so the flux costs no second model call.
    trust
        Allow a third-party pickle checkpoint outside its package (see
        :func:`atomflux.load_model`).

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å),
    ``energies`` (eV per atom) and, for cells periodic in 3-D, ``stress``
    (eV/Å³, Voigt order) and per-atom ``stresses``; with uncertainty,
    ``energy_uncertainty`` (eV), ``energies_uncertainty`` (eV per atom),
    ``forces_uncertainty`` (eV/Å, [N, 3]), ``stress_uncertainty`` (eV/Å³,
    Voigt), ``energy_ensemble`` (eV, [M]) and ``forces_ensemble`` ([M, N, 3]),
    all calibrated.  ``heat_flux`` (eV·Å/fs, [3], not divided by the volume:
    convective plus potential part, from the atoms' velocities) is computed
    when asked for.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "stresses",
                              "energy_uncertainty", "energies_uncertainty", "forces_uncertainty",
                              "stress_uncertainty", "energy_ensemble", "forces_ensemble", "heat_flux"]

    def __init__(self, model: str | Path | Potential = "demo", dtype: torch.dtype | str | None = None,
                 device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE,
                 uncertainty: str | bool = "full", track_heat_flux: bool = False, trust: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.potential = resolve_potential(model, dtype, device, trust).eval()
        self.dtype = parse_dtype(dtype) or native_dtypes(self.potential)[0]
        self.device, self.min_distance = device, float(min_distance)
        self.track_heat_flux = bool(track_heat_flux)
        self._flux_state = None
        if uncertainty not in ("full", "energy", False):
            raise ValueError(f"uncertainty must be 'full', 'energy' or False, got {uncertainty!r}")
        from ..uncertainty.propagation import n_members

        self.uncertainty = uncertainty if n_members(self.potential) else False

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
        wants_uncertainty = any(p.endswith(("_uncertainty", "_ensemble")) for p in properties or [])
        if wants_uncertainty and not self.uncertainty:
            raise PropertyNotImplementedError("this model has no uncertainty (or uncertainty=False was chosen); "
                                              "fit a shallow ensemble or LLPR (atomflux llpr)")
        batch = self.batch(atoms)
        wants_flux = self.track_heat_flux or "heat_flux" in (properties or [])
        if wants_flux and not getattr(self.potential, "strictly_local", False):
            raise PropertyNotImplementedError("heat flux needs a strictly local potential (strictly_local = True)")
        res = evaluate(self.potential, batch, forces=True, stress=periodic_3d, energies=True,
                       virials=periodic_3d, uncertainty=self.uncertainty, flux_virials=wants_flux)
        self._flux_state = (batch, res.energies, res.flux_virials) if wants_flux else None
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
        if self.uncertainty:
            self._store_uncertainty(res, periodic_3d)
        if wants_flux:
            self.results["heat_flux"] = self.heat_flux(atoms)

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """Heat flux J (eV·Å/fs, [3], not divided by volume) with the atoms' *current* velocities.

        Reuses the last evaluation when positions are unchanged and it kept the
        flux data (``track_heat_flux``): J is linear in the velocities, so an
        MD observer can call it after the velocity update at no extra cost.
        """
        if self.calculation_required(atoms, ["energy"]) or self._flux_state is None:
            self.calculate(atoms, ["energy", "heat_flux"])
        batch, energies, flux_virials = self._flux_state
        v = torch.tensor(atoms.get_velocities() * units.fs, dtype=flux_virials.dtype, device=flux_virials.device)
        m = torch.tensor(atoms.get_masses(), dtype=flux_virials.dtype, device=flux_virials.device)
        total, _ = heat_flux(energies, flux_virials, v, m, batch)
        return total[0].cpu().numpy().astype(np.float64)

    def _store_uncertainty(self, res, periodic_3d: bool) -> None:
        def array(t):
            return t.cpu().numpy().astype(np.float64)

        self.results["energy_uncertainty"] = float(res.energy_uncertainty[0])
        self.results["energies_uncertainty"] = array(res.energies_uncertainty)
        self.results["energy_ensemble"] = array(res.energy_ensemble[0])
        if res.forces_uncertainty is not None:
            self.results["forces_uncertainty"] = array(res.forces_uncertainty)
            self.results["forces_ensemble"] = array(res.forces_ensemble)
        if periodic_3d and res.stress_uncertainty is not None:
            self.results["stress_uncertainty"] = full_3x3_to_voigt_6_stress(array(res.stress_uncertainty[0]))
