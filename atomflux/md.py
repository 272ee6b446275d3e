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
           progress: bool = True, observers: tuple = ()) -> dict[str, float]:
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
    observers : sequence of callables
        Also called every ``interval`` steps (e.g. an
        :class:`~atomflux.uncertainty.UncertaintyGuard`).

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
    for observer in observers:
        dyn.attach(observer, interval=interval)
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


def _run_in_chunks(dyn, done: int, total: int, chunk_size: int, checkpoint, label: str, progress: bool) -> None:
    """Advance ``dyn`` from step ``done`` to ``total``, calling ``checkpoint(step)`` after every chunk."""
    with tqdm(total=total, initial=done, desc=label, unit="step", disable=None if progress else True) as bar:
        while done < total:
            chunk = min(chunk_size, total - done)
            dyn.run(chunk)
            done += chunk
            bar.update(chunk)
            checkpoint(done)


def run_transport_md(atoms: Atoms, calculator, output: str | Path, temperature: float = 300.0,
                     equilibration_steps: int = 1000, production_steps: int = 10000, timestep: float = 2.0,
                     friction: float = 0.02, stride: int = 10, checkpoint_interval: int = 1000, seed: int = 0,
                     progress: bool = True) -> Path:
    """NVT (Langevin) equilibration, then NVE production recording the heat flux every step.

    Written into ``output`` (a folder):

    - ``flux.npz``: ``time`` (fs), ``heat_flux`` [n, 3] (eV·Å/fs, not divided by
      volume), ``species_velocity`` [n, n_species, 3] (Σ of velocities per
      species, Å/fs: the coupled mass fluxes for multicomponent Green–Kubo),
      ``species``, ``volume`` (Å³), ``temperature`` (K, target),
      ``mean_temperature`` (K, production), ``timestep`` (fs);
    - ``production.traj``: positions and velocities every ``stride`` steps;
    - ``checkpoint.traj`` + ``checkpoint.json``: state every
      ``checkpoint_interval`` steps; calling again with the same ``output``
      resumes from there (the finished phases are not redone).

    Returns the path of ``flux.npz``.
    """
    import json

    from ase.io import read

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    state_file, checkpoint = out / "checkpoint.json", out / "checkpoint.traj"
    state = {"phase": "equilibration", "step": 0}
    species = sorted(set(atoms.get_chemical_symbols()))
    time_fs, fluxes, species_velocity = [], [], []
    if state_file.is_file() and checkpoint.is_file():
        state = json.loads(state_file.read_text())
        atoms = read(checkpoint)
        if (out / "flux.npz").is_file():
            with np.load(out / "flux.npz") as data:
                time_fs, fluxes = list(data["time"]), list(data["heat_flux"])
                species_velocity = list(data["species_velocity"])
    if not hasattr(calculator, "heat_flux"):
        raise ValueError("transport MD needs an AtomfluxCalculator (it provides the heat flux)")
    calculator.track_heat_flux = True  # flux data at every force call: no second model evaluation per step
    atoms.calc = calculator
    rng = np.random.default_rng(seed + state["step"])
    if state["phase"] == "equilibration" and state["step"] == 0:
        thermalize(atoms, temperature, rng)
    symbols = np.array(atoms.get_chemical_symbols())
    masks = [symbols == s for s in species]

    def save(phase: str, step: int) -> None:
        atoms.write(checkpoint)
        np.savez(out / "flux.npz", time=np.array(time_fs), heat_flux=np.array(fluxes).reshape(-1, 3),
                 species_velocity=np.array(species_velocity).reshape(-1, len(species), 3), species=np.array(species),
                 volume=atoms.get_volume(), temperature=temperature, timestep=timestep,
                 mean_temperature=float(np.mean(temps)) if temps else float("nan"))
        state_file.write_text(json.dumps({"phase": phase, "step": step}))

    temps: list[float] = []
    if state["phase"] == "equilibration":
        dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs,
                       fixcm=False, rng=rng)
        _run_in_chunks(dyn, state["step"], equilibration_steps, checkpoint_interval,
                       lambda done: save("equilibration", done), f"NVT {temperature:g} K", progress)
        state = {"phase": "production", "step": 0}
        save("production", 0)
    if state["phase"] == "production":
        Stationary(atoms)
        dyn = VelocityVerlet(atoms, timestep * units.fs)
        start = state["step"]
        traj = Trajectory(str(out / "production.traj"), "a" if start else "w", atoms)
        last = [start if start else -1]  # on resume, step `start` is already recorded

        def record() -> None:
            step = start + dyn.nsteps
            if step <= last[0]:
                return
            last[0] = step
            time_fs.append(step * timestep)
            fluxes.append(calculator.heat_flux(atoms))
            v = atoms.get_velocities() * units.fs
            species_velocity.append([v[m].sum(0) for m in masks])
            temps.append(atoms.get_temperature())
            if step % stride == 0:
                traj.write()

        dyn.attach(record, interval=1)
        _run_in_chunks(dyn, start, production_steps, checkpoint_interval, lambda done: save("production", done),
                       "NVE production", progress)
        traj.close()
        save("done", production_steps)
    return out / "flux.npz"
