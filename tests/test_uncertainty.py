"""Uncertainty: LLPR against closed-form Bayesian regression, calibration, ensembles, guard."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin

from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.io import load_model, save_model
from atomflux.models import PowerSpectrumPotential
from atomflux.reference_data import emt_dataset
from atomflux.systems import Batch
from atomflux.training import read_frames
from atomflux.uncertainty import (LLPR, ExtrapolationError, UncertaintyGuard, add_llpr, fit_shallow_ensemble,
                                  members, propagate)
from atomflux.uncertainty.report import errors_and_sigmas
from conftest import finite_difference_forces

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small calls: two threads on a busy machine are slower


class LinearRadialModel(torch.nn.Module):
    """A user's plain-torch potential: fixed Gaussian radial features, one linear layer."""

    def __init__(self):
        super().__init__()
        self.species, self.cutoff = ["Cu"], 4.0
        self.centres = torch.linspace(2.0, 4.0, 5, dtype=torch.float64)
        self.last = torch.nn.Linear(5, 1, dtype=torch.float64)

    def forward(self, batch, vectors):
        r = vectors.norm(dim=1)
        fc = 0.5 * (torch.cos(np.pi * r / self.cutoff) + 1)
        g = torch.exp(-4 * (r[:, None] - self.centres) ** 2) * fc[:, None]
        features = torch.zeros(len(batch.numbers), 5, dtype=r.dtype).index_add(0, batch.pairs[:, 0], g)
        return {"energy": self.last(features)[:, 0], "features": features}


def cu_structures(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=rng.uniform(3.4, 3.8), cubic=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        out.append(atoms)
    return out


def test_llpr_of_linear_model_equals_bayesian_linear_regression():
    model = LinearRadialModel()
    llpr = LLPR(model, n_samples=8)
    batches = [Batch.from_atoms(a, 4.0) for a in cu_structures(12, 0)]
    llpr.fit(batches)
    noise, prior = 0.02, 0.5  # σ_n (eV), σ_w
    llpr.alpha_squared.fill_(noise**2)
    llpr.regulariser.fill_(noise**2 / prior**2)
    # closed form, written independently with numpy: Σ_post = (ΦᵀΦ/σ_n² + I/σ_w²)⁻¹
    phi = np.array([np.append(model(b, b.pair_vectors())["features"].detach().numpy().sum(0), len(b.numbers))
                    for b in batches])
    post = np.linalg.inv(phi.T @ phi / noise**2 + np.eye(phi.shape[1]) / prior**2)
    test = Batch.from_atoms(cu_structures(1, 5)[0], 4.0)
    x = np.append(model(test, test.pair_vectors())["features"].detach().numpy().sum(0), len(test.numbers))
    expected = np.sqrt(x @ post @ x)
    got = float(evaluate(llpr, test, uncertainty="energy").energy_uncertainty[0])
    assert got == pytest.approx(expected, rel=1e-8)


def _isotropic_draws(n_rows: int, n_samples: int, seed: int) -> torch.Tensor:
    """Standard-normal stand-ins Z [n_rows, K] with rows centred and Z Zᵀ/K = I exactly, so that the
    population covariance of the samples L z_k is L Lᵀ = Σ itself."""
    x = np.random.default_rng(seed).normal(size=(n_samples, n_rows))
    q, _ = np.linalg.qr(x - x.mean(0))
    return torch.tensor(np.sqrt(n_samples) * q.T)


@pytest.mark.parametrize("kind", ["linear radial (autograd)", "power spectrum (hand-derived chunks)"])
def test_llpr_force_variance_equals_bayesian_linear_regression(kind):
    """σ²(F_ak) = ψᵀ Σ_post ψ, ψ = -∂φ_S/∂x_ak (finite differences), Σ_post = (ΦᵀΦ/σ_n² + I/σ_w²)⁻¹ in numpy."""
    if kind.startswith("linear"):
        model = LinearRadialModel()
    else:
        torch.manual_seed(3)
        model = PowerSpectrumPotential(["Cu"], cutoff=4.0, hidden=[6]).double().eval()
    n_features = 5 if kind.startswith("linear") else 6
    llpr = LLPR(model, n_samples=12)
    batches = [Batch.from_atoms(a, 4.0) for a in cu_structures(12, 0)]
    llpr.fit(batches)
    noise, prior = 0.02, 0.5
    llpr.alpha_squared.fill_(noise**2)
    llpr.regulariser.fill_(noise**2 / prior**2)
    llpr.draws.copy_(_isotropic_draws(n_features + 1, 12, seed=1))

    def phi(atoms):
        batch = Batch.from_atoms(atoms, 4.0)
        with torch.no_grad():
            return np.append(model(batch, batch.pair_vectors())["features"].numpy().sum(0), len(atoms))

    design = np.array([phi(a) for a in cu_structures(12, 0)])
    post = np.linalg.inv(design.T @ design / noise**2 + np.eye(n_features + 1) / prior**2)
    test = cu_structures(1, 5)[0]
    h = 1e-5
    expected = np.zeros((len(test), 3))
    for i in range(len(test)):
        for k in range(3):
            plus, minus = test.copy(), test.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            psi = -(phi(plus) - phi(minus)) / (2 * h)
            expected[i, k] = np.sqrt(psi @ post @ psi)
    got = evaluate(llpr, Batch.from_atoms(test, 4.0), uncertainty=True).forces_uncertainty.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-10)


def test_identical_members_give_zero_spread(alloy):
    torch.manual_seed(1)
    model = PowerSpectrumPotential(["Cu", "Au"], cutoff=4.0, hidden=[8], n_ensemble=4).double().eval()
    with torch.no_grad():
        model.last_layer.weight[:] = model.last_layer.weight[0]
        model.last_layer.bias[:] = model.last_layer.bias[0]
    res = evaluate(model, Batch.from_atoms(alloy, 4.0), stress=True, uncertainty=True)
    assert float(res.energy_uncertainty.abs().max()) < 1e-12
    assert float(res.forces_uncertainty.abs().max()) < 1e-12
    assert float(res.stress_uncertainty.abs().max()) < 1e-14
    prop = propagate(lambda m: evaluate(m, Batch.from_atoms(alloy, 4.0)).energy.numpy(), model)
    assert float(prop.std.max()) < 1e-12


def test_member_forces_are_finite_differences_of_member_energies(alloy):
    torch.manual_seed(2)
    model = PowerSpectrumPotential(["Cu", "Au"], cutoff=4.0, hidden=[8], n_ensemble=3).double().eval()
    model.uncertainty_scale = 1.7  # calibration scales the members' deviations
    res = evaluate(model, Batch.from_atoms(alloy, 4.0), uncertainty=True)
    for m, member in enumerate(members(model)):
        energy = lambda at: float(evaluate(member, Batch.from_atoms(at, 4.0), forces=False).energy[0])
        fd = finite_difference_forces(energy, alloy)
        np.testing.assert_allclose(res.forces_ensemble[m].numpy(), fd, atol=1e-7 * max(1, np.abs(fd).max()))
        assert float(res.energy_ensemble[0, m]) == pytest.approx(energy(alloy), abs=1e-10)


def independent_structures(count: int, seed: int) -> list:
    """``count`` EMT structures, each the single snapshot of its own MD run (``emt_dataset`` seeds 0 and 1 made
    the demo models; two snapshots of one run share their energy error, z correlation 0.96-1.00, so a set of
    pairs holds half as many independent energies as frames)."""
    return read_frames(emt_dataset(n_trajectories=count, snapshots=1, seed=seed))


@pytest.fixture(scope="module")
def held_out():
    """Two sets of independent EMT structures the demo models never saw: 60 to calibrate on, 100 to test."""
    return independent_structures(60, seed=21), independent_structures(100, seed=11)


def assert_calibrated(model, frames, quantities=("energy", "forces")):
    """1σ coverage within 60-80 % and 2σ coverage ≥ 90 % (Gaussian: 68.3 % and 95.4 %) for each quantity."""
    data = errors_and_sigmas(model, frames)
    for quantity in quantities:
        err, sig = data[quantity]
        within1, within2 = np.mean(np.abs(err) <= sig), np.mean(np.abs(err) <= 2 * sig)
        assert 0.60 <= within1 <= 0.80 and within2 >= 0.90, (quantity, within1, within2)


@pytest.mark.parametrize("name", ["demo", "demo-llpr"])
def test_shipped_models_are_calibrated_on_held_out_data(name, held_out):
    """Energies per atom and force components of 100 unseen structures (100 independent MD runs)."""
    _, test = held_out
    assert_calibrated(load_model(name), test)


def test_llpr_recalibrated_coverage(held_out):
    """LLPR added in one call to the base model (covariance from energies, forces and stress of a user's 40
    independent structures, α per quantity calibrated on 60 more) covers 100 unseen structures.  Over three
    training/calibration seed pairs and two test sets the energy coverage is 62-71 % / 89-98 % and Spearman
    (|error|, σ) 0.07-0.43 (bench_calibration_seeds.py): these seeds are the first of that study."""
    calib, test = held_out
    base = load_model("demo-llpr").base
    model = add_llpr(base, independent_structures(40, seed=31), calib)
    assert set(model.metadata["uncertainty"]["fit"]["quantities"]) == {"energy", "forces", "stress"}
    assert_calibrated(model, test)


def test_ensemble_fitted_on_a_small_user_set_is_calibrated(held_out):
    """A shallow ensemble fitted post hoc (NLL on energies and forces) on a user's 40 independent structures,
    calibrated per quantity on 20 more, tested on 100 unseen structures.  Force components (thousands of
    calibration values) meet the 60-80 % / ≥ 90 % bounds.  The energy factor rests on 20 values: the tool says so
    (the warning) and states its 90 % interval (×0.80-1.36); what it can promise is that the factor the test set
    would need lies inside that interval, and 2σ coverage ≥ 90 %.  The 1σ energy coverage itself is not robust
    here: over user seeds 41-43 it is 51-59 % (needed factors 1.11-1.31), and round-off of 5e-15 in the fit's
    force rows moved seed 41 from 66 % to 59 % (the NLL fit of the members is that ill-conditioned)."""
    _, test = held_out
    user = independent_structures(60, seed=41)
    with pytest.warns(RuntimeWarning, match="rests on 20 held-out structures"):
        model = fit_shallow_ensemble(load_model("demo-llpr").base, user[:40], user[40:], n_members=8)
    calibration = model.metadata["uncertainty"]["calibration"]
    assert {"scale", "scale_forces", "scale_stress"} <= set(calibration)
    assert_calibrated(model, test, quantities=("forces",))
    errors, sigmas = errors_and_sigmas(model, test)["energy"]
    needed = np.quantile(np.abs(errors) / sigmas, 0.6827)  # the factor that would give 68.3 % at 1σ
    low, high = calibration["energy_factor_interval"]
    assert low <= needed <= high, (needed, low, high)
    assert np.mean(np.abs(errors) <= 2 * sigmas) >= 0.90


@pytest.mark.parametrize("name", ["demo", "demo-llpr"])
def test_uncertainty_rises_with_strain_beyond_training(name):
    calc = AtomfluxCalculator(name)
    sigmas = []
    # bulk training cells are strained by up to 4 %, the off-domain training structures by 8-12 %
    for strain in (0.04, 0.16, 0.24, 0.32):
        atoms = bulk("Cu", "fcc", a=3.6 * (1 + strain), cubic=True)
        atoms.calc = calc
        sigmas.append(atoms.calc.get_property("energy_uncertainty", atoms) / len(atoms))
    assert all(b > a for a, b in zip(sigmas, sigmas[1:])), sigmas
    assert sigmas[-1] > 2 * sigmas[0]


def test_calculator_results_and_round_trip(tmp_path):
    model = load_model("demo-llpr")
    path = save_model(model, tmp_path / "m.pt")
    atoms = bulk("Au", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=1)
    atoms.calc = AtomfluxCalculator(path)
    r = atoms.calc.get_property("forces_uncertainty", atoms)
    assert r.shape == (8, 3) and (r > 0).all()
    for key in ("energy_uncertainty", "energies_uncertainty", "stress_uncertainty", "energy_ensemble", "forces_ensemble"):
        assert key in atoms.calc.results
    assert load_model(path).metadata["uncertainty"]["method"] == "llpr"


def test_guard_stops_md_that_leaves_training_data(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6 * 1.3, cubic=True) * (2, 1, 1)  # 30 % strain: far outside
    atoms.calc = AtomfluxCalculator("demo", uncertainty="energy")
    guard = UncertaintyGuard(atoms, threshold=0.02, logfile=tmp_path / "unc.log", save=tmp_path / "bad.extxyz")
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False)
    dyn.attach(guard, interval=1)
    with pytest.raises(ExtrapolationError, match="exceeds threshold"):
        dyn.run(20)
    assert (tmp_path / "bad.extxyz").is_file() and guard.triggered
    # at the training lattice constant the same guard stays quiet
    ok = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    ok.calc = AtomfluxCalculator("demo", uncertainty="energy")
    quiet = UncertaintyGuard(ok, threshold=0.02, save=tmp_path / "none.extxyz")
    dyn = Langevin(ok, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False)
    dyn.attach(quiet, interval=1)
    dyn.run(20)
    assert not quiet.triggered and not (tmp_path / "none.extxyz").exists()


def test_model_without_uncertainty_says_so(alloy, random_model):
    with pytest.raises(ValueError, match="no uncertainty"):
        evaluate(random_model, Batch.from_atoms(alloy, random_model.cutoff), uncertainty=True)
