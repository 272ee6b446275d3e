"""Heat flux of message-passing (semi-local) potentials through the unfolded system.

Checks: J_pot of a non-periodic cluster equals d/dt Σ_i r_i U_i − Σ_i v_i U_i − Σ_k r_k (∂U/∂r_k · v_k)
by central finite differences along the velocities; a periodic cell's flux is 1/8 of that of the same
crystal replicated 2×2×2; for a strictly local model the unfolded formula equals the pair form; SevenNet-0
(five message-passing layers) obeys the finite-difference identity on a cluster.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from ase.build import bulk

from atomflux import AtomfluxCalculator, Batch, evaluate
from atomflux.evaluate import unfolded_flux_virials
from atomflux.models import LennardJones
from atomflux.systems import unfold

from conftest import TwoLayerToy, assert_flux_is_the_time_derivative, random_cluster


def test_message_passing_flux_is_the_time_derivative_of_the_energy_moment():
    atoms, velocities = random_cluster(20, 4.0, seed=1)
    assert_flux_is_the_time_derivative(TwoLayerToy(4.5), atoms, velocities, h=1e-3, rtol=1e-7)


def test_pair_form_would_be_wrong_for_message_passing():
    """The check above can fail: the strictly-local pair form misses the second layer's flux."""
    toy = TwoLayerToy(4.5)
    atoms, velocities = random_cluster(20, 4.0, seed=1)
    toy.strictly_local = True  # lie: evaluate now uses the pair form
    with pytest.raises(AssertionError):
        assert_flux_is_the_time_derivative(toy, atoms, velocities, h=1e-3, rtol=1e-4)


def test_periodic_flux_is_an_eighth_of_the_doubled_cell():
    rng = np.random.default_rng(3)
    atoms = bulk("Ar", "fcc", a=4.2) * (2, 1, 1)          # triclinic, smaller than the 6 Å reach
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    velocities = 0.01 * rng.standard_normal((len(atoms), 3))
    toy = TwoLayerToy(4.5)

    def flux(crystal, v):
        batch = Batch.from_atoms(crystal, toy.cutoff)
        return evaluate(toy, batch, velocities=torch.tensor(v), masses=torch.ones(len(crystal))).heat_flux[0].numpy()

    big = atoms * (2, 2, 2)
    np.testing.assert_allclose(flux(big, np.tile(velocities, (8, 1))), 8 * flux(atoms, velocities), rtol=1e-10)


def test_unfolded_formula_equals_pair_form_for_a_strictly_local_model():
    rng = np.random.default_rng(4)
    atoms = bulk("Ar", "fcc", a=5.26) * (2, 2, 1)
    atoms.positions += 0.15 * rng.standard_normal(atoms.positions.shape)
    lj = LennardJones(sigma=3.4, epsilon=0.0104, cutoff=6.5, cutoff_mode="smooth")
    batch = Batch.from_atoms(atoms, lj.cutoff)
    pair_form = evaluate(lj, batch, forces=False, flux_virials=True).flux_virials
    torch.testing.assert_close(unfolded_flux_virials(lj, batch, reach=lj.cutoff), pair_form, rtol=1e-10, atol=1e-12)


def test_unfold_keeps_the_cell_atoms_first_and_every_image_within_reach():
    atoms = bulk("Cu", "fcc", a=3.6)                      # one atom, 12 neighbours at 2.55 Å
    batch = Batch.from_atoms(atoms, 4.5)
    cluster, origin = unfold(batch, 0, reach=2.6)
    assert len(cluster.numbers) == 13 and int(origin[0]) == 0 and bool((origin == 0).all())
    assert not bool(cluster.pbc.any())
    np.testing.assert_allclose(cluster.positions[0].numpy(), atoms.positions[0])
    with pytest.raises(ValueError, match="interaction range"):
        unfold(batch, 0, reach=-1.0)


def test_calculator_gives_the_flux_of_a_message_passing_model():
    atoms, velocities = random_cluster(12, 4.0, seed=5)
    atoms.set_velocities(velocities / 0.09822694788464063)  # Å/fs -> ASE units
    calc = AtomfluxCalculator(TwoLayerToy(4.5))
    atoms.calc = calc
    batch = Batch.from_atoms(atoms, 4.5)
    expected = evaluate(calc.potential, batch, velocities=torch.tensor(atoms.get_velocities() * 0.09822694788464063),
                        masses=torch.tensor(atoms.get_masses())).heat_flux[0].numpy()
    np.testing.assert_allclose(calc.heat_flux(atoms), expected, rtol=1e-10)


def test_potential_without_interaction_range_is_refused_with_one_line():
    toy = TwoLayerToy(4.5)
    del toy.interaction_range
    atoms, velocities = random_cluster(6, 4.0, seed=6)
    with pytest.raises(ValueError, match="interaction_range"):
        evaluate(toy, Batch.from_atoms(atoms, 4.5), velocities=torch.tensor(velocities), masses=torch.ones(6))


def test_sevennet_flux_is_the_time_derivative_of_the_energy_moment():
    """SevenNet-0 (5 layers × 5 Å) on a 10-atom Si cluster: the unfolded system is the cluster itself."""
    pytest.importorskip("sevenn", reason="sevenn is not installed (pip install atomflux[sevennet])")
    calc = AtomfluxCalculator("sevennet:7net-0", dtype="float32")
    atoms, velocities = random_cluster(10, 5.43, seed=7, symbol="Si")
    # float32 model: a larger step and tolerance (float64 accumulation keeps the sums exact)
    assert_flux_is_the_time_derivative(calc.potential, atoms, velocities, h=0.5, rtol=2e-3)


def per_atom_and_vector_flux(potential, atoms, velocities, rtol=1e-10):
    """J_pot from the per-atom receiver virials (flux_virials=True) and from the flux-vector path (velocities only,
    which must not fall back on the per-atom path)."""
    batch = Batch.from_atoms(atoms, potential.cutoff)
    v, m = torch.tensor(velocities), torch.ones(len(atoms))
    exact = evaluate(potential, batch, forces=False, velocities=v, masses=m, flux_virials=True)
    with mock.patch("atomflux.evaluate.unfolded_flux_virials", side_effect=AssertionError("fell back")):
        vector = evaluate(potential, batch, forces=False, velocities=v, masses=m)
    assert vector.flux_virials is None  # the vector path formed no per-atom virials
    total = exact.heat_flux.numpy()
    np.testing.assert_allclose(vector.heat_flux.numpy(), total, rtol=rtol, atol=rtol * np.abs(total).max())
    return exact.heat_flux_potential[0].numpy(), vector.heat_flux_potential[0].numpy()


@pytest.mark.parametrize("shift", [0.0, 1e3])
def test_flux_vector_equals_the_per_atom_virial_flux_in_a_cluster(shift):
    """Also far from the origin: J_pot does not depend on where the coordinates start."""
    atoms, velocities = random_cluster(20, 4.0, seed=8)
    atoms.positions += shift
    exact, vector = per_atom_and_vector_flux(TwoLayerToy(4.5), atoms, velocities)
    np.testing.assert_allclose(vector, exact, rtol=1e-10, atol=1e-10 * np.abs(exact).max())


def test_flux_vector_equals_the_per_atom_virial_flux_in_a_small_triclinic_cell():
    rng = np.random.default_rng(9)
    atoms = bulk("Ar", "fcc", a=4.2) * (2, 1, 1)          # triclinic, smaller than the 9 Å reach
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape) + 6.0  # outside the cell too
    exact, vector = per_atom_and_vector_flux(TwoLayerToy(4.5), atoms, 0.01 * rng.standard_normal((len(atoms), 3)))
    np.testing.assert_allclose(vector, exact, rtol=1e-10, atol=1e-10 * np.abs(exact).max())


def test_flux_vector_of_a_three_layer_model_needs_three_hops():
    """A reach of 3 cutoffs: the cluster keeps atoms three pairs away; J equals the per-atom path."""

    class ThreeLayerToy(TwoLayerToy):
        def forward(self, batch, vectors):
            r2 = (vectors**2).sum(1) / self.cutoff**2
            phi = torch.where(r2 < 1, (1 - r2.clamp(max=1)) ** 3, torch.zeros_like(r2))
            i, j = batch.pairs[:, 0], batch.pairs[:, 1]
            zeros = torch.zeros(len(batch.numbers), dtype=vectors.dtype)
            rho = zeros.index_add(0, i, phi)
            second = zeros.index_add(0, i, phi * torch.tanh(rho[j]))
            third = zeros.index_add(0, i, phi * second[j] ** 2)
            return {"energy": -0.3 * rho + 0.2 * third}

    toy = ThreeLayerToy(3.2)
    toy.interaction_range = 3 * toy.cutoff
    rng = np.random.default_rng(10)
    atoms = bulk("Ar", "fcc", a=4.0, cubic=True)
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    velocities = 0.01 * rng.standard_normal((len(atoms), 3))
    exact, vector = per_atom_and_vector_flux(toy, atoms, velocities)
    np.testing.assert_allclose(vector, exact, rtol=1e-10, atol=1e-10 * np.abs(exact).max())
    toy.interaction_range = 2 * toy.cutoff  # a reach too short for the model: two hops miss the third layer
    short = evaluate(toy, Batch.from_atoms(atoms, toy.cutoff), forces=False, velocities=torch.tensor(velocities),
                     masses=torch.ones(len(atoms))).heat_flux_potential[0].numpy()
    assert not np.allclose(short, exact, rtol=1e-6)


def test_sevennet_flux_vector_equals_the_per_atom_virial_flux():
    """SevenNet-0 (5 layers × 5 Å) on a 10-atom Si cluster (a periodic cell would unfold into thousands of
    atoms); float32 compute, so the two paths agree to float32 rounding only."""
    pytest.importorskip("sevenn", reason="sevenn is not installed (pip install atomflux[sevennet])")
    calc = AtomfluxCalculator("sevennet:7net-0")
    atoms, velocities = random_cluster(10, 5.43, seed=11, symbol="Si")
    exact, vector = per_atom_and_vector_flux(calc.potential, atoms, velocities, rtol=1e-4)
    np.testing.assert_allclose(vector, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_flux_vector_falls_back_on_the_per_atom_path_once_for_a_batch():
    """A model without forward-mode derivatives gets the per-atom path: the same J for each system of a
    two-system batch, with the batch's flux virials formed once."""
    first, v1 = random_cluster(12, 4.0, seed=10)
    second, v2 = random_cluster(9, 4.0, seed=11)
    toy = TwoLayerToy(4.5)
    batch = Batch.from_atoms([first, second], toy.cutoff)
    v = torch.tensor(np.concatenate([v1, v2]))
    exact = evaluate(toy, batch, forces=False, velocities=v, masses=torch.ones(len(v)), flux_virials=True)
    with mock.patch("atomflux.evaluate._energy_rates", return_value=None), \
            mock.patch("atomflux.evaluate.unfolded_flux_virials", wraps=unfolded_flux_virials) as per_atom:
        vector = evaluate(toy, batch, forces=False, velocities=v, masses=torch.ones(len(v)))
    assert per_atom.call_count == 1
    total = exact.heat_flux_potential.numpy()
    np.testing.assert_allclose(vector.heat_flux_potential.numpy(), total, rtol=1e-10, atol=1e-10 * np.abs(total).max())
