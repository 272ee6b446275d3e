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
from ase.build import fcc111
from ase.calculators.emt import EMT
from ase.data import atomic_numbers

from atomflux.analysis.segregation import assign_layers, concentration_profile, layer_segregation_energies
from conftest import compressed_alloy_model

from atomflux.reference_data import FCC_LATTICE
from atomflux.sampling.run import run_swap_mc

pytestmark = pytest.mark.slow
METALS = ("Ni", "Cu", "Pd", "Ag", "Au")
SOLUTES = ("Ni", "Pd", "Ag", "Au")
TEMPERATURE = 1000.0
MEMBER_SWEEPS = 220    # member chains: as long as the EMT and model chains


@pytest.fixture(scope="module")
def trained():
    return compressed_alloy_model(METALS)


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
    """Solutes whose single-swap E_seg the model gets within k_B T / 2 have EMT's profile within errors;
    for the solute the model gets worst, the miss is the one Langmuir–McLean predicts from its E_seg error."""
    from ase import units

    slab = five_element_slab()
    emt, ours = profiles(slab, [EMT(), trained], sweeps=220, skip=20)
    z = compare(emt, ours, "Ni4 Cu29 Pd4 Ag4 Au4 (111), 1000 K, 200 sweeps")
    print(f"  max |z| {np.abs(z).max():.1f}; |z| > 3 at {int((np.abs(z) > 3).sum())} of {z.size}")
    pure = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    layers = assign_layers(pure)
    kt = units.kB * TEMPERATURE
    gap = {}
    for solute in SOLUTES:
        e_emt = layer_segregation_energies(pure, EMT(), solute, "Cu", layers)[0]
        e_model = layer_segregation_energies(pure, trained, solute, "Cu", layers)[0]
        gap[solute] = e_model - e_emt
        print(f"  {solute}: E_seg EMT {e_emt:+.3f} model {e_model:+.3f} eV")
    column = {element: k for k, element in enumerate(emt.elements)}
    close = [s for s in SOLUTES if abs(gap[s]) < kt / 2]
    assert close, gap
    for solute in close:
        assert np.abs(z[:, column[solute]]).max() < 4.0, (solute, np.round(z[:, column[solute]], 1))
    # the worst solute: surface/bulk odds of the model over EMT's = exp(−ΔE_seg / k_B T) (Langmuir–McLean)
    worst = max(SOLUTES, key=lambda s: abs(gap[s]))
    k = column[worst]

    def log_odds(profile):
        surface = (profile.concentration[0, k] + profile.concentration[-1, k]) / 2
        surface_error = np.hypot(profile.error[0, k], profile.error[-1, k]) / 2
        bulk, bulk_error = profile.concentration[2, k], profile.error[2, k]
        value = np.log(surface / (1 - surface)) - np.log(bulk / (1 - bulk))
        error = np.hypot(surface_error / (surface * (1 - surface)), bulk_error / (bulk * (1 - bulk)))
        return value, error

    (model_value, model_error), (emt_value, emt_error) = log_odds(ours), log_odds(emt)
    measured, error = model_value - emt_value, np.hypot(model_error, emt_error)
    predicted = -gap[worst] / kt
    print(f"  {worst}: ln(odds ratio model/EMT) measured {measured:+.2f} ± {error:.2f}, "
          f"Langmuir–McLean from the E_seg error {predicted:+.2f}")
    assert abs(measured - predicted) < 3 * error
    assert abs(measured) > 3 * error           # the miss is real: beyond the errors


def test_binary_cu_au_profile_matches_emt_within_bare_errors(trained):
    """Au9 Cu36(111), long chains, bare block errors (no floor): the surface layers agree within errors;
    the subsurface layer misses by the sign of the model's subsurface site-energy error."""
    slab = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    layers = assign_layers(slab)
    subsurface_gap = (layer_segregation_energies(slab, trained, "Au", "Cu", layers)[1]
                      - layer_segregation_energies(slab, EMT(), "Au", "Cu", layers)[1])
    slab.numbers[np.random.default_rng(3).choice(len(slab), 9, replace=False)] = 79
    emt, ours = profiles(slab, [EMT(), trained], sweeps=520, skip=20)
    z = compare(emt, ours, "Au9 Cu36 (111), 1000 K, 500 sweeps")
    gold = z[:, list(emt.elements).index("Au")]
    print(f"  max |z| {np.abs(z).max():.1f} (bare errors, no floor); subsurface E_seg model − EMT "
          f"{subsurface_gap:+.3f} eV")
    assert np.abs(gold[[0, -1]]).max() < 3.0                  # the surface layers: within bare errors
    for layer in (1, -2):                                     # subsurface: where the model's site energy is off
        assert np.sign(gold[layer]) == -np.sign(subsurface_gap) or abs(gold[layer]) < 3.0


def _held_out_frames(seed: int):
    """EMT alloy data of METALS from a seed the model was not trained on, each structure's snapshots tagged as one
    MD run, split 80/20 by run as ``atomflux ensemble`` does without ``--validation``."""
    from atomflux.reference_data import SURFACE_CATEGORIES, alloy_surface_dataset
    from atomflux.training import read_frames
    from atomflux.training.trainer import RUN_KEY, split_frames

    snapshots = 3
    data = alloy_surface_dataset(METALS, per_category=48, snapshots=snapshots, seed=seed)
    structures = []
    for category in SURFACE_CATEGORIES:
        for i, atoms in enumerate(data[category]):
            atoms.info[RUN_KEY] = f"{category}-{i // snapshots}"
            structures.append(atoms)
    return split_frames(read_frames(structures), 0.2, seed, by_run=True)


def _samples(slab, engine, sweeps: int, skip: int) -> np.ndarray:
    """Atomic numbers [S, N] of the chain of ``profiles`` (same start, seed and settings), equilibration dropped."""
    run = run_swap_mc(slab, engine, None, TEMPERATURE, sweeps, seed=4, batch_size=4, show_progress=False)
    return run.numbers[skip:]


def test_five_element_model_error_covers_the_miss(trained):
    """The model's own error bar (post-hoc 8-member shallow ensemble fitted and calibrated on held-out EMT data,
    the chain rerun with every member as ``atomflux segregation --model-error`` does, 220 sweeps each) covers the
    miss of the model's Ni/Cu profile that the statistical errors alone do not — only just: measured max |z| 6.2 →
    3.0 (Ni, bottom layer; 2.7 with 120-sweep member chains, 3.6 with the members' sampling noise taken out).
    The ensemble's spread of the Ni segregation energy (0.034 eV) is half its error (0.075 eV)."""
    import time

    from atomflux import AtomfluxCalculator
    from atomflux.uncertainty import fit_shallow_ensemble
    from atomflux.uncertainty.propagation import members

    start = time.perf_counter()
    train_frames, validation = _held_out_frames(seed=7)
    ensemble = fit_shallow_ensemble(trained, train_frames, validation, n_members=8, seed=7)
    calibration = ensemble.metadata["uncertainty"]["calibration"]
    print(f"\nensemble fitted on {len(train_frames)} held-out structures, calibrated on {len(validation)}: "
          f"{calibration} ({time.perf_counter() - start:.0f} s)")
    calcs = [AtomfluxCalculator(m, uncertainty=False, dtype="float64") for m in members(ensemble)]

    pure = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    pure_layers = assign_layers(pure)
    e_emt = layer_segregation_energies(pure, EMT(), "Ni", "Cu", pure_layers)[0]
    e_model = layer_segregation_energies(pure, trained, "Ni", "Cu", pure_layers)[0]
    e_members = np.array([layer_segregation_energies(pure, c, "Ni", "Cu", pure_layers)[0] for c in calcs])
    print(f"Ni E_seg (surface): EMT {e_emt:+.3f}, model {e_model:+.3f} (error {e_model - e_emt:+.3f}), members "
          f"{np.round(e_members, 3)}: mean {e_members.mean():+.3f}, spread (std) {e_members.std(ddof=1):.3f} eV")

    slab = five_element_slab()
    layers = assign_layers(slab)
    elements = np.unique(slab.numbers)
    t0 = time.perf_counter()
    emt_numbers, model_numbers = (_samples(slab, engine, 220, 20) for engine in (EMT(), trained))
    t1 = time.perf_counter()
    member_numbers = [_samples(slab, c, MEMBER_SWEEPS, 20) for c in calcs]
    t2 = time.perf_counter()
    print(f"chains: EMT + model 220 sweeps {t1 - t0:.0f} s; "
          f"{len(calcs)} members × {MEMBER_SWEEPS} sweeps {t2 - t1:.0f} s")
    emt = concentration_profile(emt_numbers, layers, elements=elements, n_blocks=10)
    ours = concentration_profile(model_numbers, layers, elements=elements, n_blocks=10, member_numbers=member_numbers)
    statistical = np.hypot(emt.error, ours.error)
    combined = np.hypot(statistical, ours.model_error)
    miss = ours.concentration - emt.concentration
    z_bare, z_combined = miss / statistical, miss / combined
    print("layer el   EMT ± err        model ± err      model err   z(stat)  z(stat+model)")
    for k, element in enumerate(emt.elements):
        for layer in range(layers.n_layers):
            print(f"  {layer}   {element:>2}  {emt.concentration[layer, k]:.3f} ± {emt.error[layer, k]:.3f}   "
                  f"{ours.concentration[layer, k]:.3f} ± {ours.error[layer, k]:.3f}   {ours.model_error[layer, k]:.3f}"
                  f"      {z_bare[layer, k]:+5.1f}    {z_combined[layer, k]:+5.1f}")
    print(f"max |z| statistical {np.abs(z_bare).max():.1f}, with the model error {np.abs(z_combined).max():.1f}; "
          f"total {time.perf_counter() - start:.0f} s")
    # part of the members' spread is their own sampling noise: shown, not removed (the tool keeps it)
    noise = np.sqrt(np.mean([concentration_profile(m, layers, elements=elements, n_blocks=10).error**2
                             for m in member_numbers], axis=0))
    model_only = np.sqrt(np.clip(ours.model_error**2 - noise**2, 0.0, None))
    print(f"members' own block errors {noise.min():.3f}–{noise.max():.3f}; with that noise taken out of the model "
          f"error, max |z| {np.abs(miss / np.hypot(statistical, model_only)).max():.1f}")
    assert np.abs(z_bare).max() > 3.0          # the miss is beyond the statistical errors ...
    assert np.abs(z_combined).max() < 3.0      # ... and within the model's own error bar
