"""Molecular dynamics with ASE and any calculator, with a progress bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io.trajectory import Trajectory
from ase.md import MDLogger
from ase.md.langevin import Langevin
from ase.md import velocitydistribution
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet
from tqdm.auto import tqdm

ENSEMBLES = ("nve", "langevin")


def thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell–Boltzmann momenta at ``temperature`` (K) with zero total momentum."""
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)


def run_md(atoms: Atoms, calculator, temperature: float = 300.0, steps: int = 1000, timestep: float = 2.0,
           ensemble: str = "langevin", friction: float = 0.02, trajectory: str | Path | None = None,
           logfile: str | Path | None = None, interval: int = 10, seed: int = 0,
           progress: bool = True) -> dict[str, float]:
    """Run MD on ``atoms`` in place.

    Parameters
    ----------
    temperature : float
        Initial (Maxwell–Boltzmann) and, for Langevin, target temperature, K.
    steps : int
        Number of MD steps.
    timestep : float
        fs.
    ensemble : {"nve", "langevin"}
    friction : float
        Langevin friction, 1/fs.
    trajectory, logfile : path, optional
        ASE trajectory and MD log, written every ``interval`` steps.

    Returns
    -------
    dict
        Summary: mean temperature (K), total-energy drift (eV/atom over the
        run), final potential energy (eV), wall time per step.
    """
    import time

    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if steps < 0 or timestep <= 0:
        raise ValueError("steps must be >= 0 and timestep > 0")
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize(atoms, temperature, rng)
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep * units.fs)
    else:
        dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs,
                       fixcm=False, rng=rng)
    traj = Trajectory(str(trajectory), "w", atoms) if trajectory else None
    if traj is not None:
        dyn.attach(traj.write, interval=interval)
    if logfile:
        dyn.attach(MDLogger(dyn, atoms, str(logfile), header=True, stress=False, peratom=True, mode="w"),
                   interval=interval)
    temps, etot = [], []

    def record() -> None:
        temps.append(atoms.get_temperature())
        etot.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    dyn.attach(record, interval=1)
    bar = tqdm(total=steps, desc=f"MD {ensemble} {temperature:g} K", unit="step", disable=None if progress else True)
    dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)
    start = time.perf_counter()
    try:
        dyn.run(steps)
    finally:
        bar.close()
        if traj is not None:
            traj.close()
    elapsed = time.perf_counter() - start
    return {"mean_temperature_K": float(np.mean(temps)), "energy_drift_eV_per_atom": float((etot[-1] - etot[0]) / len(atoms)),
            "final_potential_energy_eV": float(atoms.get_potential_energy()),
            "seconds_per_step": elapsed / max(steps, 1)}
