"""The hand-derived power-spectrum gradients against independent references.

The reference descriptor is written here from its definition with explicit
angles, p_i,l,cc' = Σ_jk g_c(r_ij) g_c'(r_ik) cos^l θ_jik (no monomials, no
padded table), and differentiated by autograd; torch's gradcheck adds finite
differences of first and second derivatives.
"""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from atomflux import load_model
from atomflux.evaluate import evaluate
from atomflux.models import PowerSpectrumPotential
from atomflux.systems import Batch
from atomflux.uncertainty.propagation import members


def reference_descriptors(model: PowerSpectrumPotential, batch: Batch, vectors: torch.Tensor) -> torch.Tensor:
    species = model.species_index(batch.numbers)
    rc = model.cutoff
    r = torch.linalg.norm(vectors, dim=1)
    k = torch.arange(1, model.n_radial + 1, dtype=r.dtype)
    x = torch.clamp(r / rc, max=1.0)
    switch = 1 - 10 * x**3 + 15 * x**4 - 6 * x**5
    basis = math.sqrt(2 / rc) * torch.sin(k * math.pi * r[:, None] / rc) / r[:, None] * switch[:, None]
    i, j = batch.pairs[:, 0], batch.pairs[:, 1]
    g = torch.einsum("pk,pkc->pc", basis, model.radial_weights[species[j]])
    g = g * model.centre_weights[species[i]] * model.inv_neighbours
    unit = vectors / r[:, None]
    triu = torch.triu_indices(model.n_channels, model.n_channels)
    rows = []
    for atom in range(len(species)):
        mine = i == atom
        gi, ui = g[mine], unit[mine]
        cosines = ui @ ui.T
        parts = [gi.sum(0)]
        for l in range(model.max_angular + 1):
            parts.append((gi.T @ cosines**l @ gi)[triu[0], triu[1]])
        rows.append(torch.cat(parts))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def mixed_model():
    torch.manual_seed(1)
    model = PowerSpectrumPotential(["Cu", "Au"], cutoff=4.0, n_radial=5, n_channels=3, max_angular=3,
                                   hidden=[8], n_ensemble=4).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    return model


@pytest.fixture
def cell():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[[0, 3]] = "Au"
    atoms.rattle(0.15, seed=7)
    return atoms


def test_descriptors_and_their_derivatives_match_the_angle_formula(mixed_model, cell):
    batch = Batch.from_atoms(cell, mixed_model.cutoff)
    vectors = batch.pair_vectors().requires_grad_(True)
    fast, ref = mixed_model.descriptors(batch, vectors), reference_descriptors(mixed_model, batch, vectors)
    torch.testing.assert_close(fast, ref, atol=1e-13, rtol=1e-11)
    weight = torch.randn_like(ref)
    params = [vectors, mixed_model.radial_weights, mixed_model.centre_weights]
    first_fast = torch.autograd.grad((fast * weight).sum(), params, create_graph=True)
    first_ref = torch.autograd.grad((ref * weight).sum(), params, create_graph=True)
    for a, b in zip(first_fast, first_ref):
        assert b.abs().max() > 1e-3  # non-trivial
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    # second derivatives: a force-like quantity differentiated again (what training on forces needs)
    probe = torch.randn_like(vectors)
    second_fast = torch.autograd.grad((first_fast[0] * probe).sum(), params)
    second_ref = torch.autograd.grad((first_ref[0] * probe).sum(), params)
    for a, b in zip(second_fast, second_ref):
        assert b.abs().max() > 1e-3
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_gradcheck_and_gradgradcheck(mixed_model, cell):
    """Finite differences of first and second derivatives of the atomic energies with respect
    to pair vectors and radial weights (through the hand-derived backward), on a 4-atom cluster."""
    cluster = Atoms("CuAuCuCu", positions=[[0, 0, 0], [2.5, 0.2, 0], [0.3, 2.4, 0.5], [1.1, 1.0, 2.2]])
    batch = Batch.from_atoms(cluster, mixed_model.cutoff)
    vectors = batch.pair_vectors().requires_grad_(True)
    radial = mixed_model.radial_weights.detach().clone().requires_grad_(True)

    def energies(v, w):
        return torch.func.functional_call(mixed_model, {"radial_weights": w}, (batch, v))["energy"]

    assert torch.autograd.gradcheck(energies, (vectors, radial))
    assert torch.autograd.gradgradcheck(energies, (vectors, radial), fast_mode=True)


@pytest.mark.parametrize("name", ["demo", "demo-llpr"])
def test_chunked_path_equals_autograd_and_member_loop(name, cell):
    """All quantities of the hand-derived chunked path (many small chunks) against autograd over
    the whole batch, and vectorised member forces/stress against one evaluation per member."""
    model = load_model(name)
    atoms = cell * (2, 1, 1)
    batch = Batch.from_atoms(atoms, model.cutoff)
    v = torch.tensor(np.random.default_rng(0).normal(size=(len(atoms), 3)) * 0.02)
    m = torch.tensor(atoms.get_masses())
    kwargs = dict(stress=True, virials=True, energies=True, uncertainty=True, pair_gradients=True,
                  velocities=v, masses=m)
    fast = evaluate(model, batch, chunk_bytes=2**14, **kwargs)       # a few atoms per chunk
    slow = evaluate(model, batch, create_graph=True, **kwargs)       # autograd, one chunk
    for key in ("energy", "energies", "forces", "stress", "virials", "flux_virials", "heat_flux", "pair_gradients",
                "energy_uncertainty", "energies_uncertainty", "forces_ensemble", "stress_ensemble",
                "forces_uncertainty", "stress_uncertainty"):
        torch.testing.assert_close(getattr(fast, key), getattr(slow, key).detach(), atol=1e-12, rtol=1e-10)
    loop = [evaluate(member, batch, stress=True) for member in members(model)]
    assert len(loop) == fast.forces_ensemble.shape[0] > 1
    for k, one in enumerate(loop):
        np.testing.assert_allclose(fast.forces_ensemble[k].numpy(), one.forces.numpy(), atol=1e-10, rtol=0)
        np.testing.assert_allclose(fast.stress_ensemble[k].numpy(), one.stress.numpy(), atol=1e-10, rtol=0)


def test_float32_model_accumulates_in_float64(cell):
    atoms = cell * (3, 3, 3)
    batch = Batch.from_atoms(atoms, 4.5)
    exact = evaluate(load_model("demo"), batch, stress=True, uncertainty="energy")
    mixed = evaluate(load_model("demo", dtype=torch.float32), batch, stress=True, uncertainty="energy")
    assert mixed.energy.dtype == mixed.forces.dtype == torch.float64
    assert abs(float(mixed.energy - exact.energy)) / len(atoms) < 1e-6           # eV/atom
    assert float((mixed.forces - exact.forces).abs().max()) < 1e-4             # eV/Å
    assert float((mixed.stress - exact.stress).abs().max()) < 1e-6             # eV/Å³
    assert float((mixed.energy_uncertainty - exact.energy_uncertainty).abs().max()) < 1e-4


def test_atoms_without_pairs_after_the_centres(cell):
    """The LAMMPS bridge's batches end with ghost atoms that start no pair: the chunked path
    skips their pair stage and still matches autograd (and the centres match the plain cell)."""
    model = load_model("demo")
    plain = Batch.from_atoms(cell, model.cutoff)
    n, ghosts = len(cell), 7
    batch = Batch(positions=torch.cat([plain.positions, 30 + torch.rand(ghosts, 3, dtype=torch.float64)]),
                  numbers=torch.cat([plain.numbers, torch.tensor([79, 29] * 3 + [79])]), cell=plain.cell, pbc=plain.pbc,
                  system=torch.zeros(n + ghosts, dtype=torch.long), pairs=plain.pairs, shifts=plain.shifts,
                  cutoff=plain.cutoff)
    fast = evaluate(model, batch, energies=True, pair_gradients=True, uncertainty=True)
    slow = evaluate(model, batch, energies=True, pair_gradients=True, uncertainty=True, create_graph=True)
    for key in ("energies", "pair_gradients", "forces_ensemble", "energies_uncertainty"):
        torch.testing.assert_close(getattr(fast, key), getattr(slow, key).detach(), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(fast.energies[:n], evaluate(model, plain, energies=True).energies, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["mixed", "demo", "demo-llpr"])
def test_member_forces_and_stress_alone(name, mixed_model, cell):
    """Forces and stress with their σ and nothing else (the MD case: the energy's forces and virial are then the
    members' mean, summed once): chunked path = autograd = one evaluation per member to 1e-10, on a batch of two
    systems, for 4 members (few-cotangent VJP), 8 (shallow ensemble) and 16 (LLPR samples); one member force
    against central differences of that member's energy."""
    model = mixed_model if name == "mixed" else load_model(name)
    other = cell * (1, 2, 1)
    other.rattle(0.05, seed=3)
    batch = Batch.collate([Batch.from_atoms(cell * (2, 1, 1), model.cutoff), Batch.from_atoms(other, model.cutoff)])
    fast = evaluate(model, batch, stress=True, uncertainty=True, chunk_bytes=2**14)
    slow = evaluate(model, batch, stress=True, uncertainty=True, create_graph=True)
    for key in ("energy", "forces", "stress", "forces_ensemble", "stress_ensemble", "forces_uncertainty",
                "stress_uncertainty"):
        torch.testing.assert_close(getattr(fast, key), getattr(slow, key).detach(), atol=1e-12, rtol=1e-10)
    assert float(fast.forces_uncertainty.min()) > 0
    group = members(model)
    assert len(group) == fast.forces_ensemble.shape[0] == {"mixed": 4, "demo": 8, "demo-llpr": 16}[name]
    for k, member in enumerate(group):
        one = evaluate(member, batch, stress=True)
        np.testing.assert_allclose(fast.forces_ensemble[k].numpy(), one.forces.numpy(), atol=1e-10, rtol=0)
        np.testing.assert_allclose(fast.stress_ensemble[k].numpy(), one.stress.numpy(), atol=1e-10, rtol=0)
    h, atom, axis = 1e-5, 3, 1
    energies = []
    for sign in (1, -1):
        shifted = batch.positions.clone()
        shifted[atom, axis] += sign * h
        moved = Batch.collate([Batch.from_atoms(cell * (2, 1, 1), model.cutoff), Batch.from_atoms(other, model.cutoff)])
        moved.positions.copy_(shifted)
        energies.append(float(evaluate(group[-1], moved, forces=False).energy.sum()))
    assert float(fast.forces_ensemble[-1, atom, axis]) == pytest.approx(-(energies[0] - energies[1]) / (2 * h),
                                                                       abs=1e-7)


def test_long_range_members_equal_member_loop():
    """A long-range model's members (whole-system autograd over positions and strain) against one evaluation per
    member: each member is itself a long-range potential."""
    pytest.importorskip("torchpme", reason="torch-pme is a test dependency (pip install 'atomflux[longrange]')")
    from atomflux.models import LongRangePotential

    torch.manual_seed(0)
    model = LongRangePotential(["Na", "Cl"], cutoff=3.5, n_radial=4, n_channels=4, max_angular=1, hidden=(8,),
                               n_ensemble=4, accuracy=1e-7).double().eval()
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.1, seed=1)
    batch = Batch.from_atoms(atoms, model.cutoff)
    result = evaluate(model, batch, stress=True, uncertainty=True)
    assert float(result.forces_uncertainty.max()) > 0
    for k, member in enumerate(members(model)):
        one = evaluate(member, batch, stress=True)
        np.testing.assert_allclose(result.forces_ensemble[k].numpy(), one.forces.numpy(), atol=1e-10, rtol=0)
        np.testing.assert_allclose(result.stress_ensemble[k].numpy(), one.stress.numpy(), atol=1e-10, rtol=0)
