"""``RotationalAverage``: the rotational average of any model, as an ASE calculator.

For an atomflux potential (model file, shipped name, model spec, potential
object, SevenNet/MACE adapters) all K rotated copies of the structure go
through **one** batched :func:`~atomflux.evaluate.evaluate` call; for any
other ASE calculator (CHGNet, EMT, a committee ...) the calculator is called
once per rotation.  Either way each rotation's results are brought back to
the frame of the structure (:mod:`atomflux.symmetry.rotate`: F = F′R,
S = Rᵀ S′ R) and then reduced the same way:

- every result (energy, per-atom energies, forces, stress, per-atom stresses,
  ensemble members, energy uncertainties) is the weighted mean over rotations;
- forces and stress uncertainties are each rotation's spread of its
  back-rotated members (the lab-frame components), averaged over rotations;
- ``energy_rot_std`` (eV), ``forces_rot_std`` (eV/Å, [N, 3]) and
  ``stress_rot_std`` (eV/Å³, Voigt) are the weighted standard deviations over
  rotations, sqrt(Σ_k w_k (X_k − X̄)²): how far the model is from invariant
  on this structure.  Zero for an exactly invariant model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from ..calculators.ase_calculator import AtomfluxCalculator, resolve_potential
from ..evaluate import evaluate
from ..io import native_dtypes, parse_dtype
from ..systems import MIN_DISTANCE, Batch
from .potential import AveragedPotential
from .quadrature import GridSampler, RotationGrid
from .rotate import back_rotate_tensors, back_rotate_vectors, rotated_copies
from .spec import AverageSpec, split_average

#: how each result transforms under the back-rotation
INVARIANT = ("energy", "energies", "energy_uncertainty", "energies_uncertainty", "energy_ensemble")
VECTORS = ("forces", "forces_ensemble")
TENSORS = ("stress", "stresses", "stress_ensemble")
ROT_STD = ("energy", "forces", "stress")
#: results that need the stress of every rotation
STRESS_RESULTS = {"stress", "stresses", "stress_rot_std", "stress_uncertainty", "stress_ensemble"}


class RotationalAverage(Calculator):
    """ASE calculator averaging a model over a rotational quadrature.

    Parameters
    ----------
    model_or_calculator
        An atomflux model (file, shipped name, model spec, potential object,
        :class:`~atomflux.AtomfluxCalculator`; evaluated batched) or any ASE
        calculator (called once per rotation).
    order
        Degree integrated exactly (``lebedev``, ``legendre``), or the number
        of rotations (``random``).
    grid
        ``"lebedev"``, ``"legendre"`` or ``"random"`` (a fresh draw at every
        evaluation), see :mod:`atomflux.symmetry.quadrature`.
    inversion
        Also average over the improper rotations −R_k.
    dtype, device, trust, min_distance, uncertainty
        As for :class:`~atomflux.AtomfluxCalculator` (atomflux models only).
    seed
        Seed of the random rotations.
    max_atoms
        Most atoms (over all copies) in one batched evaluation; beyond it the
        rotations are split over several calls (memory bound).

    Results: as :class:`~atomflux.AtomfluxCalculator` (energy, free_energy,
    forces, energies, stress, stresses, uncertainties and ensembles when the
    model has them), all rotationally averaged, plus ``energy_rot_std``,
    ``forces_rot_std`` and ``stress_rot_std``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "stresses",
                              "energy_uncertainty", "energies_uncertainty", "forces_uncertainty",
                              "stress_uncertainty", "energy_ensemble", "forces_ensemble",
                              "stress_ensemble", "energy_rot_std", "forces_rot_std", "stress_rot_std"]

    def __init__(self, model_or_calculator, order: int = 3, grid: str = "lebedev", inversion: bool = False, *,
                 dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu", trust: bool = False,
                 min_distance: float = MIN_DISTANCE, uncertainty: str | bool = "full", seed: int = 0,
                 max_atoms: int = 100_000, **kwargs) -> None:
        super().__init__(**kwargs)
        if split_average(model_or_calculator)[1] is not None:
            raise ValueError(f"{model_or_calculator!r} already names an average (the '@' suffix); give the grid "
                             "either there or as RotationalAverage(model, order=..., grid=...), not both")
        if uncertainty not in ("full", "energy", False):
            raise ValueError(f"uncertainty must be 'full', 'energy' or False, got {uncertainty!r}")
        if max_atoms < 1:
            raise ValueError(f"max_atoms must be ≥ 1, got {max_atoms}")
        average = AverageSpec(grid, order, bool(inversion))
        self.calculator = None
        if isinstance(model_or_calculator, AtomfluxCalculator):
            model_or_calculator = model_or_calculator.potential
        if isinstance(model_or_calculator, Calculator):
            self.calculator = model_or_calculator
            self.potential = None
            self._grids = GridSampler(grid, order, bool(inversion), seed)
            self.uncertainty = getattr(model_or_calculator, "uncertainty", False)
        else:
            base = resolve_potential(model_or_calculator, dtype, device, trust)
            self.potential = AveragedPotential(base, average, seed)
            self._grids = self.potential.grid
            self.dtype = parse_dtype(dtype) or native_dtypes(base)[0]
            from ..uncertainty.propagation import n_members

            self.uncertainty = uncertainty if n_members(base) else False
        self.average = average
        self.last_grid = self._grids()
        self.device, self.min_distance, self.max_atoms = device, float(min_distance), int(max_atoms)
        self.spec = getattr(model_or_calculator, "spec", None)
        self.parameters = {"average": str(average)}

    @property
    def species(self) -> list[str] | None:
        return self.potential.species if self.potential is not None else None

    def describe(self) -> str:
        """E.g. ``"lebedev order 3 (24 rotations, exact to degree 3), batched"``."""
        how = "batched" if self.potential is not None else f"{type(self.calculator).__name__} once per rotation"
        return f"{self.last_grid.describe()}, {how}"

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        wanted = set(properties or ["energy"])
        periodic_3d = bool(atoms.pbc.all()) and atoms.cell.rank == 3
        if {"stress", "stresses", "stress_rot_std", "stress_uncertainty"} & wanted and not periodic_3d:
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        grid = self.last_grid = self._grids()
        stress = periodic_3d and bool(STRESS_RESULTS & wanted)  # computed only when asked
        if self.potential is not None:
            per_rotation = self._batched(atoms, grid, stress, "stresses" in wanted, wanted)
        else:
            per_rotation = self._one_call_per_rotation(atoms, grid, stress, wanted)
        self.results = reduce_over_rotations(per_rotation, grid.weights)
        self.results["energy"] = float(self.results["energy"])
        self.results["free_energy"] = self.results["energy"]
        for name in ("energy_uncertainty", "energy_rot_std"):
            if name in self.results:
                self.results[name] = float(self.results[name])
        for name in ("stress", "stress_rot_std", "stress_uncertainty", "stresses", "stress_ensemble"):
            if name in self.results:
                self.results[name] = full_3x3_to_voigt_6_stress(self.results[name])

    def _batched(self, atoms: Atoms, grid: RotationGrid, stress: bool, per_atom_stress: bool,
                 wanted: set[str]) -> dict[str, np.ndarray]:
        """Every rotation's results in the structure's frame, from batched evaluate calls: {name: [K, ...]}."""
        base = self.potential.base
        if self.uncertainty is False and {p for p in wanted if p.endswith(("_uncertainty", "_ensemble"))}:
            raise PropertyNotImplementedError("this model has no uncertainty (or uncertainty=False was chosen)")
        base.check_species(atoms.numbers)
        batch = Batch.from_atoms(atoms, base.cutoff, self.dtype, self.device, self.min_distance)
        rotations = torch.as_tensor(grid.rotations, dtype=self.dtype, device=self.device)
        per_call = max(1, self.max_atoms // max(len(atoms), 1))
        pieces = [self._evaluate_rotations(base, batch, rotations[k:k + per_call], stress, per_atom_stress)
                  for k in range(0, len(rotations), per_call)]
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}

    def _evaluate_rotations(self, base, batch: Batch, rotations: torch.Tensor, stress: bool,
                            per_atom_stress: bool) -> dict[str, np.ndarray]:
        k, n = len(rotations), len(batch.numbers)
        res = evaluate(base, rotated_copies(batch, rotations), forces=True, stress=stress, energies=True,
                       virials=per_atom_stress, uncertainty=self.uncertainty)
        out = {"energy": res.energy, "energies": res.energies.view(k, n),
               "forces": back_rotate_vectors(res.forces.view(k, n, 3), rotations)}
        if stress:
            out["stress"] = back_rotate_tensors(res.stress, rotations)
        if per_atom_stress:
            volume = float(batch.volumes()[0])
            out["stresses"] = back_rotate_tensors(-res.virials.view(k, n, 3, 3) / volume, rotations)
        if res.energy_uncertainty is not None:
            out["energy_uncertainty"] = res.energy_uncertainty
            out["energies_uncertainty"] = res.energies_uncertainty.view(k, n)
            out["energy_ensemble"] = res.energy_ensemble                                  # [K, M]
        if res.forces_ensemble is not None:
            members = res.forces_ensemble.view(-1, k, n, 3).transpose(0, 1)               # [K, M, N, 3]
            out["forces_ensemble"] = back_rotate_vectors(members, rotations)
        if res.stress_ensemble is not None:
            members = res.stress_ensemble.transpose(0, 1)                                 # [K, M, 3, 3]
            out["stress_ensemble"] = back_rotate_tensors(members, rotations)
        return {name: value.detach().cpu().numpy().astype(np.float64) for name, value in out.items()}

    def _one_call_per_rotation(self, atoms: Atoms, grid: RotationGrid, stress: bool,
                               wanted: set[str]) -> dict[str, np.ndarray]:
        """Every rotation's results in the structure's frame, one call of the wrapped calculator each."""
        names = ["energy", "forces"] + (["stress"] if stress else [])
        names += [p for p in ("energies", "energy_uncertainty", "energies_uncertainty", "energy_ensemble",
                              "forces_ensemble", "stress_ensemble")
                  if p in wanted or (p.endswith("_ensemble") and p.replace("_ensemble", "_uncertainty") in wanted)]
        if "stresses" in wanted and stress:
            names.append("stresses")
        names = [n for n in names if not n.startswith("stress") or stress]
        missing = [n for n in names if n not in self.calculator.implemented_properties]
        if missing:
            raise PropertyNotImplementedError(f"{type(self.calculator).__name__} does not compute {', '.join(missing)}")
        rotations = torch.as_tensor(grid.rotations)
        collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for rotation in grid.rotations:
            rotated = atoms.copy()
            rotated.calc = None
            rotated.positions = atoms.positions @ rotation.T
            rotated.cell = atoms.cell.array @ rotation.T
            self.calculator.calculate(rotated, names, all_changes)
            for name in names:
                value = np.asarray(self.calculator.results[name], dtype=np.float64)
                if name in TENSORS and value.shape[-1] == 6:
                    value = voigt_6_to_full_3x3_stress(value)
                collected[name].append(value)
        out = {}
        for name, values in collected.items():
            stacked = torch.as_tensor(np.stack(values))
            if name in VECTORS:
                stacked = back_rotate_vectors(stacked, rotations)
            elif name in TENSORS:
                stacked = back_rotate_tensors(stacked, rotations)
            out[name] = stacked.numpy()
        return out


def reduce_over_rotations(per_rotation: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted means over the rotation axis (axis 0), ``*_rot_std`` of energy, forces and stress, and
    the lab-frame spread of ensemble members of forces and stress (``*_uncertainty``).

    Parameters
    ----------
    per_rotation
        ``{name: ndarray [K, ...]}`` in the frame of the structure (stress as [K, 3, 3]).
    weights
        Quadrature weights [K], summing to 1.
    """
    w = np.asarray(weights, dtype=np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.tensordot(w, values, axes=1)

    results = {name: mean(values) for name, values in per_rotation.items()}
    for name in ROT_STD:
        if name in per_rotation:
            deviation = per_rotation[name] - results[name]
            results[f"{name}_rot_std"] = np.sqrt(np.maximum(mean(deviation**2), 0.0))
    for name in ("forces", "stress"):
        members = per_rotation.get(f"{name}_ensemble")
        if members is not None:  # [K, M, ...]: each rotation's spread of its members, in the lab frame
            results[f"{name}_uncertainty"] = mean(members.std(axis=1))
    return results


def model_for_averaging(model, trust: bool = False):
    """What :class:`RotationalAverage` should wrap, loaded once: a potential for atomflux-level models
    (files, shipped names, SevenNet/MACE specs, potential objects), the package's own ASE calculator for
    calculator-level specs (``"chgnet:0.3.0"``), any other ASE calculator as it is."""
    from ..foreign import CALCULATOR_LEVEL, is_spec, load_spec, split_spec

    if isinstance(model, Calculator) and not isinstance(model, AtomfluxCalculator):
        return model
    if is_spec(model) and split_spec(str(model))[0] in CALCULATOR_LEVEL:
        return load_spec(str(model), trust)
    if isinstance(model, AtomfluxCalculator):
        return model.potential
    return resolve_potential(model, trust=trust)


def average_calculator(model: str | Path, uncertainty: str | bool = "full", trust: bool = False,
                       dtype: str | None = None) -> Calculator:
    """The calculator for a model spec with an averaging suffix (``"demo@lebedev:3"``, ``"chgnet:0.3.0@random"``):
    batched for atomflux-level models (in ``dtype``; ``None``: the model's own), one call per rotation for
    calculator-level ones."""
    base, average = split_average(model)
    if average is None:
        raise ValueError(f"{model!r} has no averaging suffix (@GRID:ORDER)")
    wrapped = model_for_averaging(base, trust)
    calc = RotationalAverage(wrapped, average.order, average.grid, average.inversion, uncertainty=uncertainty,
                             **({} if isinstance(wrapped, Calculator) else {"dtype": dtype}))
    calc.spec = str(model)
    return calc
