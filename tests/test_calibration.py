"""Force-aware uncertainty: last-layer rows, LLPR with force targets against Bayesian linear regression,
per-quantity calibration, the off-domain stress test and the force guard."""

import json
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import fcc111
from ase.calculators.calculator import Calculator
from ase.calculators.emt import parameters as emt_parameters
from ase.md.verlet import VelocityVerlet

from atomflux.calculators import AtomfluxCalculator
from atomflux.cli import main
from atomflux.evaluate import evaluate
from atomflux.io import load_model, save_model
from atomflux.md import thermalize
from atomflux.models import PowerSpectrumPotential
from atomflux.reference_data import STRESS_TEST_CATEGORIES, emt_dataset, labelled, stress_test_dataset
from atomflux.systems import Batch
from atomflux.training import read_frames
from atomflux.uncertainty import LLPR, ExtrapolationError, UncertaintyGuard
from atomflux.uncertainty.calibration import (added_term_coefficient, factor_interval, optimal_scale, scale_and_floor,
                                                warn_if_imprecise)
from atomflux.uncertainty.lastlayer import atom_features, last_layer_design, structure_rows
from atomflux.uncertainty.report import stress_test_report
from test_uncertainty import LinearRadialModel, cu_structures

#: eV/Å, largest per-atom force σ the guard accepts (demo with its force factor and noise floor: the island at
#: rest ≤ 0.34, 1.4 Å higher ~1.05, detached up to 1.1; the threshold was 1.6 under the former factor, 1.71× larger)
FORCE_GUARD_THRESHOLD = 0.9


def summed_features(model, atoms, cutoff):
    batch = Batch.from_atoms(atoms, cutoff)
    with torch.no_grad():
        return atom_features(model, batch, batch.pair_vectors()).sum(0).numpy()


def finite_difference_rows(model, atoms, cutoff, h=1e-5):
    """-∂φ/∂x by central differences, [3N, F+1] (independent of autograd)."""
    rows = []
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            rows.append(-(summed_features(model, plus, cutoff) - summed_features(model, minus, cutoff)) / (2 * h))
    return np.array(rows)


def test_last_layer_rows_are_derivatives_of_the_features(alloy, random_model):
    """Force rows = -∂φ/∂x and stress rows = (1/V)∂φ/∂ε, by finite differences of the summed features."""
    batch = Batch.from_atoms(alloy, random_model.cutoff)
    phi, forces, stress = structure_rows(random_model, batch, forces=True, stress=True)
    np.testing.assert_allclose(phi.numpy(), summed_features(random_model, alloy, random_model.cutoff), atol=1e-12)
    fd = finite_difference_rows(random_model, alloy, random_model.cutoff)
    np.testing.assert_allclose(forces.numpy(), fd, atol=1e-7 * max(1.0, np.abs(fd).max()))
    h, volume = 1e-6, alloy.get_volume()
    for row, (a, b) in zip(stress.numpy(), ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        eps = np.zeros((3, 3))
        eps[a, b] += h / 2
        eps[b, a] += h / 2
        plus, minus = alloy.copy(), alloy.copy()
        plus.set_cell(alloy.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        minus.set_cell(alloy.cell.array @ (np.eye(3) - eps), scale_atoms=True)
        expected = (summed_features(random_model, plus, 4.0) - summed_features(random_model, minus, 4.0)) / (2 * h * volume)
        np.testing.assert_allclose(row, expected, atol=1e-6 * max(1.0, np.abs(expected).max()))


def test_llpr_force_variance_equals_bayesian_linear_regression():
    """LLPR fitted on energies and forces of a model linear in its features is Bayesian linear regression
    with energy and force observations: closed-form σ(F) to 1e-7, and evaluate's K posterior samples to ~2/√(2K)."""
    model = LinearRadialModel()
    train = read_frames([labelled(a) for a in cu_structures(6, 0)])
    noise_e, noise_f, prior = 0.02, 0.05, 0.5  # σ_E (eV), σ_F (eV/Å), σ_w
    llpr = LLPR(model, n_samples=4096)
    llpr.fit_observations(last_layer_design(llpr, train, ("energy", "forces")),
                          weights={"energy": 1.0, "forces": noise_e**2 / noise_f**2})
    llpr.alpha_squared.fill_(noise_e**2)
    llpr.regulariser.fill_(noise_e**2 / prior**2)
    # closed form with numpy and finite-difference feature gradients: Σ = (ΦᵀΦ/σ_E² + ΨᵀΨ/σ_F² + I/σ_w²)⁻¹
    phi = np.array([summed_features(model, f.atoms, 4.0) for f in train])
    psi = np.vstack([finite_difference_rows(model, f.atoms, 4.0) for f in train])
    posterior = np.linalg.inv(phi.T @ phi / noise_e**2 + psi.T @ psi / noise_f**2 + np.eye(phi.shape[1]) / prior**2)
    test = cu_structures(1, 5)[0]
    rows = finite_difference_rows(model, test, 4.0)
    expected = np.sqrt(np.einsum("rf,fg,rg->r", rows, posterior, rows)).reshape(-1, 3)
    batch = Batch.from_atoms(test, 4.0)
    _, autograd_rows, _ = structure_rows(llpr, batch)
    closed_form = llpr.energy_variance(autograd_rows).sqrt().reshape(-1, 3).numpy()
    np.testing.assert_allclose(closed_form, expected, rtol=1e-7)
    sampled = evaluate(llpr, batch, uncertainty=True).forces_uncertainty.numpy()
    np.testing.assert_allclose(sampled, expected, rtol=0.1)
    assert abs(np.mean(sampled / expected) - 1) < 0.03
    # the force observations shrink the posterior: energy-only LLPR is wider
    energy_only = LLPR(model, n_samples=8)
    energy_only.fit_observations(last_layer_design(energy_only, train, ("energy",)))
    energy_only.alpha_squared.fill_(noise_e**2)
    energy_only.regulariser.fill_(noise_e**2 / prior**2)
    assert (energy_only.energy_variance(autograd_rows) > llpr.energy_variance(autograd_rows)).all()


def test_least_squares_refit_recovers_the_weights_behind_energies_and_forces():
    """Energies and forces made by known last-layer weights w*: the weighted least-squares change of a model
    with other weights recovers w* - w (the design's residuals then vanish)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    truth, model = LinearRadialModel(), LinearRadialModel()
    with torch.no_grad():
        truth.last.weight.copy_(torch.tensor([[0.3, -1.2, 0.8, 0.1, -0.5]], dtype=torch.float64))
        truth.last.bias.fill_(-2.0)
    structures = []
    for atoms in cu_structures(6, 3):
        result = evaluate(truth, Batch.from_atoms(atoms, 4.0), forces=True)
        atoms.calc = SinglePointCalculator(atoms, energy=float(result.energy[0]), forces=result.forces.numpy())
        structures.append(atoms)
    design = last_layer_design(model, read_frames(structures), ("energy", "forces"))
    delta = design.least_squares(regulariser=1e-14)
    expected = torch.cat([truth.last.weight[0] - model.last.weight[0], truth.last.bias - model.last.bias])
    np.testing.assert_allclose(delta.detach().numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-8)
    corrected = design.corrected(delta)
    assert float(corrected.forces.residuals.abs().max()) < 1e-8 and float(corrected.energy.residuals.abs().max()) < 1e-7


def test_per_quantity_scales_are_stored_and_applied(tmp_path, alloy):
    model = load_model("demo")
    model.uncertainty_locality_forces = model.metadata["uncertainty"]["calibration"]["locality_forces"] = 0.0
    batch = Batch.from_atoms(alloy[[0, 2, 3]] * (2, 2, 2), model.cutoff)  # Cu only: the demo knows Cu
    before = evaluate(model, batch, stress=True, uncertainty=True)
    model.metadata["uncertainty"]["calibration"].update(
        scale_forces=2 * getattr(model, "uncertainty_scale_forces", model.uncertainty_scale),
        scale_stress=3 * getattr(model, "uncertainty_scale_stress", model.uncertainty_scale),
        floor_forces=0.05, floor_stress=0.0)
    floor = getattr(model, "uncertainty_floor_forces", 0.0)
    path = save_model(model, tmp_path / "m.pt")
    after = evaluate(load_model(path), batch, stress=True, uncertainty=True)
    np.testing.assert_allclose(after.energy_uncertainty, before.energy_uncertainty, rtol=1e-12)
    # the noise floor adds in quadrature: σ' = √((2σ)² + τ²), σ the member spread before any floor
    spread = np.sqrt(before.forces_uncertainty.numpy() ** 2 - floor**2)
    np.testing.assert_allclose(after.forces_uncertainty, np.sqrt((2 * spread) ** 2 + 0.05**2), rtol=1e-10)
    stress_floor = getattr(model, "uncertainty_floor_stress", 0.0)
    np.testing.assert_allclose(after.stress_uncertainty, 3 * np.sqrt(before.stress_uncertainty.numpy() ** 2
                                                                      - stress_floor**2), rtol=1e-8)


def test_scale_and_floor_recover_the_generating_noise():
    """Errors drawn from N(0, α²σ² + τ²) with known α, τ: the NLL fit recovers both (to the sampling error of
    20 000 draws); with τ = 0 no floor is fitted and α is the closed-form NLL optimum."""
    rng = np.random.default_rng(3)
    sigma = rng.lognormal(-3.0, 0.8, 20000)                      # predicted σ over a decade, eV/Å
    errors = rng.normal(size=sigma.size) * np.sqrt((1.7 * sigma) ** 2 + 0.03**2)
    alpha, floor = scale_and_floor(errors, sigma)
    assert alpha == pytest.approx(1.7, rel=0.05) and floor == pytest.approx(0.03, rel=0.05)
    pure = rng.normal(size=sigma.size) * 0.8 * sigma
    alpha, floor = scale_and_floor(pure, sigma)
    assert floor < 0.05 * np.median(0.8 * sigma) and alpha == pytest.approx(optimal_scale(pure, sigma), rel=0.02)


def test_added_term_coefficient_recovers_the_generating_term():
    """Errors drawn from N(0, σ² + c²t²) with c = 2.5 and t independent of σ: the NLL fit recovers c (20 000 draws);
    errors that σ alone explains give c = 0 (or a negligible one)."""
    rng = np.random.default_rng(8)
    sigma = rng.lognormal(-3.5, 0.5, 20000)                     # calibrated force σ, eV/Å
    terms = rng.lognormal(-4.0, 1.2, 20000)                     # an atom's energy σ over the cutoff, eV/Å
    errors = rng.normal(size=sigma.size) * np.sqrt(sigma**2 + (2.5 * terms) ** 2)
    assert added_term_coefficient(errors, sigma, terms) == pytest.approx(2.5, rel=0.05)
    plain = rng.normal(size=sigma.size) * sigma
    assert added_term_coefficient(plain, sigma, terms) * np.median(terms) < 0.05 * np.median(sigma)


def test_force_sigma_carries_the_atoms_energy_sigma_over_the_cutoff(tmp_path, alloy):
    """The stored force-locality coefficient c gives σ_F,i = √(σ² + (c σ_E,i / r_c)²) for every component of
    atom i, through the model file; energies and their σ are untouched."""
    model = load_model("demo")
    batch = Batch.from_atoms(alloy[[0, 2, 3]] * (2, 2, 2), model.cutoff)
    model.metadata["uncertainty"]["calibration"]["locality_forces"] = 0.0
    plain = evaluate(load_model(save_model(model, tmp_path / "plain.pt")), batch, uncertainty=True)
    model.metadata["uncertainty"]["calibration"]["locality_forces"] = 7.0
    local = evaluate(load_model(save_model(model, tmp_path / "local.pt")), batch, uncertainty=True)
    np.testing.assert_allclose(local.energies_uncertainty, plain.energies_uncertainty, rtol=1e-12)
    expected = np.sqrt(plain.forces_uncertainty.numpy() ** 2
                       + (7.0 * plain.energies_uncertainty.numpy()[:, None] / model.cutoff) ** 2)
    np.testing.assert_allclose(local.forces_uncertainty, expected, rtol=1e-10)
    np.testing.assert_allclose(local.forces, plain.forces, rtol=1e-12)


def test_llpr_noise_groups_are_heteroscedastic_bayesian_linear_regression():
    """LLPR fitted with noise groups is Bayesian linear regression whose observations carry their group's noise:
    C = Σ_q w_q Σ_g m_gq Σ r rᵀ with m_gq = min(1, s²_ref,q / s²_g,q), from numpy and finite-difference rows."""
    from atomflux.uncertainty.llpr import group_noise_multipliers

    model = LinearRadialModel()
    structures = cu_structures(6, 4)
    for atoms in structures[4:]:                                # two structures squeezed far from the rest
        atoms.set_cell(atoms.cell * 0.9, scale_atoms=True)
    train = read_frames([labelled(a) for a in structures])
    groups = ["bulk"] * 4 + ["squeezed"] * 2
    delta = last_layer_design(model, train[:4], ("energy", "forces")).least_squares()   # the model fits the bulk
    with torch.no_grad():
        model.last.weight += delta[:-1]
        model.last.bias += delta[-1]
    llpr = LLPR(model, n_samples=4)
    design = last_layer_design(llpr, train, ("energy", "forces"))
    llpr.fit_observations(design, groups=groups)
    phi = np.array([summed_features(model, f.atoms, 4.0) for f in train])
    psi = [finite_difference_rows(model, f.atoms, 4.0) for f in train]
    with torch.no_grad():
        predicted = [evaluate(model, Batch.from_atoms(f.atoms, 4.0), forces=True) for f in train]
    energy_residuals = np.array([f.energy - float(p.energy[0]) for f, p in zip(train, predicted)])
    force_residuals = [f.forces.ravel() - p.forces.numpy().ravel() for f, p in zip(train, predicted)]
    weight_forces = np.mean(energy_residuals**2) / np.mean(np.hstack(force_residuals) ** 2)
    bulk = slice(0, 4)
    noise_e = {"bulk": np.mean(energy_residuals[bulk] ** 2), "squeezed": np.mean(energy_residuals[4:] ** 2)}
    noise_f = {"bulk": np.mean(np.hstack(force_residuals[bulk]) ** 2),
               "squeezed": np.mean(np.hstack(force_residuals[4:]) ** 2)}
    assert noise_e["squeezed"] > 4 * noise_e["bulk"]            # the squeezed group is the noisier one
    expected = np.zeros((phi.shape[1], phi.shape[1]))
    for k, group in enumerate(groups):
        m_e = min(1.0, noise_e["bulk"] / noise_e[group])
        m_f = min(1.0, noise_f["bulk"] / noise_f[group])
        expected += m_e * np.outer(phi[k], phi[k]) + weight_forces * m_f * psi[k].T @ psi[k]
    np.testing.assert_allclose(llpr.covariance.numpy(), expected, rtol=1e-6)
    multipliers = group_noise_multipliers(design, groups)
    assert float(multipliers["energy"][:4].min()) == 1.0 and float(multipliers["energy"][4:].max()) < 0.25
    with pytest.raises(ValueError, match="5 group labels for 6 training structures"):
        llpr.fit_observations(design, groups=groups[:5])


@pytest.mark.parametrize("count", [10, 60])
def test_calibration_factor_interval_covers_the_true_factor(count):
    """The NLL-optimal factor fitted on n Gaussian errors (true α = 1.3, σ spread over a decade) lies within
    α̂·[low, high] of the true one in 90 % of 4 000 independent calibration sets (χ² interval)."""
    rng = np.random.default_rng(count)
    low, high = factor_interval(count)
    hits = 0
    for _ in range(4000):
        sigma = rng.lognormal(-4.0, 0.6, count)
        alpha = optimal_scale(rng.normal(size=count) * 1.3 * sigma, sigma)
        hits += alpha * low <= 1.3 <= alpha * high
    assert hits / 4000 == pytest.approx(0.9, abs=0.015)
    if count == 10:  # ×0.74–1.59: a user calibrating on 10 MD runs is told so
        with pytest.warns(RuntimeWarning, match="rests on 10 held-out structures"):
            assert warn_if_imprecise("energy", count) == (low, high)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert warn_if_imprecise("energy", count) == (low, high)


def test_stress_test_structures_are_what_they_claim():
    structures = stress_test_dataset(("Cu", "Au"), per_category=3, seed=5)
    assert list(structures) == list(STRESS_TEST_CATEGORIES)
    for category, frames in structures.items():
        assert all(a.info["category"] == category for a in frames)
        for atoms in frames:  # labels are EMT's, and forces on a free structure sum to zero
            assert abs(atoms.get_forces().sum(0)).max() < 1e-8
    for atoms in structures["isolated_atom"]:  # an isolated EMT atom costs its cohesive energy -E0
        assert len(atoms) == 1 and atoms.get_potential_energy() == pytest.approx(-emt_parameters[atoms[0].symbol][0])
    for atoms in structures["dimer"]:
        assert 1.8 < atoms.get_distance(0, 1) < 4.7 and not atoms.pbc.any()
    assert all(3 <= len(a) <= 13 and not a.pbc.any() for a in structures["cluster"])
    assert all(list(a.pbc) == [True, True, False] and "stress" not in a.calc.results for a in structures["surface"])
    assert all(len(a) in (28, 29, 30) for a in structures["vacancies"])
    assert all(len(a) == 33 for a in structures["interstitial"])
    for atoms in structures["strong_strain"]:  # ≥ 8 % linear strain: the volume is ≥ 15 % off Vegard's cell
        a0 = np.mean([{"Cu": 3.6, "Au": 4.06}[s] for s in atoms.get_chemical_symbols()])
        assert abs(atoms.get_volume() / (8 * a0**3) - 1) > 0.15
    for atoms in structures["melt"] + structures["vacancies"]:  # a melt has no fcc Bragg peaks: S(q) ~ 1, not ~ N
        reciprocal = 2 * np.pi * np.linalg.inv(atoms.cell.array / 2)
        peaks = [reciprocal @ np.array(hkl) for hkl in ((1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1),
                                                        (2, 0, 0), (0, 2, 0), (0, 0, 2))]
        bragg = np.mean([abs(np.exp(1j * atoms.positions @ q).sum()) ** 2 / len(atoms) for q in peaks])
        assert bragg < 0.25 * len(atoms) if atoms.info["category"] == "melt" else bragg > 0.5 * len(atoms)
    with pytest.raises(ValueError, match="EMT"):
        stress_test_dataset(("Cu", "Fe"))


#: stress-test structures per category: ≥ 90 % within 3σ is a bound on a fraction, and with 8 structures per
#: category it allows no miss of a category's 8 energies at all (one 3σ miss in 8 reads as 87.5 %); 20 allow 2.
#: The demo's marginal category is surface energies: pooled over the 8- and 20-per-category draws of seeds
#: 2024-2026, 10 of 84 miss 3σ (12 %), all too low (backbone bias −0.03 to −0.045 eV/atom; a last-layer refit
#: does not remove it) — 3/8 on seeds 2025 and 2026 at 8 per category, 2/20, 1/20, 0/20 at 20
STRESS_TEST_PER_CATEGORY = 20
#: fresh seeds: none the demo models were fitted or calibrated with (training 0/1/100-106, off-domain calibration 3000)
STRESS_TEST_SEEDS = [2024, pytest.param(2025, marks=pytest.mark.slow), pytest.param(2026, marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=STRESS_TEST_SEEDS)
def stress_test(request):
    """Fresh stress-test structures, 20 per category (seed 2024 by default; 2025, 2026 with ``-m slow``)."""
    return stress_test_dataset(per_category=STRESS_TEST_PER_CATEGORY, seed=request.param)


@pytest.mark.parametrize("name", [
    "demo",
    pytest.param("demo-llpr", marks=pytest.mark.xfail(strict=True, reason="issue 18 bound not met yet: within 3σ over "
                                                      "seeds 2024/2025/2026 (20 per category), dimer forces "
                                                      "80/80/77.5 %, surface energies 65/70/95 %, strong-strain "
                                                      "energies 70/70/80 % (see docs/benchmarks.md)"))])
def test_shipped_models_are_honest_off_the_training_domain(name, stress_test):
    """In every stress-test category at least 90 % of |error|/σ are below 3, for energies and force components."""
    rows = stress_test_report(load_model(name), stress_test)
    assert {(r.category, r.quantity) for r in rows} >= {(c, "energy") for c in STRESS_TEST_CATEGORIES}
    assert {r.category for r in rows if r.quantity == "forces"} == set(STRESS_TEST_CATEGORIES) - {"isolated_atom"}
    overconfident = [r.line() for r in rows if r.quantity in ("energy", "forces") and not r.honest]
    assert not overconfident, "\n".join(overconfident)
    copper = next(a for a in stress_test["isolated_atom"] if a.get_chemical_symbols() == ["Cu"]).copy()
    copper.calc = AtomfluxCalculator(name)
    z = (copper.get_potential_energy() - 3.51) / copper.calc.results["energy_uncertainty"]
    assert abs(z) < 3, z  # the example: E = 1.00 ± 0.15 eV against EMT's 3.51 eV (16σ)


def test_calibrate_command_reports_per_quantity_and_stress_test(tmp_path, capsys):
    valid = tmp_path / "valid.extxyz"
    ase.io.write(valid, emt_dataset(n_trajectories=3, snapshots=2, seed=7))
    prefix = tmp_path / "plots" / "cal"
    assert main(["calibrate", "demo-llpr", str(valid), "--stress-test", "--per-category", "2", "--plots",
                 str(prefix), "--json", str(tmp_path / "cal.json")]) == 0
    out = capsys.readouterr().out
    assert "coverage 1σ" in out and "miscal. area" in out and "stress test of demo-llpr" in out
    for category in STRESS_TEST_CATEGORIES:
        assert category in out
    report = json.loads((tmp_path / "cal.json").read_text())
    assert {r["quantity"] for r in report if r["kind"] == "calibration"} == {"energy", "forces", "stress"}
    assert {r["category"] for r in report if r["kind"] == "stress_test"} == set(STRESS_TEST_CATEGORIES)
    for name in ("reliability", "stress-test", "forces-zscores", "stress-error-vs-sigma"):
        assert (tmp_path / "plots" / f"cal-{name}.png").is_file()
    assert main(["calibrate", "demo"]) == 2
    assert "give held-out structures" in capsys.readouterr().err
    iron = PowerSpectrumPotential(["Fe", "Cu"], cutoff=4.0, hidden=[8], n_ensemble=2)
    save_model(iron, tmp_path / "iron.pt")
    assert main(["calibrate", str(tmp_path / "iron.pt"), "--stress-test"]) == 2
    err = capsys.readouterr().err
    assert "EMT" in err and "Fe" in err


def cluster_on_surface(kick: float) -> tuple[Atoms, int]:
    """Cu(111) slab (27 atoms) with a Cu3 island on fcc hollow sites, at 300 K; the island atoms get an
    extra upward velocity ``kick`` (Å/fs). Returns the atoms and the number of slab atoms."""
    slab = fcc111("Cu", size=(3, 3, 3), a=3.6, vacuum=8.0)
    n_slab, top = len(slab), slab.positions[:, 2].max()
    nearest = 3.6 / np.sqrt(2)
    corner = slab.positions[np.argmax(slab.positions[:, 2])]
    triangle = np.array([[0, 0, 0], [nearest, 0, 0], [nearest / 2, nearest * np.sqrt(3) / 2, 0]])
    hollow = np.array([nearest / 2, nearest / (2 * np.sqrt(3)), top - corner[2] + 2.1])
    slab += Atoms("Cu3", positions=triangle + corner + hollow)
    thermalize(slab, 300.0, np.random.default_rng(0))
    velocities = slab.get_velocities()
    velocities[n_slab:, 2] += kick / units.fs
    slab.set_velocities(velocities)
    return slab, n_slab


def island_md_under_guard(model, threshold: float, kick: float, save: Path) -> UncertaintyGuard:
    """150 NVE steps (2 fs) of :func:`cluster_on_surface` with a force-σ guard checked every 5 steps;
    ``model`` is anything :class:`AtomfluxCalculator` takes, or an ASE calculator (a Committee)."""
    atoms, _ = cluster_on_surface(kick=kick)
    atoms.calc = model if isinstance(model, Calculator) else AtomfluxCalculator(model)
    guard = UncertaintyGuard(atoms, threshold=threshold, quantity="forces", save=save)
    dyn = VelocityVerlet(atoms, 2 * units.fs)
    dyn.attach(guard, interval=5)
    dyn.run(150)
    return guard


def assert_guard_stops_the_leaving_island(model, threshold: float, tmp_path: Path) -> tuple[Atoms, int]:
    """The guard stops the island kicked off the surface once it has left; returns the saved frame and the
    number of slab atoms."""
    with pytest.raises(ExtrapolationError, match="forces"):
        island_md_under_guard(model, threshold, kick=0.03, save=tmp_path / "bad.extxyz")
    stopped, n_slab = ase.io.read(tmp_path / "bad.extxyz"), cluster_on_surface(kick=0.0)[1]
    assert stopped.positions[n_slab:, 2].mean() - stopped.positions[:n_slab, 2].max() > 2.6  # adsorbed: 2.1 Å
    return stopped, n_slab


def assert_guard_stays_quiet_for_the_island_in_place(model, threshold: float, tmp_path: Path) -> None:
    calm = island_md_under_guard(model, threshold, kick=0.0, save=tmp_path / "none.extxyz")
    assert not calm.triggered and max(calm.history) < threshold


def test_force_guard_stops_a_cluster_evaporating_from_a_surface(tmp_path):
    """With quantity="forces" the guard stops NVE MD of the demo ensemble once a Cu3 island leaves the surface
    (kicked with ~3 eV per atom, above its binding), and stays quiet for the same island vibrating in place.

    This checks the guard's mechanics on a shipped model, not that stopping was right: the demo models were
    trained on free Cu clusters, their force error on the detached island stays ~0.11-0.18 eV/Å, and the
    ensemble's σ rises there (~1.3 eV/Å) because it is under-confident.  Whether a last-layer σ stops a cluster
    the model never saw, where its error does grow, is
    :func:`test_force_guard_stops_a_cluster_the_model_never_saw_evaporating`."""
    assert_guard_stops_the_leaving_island("demo", FORCE_GUARD_THRESHOLD, tmp_path)
    assert_guard_stays_quiet_for_the_island_in_place("demo", FORCE_GUARD_THRESHOLD, tmp_path)


def cluster_free_frames() -> tuple[list, list]:
    """EMT Cu bulk, flat (111)/(100)/(110) slabs and vacancies, no cluster, dimer, adatom or island: 24
    training structures and 16 held-out ones (independent MD runs), as :class:`~atomflux.training.Frame` lists."""
    from atomflux.reference_data import alloy_surface_dataset

    def structures(per_category: int, snapshots: int, seed: int) -> list:
        categories = alloy_surface_dataset(("Cu",), per_category=per_category, snapshots=snapshots, seed=seed)
        return read_frames([atoms for category in categories.values() for atoms in category])

    return structures(6, 2, seed=61), structures(4, 1, seed=62)


def cluster_free_config(seed: int, **model):
    """The small cluster-free model's training settings (a few seconds on one core); ``model`` overrides its
    hyper-parameters."""
    from atomflux.training import TrainConfig

    return TrainConfig(epochs=60, patience=60, learning_rate=5e-3, seed=seed, progress=False,
                       model={"cutoff": 4.5, "n_radial": 6, "n_channels": 4, "max_angular": 2, "hidden": [16], **model})


@pytest.fixture(scope="module")
def cluster_free_models(one_torch_thread):
    """A small Cu model trained here on EMT bulk, flat (111)/(100)/(110) slabs and vacancies only — no cluster,
    dimer, adatom or island ever — with LLPR and a post-hoc shallow ensemble calibrated on 16 more such
    structures (independent MD runs).  Returns the two models, the in-domain force RMSE (eV/Å) and the largest
    in-domain per-atom force σ of each (eV/Å), both on the calibration structures."""
    from atomflux.training import train
    from atomflux.uncertainty import add_llpr, fit_shallow_ensemble
    from atomflux.uncertainty.report import errors_and_sigmas

    frames, held_out = cluster_free_frames()
    base = train(frames, cluster_free_config(seed=0)).potential
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 16 calibration structures: a wide factor interval
        models = {"llpr": add_llpr(base, frames, held_out),
                  "ensemble": fit_shallow_ensemble(base, frames, held_out, n_members=8)}
    errors, _ = errors_and_sigmas(models["llpr"], held_out)["forces"]
    largest_sigma = {}
    for name, model in models.items():
        largest_sigma[name] = max(float(evaluate(model, Batch.from_atoms(f.atoms, model.cutoff), uncertainty=True)
                                        .forces_uncertainty.norm(dim=1).max()) for f in held_out)
    return models, float(np.sqrt(np.mean(errors**2))), largest_sigma


UNSEEN_CLUSTER_XFAIL = ("issue 18 not met: for a model that never saw a cluster (in-domain force RMSE 0.074 eV/Å) "
                        "the Cu3's force error against EMT grows from 0.7 eV/Å (in place) to 1.7-2.7 eV/Å (detached), "
                        "but the detached island's force σ stays 0.11-0.33 eV/Å (LLPR) and 0.10-0.19 (shallow "
                        "ensemble), below the guard's threshold (2× the largest in-domain σ: 0.68 and 0.85 eV/Å): the "
                        "guard does not stop. Not a limit of the last layer alone: LLPR on the descriptor and all "
                        "hidden layers, and committees of independently trained models, stay as low "
                        "(test_committee_guard.py; docs/benchmarks.md, bench_committee_guard)")


@pytest.mark.slow  # training the cluster-free model takes ~1 min of one core
@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.xfail(
                                        strict=True, raises=pytest.fail.Exception, reason=UNSEEN_CLUSTER_XFAIL))
                                    for m in ("llpr", "ensemble")])
def test_force_guard_stops_a_cluster_the_model_never_saw_evaporating(method, cluster_free_models, tmp_path):
    """The guard (quantity="forces", threshold 2× the largest in-domain per-atom force σ) stops NVE MD of a
    Cu3 island kicked off a Cu(111) surface by a model trained without any cluster; at the stop the island is
    detached and the model's force error on it against EMT is ≥ 10× the in-domain force RMSE (so stopping was
    right); the same guard stays quiet for the island vibrating in place."""
    from ase.calculators.emt import EMT

    models, in_domain_rmse, largest_sigma = cluster_free_models
    model, threshold = models[method], 2 * largest_sigma[method]
    stopped, n_slab = assert_guard_stops_the_leaving_island(model, threshold, tmp_path)
    predicted = evaluate(model, Batch.from_atoms(stopped, model.cutoff), forces=True).forces.numpy()
    stopped.calc = EMT()
    error = np.linalg.norm(predicted - stopped.get_forces(), axis=1)[n_slab:].max()
    assert error > 10 * in_domain_rmse, (error, in_domain_rmse)
    assert_guard_stays_quiet_for_the_island_in_place(model, threshold, tmp_path)


@pytest.mark.parametrize("lift", [0.0, 3.0])
def test_llpr_force_sigma_covers_the_island_on_and_off_the_surface(lift):
    """Why the LLPR force guard stays quiet when the Cu3 island leaves: the demo models were trained on
    free Cu clusters (scripts/make_demo_model.py), so the detached island is no extrapolation. Against EMT
    the model's island forces stay accurate, and LLPR's force σ (feature gradients of the island atoms,
    covariance with force rows) covers their errors both adsorbed and 3 Å above the surface."""
    from ase.calculators.emt import EMT

    atoms, n_slab = cluster_on_surface(kick=0.0)
    atoms.positions[n_slab:, 2] += lift
    model = load_model("demo-llpr")
    result = evaluate(model, Batch.from_atoms(atoms, model.cutoff), forces=True, uncertainty=True)
    atoms.calc = EMT()
    error = np.abs(result.forces.numpy() - atoms.get_forces())[n_slab:]
    sigma = result.forces_uncertainty.numpy()[n_slab:]
    assert error.max() < 0.2                             # eV/Å: the model knows a free Cu3
    assert (error / sigma).max() < 3 and sigma.max() < FORCE_GUARD_THRESHOLD


def test_calibration_split_keeps_the_snapshots_of_an_md_run_together(tmp_path):
    """`atomflux llpr`/`ensemble` without --validation hold out whole MD runs (``info["md_run"]``, written by
    emt_dataset): no run has snapshots on both sides; a file without run names is split frame by frame, with a
    warning."""
    from atomflux.cli.uncertainty import _split_for_calibration
    from atomflux.training.dataset import Frame
    from atomflux.training.trainer import RUN_KEY, split_frames

    frames = []
    for run, size in enumerate([3, 1, 4, 2, 2, 3, 1, 4, 2, 3]):
        for _ in range(size):
            frames.append(Frame(Atoms("Cu", info={RUN_KEY: f"run-{run}"}), energy=0.0))
    for seed in range(20):
        train, held = split_frames(frames, 0.2, seed, by_run=True)
        assert len(train) + len(held) == len(frames) and held and train
        assert not {f.atoms.info[RUN_KEY] for f in train} & {f.atoms.info[RUN_KEY] for f in held}
        assert abs(len(held) - 5) <= 3  # ~20 % of 25 frames, whole runs of ≤ 4
    path = tmp_path / "runs.extxyz"
    ase.io.write(path, emt_dataset(n_trajectories=4, snapshots=2, seed=9))
    train, held = _split_for_calibration(str(path), None, seed=0)
    assert {f.atoms.info["md_run"] for f in held}.isdisjoint(f.atoms.info["md_run"] for f in train)
    untagged = tmp_path / "untagged.extxyz"
    structures = ase.io.read(path, ":")
    for atoms in structures:
        del atoms.info["md_run"]
    ase.io.write(untagged, structures)
    with pytest.warns(RuntimeWarning, match="md_run"):
        _split_for_calibration(str(untagged), None, seed=0)
