"""Five EMT metals: a compressed model's swap Monte Carlo segregation profiles against ASE's EMT directly (slow).

A 4-pseudo-element model of Ni, Cu, Pd, Ag, Au is trained on EMT-labelled
alloy bulk, slabs and vacancies (``reference_data.alloy_surface_dataset``);
the same swap Monte Carlo (same start, same seed, same sweeps) then runs on a
five-element Cu-rich (111) slab with EMT (one energy call per trial) and with
the model (local ΔE), and on the binary Cu–Au slab with long chains.  The
per-layer concentrations of every element are compared with the combined
block-averaged errors (z-scores), beside the single-swap segregation energies
(bulk → surface) of each solute in Cu from both.
"""

import numpy as np
import pytest
import torch
from ase.build import fcc111
from ase.calculators.emt import EMT
from ase.data import atomic_numbers

from atomflux.analysis.segregation import assign_layers, concentration_profile, layer_segregation_energies
from atomflux.reference_data import FCC_LATTICE, SURFACE_CATEGORIES, alloy_surface_dataset
from atomflux.sampling.run import run_swap_mc
from atomflux.training import TrainConfig, read_frames, train

pytestmark = pytest.mark.slow
METALS = ("Ni", "Cu", "Pd", "Ag", "Au")
SOLUTES = ("Ni", "Pd", "Ag", "Au")
TEMPERATURE = 1000.0


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    data = alloy_surface_dataset(METALS, per_category=48, snapshots=3, seed=0)
    frames = read_frames([atoms for category in SURFACE_CATEGORIES for atoms in data[category]])
    config = TrainConfig(epochs=200, batch_size=8, learning_rate=3e-3, energy_weight=10.0, patience=30,
                         progress=False, model={"n_pseudo": 4, "hidden": [32, 32]})
    return train(frames, config).potential


def five_element_slab():
    """3 × 3 × 5 Cu(111) slab (Vegard lattice constant) with 4 Ni, 4 Pd, 4 Ag, 4 Au at random sites."""
    counts = {"Cu": 29, "Ni": 4, "Pd": 4, "Ag": 4, "Au": 4}
    a = sum(n * FCC_LATTICE[e] for e, n in counts.items()) / sum(counts.values())
    slab = fcc111("Cu", size=(3, 3, 5), a=a, vacuum=7.0)
    symbols = [e for e, n in counts.items() for _ in range(n)]
    slab.numbers = np.random.default_rng(0).permutation([atomic_numbers[s] for s in symbols])
    return slab


def profiles(slab, engines, sweeps: int, skip: int):
    """Per-layer profiles of every element, one per engine, from the same chain settings."""
    layers = assign_layers(slab)
    elements = np.unique(slab.numbers)
    out = []
    for engine in engines:
        run = run_swap_mc(slab, engine, None, TEMPERATURE, sweeps, seed=4, batch_size=4, show_progress=False)
        out.append(concentration_profile(run.numbers[skip:], layers, elements=elements, n_blocks=10))
    return out


def compare(emt, ours, label: str) -> np.ndarray:
    """z-scores [layers, elements] of the model's profile against EMT's; prints the table."""
    error = np.hypot(emt.error, ours.error)
    z = (ours.concentration - emt.concentration) / error
    print(f"\n{label}: per-layer concentration, EMT | model | z (combined block errors)")
    for k, element in enumerate(emt.elements):
        print(f"  {element:>2} EMT   ", np.round(emt.concentration[:, k], 3), "±", np.round(emt.error[:, k], 3))
        print(f"     model ", np.round(ours.concentration[:, k], 3), "±", np.round(ours.error[:, k], 3))
        print("     z     ", np.round(z[:, k], 1))
    return z


def test_segregation_energies_of_solutes_in_cu111(trained):
    slab = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    layers = assign_layers(slab)
    print("\nE_seg per layer (bulk -> layer, eV) of one solute in Cu(111)")
    worst = 0.0
    for solute in SOLUTES:
        reference = layer_segregation_energies(slab, EMT(), solute, "Cu", layers)
        model = layer_segregation_energies(slab, trained, solute, "Cu", layers)
        print(f"  {solute}: EMT {np.round(reference, 3)}  model {np.round(model, 3)}")
        worst = max(worst, float(np.abs(model - reference).max()))
    print(f"  largest difference {worst:.3f} eV")
    assert worst < 0.1


def test_five_element_profiles_match_emt(trained):
    slab = five_element_slab()
    emt, ours = profiles(slab, [EMT(), trained], sweeps=220, skip=20)
    z = compare(emt, ours, "Ni4 Cu29 Pd4 Ag4 Au4 (111), 1000 K, 200 sweeps")
    print(f"  max |z| {np.abs(z).max():.1f}; |z| > 3 at {int((np.abs(z) > 3).sum())} of {z.size}")
    # the surface enrichment each code finds, per element (outer layers vs the middle one)
    for k, element in enumerate(emt.elements):
        surface = lambda p: (p.concentration[0, k] + p.concentration[-1, k]) / 2 - p.concentration[2, k]  # noqa: E731
        print(f"  {element:>2} enrichment EMT {surface(emt):+.3f} model {surface(ours):+.3f}")
    assert np.abs(z).max() < 4.0


def test_binary_cu_au_profile_matches_emt_within_bare_errors(trained):
    slab = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    slab.numbers[np.random.default_rng(3).choice(len(slab), 9, replace=False)] = 79
    emt, ours = profiles(slab, [EMT(), trained], sweeps=520, skip=20)
    z = compare(emt, ours, "Au9 Cu36 (111), 1000 K, 500 sweeps")
    print(f"  max |z| {np.abs(z).max():.1f} (bare errors, no floor)")
    assert np.abs(z).max() < 4.0
