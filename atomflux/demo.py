"""The end-to-end demonstration behind ``atomflux demo`` / ``make demo``."""

from __future__ import annotations

import json
from pathlib import Path

from ase.build import bulk

from .calculators import AtomfluxCalculator
from .io import load_model
from .md import run_md
from .plotting import parity_plot
from .reference_data import emt_dataset
from .training import predict_frames, read_frames
from .training.metrics import format_metrics


def demo_system(repeat: int = 3):
    """The demo structure: fcc Cu (a = 3.60 Å) with 25 % Au on random sites, 4·repeat³ atoms."""
    import numpy as np

    atoms = bulk("Cu", "fcc", a=3.60, cubic=True) * (repeat, repeat, repeat)
    rng = np.random.default_rng(7)
    gold = rng.choice(len(atoms), size=len(atoms) // 4, replace=False)
    atoms.symbols[gold] = "Au"
    atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)
    return atoms


def run_demo(output: str | Path = "demo-output", quick: bool = False, model: str = "demo") -> dict:
    """Load the shipped model, check it against fresh EMT data, run a short MD, compute lattice κ.

    Writes ``summary.json``, ``parity.png``, ``md.traj``, ``md.log``,
    ``kappa.json`` and ``kappa.png`` into ``output`` and returns the summary.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    potential = load_model(model)
    print(f"[1/4] loaded model {model!r}: {potential.architecture}, species {potential.species}, "
          f"cutoff {potential.cutoff} Å")
    print("      " + potential.metadata.get("description", ""))
    frames = read_frames(emt_dataset(n_trajectories=4 if quick else 12, snapshots=4, seed=12345))
    predictions = predict_frames(potential, frames)
    metrics = predictions.metrics()
    parity_plot(predictions.reference, predictions.predicted, out / "parity.png",
                title=f"{model} model vs EMT, {len(frames)} fresh structures")
    print(f"[2/4] errors against EMT on {len(frames)} unseen structures (parity plot: {out / 'parity.png'}):")
    print(format_metrics(metrics))
    atoms = demo_system(2 if quick else 3)
    steps = 100 if quick else 1000
    md = run_md(atoms, AtomfluxCalculator(potential, uncertainty="energy"), temperature=600.0, steps=steps, timestep=2.0,
                ensemble="nve", trajectory=out / "md.traj", logfile=out / "md.log", interval=10)
    print(f"[3/4] NVE MD of {atoms.get_chemical_formula()} ({len(atoms)} atoms) from 600 K, {steps} × 2 fs: "
          f"mean T {md['mean_temperature_K']:.0f} K, energy drift {1000 * md['energy_drift_eV_per_atom']:.3f} meV/atom, "
          f"{1000 * md['seconds_per_step']:.1f} ms/step (trajectory: {out / 'md.traj'})")
    from .lattice import thermal_conductivity

    copper = bulk("Cu", "fcc", a=3.6)
    kappa = thermal_conductivity(copper, AtomfluxCalculator(potential), supercell=(3, 3, 3),
                                 mesh=(7, 7, 7) if quick else (11, 11, 11), temperatures=(100, 300, 600),
                                 relax=True, workdir=out / "kappa")
    kappa.to_json(out / "kappa.json")
    kappa.plot(out / "kappa.png")
    print(f"[4/4] lattice thermal conductivity of fcc Cu (phonons only, phono3py RTA, model ± 1σ; plot {out / 'kappa.png'}):")
    print(kappa.table())
    iso, iso_std = kappa.isotropic()
    summary = {"model": model, "test_metrics_vs_emt": metrics, "md": md,
               "kappa_W_per_mK": {"temperatures_K": kappa.temperatures.tolist(), "mean": iso.tolist(),
                                  "std": None if iso_std is None else iso_std.tolist()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary written to {out / 'summary.json'}")
    return summary
