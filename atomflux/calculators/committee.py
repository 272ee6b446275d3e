"""Committees of ASE calculators: the members' mean as the prediction, their spread as the uncertainty.

``Committee([calc_a, calc_b, ...])`` takes any ASE calculators (atomflux
models, SevenNet, CHGNet, MACE, EMT ...).  Its results carry the mean and the
members under the same names as atomflux's built-in ensembles, so
``thermal_conductivity`` (κ per member), :class:`~atomflux.uncertainty.
UncertaintyGuard` and ``atomflux md --max-uncertainty`` use it unchanged.
A committee of independently trained foundation models is the cheapest
honest error bar: where they disagree, at least one of them is wrong.

:func:`make_calculator` turns the ``--model`` options of the command line (a
file, shipped name or spec, possibly repeated) into one calculator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .ase_calculator import AtomfluxCalculator


class Committee(Calculator):
    """ASE calculator whose prediction is the mean of several calculators.

    Parameters
    ----------
    calculators
        Two or more ASE calculators (any kind).
    names
        A label per member (default: its model spec, or its class name).

    Results: ``energy``/``free_energy`` (eV), ``forces`` (eV/Å, [N, 3]) and, for
    cells periodic in 3-D, ``stress`` (eV/Å³, Voigt): the members' means;
    ``energy_ensemble`` ([M], eV), ``forces_ensemble`` ([M, N, 3]),
    ``stress_ensemble`` ([M, 6]): every member's prediction; ``energy_uncertainty``,
    ``forces_uncertainty`` ([N, 3]), ``stress_uncertainty`` ([6]): the members'
    standard deviation (population, ddof = 0, as for atomflux's ensembles).
    With ``"energies"`` asked for: per-atom mean and ``energies_uncertainty``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "energy_uncertainty",
                              "energies_uncertainty", "forces_uncertainty", "stress_uncertainty", "energy_ensemble",
                              "forces_ensemble", "stress_ensemble"]
    #: the committee always has uncertainty (``atomflux md --max-uncertainty`` checks this)
    uncertainty = "full"

    def __init__(self, calculators: Sequence[Calculator], names: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calculators = list(calculators)
        if len(self.calculators) < 2:
            raise ValueError(f"a committee needs at least two calculators, got {len(self.calculators)}")
        for calc in self.calculators:
            if not hasattr(calc, "get_property"):
                raise ValueError(f"committee members must be ASE calculators, got {type(calc).__name__}")
        self.names = list(names) if names is not None else [member_name(c) for c in self.calculators]
        if len(self.names) != len(self.calculators):
            raise ValueError(f"{len(self.names)} names for {len(self.calculators)} committee members")
        self.parameters = {"members": self.names}

    @property
    def n_members(self) -> int:
        return len(self.calculators)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        periodic_3d = bool(atoms.pbc.all()) and atoms.cell.rank == 3
        wanted = set(properties or [])
        if {"stress", "stress_uncertainty", "stress_ensemble"} & wanted and not periodic_3d:
            raise PropertyNotImplementedError("stress needs a cell that is periodic in all three directions")
        names = ["energy", "forces"] + (["stress"] if periodic_3d else [])
        names += ["energies"] if {"energies", "energies_uncertainty"} & wanted else []
        members = {name: np.array([_member_property(calc, name, atoms) for calc in self.calculators])
                   for name in names}
        self.results = {}
        for name, values in members.items():
            self.results[name] = values.mean(0)
            self.results[f"{name}_uncertainty"] = values.std(0)
            if name != "energies":
                self.results[f"{name}_ensemble"] = values
        self.results["energy"] = float(self.results["energy"])
        self.results["energy_uncertainty"] = float(self.results["energy_uncertainty"])
        self.results["free_energy"] = self.results["energy"]


def _member_property(calculator: Calculator, name: str, atoms: Atoms) -> np.ndarray:
    value = np.asarray(calculator.get_property(name, atoms), dtype=np.float64)
    if name == "stress" and value.shape == (3, 3):  # some calculators (CHGNet) store the full tensor
        value = full_3x3_to_voigt_6_stress(value)
    return value


def member_name(calculator: Calculator) -> str:
    """Label of a calculator: its model spec or file, else its class name."""
    spec = getattr(calculator, "spec", None)
    if spec:
        return str(spec)
    metadata = getattr(getattr(calculator, "potential", None), "metadata", None) or {}
    return str(metadata.get("spec") or metadata.get("source") or type(calculator).__name__)


def make_calculator(models: str | Path | Sequence[str | Path], uncertainty: str | bool = "full",
                    trust: bool = False, dtype: str | None = None) -> Calculator:
    """One ASE calculator for one or several models (files, shipped names or specs).

    One model gives an :class:`AtomfluxCalculator` (or, for calculator-level
    specs such as ``"chgnet:0.3.0"``, that package's own calculator; with an
    averaging suffix ``"MODEL@lebedev:3"``, a :class:`~atomflux.symmetry.RotationalAverage`); several
    give a :class:`Committee` of them.  ``uncertainty`` is passed to single
    atomflux models; committee members are evaluated without their own.
    ``dtype`` (``None``: each model's own) is passed to the atomflux calculators.
    """
    specs = [models] if isinstance(models, (str, Path)) else list(models)
    if not specs:
        raise ValueError("no model given")
    if len(specs) == 1:
        return _single(specs[0], uncertainty, trust, dtype)
    return Committee([_single(spec, False, trust, dtype) for spec in specs], names=[str(s) for s in specs])


def _single(spec: str | Path, uncertainty: str | bool, trust: bool, dtype: str | None = None) -> Calculator:
    from ..foreign import CALCULATOR_LEVEL, is_spec, load_spec, split_spec
    from ..symmetry import split_average

    if split_average(spec)[1] is not None:  # "MODEL@GRID:ORDER": rotational average, with *_rot_std results
        from ..symmetry.average import average_calculator

        return average_calculator(spec, uncertainty, trust, dtype)
    if is_spec(spec) and split_spec(str(spec))[0] in CALCULATOR_LEVEL:
        return load_spec(str(spec), trust)
    calc = AtomfluxCalculator(spec, uncertainty=uncertainty, trust=trust, dtype=dtype)
    calc.spec = str(spec)
    return calc
