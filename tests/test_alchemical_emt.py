"""A compressed (4 pseudo-element) model of the seven EMT metals, trained and validated against EMT (slow).

The model is trained on EMT-labelled alloy bulk, slabs of three facets and
vacancies (``reference_data.alloy_surface_dataset``) and checked on held-out
structures of every category (another seed), then used for the issue's
independent check: swap Monte Carlo of a Cu–Au(111) slab with ASE's EMT
directly and with the trained model give the same per-layer Au profile.
"""

import numpy as np
import pytest
from ase.build import fcc111
from ase.calculators.emt import EMT

from atomflux.analysis.segregation import assign_layers, concentration_profile, layer_segregation_energies
from conftest import compressed_alloy_model

from atomflux.reference_data import FCC_LATTICE, SURFACE_CATEGORIES, alloy_surface_dataset
from atomflux.sampling import SwapChain
from atomflux.sampling.energies import swap_energy
from atomflux.training import read_frames
from atomflux.training.metrics import predict_frames

pytestmark = pytest.mark.slow
METALS = tuple(FCC_LATTICE)           # Ni, Cu, Pd, Ag, Pt, Au, Al


@pytest.fixture(scope="module")
def trained():
    return compressed_alloy_model(METALS)


def test_held_out_errors_per_category_against_emt(trained):
    held_out = alloy_surface_dataset(METALS, per_category=12, snapshots=3, seed=1)
    rows = {}
    for category in SURFACE_CATEGORIES:
        predictions = predict_frames(trained, read_frames(held_out[category]))
        metrics = predictions.metrics()
        forces = predictions.reference["forces"]
        rows[category] = (1e3 * metrics["energy_rmse"], 1e3 * metrics["forces_rmse"], 1e3 * np.sqrt(np.mean(forces**2)))
    print("\ncategory          E RMSE meV/atom   F RMSE meV/Å   EMT F RMS meV/Å")
    for category, (energy, force, scale) in rows.items():
        print(f"{category:16s} {energy:12.1f} {force:14.0f} {scale:16.0f}")
    for category, (energy, force, scale) in rows.items():
        assert energy < 40.0, category                      # meV/atom
        assert force < 0.35 * scale, category              # forces resolved well beyond their spread


def test_swap_mc_of_cu_au_slab_matches_emt(trained):
    """Au in Cu(111): the single-swap segregation energies and the per-layer Au profile of swap MC with
    the trained model (local ΔE) agree with the same runs with ASE's EMT (one energy call per trial)."""
    slab = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    layers = assign_layers(slab)
    reference = layer_segregation_energies(slab, EMT(), "Au", "Cu", layers)
    model = layer_segregation_energies(slab, trained, "Au", "Cu", layers)
    print("\nsegregation energy per layer (eV): EMT", np.round(reference, 3), "model", np.round(model, 3))
    assert reference[0] < -0.05                                         # Au segregates to Cu(111) in EMT
    np.testing.assert_allclose(model, reference, atol=0.05)
    profiles = []
    for engine in (EMT(), trained):
        rng = np.random.default_rng(3)
        start = slab.copy()
        start.numbers[rng.choice(len(start), 9, replace=False)] = 79
        chain = SwapChain(swap_energy(engine, start), 1000.0, np.random.default_rng(4))
        chain.attempt(5 * len(start))
        samples = []
        for _ in range(120):
            chain.attempt(len(start))
            samples.append(chain.energy.numbers.copy())
        profiles.append(concentration_profile(np.array(samples), layers, elements=[29, 79], n_blocks=10))
    (emt, ours) = profiles
    print("Au per layer: EMT", np.round(emt.concentration[:, 1], 3), "±", np.round(emt.error[:, 1], 3))
    print("           model", np.round(ours.concentration[:, 1], 3), "±", np.round(ours.error[:, 1], 3))
    error = np.hypot(emt.error[:, 1], ours.error[:, 1])
    z = (ours.concentration[:, 1] - emt.concentration[:, 1]) / np.maximum(error, 0.01)
    assert np.abs(z).max() < 3.5
    assert emt.concentration[0, 1] > 2 * emt.concentration[2, 1]         # the profile resolves the segregation
