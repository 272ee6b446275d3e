"""Forces on many displaced supercells: batched for atomflux models, one by one otherwise.

Progress is cached as the work proceeds (``<cache>.npz`` holding the forces
of the supercells done so far, and the ensemble members' forces when the
model has uncertainty), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from ..calculators import AtomfluxCalculator
from ..evaluate import evaluate
from ..systems import Batch

#: atoms per batched evaluate call (bounds memory)
DEFAULT_ATOMS_PER_CHUNK = 20000


@dataclass
class ForceSet:
    """Forces (eV/Å) on supercells: ``forces`` [n, N, 3]; ``members`` [M, n, N, 3] or None."""

    forces: np.ndarray
    members: np.ndarray | None = None


def _fingerprint(supercells: Sequence[Atoms | None]) -> str:
    h = hashlib.sha256()
    for atoms in supercells:
        if atoms is None:
            h.update(b"none")
        else:
            h.update(np.ascontiguousarray(atoms.positions).tobytes())
            h.update(np.ascontiguousarray(atoms.numbers).tobytes())
    return h.hexdigest()


class _Cache:
    def __init__(self, path: Path | None, key: str, n: int, n_atoms: int, n_members: int) -> None:
        self.path, self.key = path, key
        self.forces = np.zeros((n, n_atoms, 3))
        self.members = np.zeros((n_members, n, n_atoms, 3)) if n_members else None
        self.done = np.zeros(n, dtype=bool)
        if path is not None and path.is_file():
            with np.load(path) as data:
                same = str(data["key"]) == key and data["forces"].shape == self.forces.shape
                if same and (self.members is None) == (data["members"].size == 0):
                    self.forces, self.done = data["forces"].copy(), data["done"].copy()
                    if self.members is not None:
                        self.members = data["members"].copy()

    def store(self, index: int, forces: np.ndarray, members: np.ndarray | None) -> None:
        self.forces[index] = forces
        if members is not None:
            self.members[:, index] = members
        self.done[index] = True

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, key=self.key, forces=self.forces, done=self.done,
                 members=self.members if self.members is not None else np.zeros(0))
        tmp.replace(self.path)


def compute_forces(supercells: Sequence[Atoms | None], calculator, cache: str | Path | None = None,
                   uncertainty: bool = True, atoms_per_chunk: int = DEFAULT_ATOMS_PER_CHUNK,
                   progress: bool = True, label: str = "force sets") -> ForceSet:
    """Forces on every supercell (``None`` entries, skipped displacements, get zeros).

    Parameters
    ----------
    supercells
        Structures with the same number of atoms.
    calculator
        Any ASE calculator; an :class:`AtomfluxCalculator` is evaluated in
        batches of about ``atoms_per_chunk`` atoms through one
        :func:`~atomflux.evaluate` call each, and also yields the ensemble
        members' forces when the model has uncertainty and ``uncertainty``.
    cache
        ``.npz`` file updated after every chunk; a matching cache is resumed.
    """
    present = [k for k, s in enumerate(supercells) if s is not None]
    if not present:
        raise ValueError("no supercells to evaluate")
    n_atoms = len(supercells[present[0]])
    if any(len(supercells[k]) != n_atoms for k in present):
        raise ValueError("all supercells must have the same number of atoms")
    ours = isinstance(calculator, AtomfluxCalculator)
    from ..uncertainty.propagation import n_members

    n_mem = n_members(calculator.potential) if ours and uncertainty else 0
    store = _Cache(Path(cache) if cache else None, _fingerprint(supercells), len(supercells), n_atoms, n_mem)
    todo = [k for k in present if not store.done[k]]
    bar = tqdm(total=len(present), initial=len(present) - len(todo), desc=label, unit="supercell",
               disable=None if progress else True)
    if ours:
        per_chunk = max(1, atoms_per_chunk // n_atoms)
        potential = calculator.potential
        for start in range(0, len(todo), per_chunk):
            chunk = todo[start:start + per_chunk]
            batch = Batch.collate([calculator.batch(supercells[k]) for k in chunk])
            res = evaluate(potential, batch, forces=True, uncertainty=bool(n_mem))
            forces = res.forces.detach().cpu().numpy().astype(np.float64).reshape(len(chunk), n_atoms, 3)
            members = None
            if n_mem:
                members = res.forces_ensemble.detach().cpu().numpy().astype(np.float64)
                members = members.reshape(n_mem, len(chunk), n_atoms, 3)
            for j, k in enumerate(chunk):
                store.store(k, forces[j], None if members is None else members[:, j])
            store.save()
            bar.update(len(chunk))
    else:
        for k in todo:
            atoms = supercells[k].copy()
            atoms.calc = calculator
            store.store(k, atoms.get_forces(), None)
            store.save()
            bar.update(1)
    bar.close()
    return ForceSet(store.forces, store.members)
