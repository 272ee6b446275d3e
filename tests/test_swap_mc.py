"""Swap Monte Carlo: local energy changes are exact, and the chain samples the Boltzmann distribution."""

from itertools import combinations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT

from atomflux.evaluate import evaluate
from atomflux.io import load_model
from atomflux.models import PowerSpectrumPotential
from atomflux.sampling import DensitySwapEnergy, LocalSwapEnergy, SwapChain, swap_energy, swap_monte_carlo
from atomflux.sampling.proposals import SwapProposer
from atomflux.systems import Batch


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", dtype="float64")


def full_energy(model, atoms) -> float:
    """The whole system's energy, evaluated from scratch (no per-atom bookkeeping)."""
    batch = Batch.from_atoms(atoms, model.cutoff, torch.float64)
    with torch.no_grad():
        return float(evaluate(model, batch, forces=False).energy.sum())


def alloy(atoms, seed: int):
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.numbers = rng.choice([28, 29, 79], size=len(atoms))
    atoms.rattle(0.05, seed=seed)
    return atoms


@pytest.mark.parametrize("name, atoms", [
    ("bulk 32 atoms, cell < 2 cutoffs", bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2))),
    ("4-atom cell, many periodic images", bulk("Cu", "fcc", a=3.7, cubic=True)),
    ("slab, periodic in-plane only", fcc111("Cu", size=(3, 3, 4), a=3.7, vacuum=6.0)),
])
@pytest.mark.parametrize("engine_class", [DensitySwapEnergy, LocalSwapEnergy])
def test_local_delta_e_equals_full_energy_difference(demo, name, atoms, engine_class):
    atoms = alloy(atoms, seed=len(atoms))
    engine = engine_class(demo, atoms)
    reference = full_energy(demo, atoms)
    assert engine.energy == pytest.approx(reference, abs=1e-10)
    rng = np.random.default_rng(7)
    current = atoms.copy()
    for _ in range(4):  # trials on a configuration, then one applied: the bookkeeping stays exact
        pairs = [(a, b) for a, b in rng.integers(0, len(atoms), (30, 2)) if current.numbers[a] != current.numbers[b]]
        trials = engine.trials(np.array(pairs))
        for trial in trials:
            swapped = current.copy()
            swapped.numbers[[trial.a, trial.b]] = swapped.numbers[[trial.b, trial.a]]
            assert trial.delta == pytest.approx(full_energy(demo, swapped) - reference, abs=1e-10), name
        chosen = trials[0]
        engine.apply(chosen)
        current.numbers[[chosen.a, chosen.b]] = current.numbers[[chosen.b, chosen.a]]
        reference = full_energy(demo, current)
        assert engine.energy == pytest.approx(reference, abs=1e-10)
        assert np.array_equal(engine.numbers, current.numbers)


def random_model(n_pseudo, hidden, seed=0) -> PowerSpectrumPotential:
    """An untrained Ni/Cu/Au model with centre weights away from 1 (compressed or not, any depth)."""
    torch.manual_seed(seed)
    model = PowerSpectrumPotential(["Ni", "Cu", "Au"], hidden=hidden, n_ensemble=3, n_pseudo=n_pseudo).double()
    with torch.no_grad():
        model.centre_weights.normal_(0.0, 0.5)
        model.baseline.normal_(0.0, 1.0)
        model.energy_scale.fill_(0.7)
    return model.eval()


@pytest.mark.parametrize("n_pseudo, hidden", [(2, [16, 16]), (None, [])])
@pytest.mark.parametrize("atoms", [bulk("Cu", "fcc", a=3.7, cubic=True),
                                   fcc111("Cu", size=(3, 3, 4), a=3.7, vacuum=6.0)])
def test_density_engine_is_exact_for_compressed_and_shallow_models(n_pseudo, hidden, atoms):
    """Pseudo-element mixing of the radial weights and of the centre input, and a network without hidden
    layers (the energy readout's first layer is its last), give the full energy difference too."""
    model = random_model(n_pseudo, hidden)
    atoms = alloy(atoms, seed=3)
    engine = DensitySwapEnergy(model, atoms)
    reference = full_energy(model, atoms)
    assert engine.energy == pytest.approx(reference, abs=1e-10)
    pairs = [(a, b) for a in range(len(atoms)) for b in range(a) if atoms.numbers[a] != atoms.numbers[b]][:12]
    for trial in engine.trials(np.array(pairs)):
        swapped = atoms.copy()
        swapped.numbers[[trial.a, trial.b]] = swapped.numbers[[trial.b, trial.a]]
        assert trial.delta == pytest.approx(full_energy(model, swapped) - reference, abs=1e-10)


def test_density_engine_caches_pair_factors_until_positions_move(demo):
    """The pair factors (radial basis, monomials) are computed once per set of positions.  Swaps on fixed
    positions, then every atom displaced (as an MD segment or a relaxation would) and the engine reset, three
    times: every ΔE and the stored energy equal a full recomputation at the current positions; without the
    reset the cached factors of the old positions give ΔE off by far more than round-off (the test has power)."""
    atoms = alloy(bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 2, 2)), seed=2)
    engine = DensitySwapEnergy(demo, atoms)
    rng = np.random.default_rng(1)
    current = atoms.copy()

    def exact_deltas(pairs):
        reference = full_energy(demo, current)
        out = []
        for a, b in pairs:
            swapped = current.copy()
            swapped.numbers[[a, b]] = swapped.numbers[[b, a]]
            out.append(full_energy(demo, swapped) - reference)
        return np.array(out)

    for _ in range(3):
        for _ in range(3):   # accepted swaps on these positions
            a, b = next((a, b) for a, b in rng.integers(0, len(current), (50, 2))
                        if current.numbers[a] != current.numbers[b])
            engine.apply(engine.trials(np.array([[a, b]]))[0])
            current.numbers[[a, b]] = current.numbers[[b, a]]
            assert engine.energy == pytest.approx(full_energy(demo, current), abs=1e-10)
        pairs = np.array([(a, b) for a, b in rng.integers(0, len(current), (40, 2))
                          if current.numbers[a] != current.numbers[b]][:8])
        current.positions += rng.normal(0.0, 0.05, current.positions.shape)
        exact = exact_deltas(pairs)
        stale = np.array([t.delta for t in engine.trials(pairs)])
        assert np.abs(stale - exact).max() > 1e-4
        engine.reset(current)
        assert engine.energy == pytest.approx(full_energy(demo, current), abs=1e-10)
        assert np.allclose([t.delta for t in engine.trials(pairs)], exact, rtol=0.0, atol=1e-10)


def test_proposals_are_uniform_over_unlike_pairs():
    """Every unordered unlike pair of a three-species region is drawn with probability 1/M (χ² over the M
    pairs), also after swaps; a redraw touching a set of atoms is uniform over the unlike pairs that touch it."""
    numbers = np.array([29] * 5 + [79] * 3 + [28] * 2 + [13] * 2)       # atoms 10, 11 outside the region
    proposer = SwapProposer(numbers, np.arange(10), np.random.default_rng(2))
    proposer.swap(0, 6)                                                 # keeps the counts and the pair set
    unlike = [(a, b) for a in range(10) for b in range(a) if proposer.numbers[a] != proposer.numbers[b]]
    assert len(unlike) == proposer.n_unlike_pairs == 5 * 3 + 5 * 2 + 3 * 2

    def chi2(draws, pairs):
        index = {p: k for k, p in enumerate(pairs)}
        counts = np.bincount([index[(max(a, b), min(a, b))] for a, b in draws], minlength=len(pairs))
        expected = len(draws) / len(pairs)
        return float(((counts - expected) ** 2 / expected).sum())

    # 30 pairs: χ² has 30 dof, P(χ² > 70) ~ 5e-5; a 10 % bias towards Cu as first species gives χ² >> 100
    assert chi2(proposer.draw(30000), unlike) < 70.0
    touched = np.array([0, 1])                          # Au (after the swap) and Cu: (1, 0) is reached from both
    touching = [p for p in unlike if set(p) & {0, 1}]
    assert len(touching) == 11
    # 11 pairs: P(χ² > 40) ~ 3e-5; (1, 0) drawn at twice its rate would give χ² ~ 700
    assert chi2([proposer.draw_touching(touched) for _ in range(11000)], touching) < 40.0


def six_atoms():
    """6 sites, 3 Cu + 3 Au: C(6, 3) = 20 configurations, made distinct by a rattle."""
    atoms = bulk("Cu", "fcc", a=3.75).repeat((1, 2, 3))
    atoms.rattle(0.08, seed=3)
    atoms.numbers = [29, 79, 29, 79, 29, 79]
    return atoms


@pytest.mark.parametrize("engine, batch_size, n_attempts", [
    ("demo model, local ΔE", 8, 6000),
    ("ASE EMT", 4, 3000),
])
def test_detailed_balance_occupations_match_boltzmann(demo, engine, batch_size, n_attempts):
    atoms = six_atoms()
    model = demo if engine.startswith("demo") else EMT()
    configurations = [tuple(sorted(c)) for c in combinations(range(6), 3)]  # the Au sites
    energies = []
    for au in configurations:
        trial = atoms.copy()
        trial.numbers = [79 if i in au else 29 for i in range(6)]
        trial.calc = EMT() if model is not demo else None
        energies.append(full_energy(demo, trial) if model is demo else trial.get_potential_energy())
    energies = np.array(energies)
    temperature = 0.6 * energies.std() / units.kB   # several configurations well populated, some rare
    weights = np.exp(-(energies - energies.min()) / (units.kB * temperature))
    boltzmann = weights / weights.sum()

    visits = []
    index = {c: k for k, c in enumerate(configurations)}

    def observe(state):
        visits.append(index[tuple(np.flatnonzero(state.numbers == 79))])

    chain = SwapChain(swap_energy(model, atoms), temperature, np.random.default_rng(11),
                      batch_size=batch_size, observer=observe)
    chain.attempt(n_attempts)
    visits = np.array(visits)
    assert len(visits) == n_attempts
    # block averages: errors that include the chain's correlation
    blocks = np.array([np.bincount(b, minlength=20) / len(b) for b in np.array_split(visits, 30)])
    frequency = np.bincount(visits, minlength=20) / len(visits)
    sigma = np.maximum(blocks.std(axis=0, ddof=1) / np.sqrt(len(blocks)),
                       np.sqrt(boltzmann * (1 - boltzmann) / len(visits)))
    z = (frequency - boltzmann) / sigma
    assert np.abs(z).max() < 4.0, (engine, np.round(z, 2), np.round(boltzmann, 3))
    assert 0.05 < chain.counts.acceptance < 0.95
    # the test has power: a wrong temperature is detected
    wrong = np.exp(-(energies - energies.min()) / (units.kB * 2.0 * temperature))
    assert np.abs((frequency - wrong / wrong.sum()) / sigma).max() > 4.0


def test_driver_is_deterministic_keeps_composition_and_region(demo):
    slab = alloy(fcc111("Cu", size=(3, 3, 3), a=3.7, vacuum=6.0), seed=5)
    region = np.arange(9, 27)                      # the two upper layers only
    runs = [swap_monte_carlo(slab, demo, 2000.0, 200, seed=4, region=region, record_every=10,
                             show_progress=False) for _ in range(2)]
    first, second = runs
    assert np.array_equal(first.energies, second.energies)
    assert np.array_equal(first.atoms.numbers, second.atoms.numbers)
    assert first.accepted > 0 and first.attempted == 200 and len(first.energies) == 21
    assert np.array_equal(first.atoms.numbers[:9], slab.numbers[:9])
    assert np.array_equal(np.bincount(first.atoms.numbers), np.bincount(slab.numbers))
    assert first.energies[-1] == pytest.approx(full_energy(demo, first.atoms), abs=1e-10)
    with pytest.raises(ValueError, match="nothing to swap"):
        swap_monte_carlo(slab, demo, 300.0, 10, region=[0], show_progress=False)


def enumerated_energies(model, atoms, configurations) -> np.ndarray:
    """Energies of every placement of the 3 Au atoms on the 6 sites."""
    out = []
    for au in configurations:
        trial = atoms.copy()
        trial.numbers = [79 if i in au else 29 for i in range(6)]
        out.append(full_energy(model, trial))
    return np.array(out)


def test_replica_exchange_samples_boltzmann_at_every_temperature_and_exchanges_at_the_exact_rate(demo):
    """Two temperatures on the enumerable 6-site system: occupation frequencies at each temperature match
    its Boltzmann weights, and the exchange acceptance matches Σ_xy p_1(x) p_2(y) min(1, e^{(β_1−β_2)(E_x−E_y)})."""
    from atomflux.sampling.run import run_swap_mc

    atoms = six_atoms()
    configurations = [tuple(sorted(c)) for c in combinations(range(6), 3)]
    index = {c: k for k, c in enumerate(configurations)}
    energies = enumerated_energies(demo, atoms, configurations)
    cold = 0.6 * energies.std() / units.kB
    temperatures = np.array([cold, 2.0 * cold])
    betas = 1.0 / (units.kB * temperatures)
    boltzmann = [np.exp(-b * (energies - energies.min())) for b in betas]
    boltzmann = [w / w.sum() for w in boltzmann]
    sweeps = 1500
    run = run_swap_mc(atoms, demo, None, temperatures, sweeps, seed=3, batch_size=4, exchange_every=1,
                      show_progress=False)
    for replica, expected, temperature in zip(run.replicas, boltzmann, temperatures):
        visits = np.array([index[tuple(np.flatnonzero(n == 79))] for n in replica.numbers])
        assert len(visits) == sweeps and replica.temperature == temperature
        blocks = np.array([np.bincount(b, minlength=20) / len(b) for b in np.array_split(visits, 30)])
        frequency = np.bincount(visits, minlength=20) / len(visits)
        sigma = np.maximum(blocks.std(axis=0, ddof=1) / np.sqrt(len(blocks)),
                           np.sqrt(expected * (1 - expected) / len(visits)))
        z = (frequency - expected) / sigma
        assert np.abs(z).max() < 4.0, (temperature, np.round(z, 2))
        chi2 = float((z**2).sum())                       # 19 degrees of freedom; P(chi2 > 50) ~ 1e-4
        assert chi2 < 50.0, chi2
        print(f"\n{temperature:.0f} K: chi2 = {chi2:.1f} (19 dof), max |z| = {np.abs(z).max():.2f}")
        # the energies recorded with each sample are those of its configuration
        assert np.allclose(replica.energies, energies[visits], atol=1e-10)
    # exchange acceptance: exact expectation over the product of the two Boltzmann distributions
    gap = betas[0] - betas[1]
    accept = np.minimum(1.0, np.exp(gap * (energies[:, None] - energies[None, :])))
    expected_rate = float(boltzmann[0] @ accept @ boltzmann[1])
    measured = float(run.exchange_acceptance[0])
    n = int(run.exchange_attempted[0])
    assert n == sweeps
    sigma = 2.0 * np.sqrt(expected_rate * (1 - expected_rate) / n)   # x2: outcomes of successive exchanges correlate
    print(f"exchange acceptance {measured:.4f} vs exact {expected_rate:.4f} (± {sigma:.4f})")
    assert abs(measured - expected_rate) < 4 * sigma, (measured, expected_rate, sigma)
    # power: the criterion with the sign of the energy difference flipped predicts a rate many σ away
    flipped = float(boltzmann[0] @ np.minimum(1.0, np.exp(-gap * (energies[:, None] - energies[None, :]))) @ boltzmann[1])
    assert abs(flipped - expected_rate) > 8 * sigma, (flipped, expected_rate, sigma)
