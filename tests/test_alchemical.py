"""Alchemical compression of the power-spectrum model (many elements through a few pseudo-elements).

Checked against references outside the compressed code path: the descriptor
written from its definition with explicit angles (tests/test_descriptor_gradients.py)
with every element's weights formed from the pseudo-elements by hand, finite
differences of the energy for a 25-element model, torch's gradcheck, the
uncompressed model (identity mixing), and numbers recorded from the shipped
demo models with the code before compression existed.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from atomflux import load_model
from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.io import read_metadata, save_model
from atomflux.models import Morse, PowerSpectrumPotential
from atomflux.systems import Batch
from atomflux.training import TrainConfig, train
from atomflux.training.dataset import frame_from_atoms

from test_descriptor_gradients import reference_descriptors

DATA = Path(__file__).parent / "data"
METALS_25 = ("Ni", "Cu", "Pd", "Ag", "Pt", "Au", "Al", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Zr", "Nb", "Mo",
             "Ru", "Rh", "Hf", "Ta", "W", "Re", "Os", "Ir", "Zn")


def random_alloy(elements, repeat=2, seed=0, a=3.8) -> Atoms:
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)
    rng = np.random.default_rng(seed)
    atoms.set_chemical_symbols(list(rng.choice(list(elements), size=len(atoms))))
    atoms.rattle(0.1, seed=seed)
    return atoms


def compressed(elements, n_pseudo, seed=0, **kwargs) -> PowerSpectrumPotential:
    torch.manual_seed(seed)
    model = PowerSpectrumPotential(list(elements), n_pseudo=n_pseudo, **kwargs).double()
    with torch.no_grad():  # centre weights away from 1, so their gradients are tested too
        model.centre_weights.normal_(0.0, 0.3)
    return model.eval()


def test_identity_mixing_reproduces_the_uncompressed_model(alloy):
    torch.manual_seed(3)
    plain = PowerSpectrumPotential(["Cu", "Au", "Ni"], hidden=[16, 16], n_ensemble=3).double().eval()
    with torch.no_grad():
        plain.centre_weights.normal_(1.0, 0.3)
    same = PowerSpectrumPotential(["Cu", "Au", "Ni"], hidden=[16, 16], n_ensemble=3, n_pseudo=3).double().eval()
    state = dict(plain.state_dict())
    state["species_mixing"] = torch.eye(3, dtype=torch.float64)
    state["centre_weights"] = state["centre_weights"] - 1.0          # E = 1 + U Ẽ
    same.load_state_dict(state)
    alloy.symbols[[2]] = "Ni"
    batch = Batch.from_atoms(alloy, plain.cutoff)
    vectors = batch.pair_vectors()
    torch.testing.assert_close(same.descriptors(batch, vectors), plain.descriptors(batch, vectors),
                               atol=1e-12, rtol=0)
    a = evaluate(plain, batch, stress=True, energies=True, uncertainty=True)
    b = evaluate(same, batch, stress=True, energies=True, uncertainty=True)
    for key in ("energy", "energies", "forces", "stress", "forces_ensemble", "energy_uncertainty"):
        torch.testing.assert_close(getattr(b, key), getattr(a, key), atol=1e-12, rtol=0)


def test_compressed_descriptors_and_weight_gradients_match_the_angle_formula(alloy):
    """The compressed descriptor equals the explicit-angle descriptor of the uncompressed model
    whose element weights are W[s] = Σ_p U[s,p] W̃[p], E[s] = 1 + U[s] Ẽ — values, gradients
    with respect to the pair vectors and all three weight tensors, and second derivatives."""
    model = compressed(["Cu", "Au", "Ni", "Pt"], 2, n_radial=5, n_channels=3, hidden=[8])
    alloy.symbols[[2, 5]] = ["Ni", "Pt"]
    batch = Batch.from_atoms(alloy, model.cutoff)
    vectors = batch.pair_vectors().requires_grad_(True)
    params = [vectors, model.radial_weights, model.centre_weights, model.species_mixing]
    mixing, radial, centre = model.species_mixing, model.radial_weights, model.centre_weights
    expanded = PowerSpectrumPotential(model.species, n_radial=5, n_channels=3, hidden=[8]).double()
    expanded.inv_neighbours.copy_(model.inv_neighbours)
    del expanded.radial_weights, expanded.centre_weights  # stand-ins built from the compressed weights
    expanded.radial_weights = torch.einsum("sp,pkc->skc", mixing, radial)
    expanded.centre_weights = 1.0 + mixing @ centre
    fast, ref = model.descriptors(batch, vectors), reference_descriptors(expanded, batch, vectors)
    torch.testing.assert_close(fast, ref, atol=1e-13, rtol=1e-11)
    weight = torch.randn_like(ref)
    first_fast = torch.autograd.grad((fast * weight).sum(), params, create_graph=True)
    first_ref = torch.autograd.grad((ref * weight).sum(), params, create_graph=True)
    for a, b in zip(first_fast, first_ref):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    probe = torch.randn_like(vectors)
    second_fast = torch.autograd.grad((first_fast[0] * probe).sum(), params)
    second_ref = torch.autograd.grad((first_ref[0] * probe).sum(), params)
    for a, b in zip(second_fast, second_ref):
        assert b.abs().max() > 1e-4
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_gradcheck_through_the_mixing_matrix():
    model = compressed(["Cu", "Au", "Ni"], 2, cutoff=4.0, n_radial=4, n_channels=3, hidden=[8])
    cluster = Atoms("CuAuNiCu", positions=[[0, 0, 0], [2.5, 0.2, 0], [0.3, 2.4, 0.5], [1.1, 1.0, 2.2]])
    batch = Batch.from_atoms(cluster, model.cutoff)
    vectors = batch.pair_vectors().requires_grad_(True)
    mixing = model.species_mixing.detach().clone().requires_grad_(True)

    def energies(v, u):
        return torch.func.functional_call(model, {"species_mixing": u}, (batch, v))["energy"]

    assert torch.autograd.gradcheck(energies, (vectors, mixing))
    assert torch.autograd.gradgradcheck(energies, (vectors, mixing), fast_mode=True)


def test_25_element_forces_are_minus_the_energy_gradient():
    """Hand-derived chunked path (MD, swap MC) and autograd path, against central differences."""
    model = compressed(METALS_25, 4, hidden=[16])
    atoms = random_alloy(METALS_25, repeat=2, seed=1)                  # 32 atoms, ~20 elements present
    assert len(set(atoms.get_chemical_symbols())) > 15
    batch = Batch.from_atoms(atoms, model.cutoff)
    fast = evaluate(model, batch, chunk_bytes=2**16).forces.numpy()   # several chunks
    slow = evaluate(model, batch, create_graph=True).forces.detach().numpy()
    probe = atoms[:4]                                                   # finite differences on 4 atoms of the cell
    energy = lambda a: float(evaluate(model, Batch.from_atoms(a, model.cutoff), forces=False).energy)

    def fd_force(i, k, h=1e-5):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        return -(energy(plus) - energy(minus)) / (2 * h)

    fd = np.array([[fd_force(i, k) for k in range(3)] for i in range(len(probe))])
    assert np.abs(fd).max() > 1e-3
    np.testing.assert_allclose(fast[:4], fd, atol=1e-7, rtol=0)
    np.testing.assert_allclose(fast, slow, atol=1e-12, rtol=0)


def test_descriptor_size_is_independent_and_parameters_linear_in_the_elements():
    counts = {}
    for n in (2, 7, 25):
        model = PowerSpectrumPotential(list(METALS_25[:n]), n_pseudo=4)
        assert model.n_descriptors == PowerSpectrumPotential(["Cu"]).n_descriptors
        counts[n] = sum(p.numel() for p in model.parameters())
    assert counts[25] - counts[7] == 18 * 4 and counts[7] - counts[2] == 5 * 4   # one row of U per element


def test_compressed_model_file_round_trip(tmp_path, alloy):
    model = compressed(["Cu", "Au"], 3, hidden=[8], n_ensemble=2)
    path = save_model(model, tmp_path / "m.pt")
    assert read_metadata(path)["config"]["n_pseudo"] == 3
    loaded = load_model(path)                                           # weights_only=True inside
    assert loaded.n_pseudo == 3
    batch = Batch.from_atoms(alloy, model.cutoff)
    a, b = evaluate(model, batch, stress=True, uncertainty=True), evaluate(loaded, batch, stress=True, uncertainty=True)
    for key in ("energy", "forces", "stress", "forces_ensemble"):
        assert torch.equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("name", ["demo", "demo-llpr"])
def test_shipped_models_give_the_numbers_recorded_before_compression(name):
    """Files written before alchemical compression (no ``n_pseudo`` in their config) load as before and
    give the numbers recorded with that code (tests/data/demo_model_reference.json)."""
    reference = json.loads((DATA / "demo_model_reference.json").read_text())
    atoms = Atoms(reference["symbols"], positions=reference["positions"], cell=reference["cell"], pbc=True)
    calc = AtomfluxCalculator(load_model(name))
    atoms.calc = calc
    expected = reference[name]
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], abs=1e-12, rel=0)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(atoms.get_stress(), expected["stress"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(atoms.get_potential_energies(), expected["energies"], atol=1e-12, rtol=0)
    assert float(calc.get_property("energy_uncertainty", atoms)) == pytest.approx(expected["energy_uncertainty"],
                                                                                  abs=1e-12, rel=0)


def test_25_element_model_trains():
    """A 25-element compressed model trains (a few epochs on Morse-labelled alloys: the loss falls)."""
    reference = Morse(0.3, 1.4, 2.6, cutoff=4.5)
    frames = []
    for seed in range(4):
        atoms = random_alloy(METALS_25, repeat=2, seed=seed, a=3.6)
        result = evaluate(reference, Batch.from_atoms(atoms, reference.cutoff), stress=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(result.energy), forces=result.forces.numpy(),
                                           stress=result.stress.numpy())
        frames.append(frame_from_atoms(atoms))
    config = TrainConfig(epochs=3, batch_size=2, validation_fraction=0.0, progress=False, learning_rate=1e-2,
                         model={"n_pseudo": 4, "hidden": [16]})
    result = train(frames, config)
    losses = [h["train_loss"] for h in result.history]
    assert result.potential.n_pseudo == 4 and result.potential.species_mixing.shape == (len(
        result.potential.species), 4)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("value", [0, -2, 1.5])
def test_bad_pseudo_element_counts_are_refused(value):
    with pytest.raises(ValueError, match="n_pseudo"):
        PowerSpectrumPotential(["Cu", "Au"], n_pseudo=value)
    with pytest.raises(ValueError, match="n_pseudo"):
        TrainConfig(model={"n_pseudo": value}).check()
