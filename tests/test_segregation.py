"""Segregation analysis: layers of any facet, block errors, Langmuir–McLean against swap Monte Carlo with EMT."""

import json

import numpy as np
import pytest
from ase import units
from ase.build import fcc100, fcc110, fcc111
from ase.calculators.emt import EMT
from ase.io import write

from atomflux.analysis.segregation import (assign_layers, block_average, concentration_profile,
                                           langmuir_mclean_energy, langmuir_mclean_profile, langmuir_mclean_surface,
                                           layer_segregation_energies)
from atomflux.cli import main
from atomflux.sampling import SwapChain, swap_energy

A_CU = 3.6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo():
    from atomflux.io import load_model

    return load_model("demo", dtype="float64")


@pytest.mark.parametrize("build, spacing", [
    (fcc111, A_CU / np.sqrt(3)), (fcc100, A_CU / 2), (fcc110, A_CU / (2 * np.sqrt(2)))])
@pytest.mark.parametrize("periodic", [False, True])
def test_layers_of_noisy_slabs_match_the_built_layers(build, spacing, periodic):
    slab = build("Cu", size=(3, 4, 7), a=A_CU, vacuum=7.0, periodic=periodic)
    truth = 7 - slab.get_tags()                        # ase.build tags: 1 = top layer
    slab.rattle(0.12, seed=1)                          # ~ thermal amplitude of Cu near 1000 K
    if periodic:                                       # the slab crosses the periodic boundary along the normal
        slab.positions += 0.5 * slab.cell[2]
        slab.wrap()
    layers = assign_layers(slab)
    assert layers.n_layers == 7
    assert np.array_equal(layers.index, truth)
    assert np.allclose(np.diff(layers.heights), spacing, atol=0.15)
    assert np.allclose(np.abs(layers.normal), [0, 0, 1])
    assert list(layers.depth) == [0, 1, 2, 3, 2, 1, 0]


def test_layers_refuse_what_is_not_a_slab():
    from ase.build import bulk

    with pytest.raises(ValueError, match="no vacuum"):
        assign_layers(bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(2))
    cluster = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    cluster.pbc = False
    with pytest.raises(ValueError, match="cluster or wire"):
        assign_layers(cluster)


def test_block_error_matches_the_textbook_error_of_correlated_samples():
    from scipy.signal import lfilter

    phi, n, chains = 0.9, 20_000, 300
    noise = np.random.default_rng(0).normal(size=(chains, n)) * np.sqrt(1 - phi**2)
    x = lfilter([1.0], [1.0, -phi], noise, axis=1)          # AR(1) chains of unit variance
    results = np.array([block_average(chain, n_blocks=20) for chain in x])
    expected = np.sqrt((1 + phi) / (1 - phi) / n)          # σ/√n · √(integrated autocorrelation time)
    assert results[:, 0].std() == pytest.approx(expected, rel=0.15)     # the true spread of the means
    assert np.sqrt((results[:, 1] ** 2).mean()) == pytest.approx(expected, rel=0.1)
    naive = x.std(axis=1).mean() / np.sqrt(n)               # errors that ignore correlation are 4x too small
    assert naive < 0.3 * expected


def test_langmuir_mclean_forms():
    kt = units.kB * 900.0
    # a single solute in a finite slab: the occupation of each layer is its Boltzmann weight (exact)
    energies, sites = np.array([-0.2, -0.05, 0.0, 0.0, -0.05, -0.2]), np.array([9] * 6)
    weights = sites * np.exp(-energies / kt)
    assert np.allclose(langmuir_mclean_profile(energies, sites, 1e-6, 900.0) * sites / 1e-6,
                       weights / weights.sum(), rtol=1e-5)
    c_s = langmuir_mclean_surface(0.05, -0.2, 900.0)
    assert c_s / (1 - c_s) == pytest.approx(0.05 / 0.95 * np.exp(0.2 / kt))
    assert langmuir_mclean_energy([c_s], [0.05], [900.0])[0] == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        langmuir_mclean_energy([1.0], [0.05], [900.0])


def mc_profile(slab, model, n_au: int, temperature: float, sweeps: int, seed: int = 1):
    """Swap Monte Carlo of Au in Cu with ``model``; Au concentration per layer with block errors."""
    rng = np.random.default_rng(seed)
    start = slab.copy()
    start.numbers[rng.choice(len(start), n_au, replace=False)] = 79
    chain = SwapChain(swap_energy(model, start), temperature, np.random.default_rng(seed + 1))
    chain.attempt(5 * len(start))
    samples = []
    for _ in range(sweeps):
        chain.attempt(len(start))
        samples.append(chain.energy.numbers.copy())
    return concentration_profile(np.array(samples), assign_layers(slab), elements=[29, 79], n_blocks=10)


@pytest.mark.parametrize("engine, size, n_au, temperature, sweeps", [
    # one solute: the isotherm is exact; 150 sweeps: with 60 the power check below failed for 3 of 8 seeds
    ("demo model, local ΔE", (2, 2, 5), 1, 800.0, 150),
    pytest.param("ASE EMT", (3, 3, 5), 2, 1200.0, 100, marks=pytest.mark.slow),  # EMT rebuilds its neighbour list per trial
])
def test_swap_mc_follows_langmuir_mclean_with_single_swap_energies(demo, engine, size, n_au, temperature, sweeps):
    """Dilute Au in Cu(111): MC layer occupations agree with the per-layer Langmuir–McLean isotherm."""
    slab = fcc111("Cu", size=size, a=A_CU, vacuum=7.0)
    model = EMT() if engine == "ASE EMT" else demo
    layers = assign_layers(slab)
    energies = layer_segregation_energies(slab, model, "Au", "Cu", layers)
    assert energies[0] == pytest.approx(energies[-1]) and energies[0] < -0.05   # Au segregates to Cu(111)
    predicted = langmuir_mclean_profile(energies, layers.sites, n_au, temperature)
    profile = mc_profile(slab, model, n_au, temperature, sweeps)
    measured, error = profile.concentration[:, 1], profile.error[:, 1]
    z = (measured - predicted) / np.maximum(error, 0.01)
    assert np.abs(z).max() < 3.5, (np.round(measured, 3), np.round(predicted, 3), np.round(error, 3))
    # power: the surface enrichment the test resolves is many error bars from none (E = 0 everywhere)
    gold = profile.enrichment(bulk_depth=2)[1]
    assert gold.element == "Au" and gold.enrichment > 4 * gold.enrichment_error


def cu_au_slab(path, seed: int = 0):
    slab = fcc111("Cu", size=(2, 2, 5), a=A_CU, vacuum=7.0)
    rng = np.random.default_rng(seed)
    slab.numbers[rng.choice(len(slab), 5, replace=False)] = 79
    write(path, slab)
    return slab


def test_cli_writes_profile_resumes_exactly_and_refuses_other_runs(tmp_path, capsys):
    structure = tmp_path / "slab.extxyz"
    cu_au_slab(structure)
    common = [str(structure), "--temperature", "900", "--equilibration", "2", "--blocks", "3", "--checkpoint", "4"]
    assert main(["segregation", *common, "--sweeps", "10", "-o", str(tmp_path / "once")]) == 0
    assert main(["segregation", *common, "--sweeps", "8", "-o", str(tmp_path / "twice")]) == 0
    assert main(["segregation", *common, "--sweeps", "10", "-o", str(tmp_path / "twice")]) == 0
    once, twice = (np.load(tmp_path / name / "state.npz") for name in ("once", "twice"))
    assert np.array_equal(once["numbers"], twice["numbers"]) and len(once["numbers"]) == 10
    assert int(once["accepted"]) == int(twice["accepted"])
    assert np.array_equal(np.bincount(once["numbers"][-1]), np.bincount(cu_au_slab(tmp_path / "again.extxyz").numbers))
    result = json.loads((tmp_path / "once" / "profile.json").read_text())
    assert result["elements"] == ["Cu", "Au"] and len(result["concentration"]) == 5
    assert np.allclose(np.sum(result["concentration"], axis=1), 1.0)
    gold = next(e for e in result["enrichment"] if e["element"] == "Au")
    assert gold["segregation_energy_single_swap_eV"] < 0
    assert (tmp_path / "once" / "profile.png").stat().st_size > 0
    assert "Au ± stat" in (tmp_path / "once" / "profile.txt").read_text()
    capsys.readouterr()
    # another temperature into the same folder: one line, nothing overwritten
    assert main(["segregation", *common[:1], "--temperature", "700", "--sweeps", "10", "--equilibration", "2",
                 "-o", str(tmp_path / "once")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "temperature_K: 900.0 → 700.0" in err


@pytest.mark.parametrize("arguments, message", [
    (["--equilibration", "30", "--sweeps", "20"], "must be smaller than --sweeps"),
    (["--swap-layers", "0,9"], "the slab has 5 layers"),
    (["--swap-layers", "top"], "comma-separated layer indices"),
    (["--checkpoint", "3", "--sample-every", "2"], "multiple of sample every"),
])
def test_cli_bad_inputs_are_one_line(tmp_path, capsys, arguments, message):
    structure = tmp_path / "slab.extxyz"
    cu_au_slab(structure)
    assert main(["segregation", str(structure), *arguments, "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_cli_refuses_bulk(tmp_path, capsys):
    from ase.build import bulk

    write(tmp_path / "bulk.extxyz", bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(2))
    assert main(["segregation", str(tmp_path / "bulk.extxyz"), "-o", str(tmp_path / "run")]) == 2
    assert "no vacuum" in capsys.readouterr().err


def test_cli_model_error_from_ensemble_members_and_region(tmp_path):
    structure = tmp_path / "slab.extxyz"
    slab = cu_au_slab(structure)
    out = tmp_path / "run"
    assert main(["segregation", str(structure), "--temperature", "900", "--sweeps", "6", "--equilibration", "2",
                 "--blocks", "2", "--model-error", "--swap-layers=-1,-2,-3", "-o", str(out)]) == 0
    result = json.loads((out / "profile.json").read_text())
    model_error = np.array(result["model_error"])
    assert result["inputs"]["members"] == 8 and model_error.shape == (5, 2)
    assert (model_error[2:] > 0).any()                 # the members disagree where atoms swap
    assert np.allclose(model_error[:2], 0)             # the two bottom layers never swap
    with np.load(out / "state.npz") as state:
        assert np.array_equal(state["numbers"][:, :8], np.tile(slab.numbers[:8], (len(state["numbers"]), 1)))


def test_cli_replica_exchange_resumes_exactly_and_reports_every_temperature(tmp_path, capsys):
    structure = tmp_path / "slab.extxyz"
    slab = cu_au_slab(structure)
    common = [str(structure), "--temperatures", "500", "900", "1400", "--exchange-every", "2", "--equilibration", "2",
              "--blocks", "3", "--checkpoint", "4"]
    assert main(["segregation", *common, "--sweeps", "12", "-o", str(tmp_path / "once")]) == 0
    assert main(["segregation", *common, "--sweeps", "8", "-o", str(tmp_path / "twice")]) == 0
    assert main(["segregation", *common, "--sweeps", "12", "-o", str(tmp_path / "twice")]) == 0
    once, twice = (np.load(tmp_path / name / "state.npz") for name in ("once", "twice"))
    assert once["numbers"].shape == (12, 3, len(slab))
    for key in ("numbers", "energies", "accepted", "exchange_attempted", "exchange_accepted"):
        assert np.array_equal(once[key], twice[key]), key
    assert list(once["exchange_attempted"]) == [6, 6] and 0 < once["exchange_accepted"].sum() < 12
    for k in range(3):      # every temperature keeps the composition
        assert np.array_equal(np.bincount(once["numbers"][-1, k]), np.bincount(slab.numbers))
    result = json.loads((tmp_path / "once" / "profile.json").read_text())
    assert [t["temperature_K"] for t in result["temperatures"]] == [500.0, 900.0, 1400.0]
    exchange = result["replica_exchange"]
    assert exchange["pairs_K"] == [[500.0, 900.0], [900.0, 1400.0]]
    assert np.allclose(exchange["acceptance"], once["exchange_accepted"] / once["exchange_attempted"])
    for t in (500, 900, 1400):
        assert (tmp_path / "once" / f"profile-{t}K.png").stat().st_size > 0
    assert "replica exchange acceptance" in (tmp_path / "once" / "profile.txt").read_text()
    capsys.readouterr()
    assert main(["segregation", str(structure), "--temperatures", "900", "500", "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "distinct and increasing" in err
