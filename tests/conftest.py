import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from atomflux.models import PowerSpectrumPotential


@pytest.fixture(scope="session")
def random_model() -> PowerSpectrumPotential:
    """An untrained (random) many-body model: physics identities hold for any weights."""
    torch.manual_seed(0)
    model = PowerSpectrumPotential(["H", "C", "O", "Cu", "Au"], cutoff=4.0, hidden=[16, 16]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


@pytest.fixture
def alloy():
    """A rattled, triclinic, periodic Cu/Au cell."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4]] = "Au"
    cell = atoms.cell.array.copy()
    cell[0, 1] += 0.4
    cell[2, 0] -= 0.3
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.08, seed=3)
    return atoms


@pytest.fixture
def methanol():
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=4)
    return atoms


def finite_difference_forces(energy, atoms, h=1e-5) -> np.ndarray:
    fd = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            fd[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    return fd


def finite_difference_stress(energy, atoms, h=1e-6) -> np.ndarray:
    """(1/V) dE/dε by central differences of a symmetric strain, 3x3."""
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += h / 2
            eps[b, a] += h / 2
            plus, minus = atoms.copy(), atoms.copy()
            plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
            out[a, b] = (energy(plus) - energy(minus)) / (2 * h) / atoms.get_volume()
    return out
