"""Candidate structures: rattled and teacher-MD frames for round 0, student MD with its uncertainty later."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin

from ..md import check_md_settings, thermalize
from ..uncertainty.guard import ExtrapolationError, UncertaintyGuard
from .config import Condition


def strained(atoms: Atoms, strain: float) -> Atoms:
    """A copy with every cell edge (and the atoms with it) stretched by ``1 + strain``."""
    out = atoms.copy()
    out.calc = None
    if strain:
        out.set_cell(out.cell.array * (1.0 + strain), scale_atoms=True)
    return out


def rattled_frames(atoms: Atoms, condition: Condition, count: int, rattle: float,
                   rng: np.random.Generator) -> list[Atoms]:
    """``count`` copies of the strained structure with Gaussian displacements.

    The RMS displacement per Cartesian component is ``rattle`` (Å) at 300 K and
    grows as √(T/300 K), as thermal displacements of a harmonic crystal do.
    """
    base = strained(atoms, condition.strain)
    amplitude = rattle * np.sqrt(condition.temperature / 300.0)
    frames = []
    for _ in range(count):
        frame = base.copy()
        frame.positions += rng.normal(0.0, amplitude, frame.positions.shape)
        frames.append(frame)
    return frames


def _langevin(atoms: Atoms, calculator, condition: Condition, steps: int, interval: int, timestep: float,
              friction: float, rng: np.random.Generator) -> tuple[Atoms, Langevin]:
    """A strained, thermalised copy of ``atoms`` with ``calculator`` and its Langevin integrator
    (timestep fs, friction 1/fs), after checking the settings."""
    check_md_settings(steps=steps, timestep=timestep, temperature=condition.temperature, friction=friction,
                      interval=interval)
    work = strained(atoms, condition.strain)
    work.calc = calculator
    thermalize(work, condition.temperature, rng)
    dyn = Langevin(work, timestep * units.fs, temperature_K=condition.temperature, friction=friction / units.fs,
                   fixcm=False, rng=rng)
    return work, dyn


def md_frames(atoms: Atoms, calculator, condition: Condition, steps: int, interval: int, timestep: float,
              friction: float, rng: np.random.Generator) -> list[Atoms]:
    """Frames every ``interval`` steps of a Langevin run (timestep fs, friction 1/fs) with ``calculator``."""
    work, dyn = _langevin(atoms, calculator, condition, steps, interval, timestep, friction, rng)
    frames: list[Atoms] = []
    dyn.attach(lambda: frames.append(_snapshot(work)) if dyn.nsteps > 0 else None, interval=interval)
    dyn.run(steps)
    return frames


@dataclass
class Candidates:
    """Frames of a student's MD run and the student's uncertainty on each.

    Attributes
    ----------
    frames : list of Atoms
        Snapshots (positions, cell; no calculator).
    force_sigma : list of float
        Largest per-atom force σ norm of each frame, eV/Å (what the guard watches).
    energy_sigma : list of float
        Energy σ per atom of each frame, eV/atom.
    stopped_at : int or None
        The MD step at which the guard stopped the run, None when it ran to the end.
    """

    frames: list[Atoms] = field(default_factory=list)
    force_sigma: list[float] = field(default_factory=list)
    energy_sigma: list[float] = field(default_factory=list)
    stopped_at: int | None = None


def student_md(atoms: Atoms, calculator, condition: Condition, steps: int, interval: int, timestep: float,
               friction: float, stop_uncertainty: float, rng: np.random.Generator,
               extrapolation_file: str | Path) -> Candidates:
    """Langevin MD with the student, keeping a candidate frame and its uncertainty every ``interval`` steps.

    ``calculator`` must report ``forces_uncertainty`` (a shallow ensemble or LLPR).  The run stops early when
    the largest per-atom force σ exceeds ``stop_uncertainty`` (eV/Å) — the
    :class:`~atomflux.uncertainty.UncertaintyGuard`, which also writes that frame to ``extrapolation_file`` —
    and the frame is kept as a candidate: it is what the student knows least.
    """
    work, dyn = _langevin(atoms, calculator, condition, steps, interval, timestep, friction, rng)
    guard = UncertaintyGuard(work, stop_uncertainty, quantity="forces", action="stop", save=extrapolation_file)
    out = Candidates()

    def collect() -> None:
        if dyn.nsteps == 0:
            return
        out.frames.append(_snapshot(work))
        out.force_sigma.append(guard.current())
        out.energy_sigma.append(float(calculator.get_property("energy_uncertainty", work)) / len(work))
        guard()

    dyn.attach(collect, interval=interval)
    try:
        dyn.run(steps)
    except ExtrapolationError:
        out.stopped_at = int(dyn.nsteps)
    return out


def _snapshot(atoms: Atoms) -> Atoms:
    return Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
