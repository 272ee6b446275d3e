"""Molecular dynamics with ASE and any calculator: plain runs and resumable heat-flux (transport) runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.trajectory import Trajectory
from ase.md import MDLogger
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from .analysis.flux_io import ATOMFLUX_UNITS as FLUX_UNITS
from .heap import keep_freed_memory
from .progress import progress as progress_reporter
from .records import deferred_interrupts, finish_run, model_record, open_run, read_run, update_info, \
    write_atomically

ENSEMBLES = ("nve", "langevin")



def thermalize(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell–Boltzmann momenta at ``temperature`` (K) with zero total momentum."""
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)


def check_md_settings(*, steps: int | None = None, timestep: float | None = None,
                      temperature: float | None = None, thermostat: bool = True, friction: float | None = None,
                      **intervals: int | None) -> None:
    """Raise ``ValueError`` naming the first impossible MD setting.

    ``steps`` ≥ 1, ``timestep`` > 0 fs, ``temperature`` > 0 K (≥ 0 K without a
    thermostat: NVE may start at rest), ``friction`` > 0 1/fs, and every
    keyword in ``intervals`` (stride, checkpoint interval ...) ≥ 1 step.
    """
    def finite(value: float) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a whole number ≥ 1, got {steps}")
    if timestep is not None and not (finite(timestep) and timestep > 0):
        raise ValueError(f"timestep must be > 0 fs, got {timestep}")
    if temperature is not None:
        lowest = "> 0 K (a thermostat needs a target)" if thermostat else "≥ 0 K"
        if not finite(temperature) or temperature < 0 or (thermostat and temperature == 0):
            raise ValueError(f"temperature must be {lowest}, got {temperature}")
    if friction is not None and not (finite(friction) and friction > 0):
        raise ValueError(f"friction must be > 0 1/fs, got {friction}")
    for name, value in intervals.items():
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name.replace('_', ' ')} must be a whole number of steps ≥ 1, got {value}")


def run_md(atoms: Atoms, calculator, temperature: float = 300.0, steps: int = 1000, timestep: float = 2.0,
           ensemble: str = "langevin", friction: float = 0.02, trajectory: str | Path | None = None,
           logfile: str | Path | None = None, interval: int = 10, seed: int = 0,
           progress: bool = True, observers: tuple = ()) -> dict[str, Any]:
    """Run MD on ``atoms`` in place.

    Parameters
    ----------
    temperature : float
        Initial (Maxwell–Boltzmann) and, for Langevin, target temperature, K.
    steps : int
        Number of MD steps (≥ 1).
    timestep : float
        fs.
    ensemble : {"nve", "langevin"}
    friction : float
        Langevin friction, 1/fs.
    trajectory, logfile : path, optional
        ASE trajectory and MD log, written every ``interval`` steps (overwritten).
    observers : sequence of callables
        Also called every ``interval`` steps (e.g. an
        :class:`~atomflux.uncertainty.UncertaintyGuard`).
    progress : bool
        A progress bar in a terminal, status lines otherwise (see :mod:`atomflux.progress`).

    Returns
    -------
    dict
        Summary: ensemble, steps, mean temperature (K), final potential energy
        (eV), wall time per step and, for NVE only, the total-energy drift
        (eV/atom over the run; a thermostat exchanges energy, so a drift would
        mean nothing there).
    """
    import time

    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    check_md_settings(steps=steps, timestep=timestep, temperature=temperature, thermostat=ensemble == "langevin",
                      friction=friction if ensemble == "langevin" else None, interval=interval)
    keep_freed_memory()  # any calculator: each step's freed tensors stay mapped for the next
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
    logger = None
    if logfile:
        logger = MDLogger(dyn, atoms, str(logfile), header=True, stress=False, peratom=True, mode="w")
        dyn.attach(logger, interval=interval)
    for observer in observers:
        dyn.attach(observer, interval=interval)
    temps, etot = [], []

    def record() -> None:
        temps.append(atoms.get_temperature())
        etot.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    dyn.attach(record, interval=1)
    bar = progress_reporter(steps, f"MD {ensemble} {temperature:g} K", unit="step", enabled=progress)
    dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)
    start = time.perf_counter()
    try:
        dyn.run(steps)
    finally:
        bar.close()
        if traj is not None:
            traj.close()
        if logger is not None:
            logger.close()
    elapsed = time.perf_counter() - start
    summary: dict[str, Any] = {"ensemble": ensemble, "steps": steps, "mean_temperature_K": float(np.mean(temps))}
    if ensemble == "nve":
        summary["energy_drift_eV_per_atom"] = float((etot[-1] - etot[0]) / len(atoms))
    summary.update({"final_potential_energy_eV": float(atoms.get_potential_energy()),
                    "seconds_per_step": elapsed / steps})
    return summary


def _advance(dyn, done: int, total: int, every: int, checkpoint, bar) -> None:
    """Advance ``dyn`` from step ``done`` to ``total``; ``checkpoint(step)`` at every multiple of ``every`` and at the end.

    ``bar`` (see :func:`atomflux.progress.progress`) counts every step.
    """
    dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)
    while done < total:
        chunk = min(every - done % every, total - done)
        dyn.run(chunk)
        done += chunk
        checkpoint(done)


def _frame(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` for the trajectory: positions, momenta, cell and the energy/forces just computed."""
    frame = atoms.copy()
    results = {k: v for k, v in atoms.calc.results.items() if k in ("energy", "free_energy", "forces", "stress")}
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


def _keep_frames(path: Path, keep: int) -> None:
    """Make the trajectory ``path`` hold exactly its first ``keep`` frames (refuse when it has fewer)."""
    if keep == 0:
        path.unlink(missing_ok=True)
        return
    if not path.is_file():
        raise ValueError(f"{path} is missing but the checkpoint says it holds {keep} frames; pass --restart "
                         "(restart=True) to run again")
    with Trajectory(str(path)) as reader:
        n = len(reader)
        if n == keep:
            return
        if n < keep:
            raise ValueError(f"{path} holds {n} frames but the checkpoint needs {keep}: the file was damaged; "
                             "pass --restart (restart=True) to run again")
        frames = [reader[k] for k in range(keep)]

    def write(tmp: Path) -> None:
        with Trajectory(str(tmp), "w") as writer:
            for frame in frames:
                writer.write(frame)

    write_atomically(path, write)


def transport_status(output: str | Path) -> str:
    """One line on what a transport run folder holds (for messages after an interruption)."""
    state_file = Path(output) / "checkpoint.json"
    if not state_file.is_file():
        return f"nothing saved yet in {output} (the first checkpoint had not been reached)"
    state = json.loads(state_file.read_text())
    if state["phase"] == "done":
        return f"{output} holds the finished run ({state['step']} production steps)"
    return f"checkpoint in {output} at {state['phase']} step {state['step']}"


def resume_point(out: Path, state: dict[str, Any], production_steps: int, equilibration_steps: int, stride: int,
                 progress: bool) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Check a transport run's checkpoint ``state`` against the steps asked for; cut its trajectory back.

    Returns the heat fluxes and species velocity sums of ``flux.npz`` up to the
    checkpoint (lists, one entry per production step; empty before production),
    or ``None`` when the folder already holds the finished run.  A finished run
    asked for more production steps continues (``state["phase"]`` becomes
    ``"production"``); fewer steps, or a missing or shortened flux file, are
    refused with a ``ValueError``.
    """
    if state["phase"] == "done":
        if production_steps == state["step"]:
            if progress:
                print(f"{out} already holds this run, finished ({production_steps} production steps)")
            return None
        if production_steps < state["step"]:
            raise ValueError(f"{out} already holds {state['step']} production steps (asked for "
                             f"{production_steps}); analyse the first {production_steps} steps of its flux.npz, "
                             "or start a new run in another folder")
        state["phase"] = "production"
    elif state["phase"] == "production" and production_steps < state["step"]:
        raise ValueError(f"{out} is already at production step {state['step']} (asked for {production_steps} "
                         "steps in all); ask for at least that many, or start a new run in another folder")
    keep = state["step"] + 1 if state["phase"] == "production" and state["step"] > 0 else 0
    fluxes, species_velocity = [], []
    if (out / "flux.npz").is_file() and keep:
        with np.load(out / "flux.npz") as data:
            if len(data["heat_flux"]) < keep:
                raise ValueError(f"{out / 'flux.npz'} holds {len(data['heat_flux'])} steps but the checkpoint "
                                 f"needs {keep}: the file was damaged; pass --restart (restart=True)")
            fluxes, species_velocity = list(data["heat_flux"][:keep]), list(data["species_velocity"][:keep])
    elif keep:
        raise ValueError(f"{out / 'flux.npz'} is missing but the checkpoint is at production step "
                         f"{state['step']}; pass --restart (restart=True) to run again")
    _keep_frames(out / "production.traj", state["step"] // stride + 1 if keep else 0)
    if progress:
        print(f"resuming {out}: {state['phase']} step {state['step']} "
              f"(of {equilibration_steps if state['phase'] == 'equilibration' else production_steps})")
    return fluxes, species_velocity


def write_checkpoint(out: Path, frames: list[Atoms], checkpoint: Path, write_positions, flux: dict[str, Any],
                     state: dict[str, Any]) -> None:
    """One checkpoint of a transport run in ``out``, with Ctrl-C deferred until all of it is written.

    ``frames`` (trajectory frames since the last checkpoint) are appended to
    ``production.traj`` and cleared; then ``checkpoint`` (written by
    ``write_positions(path)``), ``flux.npz`` (the arrays ``flux``) and
    ``checkpoint.json`` (``state``) are each replaced atomically.
    """
    with deferred_interrupts():
        if frames:
            with Trajectory(str(out / "production.traj"), "a") as traj:
                for frame in frames:
                    traj.write(frame)
            frames.clear()
        write_atomically(checkpoint, write_positions)
        write_atomically(out / "flux.npz", lambda tmp: np.savez(tmp, **flux))
        write_atomically(out / "checkpoint.json", lambda tmp: tmp.write_text(json.dumps(state)))


def run_transport_md(atoms: Atoms, calculator, output: str | Path, temperature: float = 300.0,
                     equilibration_steps: int = 1000, production_steps: int = 10000, timestep: float = 2.0,
                     friction: float = 0.02, stride: int = 10, checkpoint_interval: int = 1000, seed: int = 0,
                     progress: bool = True, restart: bool = False, model_spec: str | Path | None = None,
                     replicas: int = 1) -> Path:
    """NVT (Langevin) equilibration, then NVE production recording the heat flux every step.

    Written into ``output`` (a folder):

    - ``run.json``: the record of the run (structure and model fingerprints,
      settings, atomflux version; see :mod:`atomflux.records`);
    - ``flux.npz`` (see ``FLUX_SCHEMA``): ``time`` (fs, uniform, each production
      step once), ``heat_flux`` [n, 3] (eV·Å/fs, not divided by volume),
      ``species_velocity`` [n, n_species, 3] (Σ of velocities per species,
      Å/fs: the coupled mass fluxes for multicomponent Green–Kubo),
      ``species``, ``volume`` (Å³), ``temperature`` (K, target),
      ``mean_temperature`` (K, production), ``timestep`` (fs), ``units`` and
      ``provenance`` (JSON texts: units of each array; the run record);
    - ``production.traj``: positions, momenta, energy and forces every ``stride``
      production steps (frames at steps 0, stride, 2·stride ...);
    - ``checkpoint.traj`` (``checkpoint.npz`` with replicas) + ``checkpoint.json``: state every
      ``checkpoint_interval`` steps.  Calling again with the same ``output`` and
      the same settings resumes from there, exactly: the thermostat's random
      state is saved, and flux and trajectory are cut back to the checkpoint, so
      an interrupted and resumed run writes the same files as an uninterrupted
      one.  A larger ``production_steps`` extends a finished run.  Other
      settings, another structure or model are refused (:class:`~atomflux.records.RunMismatch`)
      unless ``restart=True``, which moves the old folder aside.

    Parameters
    ----------
    temperature : float
        Target temperature, K (> 0).
    equilibration_steps, production_steps : int
        NVT and NVE steps (≥ 0 and ≥ 1).
    timestep : float
        fs.
    friction : float
        Langevin friction, 1/fs.
    stride, checkpoint_interval : int
        Steps between trajectory frames and between checkpoints (≥ 1).
    model_spec : str or Path, optional
        How the model was named (file or shipped name), for the record.
    replicas : int
        R ≥ 1 independent replicas of the structure, replica r with seed
        ``seed + r`` (so replica r is the single run with that seed, to the
        rounding of the batched model evaluation), advanced together with one
        batched model evaluation per step (:mod:`atomflux.transport_replicas`).
        With R > 1, ``heat_flux`` is [n, R, 3], ``species_velocity``
        [n, R, n_species, 3], ``n_replicas`` = R, ``mean_temperature`` the mean
        over replicas, and ``production.traj`` holds replica 0.

    Returns
    -------
    Path of ``flux.npz``.
    """
    check_md_settings(steps=production_steps, timestep=timestep, temperature=temperature, friction=friction,
                      stride=stride, checkpoint_interval=checkpoint_interval)
    if int(equilibration_steps) != equilibration_steps or equilibration_steps < 0:
        raise ValueError(f"equilibration steps must be a whole number ≥ 0, got {equilibration_steps}")
    if not hasattr(calculator, "heat_flux"):
        raise ValueError("transport MD needs an AtomfluxCalculator (it provides the heat flux)")
    if getattr(getattr(calculator, "potential", None), "long_range", False):
        from .evaluate import LONG_RANGE_REFUSAL

        raise ValueError(LONG_RANGE_REFUSAL.format(what="the heat flux"))
    if int(replicas) != replicas or replicas < 1:
        raise ValueError(f"replicas must be a whole number ≥ 1, got {replicas}")
    from ase.io import read

    from .records import fingerprint

    keep_freed_memory()  # each step's freed tensors stay mapped for the next (any calculator)
    atoms = atoms.copy()  # the caller's structure stays as given (it identifies the run on resume)
    atoms.calc = calculator
    atoms.get_potential_energy()  # unknown elements, overlapping atoms ...: refused before the folder is touched
    out = Path(output)
    parameters = {"structure": fingerprint(atoms), "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
                  "temperature_K": float(temperature), "timestep_fs": float(timestep),
                  "equilibration_steps": int(equilibration_steps), "friction_per_fs": float(friction),
                  "stride": int(stride), "seed": int(seed), "dtype": str(getattr(calculator, "dtype", ""))}
    if replicas > 1:  # absent for one replica: folders of earlier versions resume
        parameters["replicas"] = int(replicas)
    info = {"production_steps": int(production_steps), "checkpoint_interval": int(checkpoint_interval)}
    open_run(out, "md --transport", parameters, model_record(model_spec, calculator), info, restart=restart)
    if replicas > 1:
        from .transport_replicas import run_replicas

        return run_replicas(atoms, calculator, out, n_replicas=int(replicas), temperature=temperature,
                            equilibration_steps=equilibration_steps, production_steps=production_steps,
                            timestep=timestep, friction=friction, stride=stride,
                            checkpoint_interval=checkpoint_interval, seed=seed, progress=progress)
    state_file, checkpoint = out / "checkpoint.json", out / "checkpoint.traj"
    species = sorted(set(atoms.get_chemical_symbols()))
    fluxes: list[np.ndarray] = []
    species_velocity: list[list[np.ndarray]] = []
    state: dict[str, Any] = {"phase": "equilibration", "step": 0, "temperature_sum": 0.0}
    rng = np.random.default_rng(seed)
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        atoms = read(checkpoint)
        if state.get("rng"):
            rng.bit_generator.state = state["rng"]
        kept = resume_point(out, state, production_steps, equilibration_steps, stride, progress)
        if kept is None:
            return out / "flux.npz"
        fluxes, species_velocity = kept
    update_info(out, **info)
    provenance = json.dumps(read_run(out))
    calculator.track_heat_flux = True  # flux data at every force call: no second model evaluation per step
    atoms.calc = calculator
    if state["phase"] == "equilibration" and state["step"] == 0:
        thermalize(atoms, temperature, rng)
    symbols = np.array(atoms.get_chemical_symbols())
    masks = [symbols == s for s in species]
    pending: list[Atoms] = []  # trajectory frames since the last checkpoint, written with it
    temperature_sum = [float(state.get("temperature_sum", 0.0))]

    def save(phase: str, step: int) -> None:
        if len(fluxes) != (step + 1 if phase != "equilibration" and (step > 0 or fluxes) else 0):
            raise RuntimeError(f"flux record out of step: {len(fluxes)} entries at {phase} step {step}")
        n = len(fluxes)
        arrays = dict(time=np.arange(n) * float(timestep), heat_flux=np.array(fluxes, dtype=float).reshape(-1, 3),
                      species_velocity=np.array(species_velocity, dtype=float).reshape(-1, len(species), 3),
                      species=np.array(species), volume=atoms.get_volume(), temperature=float(temperature),
                      timestep=float(timestep),
                      mean_temperature=temperature_sum[0] / n if n else float("nan"),
                      units=json.dumps(FLUX_UNITS), provenance=provenance)
        new_state = {"phase": phase, "step": step, "temperature_sum": temperature_sum[0],
                     "rng": rng.bit_generator.state if phase == "equilibration" else None}
        write_checkpoint(out, pending, checkpoint, lambda tmp: atoms.write(tmp, format="traj"), arrays, new_state)

    if state["phase"] == "equilibration":
        dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs,
                       fixcm=False, rng=rng)
        with progress_reporter(equilibration_steps, f"NVT equilibration {temperature:g} K", unit="step",
                               initial=state["step"], enabled=progress) as bar:
            _advance(dyn, state["step"], equilibration_steps, checkpoint_interval,
                     lambda done: save("equilibration", done), bar)
        Stationary(atoms)
        state = {"phase": "production", "step": 0}
        save("production", 0)
    dyn = VelocityVerlet(atoms, timestep * units.fs)
    start = state["step"]

    def record() -> None:
        step = start + dyn.nsteps
        if step < len(fluxes):  # already recorded (the first call of a resumed run)
            return
        if step != len(fluxes):
            raise RuntimeError(f"flux record would skip from step {len(fluxes) - 1} to {step}")
        fluxes.append(calculator.heat_flux(atoms))
        v = atoms.get_velocities() * units.fs
        species_velocity.append([v[m].sum(0) for m in masks])
        temperature_sum[0] += atoms.get_temperature()
        if step % stride == 0:
            pending.append(_frame(atoms))

    dyn.attach(record, interval=1)
    with progress_reporter(production_steps, f"NVE production {temperature:g} K", unit="step", initial=start,
                           enabled=progress) as bar:
        def checkpoint_production(done: int) -> None:
            save("production", done)
            bar.set_postfix(T=f"{temperature_sum[0] / len(fluxes):.0f} K")

        _advance(dyn, start, production_steps, checkpoint_interval, checkpoint_production, bar)
    save("done", production_steps)
    finish_run(out, {"production_steps": int(production_steps),
                     "mean_temperature_K": temperature_sum[0] / len(fluxes)})
    return out / "flux.npz"
