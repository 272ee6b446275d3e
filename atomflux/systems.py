"""Atomic systems as tensors: :class:`Batch`, built from ASE ``Atoms``.

Units throughout atomflux: positions and cells in Å, energies in eV.

A :class:`Batch` holds one or several systems concatenated, with their
neighbour pairs (a *full* list: both ``(i, j)`` and ``(j, i)`` appear) and the
integer cell shifts of each pair, computed by ``vesin``.  Potentials see
positions only through the pair vectors ``r_ij = r_j - r_i + shift @ cell``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

#: Two atoms closer than this (Å) are considered overlapping and refused.
MIN_DISTANCE = 0.3


@dataclass(frozen=True)
class Batch:
    """Several atomic systems as concatenated tensors.

    Attributes
    ----------
    positions : Tensor [N, 3]
        Cartesian positions in Å.
    numbers : Tensor [N] (long)
        Atomic numbers.
    cell : Tensor [S, 3, 3]
        Cell vectors as rows, Å (zero rows where a system is not periodic).
    pbc : Tensor [S, 3] (bool)
        Periodicity of each system along each cell vector.
    system : Tensor [N] (long)
        Index of the system each atom belongs to.
    pairs : Tensor [P, 2] (long)
        Neighbour pairs ``(i, j)`` (indices into the concatenated atoms),
        full list: each pair appears in both orders.
    shifts : Tensor [P, 3]
        Integer cell shifts (as floats of the batch dtype) of each pair.
    cutoff : float
        Cutoff radius (Å) the pairs were built with.
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    system: torch.Tensor
    pairs: torch.Tensor
    shifts: torch.Tensor
    cutoff: float

    @property
    def n_systems(self) -> int:
        """Number of systems S."""
        return int(self.cell.shape[0])

    @property
    def n_atoms(self) -> torch.Tensor:
        """Atoms per system, Tensor [S] (long)."""
        return torch.bincount(self.system, minlength=self.n_systems)

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def pair_vectors(self, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Pair vectors ``r_ij = r_j - r_i + shift @ cell`` in Å, Tensor [P, 3]."""
        pos = self.positions if positions is None else positions
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        if self.n_systems == 1:
            offsets = self.shifts @ self.cell[0]
        else:
            offsets = torch.einsum("pa,pab->pb", self.shifts, self.cell[self.system[i]])
        return pos.index_select(0, j) - pos.index_select(0, i) + offsets

    def volumes(self) -> torch.Tensor:
        """Cell volumes in Å³, Tensor [S] (0 for non-periodic systems)."""
        return torch.linalg.det(self.cell).abs()

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> "Batch":
        """Copy of the batch with floating tensors in ``dtype`` on ``device``."""
        dtype = dtype or self.dtype
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
        return replace(
            self,
            positions=move(self.positions), numbers=move(self.numbers), cell=move(self.cell),
            pbc=move(self.pbc), system=move(self.system), pairs=move(self.pairs),
            shifts=move(self.shifts),
        )

    @classmethod
    def collate(cls, batches: Sequence["Batch"]) -> "Batch":
        """Concatenate batches (same cutoff, dtype and device) into one."""
        if not batches:
            raise ValueError("cannot collate an empty list of batches")
        atom_offsets = torch.cumsum(torch.tensor([0] + [len(b.numbers) for b in batches[:-1]]), 0)
        system_offsets = torch.cumsum(torch.tensor([0] + [b.n_systems for b in batches[:-1]]), 0)
        return cls(
            positions=torch.cat([b.positions for b in batches]),
            numbers=torch.cat([b.numbers for b in batches]),
            cell=torch.cat([b.cell for b in batches]),
            pbc=torch.cat([b.pbc for b in batches]),
            system=torch.cat([b.system + int(o) for b, o in zip(batches, system_offsets)]),
            pairs=torch.cat([b.pairs + int(o) for b, o in zip(batches, atom_offsets)]),
            shifts=torch.cat([b.shifts for b in batches]),
            cutoff=min(b.cutoff for b in batches),
        )

    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms | Sequence[Atoms],
        cutoff: float,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        min_distance: float = MIN_DISTANCE,
    ) -> "Batch":
        """Build a batch from one ``Atoms`` or a list of them.

        Parameters
        ----------
        atoms
            One system or a list of systems; periodic, non-periodic, mixed
            periodicity and triclinic cells are all accepted.  Cells smaller
            than the cutoff are fine: several images of one atom then appear
            as distinct neighbours.
        cutoff
            Neighbour cutoff radius in Å.
        dtype
            Floating point type (float64 by default, float32 for speed).
        device
            Torch device.
        min_distance
            Atoms closer than this (Å) raise ``ValueError``.

        Raises
        ------
        ValueError
            On a non-positive cutoff, a system without atoms, NaN/inf positions
            or cell, a periodic direction with a zero (or degenerate) cell
            vector, or overlapping atoms.
        """
        systems = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        if not systems:
            raise ValueError("cannot build a Batch from an empty list of systems")
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"the cutoff must be a positive distance in Å, got {cutoff}")
        pieces = [_neighbours(a, cutoff, min_distance, k) for k, a in enumerate(systems)]
        offsets = np.cumsum([0] + [len(a) for a in systems])[:-1]
        pairs = np.concatenate([p + off for (p, _), off in zip(pieces, offsets)])
        shifts = np.concatenate([s for _, s in pieces])
        positions = np.concatenate([a.positions for a in systems])
        return cls(
            positions=torch.tensor(positions, dtype=dtype, device=device),
            numbers=torch.tensor(np.concatenate([a.numbers for a in systems]), dtype=torch.long, device=device),
            cell=torch.tensor(np.stack([_cell_array(a) for a in systems]), dtype=dtype, device=device),
            pbc=torch.tensor(np.stack([a.pbc for a in systems]), dtype=torch.bool, device=device),
            system=torch.tensor(np.repeat(np.arange(len(systems)), [len(a) for a in systems]),
                                dtype=torch.long, device=device),
            pairs=torch.tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2),
            shifts=torch.tensor(shifts, dtype=dtype, device=device).reshape(-1, 3),
            cutoff=float(cutoff),
        )


class VerletList:
    """Neighbour pairs of one system reused across MD steps.

    The search runs with ``cutoff + skin`` and is repeated only when an atom
    has moved more than ``skin / 2`` since, or the cell, periodicity or
    elements changed; in between, the stored pairs are filtered to the cutoff
    at the current positions, so every pair within the cutoff is found and
    the results are exactly those of a fresh search.

    Parameters
    ----------
    cutoff
        Cutoff radius of the batches, Å.
    skin
        Extra search radius, Å (0: a fresh search every call).
    dtype, device, min_distance
        As for :meth:`Batch.from_atoms`.
    """

    def __init__(self, cutoff: float, skin: float = 1.0, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin, self.dtype, self.device = float(cutoff), float(skin), dtype, device
        self.min_distance = float(min_distance)
        self.searches = 0
        self._stored: Batch | None = None
        self._offsets: torch.Tensor | None = None
        self._reference: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def batch(self, atoms: Atoms) -> Batch:
        """A batch of ``atoms`` with the pairs within the cutoff (``ValueError`` on bad input)."""
        if self.skin == 0:
            self.searches += 1
            return Batch.from_atoms(atoms, self.cutoff, self.dtype, self.device, self.min_distance)
        check_atoms(atoms)
        stored = self.candidates(atoms)
        positions = torch.tensor(atoms.positions, dtype=self.dtype, device=self.device)
        inside = pairs_within(positions, stored.pairs, self._offsets, self.cutoff, self.min_distance, atoms.numbers)
        return replace(stored, positions=positions, pairs=stored.pairs.index_select(0, inside),
                       shifts=stored.shifts.index_select(0, inside), cutoff=self.cutoff)

    def candidates(self, atoms: Atoms) -> Batch:
        """The stored pairs within cutoff + skin, searched again first if needed.

        ``atoms`` must have passed :func:`check_atoms` (finite positions: a NaN would pass the
        displacement test).  Positions are those of the last search; the object is the same until the
        next search.  For callers that filter several lists at once
        (:class:`atomflux.md_replicas.ReplicaForces`).
        """
        if self._search_needed(atoms):
            stored = Batch.from_atoms(atoms, self.cutoff + self.skin, self.dtype, self.device, self.min_distance)
            self._stored = stored
            self._offsets = stored.shifts @ stored.cell[0]       # constant until the next search
            self._reference = (atoms.positions.copy(), atoms.cell.array.copy(), atoms.pbc.copy(), atoms.numbers.copy())
            self.searches += 1
        return self._stored

    def _search_needed(self, atoms: Atoms) -> bool:
        if self._reference is None:
            return True
        positions, cell, pbc, numbers = self._reference
        if (len(numbers) != len(atoms) or not np.array_equal(numbers, atoms.numbers)
                or not np.array_equal(pbc, atoms.pbc) or not np.array_equal(cell, atoms.cell.array)):
            return True
        moved = np.einsum("ij,ij->i", atoms.positions - positions, atoms.positions - positions).max()
        return bool(moved > (0.5 * self.skin) ** 2)


def pairs_within(positions: torch.Tensor, pairs: torch.Tensor, offsets: torch.Tensor, cutoff: float,
                 min_distance: float, numbers: np.ndarray, atoms_per_system: int | None = None,
                 label: str = "system") -> torch.Tensor:
    """Indices (ascending) of the candidate ``pairs`` closer than ``cutoff`` at ``positions``.

    Parameters
    ----------
    positions : Tensor [N, 3]
        Å.
    pairs : Tensor [P, 2] (long)
        Candidate pairs (i, j) of a neighbour search with a larger radius.
    offsets : Tensor [P, 3]
        Cell offset of each pair's second atom (shift @ cell), Å.
    cutoff, min_distance
        Å; a pair closer than ``min_distance`` raises ``ValueError`` naming both atoms.
    numbers : array [N]
        Atomic numbers (for the message).
    atoms_per_system
        Atoms of each system when ``positions`` holds several equal-sized systems one after the
        other (atoms and system are then named within their system); ``None``: one system.
    label
        What the message calls a system (``"replica"``: :mod:`atomflux.md_replicas`).
    """
    vectors = positions.index_select(0, pairs[:, 1]) - positions.index_select(0, pairs[:, 0]) + offsets
    distances = torch.linalg.norm(vectors, dim=1)
    inside = torch.nonzero(distances < cutoff).squeeze(1)
    if len(inside):
        k = int(torch.argmin(distances))
        if float(distances[k]) < min_distance:
            a, b = (int(x) for x in pairs[k])
            n = atoms_per_system or len(positions)
            raise ValueError(
                f"atoms {a % n} ({chemical_symbols[numbers[a]]}) and {b % n} ({chemical_symbols[numbers[b]]}) "
                f"overlap in {label} {a // n}: distance {float(distances[k]):.3g} Å < {min_distance} Å")
    return inside


def unfold(batch: Batch, system: int, reach: float, hops: int | None = None) -> tuple[Batch, torch.Tensor]:
    """One system of ``batch`` with its periodic images within ``reach``, as a non-periodic cluster.

    The *unfolded system* of Langer et al., PRB 108, L100302 (2023): the
    system's own atoms come first (in their order), followed by every
    periodic image that lies within ``reach`` of one of them (ordered by
    integer cell shift, then atom).  An atomic energy that depends on atoms
    up to ``reach`` away (a message-passing model: ``reach`` = layers ×
    cutoff) has the same value for the first atoms of the cluster as in the
    periodic system.  Non-periodic systems and directions get no images.

    Parameters
    ----------
    batch
        The systems.
    system
        Index of the system to unfold.
    reach
        Interaction range, Å.
    hops
        ``None``: every image within ``reach`` and every pair within
        ``batch.cutoff``.  An integer H: only what H rounds of message passing
        along the pairs need for the energies of the system's own atoms —
        images more than H pairs away from them are dropped, and so are the
        pairs between two atoms H pairs away (such an atom only sends its
        species-level state).  The own atoms' energies are unchanged; the
        cluster is smaller (see :func:`atomflux.evaluate.unfolded_heat_flux`).

    Returns
    -------
    cluster : Batch
        One non-periodic system, neighbour pairs within ``batch.cutoff``.
    origin : Tensor [N_unfolded] (long)
        For each atom of the cluster, the index (within the system) of the
        atom it is an image of; ``origin[:n] = 0 … n-1``.
    """
    if not (np.isfinite(reach) and reach > 0):
        raise ValueError(f"the interaction range must be a positive distance in Å, got {reach}")
    mask = (batch.system == system).cpu().numpy()
    positions = batch.positions.detach().cpu().numpy().astype(np.float64)[mask]
    numbers = batch.numbers.cpu().numpy()[mask]
    cell = batch.cell[system].detach().cpu().numpy().astype(np.float64)
    pbc = batch.pbc[system].cpu().numpy().astype(bool)
    origins = np.arange(len(positions))
    images = positions
    if pbc.any():
        # images within reach of an own atom = the periodic neighbours within reach with a nonzero shift
        own = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
        _, j, shifts = _neighbour_shifts(own, reach)
        away = np.any(shifts != 0, axis=1)
        keys = np.unique(np.concatenate([shifts[away], j[away, None]], axis=1).astype(np.int64), axis=0)
        origins = np.concatenate([origins, keys[:, 3]])
        images = np.concatenate([positions, positions[keys[:, 3]] + keys[:, :3] @ cell])
    cluster = Atoms(numbers=numbers[origins], positions=images, pbc=False)
    unfolded = Batch.from_atoms(cluster, batch.cutoff, batch.dtype, batch.device, min_distance=0.0)
    origin = torch.tensor(origins, dtype=torch.long, device=batch.device)
    if hops is not None:
        unfolded, origin = _message_passing_part(unfolded, origin, len(positions), int(hops))
    return unfolded, origin


def _neighbour_shifts(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within ``cutoff`` of a (partly) periodic system: first atoms, second atoms, integer shifts."""
    from vesin import NeighborList

    pbc = np.asarray(atoms.pbc, dtype=bool)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = nl.compute(atoms.positions, _box_for_vesin(atoms), pbc.tolist(), quantities="ijS")
    return np.asarray(i), np.asarray(j), np.asarray(shifts)


def _message_passing_part(cluster: Batch, origin: torch.Tensor, n_own: int, hops: int) -> tuple[Batch, torch.Tensor]:
    """The atoms of ``cluster`` at most ``hops`` pairs from its first ``n_own`` atoms, without the pairs
    between two atoms ``hops`` pairs away (see :func:`unfold`)."""
    if hops < 1:
        raise ValueError(f"message passing needs at least one hop, got {hops}")
    first, second = cluster.pairs[:, 0], cluster.pairs[:, 1]
    distance = torch.full((len(cluster.numbers),), hops + 1, dtype=torch.long, device=first.device)
    distance[:n_own] = 0
    for hop in range(1, hops + 1):
        reached = torch.zeros_like(distance, dtype=torch.bool)
        reached[second[distance[first] == hop - 1]] = True
        distance[reached & (distance > hop)] = hop
    keep_atom = distance <= hops
    keep_pair = keep_atom[first] & keep_atom[second] & ((distance[first] < hops) | (distance[second] < hops))
    renumber = torch.cumsum(keep_atom.long(), 0) - 1
    part = replace(cluster, positions=cluster.positions[keep_atom], numbers=cluster.numbers[keep_atom],
                    system=cluster.system[keep_atom], pairs=renumber[cluster.pairs[keep_pair]],
                    shifts=cluster.shifts[keep_pair])
    return part, origin[keep_atom]


def _cell_array(atoms: Atoms) -> np.ndarray:
    """Cell with the rows of non-periodic directions kept as given (may be zero)."""
    return np.array(atoms.cell.array, dtype=np.float64)


def check_atoms(atoms: Atoms, label: str = "") -> None:
    """Raise ``ValueError`` for positions or cells that cannot be evaluated.

    Checks for a structure without atoms, for NaN or infinite positions and cell entries, and for periodic
    directions whose cell vector is zero or linearly dependent on the others.
    """
    where = f" in system {label}" if label else ""
    if len(atoms) == 0:
        raise ValueError(f"no atoms{where}: the structure is empty (an Atoms() with nothing in it?)")
    positions = np.asarray(atoms.positions)
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"positions contain NaN or inf{where}: atom(s) {idx[:10].tolist()}"
            f"{' ...' if len(idx) > 10 else ''}"
        )
    cell = np.asarray(atoms.cell.array)
    if not np.isfinite(cell).all():
        raise ValueError(f"cell contains NaN or inf{where}")
    lengths = np.linalg.norm(cell, axis=1)
    for axis in range(3):
        if atoms.pbc[axis] and lengths[axis] < 1e-8:
            raise ValueError(
                f"periodic direction {axis} has a zero-length cell vector{where}; "
                "set a cell or turn periodicity off along it"
            )
    periodic = cell[np.asarray(atoms.pbc, dtype=bool)]
    if len(periodic) and np.linalg.matrix_rank(periodic, tol=1e-8 * max(lengths.max(), 1.0)) < len(periodic):
        raise ValueError(f"periodic cell vectors are linearly dependent{where}")


def _neighbours(atoms: Atoms, cutoff: float, min_distance: float, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list of one system: pairs [P, 2] and integer shifts [P, 3]."""
    from vesin import NeighborList

    check_atoms(atoms, str(index))
    pbc = np.asarray(atoms.pbc, dtype=bool)
    box = _box_for_vesin(atoms)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, d = nl.compute(atoms.positions, box, pbc.tolist() if pbc.any() else False, quantities="ijSd")
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        a, b = int(i[k]), int(j[k])
        raise ValueError(
            f"atoms {a} ({chemical_symbols[atoms.numbers[a]]}) and {b} ({chemical_symbols[atoms.numbers[b]]}) "
            f"overlap in system {index}: distance {d[k]:.3g} Å < {min_distance} Å"
        )
    order = np.argsort(i, kind="stable")  # pairs grouped by first atom (what many-body models sum over)
    return np.stack([i[order], j[order]], axis=1).astype(np.int64), np.asarray(shifts, dtype=np.float64)[order]


def _box_for_vesin(atoms: Atoms) -> np.ndarray:
    """Box for vesin: the cell, with non-periodic zero rows replaced by a normal vector.

    vesin needs an invertible box when any direction is periodic; the length
    and direction of a non-periodic vector do not change the pairs found.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    if not pbc.any():
        return np.zeros((3, 3))
    if abs(np.linalg.det(cell)) > 1e-10:
        return cell
    periodic = cell[pbc]
    extent = np.ptp(atoms.positions, axis=0).max() + 1.0
    if len(periodic) == 1:
        a = periodic[0] / np.linalg.norm(periodic[0])
        trial = np.eye(3)[np.argmin(np.abs(a))]
        b = np.cross(a, trial)
        b /= np.linalg.norm(b)
        normals = [b, np.cross(a, b)]
    else:
        n = np.cross(periodic[0], periodic[1])
        normals = [n / np.linalg.norm(n)]
    out = cell.copy()
    for axis in np.flatnonzero(~pbc):
        out[axis] = normals.pop(0) * extent
    return out


def symbols_of(numbers: Sequence[int]) -> list[str]:
    """Chemical symbols of atomic numbers."""
    return [chemical_symbols[int(z)] for z in numbers]
