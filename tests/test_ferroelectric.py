"""Local dipoles of perovskites: partition identity, invariances, the descriptor proxy."""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from atomflux.analysis.dipole_correlations import dipole_correlations
from atomflux.analysis.ferroelectric import (BATIO3_BORN_CHARGES, E_PER_A2_TO_UC_PER_CM2, descriptor_dipoles,
                                             displacements, local_dipoles, neighbour_density_l1,
                                             perovskite_cells)

A0 = 4.0


def batio3(repeat=(3, 3, 3), a=A0) -> Atoms:
    """Ideal cubic BaTiO3: Ba corner, Ti body centre, O face centres."""
    unit = Atoms("BaTiO3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                 cell=np.eye(3) * a, pbc=True)
    return unit * repeat


def test_cells_partition_every_atom_and_find_the_grid():
    ref = batio3((3, 2, 4))
    cells = perovskite_cells(ref, "Ba", "Ti")
    assert cells.n_cells == 24 and cells.shape == (3, 2, 4)
    counts = np.bincount(cells.members[:, 1:9].ravel(), minlength=len(ref))
    assert set(counts[np.array(ref.get_chemical_symbols()) == "Ba"]) == {8}
    counts = np.bincount(cells.members[:, 9:].ravel(), minlength=len(ref))
    assert set(counts[np.array(ref.get_chemical_symbols()) == "O"]) == {2}


def test_partition_identity_and_zero_at_ideal_positions():
    ref = batio3((3, 3, 3))
    cells = perovskite_cells(ref, "Ba", "Ti")
    assert np.abs(local_dipoles(cells, ref, BATIO3_BORN_CHARGES).p).max() < 1e-14
    rng = np.random.default_rng(0)
    frame = ref.copy()
    frame.positions += rng.normal(scale=0.15, size=frame.positions.shape)
    frame.cell = frame.cell.array @ (np.eye(3) + rng.normal(scale=0.01, size=(3, 3)))  # any cell shape
    # tensors obeying the sum rule: random symmetric Z_Ba, Z_Ti, O tensors absorbing the rest
    z_ba = 2.77 * np.eye(3) + rng.normal(scale=0.2, size=(3, 3))
    z_ti = 6.26 * np.eye(3) + rng.normal(scale=0.3, size=(3, 3))
    z_o = -(z_ba + z_ti) / 3
    charges = {"Ba": z_ba, "Ti": z_ti, "O": z_o}
    dipoles = local_dipoles(cells, frame, charges)
    u = displacements(cells, frame.positions[None], frame.cell.array[None])[0]
    z = np.stack([charges[s] for s in frame.get_chemical_symbols()])
    total_atoms = np.einsum("nab,nb->a", z, u)
    total_cells = (dipoles.p[0] * dipoles.cell_volume[0]).sum(0)
    assert np.abs(total_cells - total_atoms).max() < 1e-12
    assert np.allclose(dipoles.polarization[0] * frame.get_volume(), total_atoms, atol=1e-12)


def test_uniform_b_shift_gives_z_delta_over_volume_in_every_cell():
    ref = batio3((2, 3, 2))
    cells = perovskite_cells(ref, "Ba", "Ti")
    delta = np.array([0.03, -0.05, 0.11])
    frame = ref.copy()
    frame.positions[np.array(frame.get_chemical_symbols()) == "Ti"] += delta
    dipoles = local_dipoles(cells, frame, BATIO3_BORN_CHARGES)
    expected = BATIO3_BORN_CHARGES["Ti"] * delta / A0**3
    assert np.abs(dipoles.p[0] - expected).max() < 1e-14
    assert np.allclose(dipoles.p_uc_cm2[0], expected * E_PER_A2_TO_UC_PER_CM2)


def test_rigid_translation_changes_nothing_and_rotation_rotates_p():
    ref = batio3((2, 2, 2))
    cells = perovskite_cells(ref, "Ba", "Ti")
    rng = np.random.default_rng(1)
    frame = ref.copy()
    frame.positions += rng.normal(scale=0.1, size=frame.positions.shape)
    p = local_dipoles(cells, frame, BATIO3_BORN_CHARGES).p[0]
    moved = frame.copy()
    moved.positions += np.array([1.7, -3.2, 5.9])  # crosses the cell boundary: minimum image
    assert np.abs(local_dipoles(cells, moved, BATIO3_BORN_CHARGES).p[0] - p).max() < 1e-12
    rotation = Rotation.random(random_state=3).as_matrix()
    turned = frame.copy()
    turned.set_cell(frame.cell.array @ rotation.T, scale_atoms=False)
    turned.positions = frame.positions @ rotation.T
    p_turned = local_dipoles(cells, turned, BATIO3_BORN_CHARGES).p[0]
    assert np.abs(p_turned - p @ rotation.T).max() < 1e-12
    # tensor charges rotate as R Z Rᵀ
    z = {"Ba": np.diag([2.0, 3.0, 3.3]), "Ti": np.diag([7.0, 6.0, 5.5])}
    z["O"] = -(z["Ba"] + z["Ti"]) / 3
    p_tensor = local_dipoles(cells, frame, z).p[0]
    z_turned = {s: rotation @ t @ rotation.T for s, t in z.items()}
    assert np.abs(local_dipoles(cells, turned, z_turned).p[0] - p_tensor @ rotation.T).max() < 1e-12


def test_bad_inputs_get_one_clear_line():
    ref = batio3((2, 2, 2))
    cells = perovskite_cells(ref, "Ba", "Ti")
    with pytest.raises(ValueError, match="acoustic sum rule"):
        local_dipoles(cells, ref, {"Ba": 2.77, "Ti": 7.0, "O": -3.01})
    with pytest.raises(ValueError, match="no Born charge for O"):
        local_dipoles(cells, ref, {"Ba": 2.0, "Ti": 4.0})
    with pytest.raises(ValueError, match="no Sr atoms"):
        perovskite_cells(ref, "Sr", "Ti")
    with pytest.raises(ValueError, match="same supercell"):
        local_dipoles(cells, batio3((2, 2, 1)), BATIO3_BORN_CHARGES)


def test_l1_weight_matches_a_direct_quadrature_of_the_density():
    """h(d) d̂ = ∫_{|r|<rc} r̂ exp(−|r − d|²/2σ²) d³r, here on a 3-D grid (independent of the Bessel form)."""
    cutoff, width = 3.0, 0.5
    h = 0.03
    axis = np.arange(-cutoff + h / 2, cutoff, h)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    inside = r < cutoff
    for d in (0.7, 2.0, 3.2):
        density = np.exp(-(x**2 + y**2 + (z - d) ** 2) / (2 * width**2))
        direct = np.sum((z / r * density)[inside]) * h**3
        assert neighbour_density_l1(np.array([d]), cutoff, width)[0] == pytest.approx(direct, rel=3e-3)


def test_descriptor_proxy_zero_at_ideal_follows_the_b_shift_and_rotates():
    ref = batio3((2, 2, 2))
    assert np.abs(descriptor_dipoles(ref, "Ti")).max() < 1e-10
    frame = ref.copy()
    delta = np.array([0.0, 0.0, 0.1])
    frame.positions[np.array(frame.get_chemical_symbols()) == "Ti"] += delta
    proxy = descriptor_dipoles(frame, "Ti")[0]
    assert np.all(proxy[:, 2] > 0) and np.abs(proxy[:, :2]).max() < 1e-10
    assert np.allclose(proxy, proxy[0])
    rotation = Rotation.random(random_state=5).as_matrix()
    turned = frame.copy()
    turned.set_cell(frame.cell.array @ rotation.T, scale_atoms=False)
    turned.positions = frame.positions @ rotation.T
    assert np.abs(descriptor_dipoles(turned, "Ti")[0] - proxy @ rotation.T).max() < 1e-10


def periodic_exponential_spectrum(n_cells: int, xi: float) -> np.ndarray:
    """Spectrum of the periodic covariance e^(−n/ξ) + e^(−(L−n)/ξ) on a ring of L sites."""
    n = np.arange(n_cells)
    return np.fft.fft(np.exp(-n / xi) + np.exp(-(n_cells - n) / xi)).real


def test_correlation_lengths_of_a_field_with_known_covariance():
    """Gaussian dipole field, covariance separable: ξ = 3 cells along z (the polar axis), 1 cell along x and y."""
    size, xi_along, xi_across = 12, 3.0, 1.0
    ref = batio3((size, size, size))
    cells = perovskite_cells(ref, "Ba", "Ti")
    across = periodic_exponential_spectrum(size, xi_across)
    spectrum = across[:, None, None] * across[None, :, None] * periodic_exponential_spectrum(size, xi_along)[None, None]
    assert spectrum.min() > 0
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(200, size, size, size))
    field = np.fft.ifftn(np.sqrt(spectrum) * np.fft.fftn(noise, axes=(1, 2, 3)), axes=(1, 2, 3)).real
    p = np.zeros((200, cells.n_cells, 3))
    p[:, :, 2] = 0.2 + field[(slice(None),) + tuple(cells.grid.T)]  # a uniform polarization drops out
    p[:, :, :2] = rng.normal(scale=0.3, size=(200, cells.n_cells, 2))  # uncorrelated other components
    result = dipole_correlations(cells, p, ref.cell.array, axis=2)
    assert result.along[0] == 1.0 and result.distance_along[1] == pytest.approx(A0)
    assert result.length_along == pytest.approx(xi_along * A0, rel=0.1)
    assert result.length_across == pytest.approx(xi_across * A0, rel=0.1)
    with pytest.raises(ValueError, match="≥ 4 cells"):
        dipole_correlations(perovskite_cells(batio3((3, 3, 3)), "Ba", "Ti"), np.zeros((1, 27, 3)), np.eye(3))


def test_a_correlation_length_the_box_cannot_determine_is_not_reported_as_a_number():
    """ξ = 40 cells along z in an 8-cell box: NaN along (the example's 320-atom box once gave 189 Å in 16 Å),
    while the 1-cell length across is still measured; in a 4-cell box (two points for three fit parameters)
    both lengths are NaN."""
    for size, across_expected in ((8, A0), (4, None)):
        ref = batio3((size, size, size))
        cells = perovskite_cells(ref, "Ba", "Ti")
        across = periodic_exponential_spectrum(size, 1.0)
        spectrum = np.clip(across[:, None, None] * across[None, :, None]
                           * periodic_exponential_spectrum(size, 40.0)[None, None], 1e-12, None)
        noise = np.random.default_rng(8).normal(size=(400, size, size, size))
        field = np.fft.ifftn(np.sqrt(spectrum) * np.fft.fftn(noise, axes=(1, 2, 3)), axes=(1, 2, 3)).real
        p = np.zeros((400, cells.n_cells, 3))
        p[:, :, 2] = field[(slice(None),) + tuple(cells.grid.T)]
        result = dipole_correlations(cells, p, ref.cell.array, axis=2)
        assert np.isnan(result.length_along), (size, result.length_along)
        if across_expected is None:
            assert np.isnan(result.length_across), result.length_across
        else:
            assert result.length_across == pytest.approx(across_expected, rel=0.15)
