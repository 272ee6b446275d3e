"""Multiple time stepping: an expensive correction applied every k steps to a cheap model (impulse r-RESPA).

The forces are split as F = F_fast + (F_slow − F_fast): the cheap model
(``atoms.calc``: a model without rotational averaging, or one random rotation)
drives every inner velocity-Verlet step of length δt, and the difference to
the expensive model (``slow``: the rotationally averaged one) is applied as
two momentum kicks of k·δt/2 around every k inner steps::

    p += (kδt/2) ΔF(q);   k × velocity Verlet with F_fast and δt;   p += (kδt/2) ΔF(q)

(Tuckerman, Berne & Martyna, J. Chem. Phys. 97, 1990 (1992); used with the
averaged model as the slow part in arXiv:2406.17747).  The trajectory is
that of the expensive model, time-reversible and symplectic, as long as
kδt stays below the period of the fastest motion that ΔF changes — ΔF is
the (small, smooth) symmetry-breaking part, so k ≈ 4–10 is usually safe.
The conserved quantity is the kinetic energy plus the *slow* potential
energy (:meth:`MultipleTimeStepVerlet.conserved_energy`, at outer steps).

Worth it when one averaged evaluation costs much more than a cheap one:
per inner step it costs t_fast + (t_slow + t_fast)/k instead of t_slow, so a
K-rotation batched average (t_slow ≈ K·t_fast for small systems, less on
large batches) gets about min(k, K)-fold cheaper.  Not worth it when the
averaged model is already cheap (small K, or a GPU that batches the K
copies for free) or when the symmetry breaking itself is stiff.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.md.md import MolecularDynamics


class MultipleTimeStepVerlet(MolecularDynamics):
    """NVE impulse multiple-time-step integrator (see module doc); one ``step()`` = one outer step.

    Parameters
    ----------
    atoms
        The system; ``atoms.calc`` is the cheap (fast) calculator.
    timestep
        Inner time step δt in ASE time units (``2 * ase.units.fs``).
    slow
        The expensive calculator (e.g. :class:`~atomflux.symmetry.RotationalAverage`).
    interval
        k: inner steps per outer step (≥ 1; 1 is velocity Verlet with the slow forces).
    **kwargs
        Passed to :class:`ase.md.md.MolecularDynamics` (trajectory, logfile, loginterval);
        its ``dt`` is the outer step k·δt, so ``get_time`` and observer intervals count outer steps.

    Attributes
    ----------
    slow_calls : int
        Evaluations of the expensive model so far (one per outer step, plus one at the start).
    """

    def __init__(self, atoms: Atoms, timestep: float, slow: Calculator, interval: int = 5, **kwargs) -> None:
        if atoms.calc is None:
            raise ValueError("atoms.calc must be the cheap (fast) calculator of the multiple time stepping")
        if not (isinstance(interval, (int, np.integer)) and interval >= 1):
            raise ValueError(f"interval must be a whole number of inner steps ≥ 1, got {interval!r}")
        if timestep <= 0:
            raise ValueError(f"timestep must be > 0, got {timestep}")
        super().__init__(atoms, timestep * interval, **kwargs)
        self.inner_dt, self.interval, self.slow = float(timestep), int(interval), slow
        self.slow_calls = 0
        self._correction: np.ndarray | None = None
        self.slow_energy = float("nan")

    def _slow_correction(self, fast: np.ndarray) -> np.ndarray:
        """F_slow − F_fast at the current positions (eV/Å); also records the slow energy."""
        self.slow_calls += 1
        snapshot = self.atoms.copy()
        snapshot.calc = self.slow
        self.slow_energy = float(snapshot.get_potential_energy())
        return snapshot.get_forces() - fast

    def conserved_energy(self) -> float:
        """Kinetic energy plus the slow model's potential energy at the last outer step (eV)."""
        if self._correction is None:
            self._correction = self._slow_correction(self.atoms.get_forces(md=True))
        return self.atoms.get_kinetic_energy() + self.slow_energy

    def step(self, forces: np.ndarray | None = None) -> np.ndarray:
        atoms, masses = self.atoms, self.atoms.get_masses()[:, None]
        fast = atoms.get_forces(md=True) if forces is None else forces
        if self._correction is None:
            self._correction = self._slow_correction(fast)
        atoms.set_momenta(atoms.get_momenta() + 0.5 * self.dt * self._correction, apply_constraint=False)
        for _ in range(self.interval):
            p = atoms.get_momenta() + 0.5 * self.inner_dt * fast
            atoms.set_positions(atoms.get_positions() + self.inner_dt * p / masses)
            atoms.set_momenta(p, apply_constraint=False)
            fast = atoms.get_forces(md=True)
            atoms.set_momenta(atoms.get_momenta() + 0.5 * self.inner_dt * fast, apply_constraint=False)
        self._correction = self._slow_correction(fast)
        atoms.set_momenta(atoms.get_momenta() + 0.5 * self.dt * self._correction, apply_constraint=False)
        return fast
