"""Forces on many displaced supercells: batched for atomflux models, one by one otherwise.

Batched chunks are sized from a memory budget (see :mod:`.memory`): the
first chunk is one supercell, its peak memory is measured, and later
chunks are as large as the budget allows.  Progress is cached as the work
proceeds (``<cache>.npz`` holding the forces of the supercells done so far,
and the members' forces when the model has uncertainty), so an interrupted
run resumes where it stopped; a cache is reused only for the same
supercells and the same model (its fingerprint).

Members come from an uncertainty-capable atomflux model (shallow ensemble
members, LLPR posterior samples) or from any ASE calculator that puts
``forces_ensemble`` [M, N, 3] into its results (a committee of models).
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
from .memory import ChunkPlanner, measure_peak, memory_budget


@dataclass
class ForceSet:
    """Forces (eV/Å) on supercells: ``forces`` [n, N, 3]; ``members`` [M, n, N, 3] or None.

    ``peak_bytes`` lists the measured peak memory of each batched chunk as
    ``(atoms in the chunk, bytes)`` (empty for one-by-one evaluation).
    """

    forces: np.ndarray
    members: np.ndarray | None = None
    peak_bytes: tuple[tuple[int, int], ...] = ()


def _structures_key(supercells: Sequence[Atoms | None], model_key: str) -> str:
    h = hashlib.sha256(model_key.encode())
    for atoms in supercells:
        if atoms is None:
            h.update(b"none")
        else:
            h.update(np.ascontiguousarray(atoms.positions).tobytes())
            h.update(np.ascontiguousarray(atoms.numbers).tobytes())
            h.update(np.ascontiguousarray(atoms.cell.array).tobytes())
    return h.hexdigest()


class _Cache:
    """Forces done so far, saved atomically after every chunk; members allocated when first seen."""

    def __init__(self, path: Path | None, key: str, n: int, n_atoms: int) -> None:
        self.path, self.key = path, key
        self.forces = np.zeros((n, n_atoms, 3))
        self.members: np.ndarray | None = None
        self.done = np.zeros(n, dtype=bool)
        if path is not None and path.is_file():
            with np.load(path) as data:
                if str(data["key"]) == key and data["forces"].shape == self.forces.shape:
                    self.forces, self.done = data["forces"].copy(), data["done"].copy()
                    if data["members"].size:
                        self.members = data["members"].copy()

    def store(self, index: int, forces: np.ndarray, members: np.ndarray | None) -> None:
        self.forces[index] = forces
        if members is not None:
            if self.members is None:
                self.members = np.zeros((len(members),) + self.forces.shape)
            if len(members) != len(self.members):
                raise ValueError(f"the calculator returned {len(members)} force members for one supercell and "
                                 f"{len(self.members)} for another")
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
                   uncertainty: bool = True, memory_budget_bytes: str | float | int | None = None,
                   progress: bool = True, label: str = "force sets", model_key: str | None = None) -> ForceSet:
    """Forces on every supercell (``None`` entries, skipped displacements, get zeros).

    Parameters
    ----------
    supercells
        Structures with the same number of atoms.
    calculator
        Any ASE calculator; an :class:`AtomfluxCalculator` is evaluated in
        memory-bounded batches through one :func:`~atomflux.evaluate` call
        each.  With ``uncertainty``, the members' forces are kept too: from
        the model's ensemble / LLPR samples, or from ``forces_ensemble`` in
        the results of any other calculator (e.g. a committee).
    cache
        ``.npz`` file updated after every chunk; a cache of the same
        supercells and model is resumed.
    memory_budget_bytes
        Peak memory allowed to one batched chunk: bytes, ``"4GB"``, or a
        fraction of the available memory (default: ``$ATOMFLUX_MEMORY_BUDGET``
        or half the available memory); see :mod:`atomflux.lattice.memory`.
    model_key
        Identifies the model in the cache key (default: its fingerprint).
    """
    from ..records import fingerprint

    present = [k for k, s in enumerate(supercells) if s is not None]
    if not present:
        raise ValueError("no supercells to evaluate")
    n_atoms = len(supercells[present[0]])
    if any(len(supercells[k]) != n_atoms for k in present):
        raise ValueError("all supercells must have the same number of atoms")
    ours = isinstance(calculator, AtomfluxCalculator)
    from ..uncertainty.propagation import n_members

    n_mem = n_members(calculator.potential) if ours and uncertainty else 0
    key = model_key if model_key is not None else fingerprint(calculator)
    store = _Cache(Path(cache) if cache else None, _structures_key(supercells, f"{key}:{bool(uncertainty)}"),
                   len(supercells), n_atoms)
    todo = [k for k in present if not store.done[k]]
    bar = tqdm(total=len(present), initial=len(present) - len(todo), desc=label, unit="supercell",
               disable=None if progress else True)
    peaks: list[tuple[int, int]] = []
    if ours:
        planner = ChunkPlanner(n_atoms, memory_budget(memory_budget_bytes), label="supercell")
        potential, start = calculator.potential, 0
        while start < len(todo):
            chunk = todo[start:start + planner.next_size(len(todo) - start)]
            start += len(chunk)

            def run(chunk=chunk):
                batch = Batch.collate([calculator.batch(supercells[k]) for k in chunk])
                res = evaluate(potential, batch, forces=True, uncertainty=bool(n_mem))
                members = None if not n_mem else res.forces_ensemble.detach().cpu().numpy().astype(np.float64)
                return res.forces.detach().cpu().numpy().astype(np.float64), members

            (forces, members), peak = measure_peak(run, calculator.device)
            planner.record(len(chunk), peak)
            forces = forces.reshape(len(chunk), n_atoms, 3)
            if members is not None:
                members = members.reshape(n_mem, len(chunk), n_atoms, 3)
            for j, k in enumerate(chunk):
                store.store(k, forces[j], None if members is None else members[:, j])
            store.save()
            bar.update(len(chunk))
        peaks = planner.measured
    else:
        for k in todo:
            atoms = supercells[k].copy()
            atoms.calc = calculator
            forces = atoms.get_forces()
            members = calculator.results.get("forces_ensemble") if uncertainty else None
            store.store(k, forces, None if members is None else np.asarray(members, dtype=np.float64))
            store.save()
            bar.update(1)
    bar.close()
    return ForceSet(store.forces, store.members, tuple(peaks))
