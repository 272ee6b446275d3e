"""Reproduce the shipped demo models: ``python scripts/make_demo_model.py``.

1. Generates EMT reference data for fcc Ni, Cu, Ag, Au and their alloys with
   :func:`atomflux.reference_data.emt_dataset` (seeded, no downloads): a
   training set (seed 0) and a calibration set (seed 1).
2. Trains a :class:`~atomflux.models.PowerSpectrumPotential` on the training
   set (``build/demo-base.pt``; skipped when that file exists).
3. ``atomflux/data/demo.pt``: the base made a calibrated 8-member shallow
   ensemble (post-hoc, NLL on training energies, scale calibrated on the
   calibration set).
4. ``atomflux/data/demo-llpr.pt``: the base with LLPR (covariance from the
   training set, α and ς calibrated on the calibration set).

The demo models demonstrate the machinery on EMT; they are not physical
models of these metals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io

from atomflux.io import load_model, save_model
from atomflux.reference_data import emt_dataset
from atomflux.systems import Batch
from atomflux.training import TrainConfig, read_frames, train
from atomflux.training.trainer import report
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
DESCRIPTION = ("atomflux demo model: fcc Ni/Cu/Ag/Au and alloys trained on ASE EMT data "
               "(scripts/make_demo_model.py). A demonstration, not a physical model.")
TRAIN_CONFIG = TrainConfig(epochs=300, patience=50, learning_rate=5e-3, seed=0,
                           model={"cutoff": 4.5, "n_radial": 8, "n_channels": 8, "max_angular": 3, "hidden": [64, 64]})


def dataset(path: Path, seed: int, n_trajectories: int) -> list:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        ase.io.write(path, emt_dataset(n_trajectories=n_trajectories, snapshots=8, seed=seed))
    return read_frames(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "atomflux" / "data")
    args = parser.parse_args()
    frames = dataset(BUILD / "demo-train.extxyz", seed=0, n_trajectories=48)
    calibration = dataset(BUILD / "demo-calibration.extxyz", seed=1, n_trajectories=16)
    base_path = BUILD / "demo-base.pt"
    if not base_path.is_file():
        result = train(frames, TRAIN_CONFIG)
        print(report(result))
        save_model(result.potential, base_path, {"description": DESCRIPTION})
    base = load_model(base_path)
    cutoff = base.cutoff
    train_batches = [Batch.from_atoms(f.atoms, cutoff) for f in frames]
    calib_batches = [Batch.from_atoms(f.atoms, cutoff) for f in calibration]
    ensemble = fit_shallow_ensemble(base, train_batches, [f.energy for f in frames], calib_batches,
                                    [f.energy for f in calibration], n_members=8, loss="nll")
    save_model(ensemble, args.output_dir / "demo.pt")
    print(f"wrote {args.output_dir / 'demo.pt'}: {ensemble.metadata['uncertainty']}")
    llpr = add_llpr(base, train_batches, calib_batches, [f.energy for f in calibration])
    save_model(llpr, args.output_dir / "demo-llpr.pt")
    print(f"wrote {args.output_dir / 'demo-llpr.pt'}: {llpr.metadata['uncertainty']}")


if __name__ == "__main__":
    main()
