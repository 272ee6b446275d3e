"""Neighbour pairs of Batch against ASE's independent neighbour list."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list

from atomflux.systems import Batch


def sorted_pairs(i, j, shifts):
    return sorted(zip(np.asarray(i).tolist(), np.asarray(j).tolist(), map(tuple, np.round(np.asarray(shifts)).astype(int).tolist())))


def small_triclinic():
    atoms = bulk("Cu", "fcc", a=3.6)  # primitive cell, 1 atom, much smaller than the cutoff
    atoms.set_cell(atoms.cell.array + np.array([[0.0, 0.2, 0.0], [0.1, 0, 0], [0, 0, 0.3]]), scale_atoms=True)
    return atoms


def slab():
    atoms = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    atoms.pbc = [True, True, False]
    return atoms


def wire():
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 1.9, 0]], cell=[5.1, 0, 0], pbc=[True, False, False])
    return atoms


@pytest.mark.parametrize("make", [small_triclinic, slab, wire, lambda: molecule("C6H6")])
def test_pairs_match_ase_neighbor_list(make):
    atoms = make()
    cutoff = 5.0
    batch = Batch.from_atoms(atoms, cutoff)
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    ours = sorted_pairs(batch.pairs[:, 0], batch.pairs[:, 1], batch.shifts)
    assert ours == sorted_pairs(i, j, S)
    distances = batch.pair_vectors().norm(dim=1)
    assert float(distances.max()) < cutoff


def test_images_of_the_same_atom_are_neighbours():
    batch = Batch.from_atoms(small_triclinic(), 5.0)
    assert bool((batch.pairs[:, 0] == batch.pairs[:, 1]).all())  # one atom: all pairs are its own images
    assert batch.pairs.shape[0] > 40


def test_collate_offsets_and_dtype():
    a, b = molecule("H2O"), bulk("Cu", cubic=True)
    one = Batch.from_atoms([a, b], 3.0, dtype=torch.float32)
    two = Batch.collate([Batch.from_atoms(a, 3.0, dtype=torch.float32), Batch.from_atoms(b, 3.0, dtype=torch.float32)])
    assert one.positions.dtype == torch.float32
    for name in ("positions", "numbers", "cell", "pbc", "system", "pairs", "shifts"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name
    assert one.n_atoms.tolist() == [3, 4]


@pytest.mark.parametrize("mutate,message", [
    (lambda a: a.positions.__setitem__((0, 0), np.nan), "NaN"),
    (lambda a: a.positions.__setitem__((1, slice(None)), a.positions[0] + 0.1), "overlap"),
    (lambda a: a.set_cell([[3.6, 0, 0], [0, 0, 0], [0, 0, 3.6]]), "zero-length"),
])
def test_bad_structures_are_refused(mutate, message):
    atoms = bulk("Cu", cubic=True)
    mutate(atoms)
    with pytest.raises(ValueError, match=message):
        Batch.from_atoms(atoms, 3.0)


def test_verlet_list_is_exact_and_searches_only_when_needed():
    """Pairs from a list reused with a skin equal ASE's fresh neighbour list at every step of a
    random walk; a new search happens only after a move beyond skin/2 or a cell change."""
    from atomflux.systems import VerletList

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.symbols[::3] = "Au"
    rng = np.random.default_rng(0)
    verlet = VerletList(cutoff=4.0, skin=0.6)
    searches = []
    for step in range(40):
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        if step == 30:
            atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
        batch = verlet.batch(atoms)
        i, j, shifts = neighbor_list("ijS", atoms, 4.0)
        assert sorted_pairs(batch.pairs[:, 0], batch.pairs[:, 1], batch.shifts) == sorted_pairs(i, j, shifts)
        assert batch.cutoff == 4.0 and torch.equal(batch.positions, torch.tensor(atoms.positions))
        searches.append(verlet.searches)
    assert searches[30] == searches[29] + 1          # the cell changed
    assert 1 < searches[29] < 10                      # some atom moved beyond skin/2, but not at every step
    with pytest.raises(ValueError, match="overlap"):
        atoms.positions[1] = atoms.positions[0] + 0.1
        verlet.batch(atoms)
