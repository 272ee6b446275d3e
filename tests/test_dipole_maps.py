"""Local-dipole maps: a 180° domain wall and an in-plane pattern land on the right cells with Z*δ/V."""

from dataclasses import replace

import numpy as np
import pytest

from atomflux.analysis.dipole_maps import dipole_map, plot_dipole_map
from atomflux.analysis.ferroelectric import BATIO3_BORN_CHARGES, local_dipoles, perovskite_cells

from test_ferroelectric import A0, batio3

SHAPE = (4, 2, 3)
DELTA = 0.08  # Å


def shuffled_supercell(seed=0):
    """4 × 2 × 3 cubic BaTiO3 with its atoms in a random order (the cell order of p is then not the lattice order)."""
    ideal = batio3(SHAPE)
    return ideal[np.random.default_rng(seed).permutation(len(ideal))]


def ti_cells(reference):
    """Indices of the Ti atoms and their lattice positions (i1, i2, i3), from the ideal fractional coordinates."""
    ti = np.flatnonzero(np.array(reference.get_chemical_symbols()) == "Ti")
    lattice = np.floor(reference.get_scaled_positions()[ti] * np.array(SHAPE)).astype(int)
    return ti, lattice


def test_a_180_degree_domain_wall_maps_onto_the_right_cells_with_z_delta_over_v():
    reference = shuffled_supercell()
    ti, lattice = ti_cells(reference)
    up = lattice[:, 0] < 3  # cells i1 = 0, 1, 2 point +z, i1 = 3 points −z: walls normal to a
    frame = reference.copy()
    frame.positions[ti, 2] += np.where(up, DELTA, -DELTA)
    frame.positions += [0.7, -1.1, 2.3]  # rigid translation: irrelevant
    cells = perovskite_cells(reference, "Ba", "Ti")
    p = local_dipoles(cells, frame, BATIO3_BORN_CHARGES).p_uc_cm2[0]
    lattice_map = dipole_map(cells, p, frame.cell.array)
    expected = BATIO3_BORN_CHARGES["Ti"] * DELTA / A0**3 * 1602.176634  # μC/cm²
    sign = np.where(np.arange(SHAPE[0]) < 3, 1.0, -1.0)[:, None, None]
    assert lattice_map.values.shape == (*SHAPE, 3)
    np.testing.assert_allclose(lattice_map.values[..., 2], sign * expected * np.ones(SHAPE), rtol=1e-10)
    np.testing.assert_allclose(lattice_map.values[..., :2], 0.0, atol=1e-10)
    # the mean points along +z: layers normal to c, out-of-plane component p_z, no in-plane arrows
    assert lattice_map.closest_axis() == 2
    layers = lattice_map.layers(2)  # [i3, i1, i2, (u, v, n)]
    assert layers.shape == (3, 4, 2, 3)
    np.testing.assert_allclose(layers[..., 2], np.broadcast_to(sign[:, :, 0], (3, 4, 2)) * expected, rtol=1e-10)
    np.testing.assert_allclose(layers[..., :2], 0.0, atol=1e-10)


def test_in_plane_dipoles_become_arrows_along_the_right_directions():
    reference = shuffled_supercell(seed=1)
    ti, lattice = ti_cells(reference)
    frame = reference.copy()
    frame.positions[ti, 1] += np.where(lattice[:, 2] == 1, DELTA, 0.0)  # +y in the middle layer along c
    frame.positions[ti, 0] -= np.where(lattice[:, 1] == 0, DELTA, 0.0)  # −x where i2 = 0
    cells = perovskite_cells(reference, "Ba", "Ti")
    lattice_map = dipole_map(cells, local_dipoles(cells, frame, BATIO3_BORN_CHARGES).p_uc_cm2[0], frame.cell.array)
    expected = BATIO3_BORN_CHARGES["Ti"] * DELTA / A0**3 * 1602.176634
    layers = lattice_map.layers(2)  # normal z: u = x, v = y
    np.testing.assert_allclose(layers[1, :, :, 1], expected, rtol=1e-10)
    np.testing.assert_allclose(layers[[0, 2], :, :, 1], 0.0, atol=1e-10)
    np.testing.assert_allclose(layers[:, :, 0, 0], -expected, rtol=1e-10)
    np.testing.assert_allclose(layers[:, :, 1, 0], 0.0, atol=1e-10)
    sideways = lattice_map.layers(0)  # normal x: [i1, i2, i3], u = y, v = z, n = x
    np.testing.assert_allclose(sideways[:, 0, :, 2], -expected, rtol=1e-10)
    np.testing.assert_allclose(sideways[:, :, 1, 0], expected, rtol=1e-10)


def test_maps_refuse_a_supercell_without_a_grid_and_plot(tmp_path):
    reference = batio3((2, 2, 2))
    cells = perovskite_cells(reference, "Ba", "Ti")
    with pytest.raises(ValueError, match="n1 × n2 × n3 perovskite cells"):
        dipole_map(replace(cells, grid=None, shape=None), np.zeros((8, 3)), reference.cell.array)
    with pytest.raises(ValueError, match="one dipole per cell"):
        dipole_map(cells, np.zeros((7, 3)), reference.cell.array)
    lattice_map = dipole_map(cells, np.random.default_rng(0).normal(size=(8, 3)), reference.cell.array)
    path = plot_dipole_map(lattice_map, tmp_path / "map.png", "test, T = 300 K", "uC/cm^2", layers=5)
    assert path.stat().st_size > 0
