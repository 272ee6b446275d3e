"""Transport MD of R independent replicas in one run: one batched model evaluation per step.

Green–Kubo statistics improve with the total simulated time; R replicas of one
structure (different seeds) advanced together give R times the time per step
at less than R times the cost, because one batched evaluation amortises the
per-call overhead (and uses the cores or a GPU better).  Called by
:func:`atomflux.md.run_transport_md` when ``replicas > 1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.velocitydistribution import Stationary

from .md import FLUX_UNITS, resume_point, thermalize, write_checkpoint
from .md_replicas import LangevinCoefficients, ReplicaForces, ReplicaState, langevin_step, temperatures, \
    velocities_per_fs, verlet_step
from .progress import progress as progress_reporter
from .records import finish_run, read_run, update_info


def replica_seeds(seed: int, n_replicas: int) -> list[int]:
    """Seed of each replica: ``seed + r`` (replica r is the single run ``--seed seed+r``)."""
    return [int(seed) + r for r in range(n_replicas)]


def run_replicas(atoms: Atoms, calculator, out: Path, *, n_replicas: int, temperature: float,
                 equilibration_steps: int, production_steps: int, timestep: float, friction: float, stride: int,
                 checkpoint_interval: int, seed: int, progress: bool) -> Path:
    """The replica run in the already opened run folder ``out`` (see :func:`atomflux.md.run_transport_md`).

    Files as for one replica, except ``flux.npz``: ``heat_flux`` [n, R, 3],
    ``species_velocity`` [n, R, n_species, 3], ``n_replicas`` = R and
    ``mean_temperature`` over all replicas; ``production.traj`` holds replica 0;
    ``checkpoint.npz`` the positions and momenta of all replicas.
    """
    state_file, checkpoint = out / "checkpoint.json", out / "checkpoint.npz"
    species = sorted(set(atoms.get_chemical_symbols()))
    symbols = np.array(atoms.get_chemical_symbols())
    masks = [symbols == s for s in species]
    masses = atoms.get_masses()
    generators = [np.random.default_rng(s) for s in replica_seeds(seed, n_replicas)]
    fluxes: list[np.ndarray] = []
    species_velocity: list[np.ndarray] = []
    status: dict[str, Any] = {"phase": "equilibration", "step": 0, "temperature_sum": 0.0}
    if state_file.is_file():
        status = json.loads(state_file.read_text())
        with np.load(checkpoint) as saved:
            state = ReplicaState(saved["positions"].copy(), saved["momenta"].copy())
        for generator, saved_state in zip(generators, status.get("rng") or []):
            generator.bit_generator.state = saved_state
        kept = resume_point(out, status, production_steps, equilibration_steps, stride, progress)
        if kept is None:
            return out / "flux.npz"
        fluxes, species_velocity = kept
    else:
        momenta = []
        for generator in generators:
            copy = atoms.copy()
            thermalize(copy, temperature, generator)
            momenta.append(copy.get_momenta())
        state = ReplicaState(np.repeat(atoms.positions[None], n_replicas, axis=0), np.array(momenta))
    update_info(out, production_steps=int(production_steps), checkpoint_interval=int(checkpoint_interval))
    provenance = json.dumps(read_run(out))
    compute_forces = ReplicaForces(calculator.potential, atoms, n_replicas,
                                   skin=calculator.neighbours.skin, min_distance=calculator.min_distance)
    forces = compute_forces(state.positions)
    pending: list[Atoms] = []
    temperature_sum = [float(status.get("temperature_sum", 0.0))]

    def save(phase: str, step: int) -> None:
        n = len(fluxes)
        arrays = dict(time=np.arange(n) * float(timestep),
                      heat_flux=np.array(fluxes, dtype=float).reshape(-1, n_replicas, 3),
                      species_velocity=np.array(species_velocity, dtype=float).reshape(-1, n_replicas,
                                                                                       len(species), 3),
                      n_replicas=n_replicas, species=np.array(species), volume=atoms.get_volume(),
                      temperature=float(temperature), timestep=float(timestep),
                      mean_temperature=temperature_sum[0] / n if n else float("nan"),
                      units=json.dumps(FLUX_UNITS), provenance=provenance)
        new = {"phase": phase, "step": step, "temperature_sum": temperature_sum[0],
               "rng": [g.bit_generator.state for g in generators] if phase == "equilibration" else None}
        write_checkpoint(out, pending, checkpoint,
                         lambda tmp: np.savez(tmp, positions=state.positions, momenta=state.momenta), arrays, new)

    label = f"{temperature:g} K, {n_replicas} replicas"
    if status["phase"] == "equilibration":
        coefficients = LangevinCoefficients.of(masses, timestep, temperature, friction)
        with progress_reporter(equilibration_steps, f"NVT equilibration {label}", unit="step",
                               initial=status["step"], enabled=progress) as bar:
            for step in range(status["step"] + 1, equilibration_steps + 1):
                forces = langevin_step(state, forces, compute_forces, masses, coefficients, generators)
                bar.update(1)
                if step % checkpoint_interval == 0 or step == equilibration_steps:
                    save("equilibration", step)
        for r in range(n_replicas):  # zero total momentum, as ASE's Stationary
            replica = _replica_atoms(atoms, state, r)
            Stationary(replica)
            state.momenta[r] = replica.get_momenta()
        status = {"phase": "production", "step": 0}
        save("production", 0)  # as one replica: the production checkpoint at step 0 holds no flux yet

    def record(step: int) -> None:
        if step < len(fluxes):  # already recorded (the first state of a resumed run)
            return
        if step != len(fluxes):
            raise RuntimeError(f"flux record would skip from step {len(fluxes) - 1} to {step}")
        fluxes.append(compute_forces.heat_flux(state.momenta))
        v = velocities_per_fs(state.momenta, masses)
        species_velocity.append(np.array([[v[r][m].sum(0) for m in masks] for r in range(n_replicas)]))
        temperature_sum[0] += float(temperatures(state.momenta, masses).mean())
        if step % stride == 0:
            frame = _replica_atoms(atoms, state, 0)
            energy = float(compute_forces.results.energy[0])
            frame.calc = SinglePointCalculator(frame, energy=energy, free_energy=energy, forces=forces[0].copy())
            pending.append(frame)

    start = status["step"]
    record(start)
    with progress_reporter(production_steps, f"NVE production {label}", unit="step", initial=start,
                           enabled=progress) as bar:
        for step in range(start + 1, production_steps + 1):
            forces = verlet_step(state, forces, compute_forces, masses, timestep)
            record(step)
            bar.update(1)
            if step % checkpoint_interval == 0 or step == production_steps:
                save("production", step)
                bar.set_postfix(T=f"{temperature_sum[0] / len(fluxes):.0f} K")
    save("done", production_steps)
    finish_run(out, {"production_steps": int(production_steps), "n_replicas": n_replicas,
                     "mean_temperature_K": temperature_sum[0] / len(fluxes)})
    return out / "flux.npz"


def _replica_atoms(atoms: Atoms, state: ReplicaState, r: int) -> Atoms:
    """Replica ``r`` as ASE ``Atoms`` (positions and momenta)."""
    replica = atoms.copy()
    replica.positions = state.positions[r]
    replica.set_momenta(state.momenta[r])
    return replica
