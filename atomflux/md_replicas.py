"""R replicas of one structure advanced in lockstep: one batched :func:`~atomflux.evaluate.evaluate` per step.

The integrators are ASE's, written for arrays [R, N, 3]: :func:`langevin_step`
is ``ase.md.langevin.Langevin`` (``fixcm=False``) and :func:`verlet_step` is
``ase.md.verlet.VelocityVerlet``, operation for operation and in the same
order, so replica r follows, to the rounding of the force evaluation, the
trajectory ASE would give it alone with the same random generator.  State is
kept as ASE keeps it: positions (Å) and momenta (amu·Å/ASE time unit),
velocities formed as momenta / masses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import Atoms, units

from .evaluate import Results, convective_heat_flux, evaluate, heat_flux, unfolded_heat_flux
from .heap import keep_freed_memory
from .systems import Batch, VerletList, check_atoms, pairs_within


@dataclass
class ReplicaState:
    """Positions [R, N, 3] (Å) and momenta [R, N, 3] (ASE units) of R replicas of one structure."""

    positions: np.ndarray
    momenta: np.ndarray

    @property
    def n_replicas(self) -> int:
        return int(self.positions.shape[0])


class ReplicaForces:
    """Forces, per-atom energies and receiver virials of R replicas from one batched evaluation.

    Each replica keeps its own :class:`~atomflux.systems.VerletList` (pairs
    searched within cutoff + skin, in canonical order, reused until an atom of
    that replica moved more than skin/2); at each call the candidate pairs of
    all replicas are filtered to the cutoff at once and the replicas are
    evaluated as one batch, so the Python work per step does not grow with R
    (apart from the displacement test of each list).

    Parameters
    ----------
    potential
        Any potential :func:`~atomflux.evaluate.evaluate` gives the heat flux of
        (strictly local, or message passing with an ``interaction_range``).
    atoms
        The structure (cell, periodicity, elements; positions are replaced at each call).
    n_replicas
        R ≥ 1.
    skin, min_distance
        Neighbour-list skin and overlap threshold, Å.
    """

    def __init__(self, potential: torch.nn.Module, atoms: Atoms, n_replicas: int, skin: float = 1.0,
                 min_distance: float = 0.3) -> None:
        potential.check_species(atoms.numbers)
        check_atoms(atoms)  # the cell and periodicity, the same for every replica
        self.potential = potential
        self.masses = atoms.get_masses()
        self.min_distance = float(min_distance)
        self._atoms = [Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                       for _ in range(n_replicas)]
        self._lists = [VerletList(potential.cutoff, skin, torch.float64, "cpu", min_distance)
                       for _ in range(n_replicas)]
        n = len(atoms)
        self._numbers = np.tile(atoms.numbers, n_replicas)
        self._template = Batch(positions=torch.zeros(n * n_replicas, 3, dtype=torch.float64),
                            numbers=torch.from_numpy(self._numbers),
                            cell=torch.tensor(atoms.cell.array, dtype=torch.float64).expand(n_replicas, 3, 3).clone(),
                            pbc=torch.tensor(atoms.pbc).expand(n_replicas, 3).clone(),
                            system=torch.arange(n_replicas).repeat_interleave(n),
                            pairs=torch.zeros(0, 2, dtype=torch.long), shifts=torch.zeros(0, 3, dtype=torch.float64),
                            cutoff=float(potential.cutoff))
        self._searched: list[Batch | None] = [None] * n_replicas
        self._candidates: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.batch: Batch | None = None
        self.results: Results | None = None
        keep_freed_memory()  # each step frees R × the tensors of one replica: keep them for the next

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Forces [R, N, 3] (eV/Å) at ``positions`` [R, N, 3] (Å); energies and receiver virials kept."""
        if not np.isfinite(positions).all():
            r = int(np.flatnonzero(~np.isfinite(positions).reshape(len(positions), -1).all(axis=1))[0])
            raise ValueError(f"positions contain NaN or inf in replica {r}: the run has blown up (try a smaller "
                             "timestep, and check that the structure is within the model's training range)")
        searched = []
        for r, (atoms, neighbours, x) in enumerate(zip(self._atoms, self._lists, positions)):
            atoms.positions = x
            try:
                searched.append(neighbours.candidates(atoms))
            except ValueError as err:  # overlapping atoms found by a new search
                raise ValueError(f"replica {r}: {err}") from None
        if any(a is not b for a, b in zip(searched, self._searched)):
            self._collate_candidates(searched)
        pairs, shifts, offsets = self._candidates
        flat = torch.from_numpy(positions.reshape(-1, 3))
        inside = pairs_within(flat, pairs, offsets, self._template.cutoff, self.min_distance, self._numbers,
                              atoms_per_system=positions.shape[1], label="replica")
        self.batch = replace(self._template, positions=flat.clone(), pairs=pairs.index_select(0, inside),
                             shifts=shifts.index_select(0, inside))
        local = getattr(self.potential, "strictly_local", False)  # message passing: the flux vector later
        self.results = evaluate(self.potential, self.batch, forces=True, energies=True, flux_virials=local)
        return self.results.forces.numpy().reshape(positions.shape)

    def _collate_candidates(self, searched: list[Batch]) -> None:
        """Pairs, shifts and cell offsets of the replicas' candidate lists, in canonical order, replica after replica."""
        ordered = [canonical_pair_order(b) for b in searched]
        n = len(self._atoms[0])
        pairs = torch.cat([b.pairs + r * n for r, b in enumerate(ordered)])
        shifts = torch.cat([b.shifts for b in ordered])
        self._candidates = (pairs, shifts, shifts @ self._template.cell[0])
        self._searched = searched

    def heat_flux(self, momenta: np.ndarray) -> np.ndarray:
        """Heat flux [R, 3] (eV·Å/fs, not divided by volume) at the last positions with ``momenta`` [R, N, 3]."""
        velocities = torch.from_numpy(velocities_per_fs(momenta, self.masses).reshape(-1, 3))
        masses = torch.from_numpy(np.tile(self.masses, len(momenta)))
        if self.results.flux_virials is None:  # message passing: through the unfolded system, with these velocities
            flux = convective_heat_flux(self.results.energies, velocities, masses, self.batch)
            return (flux + unfolded_heat_flux(self.potential, self.batch, velocities)).numpy()
        total, _ = heat_flux(self.results.energies, self.results.flux_virials, velocities, masses, self.batch)
        return total.numpy()


def canonical_pair_order(batch: Batch) -> Batch:
    """``batch`` with its pairs sorted by (i, j, cell shift).

    The order of a reused neighbour list depends on where the atoms were at
    its last search, and the order of the sums over pairs sets their rounding;
    in a fixed order the forces depend on the positions alone, so a run
    resumed from a checkpoint (fresh lists) continues bit for bit.
    """
    shifts = batch.shifts.round().long()
    span = int(shifts.abs().max()) * 2 + 1 if len(shifts) else 1
    code = ((shifts[:, 0] + span // 2) * span + shifts[:, 1] + span // 2) * span + shifts[:, 2] + span // 2
    n = len(batch.numbers)
    key = (batch.pairs[:, 0] * n + batch.pairs[:, 1]) * span**3 + code
    order = torch.argsort(key)
    return replace(batch, pairs=batch.pairs.index_select(0, order), shifts=batch.shifts.index_select(0, order))


def velocities_per_fs(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Velocities in Å/fs from momenta [R, N, 3] (ASE units) and masses [N] (amu), as ASE forms them."""
    return momenta / masses[:, np.newaxis] * units.fs


def temperatures(momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Kinetic temperature of each replica, K [R] (3N degrees of freedom, as ``Atoms.get_temperature``)."""
    velocities = momenta / masses[:, np.newaxis]
    return np.array([2 * (0.5 * np.vdot(p, v)) / (3 * len(masses) * units.kB) for p, v in zip(momenta, velocities)])


@dataclass(frozen=True)
class LangevinCoefficients:
    """The constants of ASE's Langevin propagator (Vanden-Eijnden & Ciccotti) for one set of masses.

    ``dt`` in ASE time units, ``c1``/``c2`` scalars, ``c3``/``c4``/``c5`` [N, 1].
    """

    dt: float
    c1: float
    c2: float
    c3: np.ndarray
    c4: np.ndarray
    c5: np.ndarray

    @classmethod
    def of(cls, masses: np.ndarray, timestep: float, temperature: float, friction: float) -> "LangevinCoefficients":
        """From masses [N] (amu), timestep (fs), temperature (K) and friction (1/fs)."""
        dt, kt, fr = timestep * units.fs, units.kB * temperature, friction / units.fs
        sigma = np.sqrt(2 * kt * fr / masses[:, None])
        c5 = dt**1.5 * sigma / (2 * np.sqrt(3))
        return cls(dt=dt, c1=dt / 2.0 - dt * dt * fr / 8.0, c2=dt * fr / 2 - dt * dt * fr * fr / 8.0,
                   c3=np.sqrt(dt) * sigma / 2.0 - dt**1.5 * fr * sigma / 8.0, c4=fr / 2.0 * c5, c5=c5)


def langevin_step(state: ReplicaState, forces: np.ndarray, compute_forces, masses: np.ndarray,
                  c: LangevinCoefficients, generators: list[np.random.Generator]) -> np.ndarray:
    """One Langevin step of every replica in place; returns the forces at the new positions.

    Replica r draws its noise from ``generators[r]`` exactly as ASE's
    ``Langevin`` does (ξ then η, each [N, 3]).
    """
    m = masses[:, np.newaxis]
    v = state.momenta / m
    noise = [(g.standard_normal(size=m.shape[:1] + (3,)), g.standard_normal(size=m.shape[:1] + (3,)))
             for g in generators]
    xi, eta = np.array([n[0] for n in noise]), np.array([n[1] for n in noise])
    rnd_pos = c.c5 * eta
    rnd_vel = c.c3 * xi - c.c4 * eta
    v += c.c1 * forces / m - c.c2 * v + rnd_vel
    x = state.positions
    state.positions = x + c.dt * v + rnd_pos
    v = (state.positions - x - rnd_pos) / c.dt
    forces = compute_forces(state.positions)
    v += c.c1 * forces / m - c.c2 * v + rnd_vel
    state.momenta = v * m
    return forces


def verlet_step(state: ReplicaState, forces: np.ndarray, compute_forces, masses: np.ndarray,
                timestep: float) -> np.ndarray:
    """One velocity-Verlet step (``timestep`` in fs) of every replica in place; returns the new forces."""
    dt = timestep * units.fs
    m = masses[:, np.newaxis]
    p = state.momenta + 0.5 * dt * forces
    state.positions = state.positions + dt * p / m
    forces = compute_forces(state.positions)
    state.momenta = p + 0.5 * dt * forces
    return forces
