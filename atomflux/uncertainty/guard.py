"""Extrapolation guard for ASE MD: log the uncertainty, warn or stop above a threshold."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from ase import Atoms


class ExtrapolationError(RuntimeError):
    """Raised by :class:`UncertaintyGuard` when the model extrapolates."""


class UncertaintyGuard:
    """An MD observer: ``dyn.attach(UncertaintyGuard(atoms, threshold=0.01), interval=10)``.

    Parameters
    ----------
    atoms
        The atoms being integrated, with an uncertainty-capable
        :class:`~atomflux.AtomfluxCalculator` (shallow ensemble, LLPR) or a
        :class:`~atomflux.calculators.Committee` of calculators (the members'
        spread); any calculator reporting ``energy_uncertainty`` /
        ``forces_uncertainty`` works.
    threshold
        Largest accepted uncertainty: eV/atom for ``quantity="energy"``
        (energy σ divided by the number of atoms), eV/Å for ``"forces"``
        (largest per-atom force σ norm).
    quantity
        ``"energy"`` or ``"forces"``.
    action
        ``"stop"`` raises :class:`ExtrapolationError`; ``"warn"`` warns and goes on.
    logfile
        Text file receiving ``step uncertainty`` lines.
    save
        Where the offending frame is written (extxyz) when the threshold is crossed.
    """

    def __init__(self, atoms: Atoms, threshold: float, quantity: str = "energy", action: str = "stop",
                 logfile: str | Path | None = None, save: str | Path = "extrapolation.extxyz") -> None:
        if quantity not in ("energy", "forces"):
            raise ValueError("quantity must be 'energy' or 'forces'")
        if action not in ("stop", "warn"):
            raise ValueError("action must be 'stop' or 'warn'")
        self.atoms, self.threshold, self.quantity, self.action = atoms, float(threshold), quantity, action
        self.save = Path(save)
        self.log = open(logfile, "w") if logfile else None
        if self.log:
            unit = "eV/atom" if quantity == "energy" else "eV/Å"
            self.log.write(f"# call  {quantity}_uncertainty ({unit})\n")
        self.history: list[float] = []
        self.triggered = False

    def current(self) -> float:
        calc = self.atoms.calc
        if calc is None:
            raise ValueError("atoms have no calculator")
        if f"{self.quantity}_uncertainty" not in getattr(calc, "implemented_properties", ()):
            raise ValueError(f"{type(calc).__name__} reports no {self.quantity} uncertainty: use a model with "
                             "uncertainty (shallow ensemble, LLPR) or a Committee of calculators")
        if self.quantity == "energy":
            return float(calc.get_property("energy_uncertainty", self.atoms)) / len(self.atoms)
        sigma = calc.get_property("forces_uncertainty", self.atoms)
        return float(np.linalg.norm(sigma, axis=1).max())

    def __call__(self) -> None:
        value = self.current()
        self.history.append(value)
        if self.log:
            self.log.write(f"{len(self.history) - 1:6d}  {value:.6g}\n")
            self.log.flush()
        if value > self.threshold:
            import ase.io

            self.triggered = True
            ase.io.write(self.save, self.atoms, append=self.save.exists())
            message = (f"model uncertainty {value:.4g} exceeds threshold {self.threshold:.4g} "
                       f"({self.quantity}); frame saved to {self.save}")
            if self.action == "stop":
                raise ExtrapolationError(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
