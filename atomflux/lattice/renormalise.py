"""Temperature-dependent effective harmonic force constants from MD snapshots (TDEP-style).

At temperature T the atoms explore the anharmonic potential well; the
harmonic force constants that best reproduce the forces they feel,

    Φ_eff(T) = argmin_Φ Σ_snapshots Σ_i |F_i + Σ_j Φ_ij u_j|²,

include the thermal renormalisation of the phonon frequencies (hardening
from quartic terms, softening from cubic ones) that the 0 K force
constants lack (Hellman, Abrikosov & Simak, PRB 84, 180301 (2011)).  The
least-squares fit is phonopy's own: the snapshots' displacements u (from
the ideal sites) and forces go into a phonopy dataset and the symfc solver
fits fc2 in the basis allowed by the space group, index permutation and the
acoustic sum rule.  Forces are recomputed with the calculator (so they
belong to the model whose κ is computed, and give each ensemble member's
fc2).

The snapshots must be an MD supercell of the unit cell at one fixed cell
(NVT/NVE; run NVT at the mean cell of an NPT run for thermal expansion),
decorrelated (e.g. every 100th step) and at the temperature of interest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from .expansion import read_frames, supercell_of


@dataclass
class EffectiveForceConstants:
    """Effective fc2 fitted to MD forces.

    Attributes
    ----------
    fc2 : ndarray [n_primitive_atoms, n_supercell_atoms, 3, 3]
        eV/Å², phonopy's compact layout for ``supercell_matrix``.
    members : ndarray [M, ...] or None
        The same for each ensemble member / committee member.
    supercell_matrix : ndarray [3, 3]
        The MD supercell in units of the unit cell.
    unit_cell : Atoms
        The unit cell at the snapshots' cell.
    n_snapshots : int
    rms_displacement : float
        Å, over all atoms and snapshots.
    residual : float
        ‖F + Φ_eff u‖ / ‖F‖ over the snapshots: the part of the forces no
        harmonic model reproduces (a measure of anharmonicity).
    """

    fc2: np.ndarray
    supercell_matrix: np.ndarray
    unit_cell: Atoms = field(repr=False)
    n_snapshots: int = 0
    rms_displacement: float = 0.0
    residual: float = 0.0
    members: np.ndarray | None = field(default=None, repr=False)


def snapshot_displacements(phonon_supercell_positions: np.ndarray, phonon_supercell_numbers: np.ndarray,
                           cell: np.ndarray, frames: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    """Displacements [n, N, 3] (Å) of the frames' atoms from the ideal sites, in phonopy's atom order.

    Each frame's rigid translation (a drifting centre of mass, e.g. under a
    Langevin thermostat) is removed: it changes no force.  Returns
    ``(displacements, order)``: ``order[j]`` is the frame atom at ideal site j.
    """
    inverse = np.linalg.inv(cell)
    ideal = phonon_supercell_positions @ inverse
    first = frames[0].positions @ inverse
    delta = first[None, :, :] - ideal[:, None, :]
    delta -= np.rint(delta)
    distance = np.linalg.norm(delta @ cell, axis=2)                           # [sites, atoms]
    order = distance.argmin(axis=1)
    if len(set(order.tolist())) != len(order) or (frames[0].numbers[order] != phonon_supercell_numbers).any():
        raise ValueError("the snapshot's atoms cannot be matched one to one with the ideal sites of the "
                         "supercell (wrong unit cell, or atoms far from their sites)")
    displacements = []
    for frame in frames:
        frac = frame.positions[order] @ inverse - ideal
        frac -= frac[0]                              # drift, up to a lattice vector: relative to atom 0 ...
        u = (frac - np.rint(frac)) @ cell
        displacements.append(u - u.mean(axis=0))     # ... then the mean: no rigid translation left
    return np.array(displacements), order


def _fit(phonon, displacements: np.ndarray, forces: np.ndarray) -> np.ndarray:
    phonon.dataset = {"displacements": displacements, "forces": forces}
    phonon.produce_force_constants(calculate_full_force_constants=False, fc_calculator="symfc")
    return np.array(phonon.force_constants)


def effective_force_constants(unit_cell: Atoms, calculator, snapshots: str | Path | Sequence[Atoms],
                              primitive="auto", uncertainty: bool = True, memory_budget=None,
                              progress: bool = True) -> EffectiveForceConstants:
    """Effective fc2 at the snapshots' temperature.

    Parameters
    ----------
    unit_cell
        The unit cell the MD supercell was built from (its lattice constant
        is replaced by the snapshots' cell).
    calculator
        The model (forces on the snapshots are recomputed with it).
    snapshots
        MD frames (file or Atoms) of one supercell at one fixed cell.
    primitive
        phonopy primitive matrix (as for κ).
    """
    from phonopy import Phonopy

    from .forcesets import compute_forces
    from .kappa import to_phonopy

    frames = read_frames(snapshots)
    cells = np.array([f.cell.array for f in frames])
    if np.abs(cells - cells[0]).max() > 1e-6 * np.abs(cells[0]).max():
        raise ValueError("the snapshots are at different cells (an NPT run?); renormalisation needs one fixed cell: "
                         "run NVT/NVE at the mean cell of the NPT run (atomflux.lattice.cell_from_md)")
    if len(frames) < 2:
        raise ValueError("renormalisation needs several MD snapshots (≥ 2, decorrelated)")
    cell = cells[0]
    matrix = supercell_of(unit_cell, cell, len(frames[0]))
    unit = unit_cell.copy()
    unit.set_cell(np.linalg.inv(matrix) @ cell, scale_atoms=True)
    phonon = Phonopy(to_phonopy(unit), supercell_matrix=matrix, primitive_matrix=primitive)
    sc = phonon.supercell
    displacements, order = snapshot_displacements(sc.positions, np.asarray(sc.numbers), cell, frames)
    nn = _nearest_neighbour_distance(frames[0])
    largest = float(np.linalg.norm(displacements, axis=2).max())
    if largest > 0.4 * nn:
        raise ValueError(f"an atom moved {largest:.2f} Å from its site (nearest-neighbour distance {nn:.2f} Å): "
                         "the snapshots are not of a vibrating crystal (melted, diffusing, or another structure)")
    ordered = [Atoms(frame.numbers[order], positions=frame.positions[order], cell=cell, pbc=True) for frame in frames]
    result = compute_forces(ordered, calculator, uncertainty=uncertainty, memory_budget_bytes=memory_budget,
                            progress=progress, label="snapshot forces")
    fc2 = _fit(phonon, displacements, result.forces)
    predicted = -np.einsum("ijab,njb->nia", _full(phonon, fc2), displacements)
    residual = float(np.linalg.norm(result.forces - predicted) / np.linalg.norm(result.forces))
    members = None
    if result.members is not None:
        members = np.array([_fit(phonon, displacements, f) for f in result.members])
    return EffectiveForceConstants(fc2=fc2, supercell_matrix=matrix, unit_cell=unit, n_snapshots=len(frames),
                                   rms_displacement=float(np.sqrt((displacements**2).sum(2).mean())),
                                   residual=residual, members=members)


def _nearest_neighbour_distance(atoms: Atoms) -> float:
    distances = atoms.get_all_distances(mic=True)
    return float(distances[distances > 0].min())


def _full(phonon, fc2: np.ndarray) -> np.ndarray:
    """Full [N, N, 3, 3] force constants from phonopy's compact layout."""
    if fc2.shape[0] == fc2.shape[1]:
        return fc2
    from phonopy.harmonic.force_constants import compact_fc_to_full_fc

    return compact_fc_to_full_fc(phonon.primitive, fc2)
