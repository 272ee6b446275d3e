"""Reproduce the shipped demo models: ``python scripts/make_demo_model.py``.

1. Generates EMT reference data for fcc Ni, Cu, Ag, Au and their alloys with
   :func:`atomflux.reference_data.emt_dataset` (seeded, no downloads): a
   training set (seed 0, 48 MD runs × 8 snapshots) and a calibration set
   (seed 1, 64 independent MD runs × 2 snapshots); plus a little
   off-domain data from :func:`atomflux.reference_data.stress_test_dataset`
   (seed 100; dimers, clusters, surfaces, vacancies, interstitials, strong
   strain, melts — no isolated atoms; about 10 % of the training atoms).
   The stress-test benchmark (``atomflux calibrate demo --stress-test``)
   draws fresh structures with other seeds.
2. Trains a :class:`~atomflux.models.PowerSpectrumPotential` on bulk plus
   off-domain data (``build/demo-base.pt``; skipped when that file exists).
3. Refits the base's last layer by weighted linear least squares on the
   training energies, forces and stress (frozen backbone; weights = inverse
   mean squared residual per quantity: the posterior mean of the same Bayesian
   linear regression LLPR uses).  The network's training run leaves a bulk
   energy bias that the few large off-domain energies pull on; this linear
   step removes most of it.
4. ``atomflux/data/demo.pt``: the base made an 8-member shallow ensemble
   (post hoc, Gaussian NLL on training energies and forces; from the
   calibration set one factor for energies, a factor and a noise floor for
   forces and stress).
5. ``atomflux/data/demo-llpr.pt``: the base with LLPR (covariance from
   training energies, forces and stress, each off-domain category with its own
   noise level: the model fits dimers and clusters far worse than the bulk, and
   those few structures must not pin the weights as if they were bulk-precise;
   ς, α per quantity and the force and stress noise floors calibrated on the
   calibration set).
6. Both models: the force σ term c·σ_E,i/r_c (an atom's energy σ over the
   cutoff, :func:`atomflux.uncertainty.report.fit_force_locality`), c fitted by
   the NLL of the calibration set plus off-domain calibration structures
   (:func:`~atomflux.reference_data.stress_test_dataset`, seed 3000, 16 per
   category, no isolated atoms; the stress test's seeds 2024-2026 are never used).
7. Both models: novelty data, the training atoms' descriptor statistics
   (:func:`atomflux.uncertainty.fit_novelty` on the training set of step 1), for
   ``atomflux md --max-novelty``.

``--recalibrate`` redoes steps 4-7's uncertainty on the shipped files without
touching their predictions (ensemble members and the base's weights unchanged,
so the in-domain RMSE is too): the ensemble's calibration, LLPR's covariance
and calibration, c and the novelty data.  The shipped files came from
``python scripts/make_demo_model.py --recalibrate``.

Why the off-domain data: a model trained on bulk alone maps an isolated atom
or a dimer to last-layer features that its training set already spans, so no
last-layer uncertainty (LLPR or shallow ensemble) can see those errors — the
smallest eigenvalue of the bulk-only covariance stays far above any prior.
A few off-domain structures give those environments their own feature
directions, sparsely sampled, where the posterior stays wide — provided their
observations carry their own, larger noise (step 5): with the bulk's noise
their many force components pin those directions as tightly as the bulk's
(LLPR energy σ of a dimer 0.04 eV/atom against errors of 0.2).

The demo models demonstrate the machinery on EMT; they are not physical
models of these metals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import torch

from atomflux.io import load_model, save_model
from atomflux.reference_data import emt_dataset, stress_test_dataset
from atomflux.training import TrainConfig, read_frames, train
from atomflux.training.trainer import report
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble
from atomflux.uncertainty.ensemble import recalibrate_ensemble
from atomflux.uncertainty.lastlayer import last_layer_design
from atomflux.uncertainty.novelty import attach_novelty, fit_novelty
from atomflux.uncertainty.report import fit_force_locality

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
DESCRIPTION = ("atomflux demo model: fcc Ni/Cu/Ag/Au and alloys trained on ASE EMT data, bulk plus a little "
               "off-domain data (scripts/make_demo_model.py). A demonstration, not a physical model.")
TRAIN_CONFIG = TrainConfig(epochs=300, patience=300, learning_rate=2e-3, seed=0,
                           model={"cutoff": 4.5, "n_radial": 8, "n_channels": 8, "max_angular": 3, "hidden": [64, 64]})
#: off-domain structures per stress-test category added to the training set
OFF_DOMAIN = {"dimer": 24, "cluster": 16, "surface": 8, "vacancies": 6, "interstitial": 6, "strong_strain": 8,
              "melt": 8}
OFF_DOMAIN_SEED = 100
#: off-domain structures that fix the force-locality coefficient c (isolated atoms left out: every seed gives the same)
OFF_DOMAIN_CALIBRATION = {"seed": 3000, "per_category": 16,
                          "categories": ["dimer", "cluster", "surface", "vacancies", "interstitial", "strong_strain",
                                         "melt"]}


def bulk_frames(path: Path, seed: int, n_trajectories: int, snapshots: int) -> list:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        ase.io.write(path, emt_dataset(n_trajectories=n_trajectories, snapshots=snapshots, seed=seed))
    return read_frames(path)


def off_domain_structures(path: Path) -> list:
    """The off-domain training structures (Atoms with ``info["category"]``)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        structures = []
        for k, (category, count) in enumerate(OFF_DOMAIN.items()):
            structures += stress_test_dataset(per_category=count, seed=OFF_DOMAIN_SEED + k,
                                              categories=[category])[category]
        ase.io.write(path, structures)
    return ase.io.read(path, ":")


def training_frames() -> list:
    return bulk_frames(BUILD / "demo-train.extxyz", seed=0, n_trajectories=48, snapshots=8) + read_frames(
        off_domain_structures(BUILD / "demo-offdomain.extxyz"))


def training_groups() -> list[str]:
    """The noise group of every training structure, in :func:`training_frames` order: "bulk" or its category."""
    bulk = len(bulk_frames(BUILD / "demo-train.extxyz", seed=0, n_trajectories=48, snapshots=8))
    return ["bulk"] * bulk + [a.info["category"] for a in off_domain_structures(BUILD / "demo-offdomain.extxyz")]


def locality_frames() -> list:
    """Held-out frames that fix the force-locality coefficient: the calibration set plus off-domain structures."""
    path = BUILD / "demo-offdomain-calibration.extxyz"
    if not path.is_file():
        ase.io.write(path, [a for v in stress_test_dataset(**OFF_DOMAIN_CALIBRATION).values() for a in v])
    return calibration_frames() + read_frames(path)


def calibration_frames() -> list:
    return bulk_frames(BUILD / "demo-calibration-64x2.extxyz", seed=1, n_trajectories=64, snapshots=2)


def base_model():
    path = BUILD / "demo-base.pt"
    if not path.is_file():
        result = train(training_frames(), TRAIN_CONFIG)
        print(report(result))
        save_model(result.potential, path, {"description": DESCRIPTION})
    return load_model(path)


def rms(design) -> dict[str, float]:
    return {q: float(getattr(design, q).residuals.pow(2).mean().sqrt()) for q in design.quantities()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "atomflux" / "data",
                        help="where demo.pt and demo-llpr.pt are written (and read, with --recalibrate)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="only redo the uncertainty of the models in --output-dir (ensemble calibration, "
                             "LLPR covariance and calibration, force locality); predictions unchanged")
    args = parser.parse_args()
    if args.recalibrate:
        recalibrate(args.output_dir)
        return
    base = base_model()
    # the last-layer rows (feature gradients) are the same for all three steps: compute them once
    frames = last_layer_design(base, training_frames(), progress=True)
    calibration = last_layer_design(base, calibration_frames(), progress=True)
    delta = frames.least_squares()
    with torch.no_grad():
        base.last_layer.weight += delta[:-1] / base.energy_scale
        base.last_layer.bias += delta[-1] / base.energy_scale
    frames, calibration = frames.corrected(delta), calibration.corrected(delta)
    print(f"last layer refitted by weighted least squares: RMS residuals {rms(frames)} on the training set")
    add_novelty(base)  # the ensemble and the LLPR share the base's descriptor: both carry these statistics
    ensemble = fit_shallow_ensemble(base, frames, calibration, n_members=8, loss="nll", progress=True)
    fit_force_locality(ensemble, locality_frames())
    save_model(ensemble, args.output_dir / "demo.pt")
    print(f"wrote {args.output_dir / 'demo.pt'}: {ensemble.metadata['uncertainty']}")
    llpr = add_llpr(base, frames, calibration, groups=training_groups(), progress=True)
    fit_force_locality(llpr, locality_frames())
    save_model(llpr, args.output_dir / "demo-llpr.pt")
    print(f"wrote {args.output_dir / 'demo-llpr.pt'}: {llpr.metadata['uncertainty']}")


def add_novelty(model) -> None:
    """Step 7: the training atoms' descriptor statistics (``atomflux md --max-novelty``)."""
    attach_novelty(model, fit_novelty(model, [frame.atoms for frame in training_frames()], show_progress=True))


def recalibrate(directory: Path) -> None:
    """Steps 4-6's uncertainty alone, on the shipped models (predictions unchanged)."""
    ensemble, llpr = load_model(directory / "demo.pt"), load_model(directory / "demo-llpr.pt")
    for model in (ensemble, llpr):
        add_novelty(model)
    calibration = last_layer_design(llpr, calibration_frames(), progress=True)   # the two share the base
    print(f"demo: {ensemble.metadata['uncertainty']['calibration']} ->")
    recalibrate_ensemble(ensemble, calibration)
    fit_force_locality(ensemble, locality_frames())
    print(f"      {ensemble.metadata['uncertainty']['calibration']}")
    save_model(ensemble, directory / "demo.pt")
    print(f"demo-llpr: {llpr.metadata['uncertainty']['calibration']} ->")
    groups = training_groups()
    fit = llpr.metadata["uncertainty"]["fit"]
    fit["weights"] = llpr.fit_observations(last_layer_design(llpr, training_frames(), progress=True), groups=groups)
    fit["noise_groups"] = sorted(set(groups))
    llpr.metadata["uncertainty"]["calibration"] = llpr.calibrate_observations(calibration)
    fit_force_locality(llpr, locality_frames())
    print(f"           {llpr.metadata['uncertainty']['calibration']}")
    save_model(llpr, directory / "demo-llpr.pt")


if __name__ == "__main__":
    main()
