"""Forces, stress and virials from the one autograd path, against independent numbers."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.spatial.transform import Rotation

from atomflux.evaluate import evaluate
from atomflux.systems import Batch
from conftest import finite_difference_forces, finite_difference_stress


def energy_of(model):
    return lambda atoms: float(evaluate(model, Batch.from_atoms(atoms, model.cutoff), forces=False).energy[0])


@pytest.mark.parametrize("system", ["alloy", "methanol"])
def test_forces_are_minus_energy_gradient(random_model, system, request):
    atoms = request.getfixturevalue(system)
    res = evaluate(random_model, Batch.from_atoms(atoms, random_model.cutoff))
    fd = finite_difference_forces(energy_of(random_model), atoms)
    assert np.abs(fd).max() > 1e-2  # a non-trivial test
    np.testing.assert_allclose(res.forces.numpy(), fd, atol=1e-8 * max(1.0, np.abs(fd).max()), rtol=0)


def test_stress_is_strain_derivative(random_model, alloy):
    res = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), stress=True)
    fd = finite_difference_stress(energy_of(random_model), alloy)
    assert np.abs(fd).max() > 1e-4
    np.testing.assert_allclose(res.stress[0].numpy(), fd, atol=1e-9, rtol=0)


def test_per_atom_virials_sum_to_virial_and_energies_to_energy(random_model, alloy):
    res = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), stress=True, virials=True, energies=True)
    torch.testing.assert_close(res.virials.sum(0), res.virial[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(res.energies.sum(), res.energy[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(-res.virial[0] / alloy.get_volume(), res.stress[0])


def test_translation_rotation_permutation_invariance(random_model, alloy):
    base = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), stress=True)
    rot = Rotation.random(random_state=1).as_matrix()
    moved = alloy.copy()
    moved.set_cell(alloy.cell.array @ rot.T, scale_atoms=False)
    moved.positions = alloy.positions @ rot.T + np.array([0.3, -1.2, 7.0])
    res = evaluate(random_model, Batch.from_atoms(moved, random_model.cutoff), stress=True)
    assert abs(float(res.energy[0] - base.energy[0])) < 1e-10
    np.testing.assert_allclose(res.forces.numpy(), base.forces.numpy() @ rot.T, atol=1e-10)
    np.testing.assert_allclose(res.stress[0].numpy(), rot @ base.stress[0].numpy() @ rot.T, atol=1e-12)
    order = np.random.default_rng(0).permutation(len(alloy))
    res = evaluate(random_model, Batch.from_atoms(alloy[order], random_model.cutoff))
    assert abs(float(res.energy[0] - base.energy[0])) < 1e-10
    np.testing.assert_allclose(res.forces.numpy(), base.forces.numpy()[order], atol=1e-10)


def test_supercell_is_extensive(random_model, alloy):
    one = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), stress=True)
    eight = evaluate(random_model, Batch.from_atoms(alloy * (2, 2, 2), random_model.cutoff), stress=True)
    assert float(eight.energy[0]) == pytest.approx(8 * float(one.energy[0]), abs=1e-9)
    np.testing.assert_allclose(eight.stress[0].numpy(), one.stress[0].numpy(), atol=1e-12)


def test_small_cell_with_many_images(random_model):
    """A 1-atom cell far smaller than the cutoff equals its 3x3x3 supercell per atom."""
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.rattle(0.0)
    one = evaluate(random_model, Batch.from_atoms(atoms, random_model.cutoff), stress=True)
    big = evaluate(random_model, Batch.from_atoms(atoms * (3, 3, 3), random_model.cutoff), stress=True)
    assert float(big.energy[0]) / 27 == pytest.approx(float(one.energy[0]), abs=1e-10)


def test_mixed_batch_equals_one_by_one(random_model, alloy, methanol):
    systems = [alloy, methanol, alloy * (1, 2, 1)]
    together = evaluate(random_model, Batch.from_atoms(systems, random_model.cutoff), stress=True, energies=True)
    offset = 0
    for k, atoms in enumerate(systems):
        alone = evaluate(random_model, Batch.from_atoms(atoms, random_model.cutoff), stress=True, energies=True)
        n = len(atoms)
        torch.testing.assert_close(together.energy[k], alone.energy[0], atol=1e-11, rtol=0)
        torch.testing.assert_close(together.forces[offset:offset + n], alone.forces, atol=1e-11, rtol=0)
        torch.testing.assert_close(together.stress[k], alone.stress[0], atol=1e-12, rtol=0, equal_nan=True)
        offset += n
    assert torch.isnan(together.stress[1]).all()  # a molecule has no stress


def test_float32_close_to_float64(random_model, alloy):
    r64 = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff))
    r32 = evaluate(random_model.float(), Batch.from_atoms(alloy, random_model.cutoff, dtype=torch.float32))
    random_model.double()
    assert r32.forces.dtype == torch.float32
    np.testing.assert_allclose(r32.forces.double().numpy(), r64.forces.numpy(), atol=1e-4)


def test_only_what_is_asked_is_computed(random_model, alloy):
    res = evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), forces=False)
    assert res.forces is None and res.stress is None and res.virials is None and res.energies is None
    assert not res.energy.requires_grad


def test_batch_cutoff_shorter_than_model_is_refused(random_model, alloy):
    with pytest.raises(ValueError, match="cutoff"):
        evaluate(random_model, Batch.from_atoms(alloy, 2.0))
