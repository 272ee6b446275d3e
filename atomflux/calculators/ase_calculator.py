"""ASE calculator for any atomflux potential."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..evaluate import (LONG_RANGE_REFUSAL, Results, convective_heat_flux, evaluate, heat_flux, pair_gradient_sums,
                        unfolded_heat_flux)
from ..foreign import potential_from_object
from ..heap import keep_freed_memory
from ..io import load_model, native_dtypes, parse_dtype, place
from ..models import Potential
from ..systems import MIN_DISTANCE, Batch, VerletList


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


#: results that need every ensemble member's forces (one extra batched backward pass)
MEMBER_PROPERTIES = frozenset({"forces_uncertainty", "forces_ensemble", "stress_uncertainty"})


class AtomfluxCalculator(Calculator):
    """ASE calculator: ``atoms.calc = AtomfluxCalculator("demo")``.

    Each call computes what is asked for: energy, forces, per-atom energies
    and (uncertainty-capable models) the energy uncertainties, which cost
    nothing extra; stress, per-atom stresses and the heat flux come from the
    kept pair gradients when asked for at the same positions (no second model
    call); forces and stress uncertainties and the members' forces take one
    more evaluation with a batched backward pass over the members, when asked
    for.  Neighbour pairs are reused across MD steps (see ``skin``).

    Parameters
    ----------
    model
        Path of a model file, name of a shipped model (``"demo"``), a model
        spec (``"sevennet:7net-0"``, ``"mace:PATH"``), a
        :class:`~atomflux.models.Potential` object, or a SevenNet/MACE model or
        ASE calculator (adapted to atomflux).
    dtype
        The type the model computes in: ``None`` (default): the model's own
        (float64 for atomflux models, float32 for SevenNet); or
        ``"float32"``/``"float64"`` (or the torch dtypes).  Positions, pair
        vectors, energies, forces and stress are always formed and summed in
        float64 (``"float32"`` is float32 compute with float64 accumulation).
    device
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    min_distance
        Atoms closer than this (Å, default 0.3) raise ``ValueError``.
    uncertainty
        For uncertainty-capable models (shallow ensemble, LLPR): ``"full"``
        (default) gives energy, per-atom energy, forces and stress
        uncertainties and ensemble members (forces ones only when asked for);
        ``"energy"`` only the energy ones; ``False`` none.
    track_heat_flux
        Keep what :meth:`heat_flux` needs at every evaluation (set by the
        transport MD driver), so the flux costs no second model call.
    skin
        Neighbour-list skin, Å (default 1.0): pairs are searched within
        cutoff + skin and searched again only when an atom has moved more
        than skin/2 or the cell changed; results are exact (the pairs are
        filtered to the cutoff at every call).  0 searches at every call.
    trust
        Allow a third-party pickle checkpoint outside its package (see
        :func:`atomflux.load_model`).

    Constructing one sets glibc's malloc, process-wide and once, to keep the
    memory of freed tensors for the next force call
    (:func:`atomflux.heap.keep_freed_memory`: no page faults per MD step;
    ``ATOMFLUX_KEEP_FREED_MEMORY=0`` opts out).

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
                 uncertainty: str | bool = "full", track_heat_flux: bool = False, skin: float = 1.0,
                 trust: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.potential = resolve_potential(model, dtype, device, trust).eval()
        self.dtype = parse_dtype(dtype) or native_dtypes(self.potential)[0]
        self.device, self.min_distance = device, float(min_distance)
        self.track_heat_flux = bool(track_heat_flux)
        if uncertainty not in ("full", "energy", False):
            raise ValueError(f"uncertainty must be 'full', 'energy' or False, got {uncertainty!r}")
        from ..uncertainty.propagation import n_members

        self.uncertainty = uncertainty if n_members(self.potential) else False
        self.neighbours = VerletList(self.potential.cutoff, skin, torch.float64, device, self.min_distance)
        self._kept: tuple[Batch, Results] | None = None
        keep_freed_memory()

    @property
    def species(self) -> list[str] | None:
        return self.potential.species

    def batch(self, atoms: Atoms) -> Batch:
        """Validated float64 batch for ``atoms`` (clear ``ValueError`` on bad input)."""
        self.potential.check_species(atoms.numbers)
        return self.neighbours.batch(atoms)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        properties = list(properties or ["energy"])
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic_3d = bool(atoms.pbc.all()) and atoms.cell.rank == 3
        wanted = set(properties)
        if wanted & {"stress", "stresses"} and not periodic_3d:
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        if any(p.endswith(("_uncertainty", "_ensemble")) for p in wanted) and not self.uncertainty:
            raise PropertyNotImplementedError("this model has no uncertainty (or uncertainty=False was chosen); "
                                              "fit a shallow ensemble or LLPR (atomflux llpr)")
        members = bool(wanted & MEMBER_PROPERTIES)
        if members and self.uncertainty != "full":
            raise PropertyNotImplementedError(f"{', '.join(sorted(wanted & MEMBER_PROPERTIES))} need(s) "
                                              "uncertainty='full' (this calculator has uncertainty='energy')")
        wants_flux = self.track_heat_flux or "heat_flux" in wanted
        long_range = getattr(self.potential, "long_range", False)
        if long_range and (wants_flux or "stresses" in wanted):
            what = "the heat flux" if wants_flux else "the per-atom virial (stresses)"
            raise PropertyNotImplementedError(LONG_RANGE_REFUSAL.format(what=what))
        if wants_flux and not (getattr(self.potential, "strictly_local", False)
                               or getattr(self.potential, "interaction_range", None)):
            raise PropertyNotImplementedError("heat flux needs a strictly local potential (strictly_local = True) "
                                              "or one that declares its interaction_range")
        if system_changes or self._kept is None or (members and self._kept[1].forces_ensemble is None):
            self._evaluate(atoms, members, periodic_3d)
        batch, res = self._kept
        if long_range and "stress" in wanted:  # from evaluate's strain derivative (no pair gradients)
            if "stress" not in self.results:
                self._evaluate(atoms, members, periodic_3d)
        elif wanted & {"stress", "stresses"} and not ("stress" in self.results and "stresses" in self.results):
            sums = pair_gradient_sums(batch, res.pair_gradients, stress=True, virials=True)
            self.results["stress"] = full_3x3_to_voigt_6_stress(_numpy(sums.stress[0]))
            self.results["stresses"] = full_3x3_to_voigt_6_stress(-_numpy(sums.virials) / atoms.get_volume())
        if wants_flux:
            if res.flux_virials is None and getattr(self.potential, "strictly_local", False):
                res.flux_virials = pair_gradient_sums(batch, res.pair_gradients, flux_virials=True).flux_virials
            self.results["heat_flux"] = self.heat_flux(atoms)

    def _evaluate(self, atoms: Atoms, members: bool, periodic_3d: bool) -> None:
        """One model evaluation: energies, forces, the energy uncertainties and, with
        ``members``, the members' forces and stress; kept with its pair gradients."""
        batch = self.batch(atoms)
        uncertainty = ("full" if members else "energy") if self.uncertainty else False
        strictly_local = getattr(self.potential, "strictly_local", False)
        long_range = getattr(self.potential, "long_range", False)  # stress from the strain derivative, every call
        res = evaluate(self.potential, batch, forces=True, energies=True, pair_gradients=not long_range,
                       stress=(members or long_range) and periodic_3d, uncertainty=uncertainty,
                       flux_virials=self.track_heat_flux and strictly_local)
        self._kept = (batch, res)
        energy = float(res.energy[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": _numpy(res.forces),
                        "energies": _numpy(res.energies)}
        if res.stress is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(_numpy(res.stress[0]))
        if self.uncertainty:
            self.results["energy_uncertainty"] = float(res.energy_uncertainty[0])
            self.results["energies_uncertainty"] = _numpy(res.energies_uncertainty)
            self.results["energy_ensemble"] = _numpy(res.energy_ensemble[0])
        if members:
            self.results["forces_uncertainty"] = _numpy(res.forces_uncertainty)
            self.results["forces_ensemble"] = _numpy(res.forces_ensemble)
            if periodic_3d:
                self.results["stress_uncertainty"] = full_3x3_to_voigt_6_stress(_numpy(res.stress_uncertainty[0]))

    def heat_flux(self, atoms: Atoms) -> np.ndarray:
        """Heat flux J (eV·Å/fs, [3], not divided by volume) with the atoms' *current* velocities.

        Reuses the last evaluation when positions are unchanged.  Strictly
        local models: J is linear in the velocities, so an MD observer can call
        it after the velocity update at no extra cost (with ``track_heat_flux``
        the receiver virials are formed during the force call itself).
        Message-passing models: the flux vector with these velocities through
        the unfolded system (:func:`~atomflux.evaluate.unfolded_heat_flux`: one
        forward-mode and one backward pass, no per-atom virials).
        """
        strictly_local = getattr(self.potential, "strictly_local", False)
        if (self.calculation_required(atoms, ["energy"]) or self._kept is None
                or (strictly_local and self._kept[1].flux_virials is None)):
            self.calculate(atoms, ["energy", "heat_flux"])
        batch, res = self._kept
        v = torch.tensor(atoms.get_velocities() * units.fs, dtype=batch.dtype, device=batch.device)
        m = torch.tensor(atoms.get_masses(), dtype=batch.dtype, device=batch.device)
        if strictly_local:
            total, _ = heat_flux(res.energies, res.flux_virials, v, m, batch)
        else:
            total = convective_heat_flux(res.energies, v, m, batch) + unfolded_heat_flux(self.potential, batch, v)
        return total[0].cpu().numpy().astype(np.float64)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)
