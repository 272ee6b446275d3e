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
   training energies, forces and stress; ς, α per quantity and the force and
   stress noise floors calibrated on the calibration set).

``--recalibrate`` redoes only the calibration of steps 4 and 5 on the shipped
files (how the shipped models got their force/stress noise floors; members,
covariance and weights are unchanged, so the in-domain RMSE is too).

Why the off-domain data: a model trained on bulk alone maps an isolated atom
or a dimer to last-layer features that its training set already spans, so no
last-layer uncertainty (LLPR or shallow ensemble) can see those errors — the
smallest eigenvalue of the bulk-only covariance stays far above any prior.
A few off-domain structures give those environments their own feature
directions, sparsely sampled, where the posterior stays wide.

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


def bulk_frames(path: Path, seed: int, n_trajectories: int, snapshots: int) -> list:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        ase.io.write(path, emt_dataset(n_trajectories=n_trajectories, snapshots=snapshots, seed=seed))
    return read_frames(path)


def off_domain_frames(path: Path) -> list:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        structures = []
        for k, (category, count) in enumerate(OFF_DOMAIN.items()):
            structures += stress_test_dataset(per_category=count, seed=OFF_DOMAIN_SEED + k,
                                              categories=[category])[category]
        ase.io.write(path, structures)
    return read_frames(path)


def training_frames() -> list:
    return bulk_frames(BUILD / "demo-train.extxyz", seed=0, n_trajectories=48, snapshots=8) + off_domain_frames(
        BUILD / "demo-offdomain.extxyz")


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
    parser.add_argument("--output-dir", type=Path, default=ROOT / "atomflux" / "data")
    parser.add_argument("--recalibrate", action="store_true",
                        help="only recalibrate the models in --output-dir on the calibration set (members, "
                             "covariance and weights unchanged)")
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
    ensemble = fit_shallow_ensemble(base, frames, calibration, n_members=8, loss="nll", progress=True)
    save_model(ensemble, args.output_dir / "demo.pt")
    print(f"wrote {args.output_dir / 'demo.pt'}: {ensemble.metadata['uncertainty']}")
    llpr = add_llpr(base, frames, calibration, progress=True)
    save_model(llpr, args.output_dir / "demo-llpr.pt")
    print(f"wrote {args.output_dir / 'demo-llpr.pt'}: {llpr.metadata['uncertainty']}")


def recalibrate(directory: Path) -> None:
    """Step 4's and 5's calibration alone, on the shipped models (after a change of the calibration method)."""
    ensemble, llpr = load_model(directory / "demo.pt"), load_model(directory / "demo-llpr.pt")
    calibration = last_layer_design(llpr, calibration_frames(), progress=True)   # the two share the base
    print(f"demo: {ensemble.metadata['uncertainty']['calibration']} ->")
    print(f"      {recalibrate_ensemble(ensemble, calibration)}")
    save_model(ensemble, directory / "demo.pt")
    print(f"demo-llpr: {llpr.metadata['uncertainty']['calibration']} ->")
    llpr.metadata["uncertainty"]["calibration"] = llpr.calibrate_observations(calibration)
    print(f"           {llpr.metadata['uncertainty']['calibration']}")
    save_model(llpr, directory / "demo-llpr.pt")


if __name__ == "__main__":
    main()
