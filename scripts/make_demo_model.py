"""Reproduce the shipped demo model: ``python scripts/make_demo_model.py``.

1. Generates EMT reference data for fcc Ni, Cu, Ag, Au and their alloys with
   :func:`atomflux.reference_data.emt_dataset` (seeded, no downloads).
2. Trains a :class:`~atomflux.models.PowerSpectrumPotential` on it.
3. Writes ``atomflux/data/demo.pt`` with the training metrics in its metadata.

The demo model is a demonstration of the machinery trained on EMT, not a
physical model of these metals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io

from atomflux.io import save_model
from atomflux.reference_data import emt_dataset
from atomflux.training import TrainConfig, read_frames, train
from atomflux.training.trainer import report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "atomflux" / "data" / "demo.pt")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "demo-train.extxyz")
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    if not args.data.is_file():
        args.data.parent.mkdir(parents=True, exist_ok=True)
        ase.io.write(args.data, emt_dataset(n_trajectories=48, snapshots=8, seed=0))
    frames = read_frames(args.data)
    cfg = TrainConfig(epochs=args.epochs, patience=50, learning_rate=5e-3, seed=0,
                      model={"cutoff": 4.5, "n_radial": 8, "n_channels": 8, "max_angular": 3,
                             "hidden": [64, 64]})
    result = train(frames, cfg)
    print(report(result))
    save_model(result.potential, args.output, {
        "description": "atomflux demo model: fcc Ni/Cu/Ag/Au and alloys trained on ASE EMT data "
                       "(scripts/make_demo_model.py). A demonstration, not a physical model."})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
