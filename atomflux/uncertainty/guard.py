"""Extrapolation guard for ASE MD: log the uncertainty (or the novelty grade), warn or stop above a threshold."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms


#: unit of each guarded quantity
UNITS = {"energy": "eV/atom", "forces": "eV/Å", "novelty": "dimensionless"}


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
        ``forces_uncertainty`` works.  ``quantity="novelty"`` needs an
        :class:`~atomflux.AtomfluxCalculator` whose model carries novelty data
        (:mod:`atomflux.uncertainty.novelty`; ``atomflux novelty``).
    threshold
        Largest accepted value: eV/atom for ``quantity="energy"``
        (energy σ divided by the number of atoms), eV/Å for ``"forces"``
        (largest per-atom force σ norm), dimensionless for ``"novelty"``
        (largest per-atom extrapolation grade; 1 = as far from the training
        atoms' descriptors as the farthest training atom).
    quantity
        ``"energy"``, ``"forces"`` or ``"novelty"``.  Only the novelty grade
        sees environments that every fit extrapolates the same way (a bias that
        all members of an ensemble or committee share, so their σ stays small).
    action
        ``"stop"`` raises :class:`ExtrapolationError`; ``"warn"`` warns and goes on.
    logfile
        Text file receiving ``check value`` lines.
    save
        Where offending frames are written (extxyz): the first frame of each
        excursion above the threshold.
    warn_every
        Seconds: with ``action="warn"``, at most one warning per this interval
        (the next one counts what happened in between; :meth:`close` sums up).
    """

    def __init__(self, atoms: Atoms, threshold: float, quantity: str = "energy", action: str = "stop",
                 logfile: str | Path | None = None, save: str | Path = "extrapolation.extxyz",
                 warn_every: float = 30.0) -> None:
        if quantity not in UNITS:
            raise ValueError(f"quantity must be one of {', '.join(map(repr, UNITS))}, got {quantity!r}")
        if action not in ("stop", "warn"):
            raise ValueError("action must be 'stop' or 'warn'")
        self.atoms, self.threshold, self.quantity, self.action = atoms, float(threshold), quantity, action
        self.save = Path(save)
        self.log = open(logfile, "w") if logfile else None
        if self.log:
            self.log.write(f"# call  {self.label.replace(' ', '_')} ({UNITS[quantity]})\n")
        self.history: list[float] = []
        self.triggered = False
        self.warn_every = float(warn_every)
        self.n_exceeded = 0          # calls above the threshold
        self.n_saved = 0             # frames written to ``save``
        self._above = False          # inside an excursion above the threshold
        self._last_warning = -float("inf")
        self._unreported: list[float] = []  # values above the threshold not yet warned about

    @property
    def label(self) -> str:
        """What is guarded, as messages name it."""
        return "novelty grade" if self.quantity == "novelty" else f"{self.quantity} uncertainty"

    def current(self) -> float:
        """The guarded value at the atoms' current positions (see ``threshold`` for units)."""
        calc = self.atoms.calc
        if calc is None:
            raise ValueError("atoms have no calculator")
        if self.quantity == "novelty":
            return self._largest_grade(calc)
        if f"{self.quantity}_uncertainty" not in getattr(calc, "implemented_properties", ()):
            raise ValueError(f"{type(calc).__name__} reports no {self.quantity} uncertainty: use a model with "
                             "uncertainty (shallow ensemble, LLPR) or a Committee of calculators")
        if self.quantity == "energy":
            return float(calc.get_property("energy_uncertainty", self.atoms)) / len(self.atoms)
        sigma = calc.get_property("forces_uncertainty", self.atoms)
        return float(np.linalg.norm(sigma, axis=1).max())

    def _largest_grade(self, calc) -> float:
        from .novelty import novelty_grades

        potential = getattr(calc, "potential", None)
        if potential is None:
            raise ValueError(f"quantity='novelty' needs an AtomfluxCalculator with one atomflux model, not "
                             f"{type(calc).__name__} (a committee has no single descriptor)")
        # the calculator's batch from its Verlet list: no second neighbour search
        batch = calc.batch(self.atoms) if callable(getattr(calc, "batch", None)) else None
        return float(novelty_grades(potential, self.atoms, batch).max())

    def __call__(self) -> None:
        value = self.current()
        self.history.append(value)
        if self.log:
            self.log.write(f"{len(self.history) - 1:6d}  {value:.6g}\n")
            self.log.flush()
        if value <= self.threshold:
            self._above = False
            return
        self.triggered = True
        self.n_exceeded += 1
        if not self._above:  # the first frame of an excursion is saved; the next ones are like it
            import ase.io

            ase.io.write(self.save, self.atoms, append=self.save.exists())
            self.n_saved += 1
        self._above = True
        message = (f"model {self.label} {value:.4g} exceeds threshold {self.threshold:.4g} "
                   f"({self.quantity}); frame saved to {self.save}")
        if self.action == "stop":
            raise ExtrapolationError(message)
        self._unreported.append(value)
        now = time.monotonic()
        if now - self._last_warning >= self.warn_every:
            self._last_warning = now
            warnings.warn(self._pending_report(), RuntimeWarning, stacklevel=2)

    def _pending_report(self) -> str:
        values, self._unreported = self._unreported, []
        text = (f"model {self.label} {values[-1]:.4g} exceeds threshold {self.threshold:.4g} ({self.quantity}) at "
                f"check {len(self.history) - 1}")
        if len(values) > 1:
            text += f"; {len(values)} checks above it since the last warning (largest {max(values):.4g})"
        return (f"{text}; {self.n_exceeded} in all, first frame of each excursion saved to {self.save} "
                f"({self.n_saved} frames); warnings at most every {self.warn_every:g} s")

    def close(self) -> None:
        """Close the log and warn about exceedances not reported yet."""
        if self._unreported:
            warnings.warn(self._pending_report(), RuntimeWarning, stacklevel=2)
        if self.log:
            self.log.close()
            self.log = None
