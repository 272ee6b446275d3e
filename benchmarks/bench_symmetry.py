"""Cost and effect of rotational averaging (issue 22).

1. Cost of averaging vs grid order: energy + forces of the demo model (exactly
   invariant, PowerSpectrumPotential) and of an UnconstrainedPotential on a
   108-atom Cu cell, bare and averaged over Lebedev grids of order 1..6, all
   rotations in one batched evaluate call; for one order also one call per
   rotation (the path of a non-atomflux ASE calculator), in the same run.
2. Equivariance error vs order: for the unconstrained model on a 13-atom
   cluster, max |F(Rx) − F(x)Rᵀ| and the net torque |Σ r×F| of the average.
3. Unconstrained vs invariant architecture at equal data and budget: both
   trained on the same LJ-labelled clusters (same epochs), validation force
   MAE, rotational spread, and time per energy + forces.

Writes benchmarks/results/symmetry.json and .md.  Run with
``.venv/bin/python benchmarks/bench_symmetry.py`` (1 torch thread, CPU time).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402
from test_symmetry import cluster, results, rotated  # noqa: E402

from atomflux import AtomfluxCalculator  # noqa: E402
from atomflux.models import LennardJones, PowerSpectrumPotential, UnconstrainedPotential  # noqa: E402
from atomflux.symmetry import RotationalAverage  # noqa: E402
from atomflux.symmetry.diagnostics import torque  # noqa: E402
from atomflux.systems import Batch  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
ORDERS = (0, 1, 2, 3, 4, 6)


def energy_and_forces(calc, atoms) -> None:
    atoms.calc = calc
    calc.results = {}
    atoms.get_forces()


def untrained_unconstrained(dtype=torch.float64) -> UnconstrainedPotential:
    torch.manual_seed(0)
    model = UnconstrainedPotential(["Cu"], cutoff=5.0, n_channels=8, max_angular=3, hidden=[32, 32]).to(dtype)
    clusters = [cluster(13, seed=s) for s in range(4)]
    model.fit_statistics([Batch.from_atoms(a, 5.0, dtype) for a in clusters], [0.0] * 4, forces_rms=0.3)
    return model.eval()


def cost_vs_order() -> list[dict]:
    cell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    cell.rattle(0.05, seed=0)
    rows = []
    for name, model in (("demo", "demo"), ("unconstrained", untrained_unconstrained())):
        bare = timed(lambda: energy_and_forces(AtomfluxCalculator(model, dtype="float64"), cell.copy()), 1.0,
                     time.process_time)
        for order in ORDERS:
            calc = RotationalAverage(model, order=order, dtype="float64")
            seconds = timed(lambda: energy_and_forces(calc, cell.copy()), 1.0, time.process_time)
            rows.append({"model": name, "order": order, "rotations": calc.last_grid.size, "seconds": seconds,
                         "bare_seconds": bare, "cost_over_bare": seconds / bare,
                         "cost_per_rotation_over_bare": seconds / bare / calc.last_grid.size})
            print(rows[-1], flush=True)
    return rows


def batched_vs_loop(order: int = 3) -> dict:
    """One batched call for all rotations against one AtomfluxCalculator call per rotation (same run)."""
    cell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    cell.rattle(0.05, seed=1)
    batched = RotationalAverage("demo", order=order, dtype="float64")
    looped = RotationalAverage(_PlainCalculator("demo"), order=order)
    return {"atoms": len(cell), "order": order, "rotations": batched.last_grid.size,
            "batched_seconds": timed(lambda: energy_and_forces(batched, cell.copy()), 1.0, time.process_time),
            "one_call_per_rotation_seconds": timed(lambda: energy_and_forces(looped, cell.copy()), 1.0,
                                                   time.process_time)}


class _PlainCalculator(Calculator):
    """An atomflux model behind a plain ASE calculator: RotationalAverage calls it once per rotation."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, model) -> None:
        super().__init__()
        self.inner = AtomfluxCalculator(model, dtype="float64")

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.inner.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.inner.results)


def equivariance_vs_order() -> list[dict]:
    model = untrained_unconstrained()
    atoms = cluster(13, seed=2)
    turns = Rotation.random(3, random_state=3).as_matrix()
    rows = []
    for order in ORDERS + (8,):
        for grid in ("lebedev", "legendre"):
            calc = RotationalAverage(model, order=order, grid=grid, dtype="float64")
            forces = results(calc, atoms)["forces"]
            error = max(np.abs(results(calc, rotated(atoms, r))["forces"] - forces @ r.T).max() for r in turns)
            rows.append({"grid": grid, "order": order, "rotations": calc.last_grid.size,
                         "max_equivariance_error_eV_per_A": float(error),
                         "torque_eV": float(np.linalg.norm(torque(atoms, forces)))})
            print(rows[-1], flush=True)
    return rows


def architectures_at_equal_budget(epochs: int = 60) -> list[dict]:
    from atomflux.training import TrainConfig, train
    from atomflux.training.dataset import Frame

    lj = AtomfluxCalculator(LennardJones(2.3, 0.2, 5.0, cutoff_mode="smooth", species=["Cu"]), dtype="float64")
    frames = []
    for seed in range(40):
        atoms = cluster(13, seed=seed)
        atoms.rattle(0.1, seed=seed)
        atoms = rotated(atoms, Rotation.random(random_state=seed).as_matrix())
        labelled = results(lj, atoms)
        frames.append(Frame(atoms=atoms, energy=labelled["energy"], forces=labelled["forces"]))
    cell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    shared = {"n_channels": 8, "max_angular": 3, "hidden": [32, 32]}
    rows = []
    for architecture, augment in (("PowerSpectrumPotential", False), ("UnconstrainedPotential", False),
                                  ("UnconstrainedPotential", True)):
        start = time.process_time()
        result = train(frames, TrainConfig(epochs=epochs, architecture=architecture, augment=augment, progress=False,
                                           validation_fraction=0.25, model=shared))
        training = time.process_time() - start
        model = result.potential.double()
        spread = np.mean([results(RotationalAverage(model, order=6, dtype="float64"), a)["energy_rot_std"] / len(a)
                          for a in (cluster(13, seed=200 + s) for s in range(3))])
        rows.append({"architecture": architecture, "augment": augment, "epochs_run": len(result.history),
                     "training_cpu_seconds": training,
                     "validation_forces_mae_eV_per_A": result.metrics["validation"]["forces_mae"],
                     "validation_energy_mae_eV": result.metrics["validation"]["energy_mae"],
                     "energy_rot_std_eV_per_atom": float(spread),
                     "seconds_energy_forces_108_atoms": timed(
                         lambda: energy_and_forces(AtomfluxCalculator(model, dtype="float64"), cell.copy()), 1.0,
                         time.process_time)})
        print(rows[-1], flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = ["# bench_symmetry", "", "Cost of averaging (108-atom Cu, energy + forces, float64, CPU s, 1 thread):", "",
             "| model | order | rotations | s | × bare | × bare per rotation |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['order']} | {r['rotations']} | {r['seconds']:.3g} | {r['cost_over_bare']:.3g} | "
              f"{r['cost_per_rotation_over_bare']:.3g} |" for r in report["cost"]]
    b = report["batched_vs_loop"]
    lines += ["", f"Batched vs one call per rotation ({b['atoms']} atoms, order {b['order']}, {b['rotations']} "
              f"rotations): {b['batched_seconds']:.3g} s vs {b['one_call_per_rotation_seconds']:.3g} s.", "",
              "Equivariance of the averaged unconstrained model (13-atom cluster):", "",
              "| grid | order | rotations | max |F(Rx) − F(x)Rᵀ| eV/Å | torque eV |", "|---|---|---|---|---|"]
    lines += [f"| {r['grid']} | {r['order']} | {r['rotations']} | {r['max_equivariance_error_eV_per_A']:.3g} | "
              f"{r['torque_eV']:.3g} |" for r in report["equivariance"]]
    lines += ["", "Architectures at equal data and epochs (40 LJ-labelled 13-atom clusters):", "",
              "| architecture | augment | epochs | force MAE eV/Å | energy MAE eV | rot. std eV/atom | s (108 atoms) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['architecture']} | {r['augment']} | {r['epochs_run']} | {r['validation_forces_mae_eV_per_A']:.3g} | "
              f"{r['validation_energy_mae_eV']:.3g} | {r['energy_rot_std_eV_per_atom']:.2g} | "
              f"{r['seconds_energy_forces_108_atoms']:.3g} |" for r in report["architectures"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(1)
    report = {"cost": cost_vs_order(), "batched_vs_loop": batched_vs_loop(), "equivariance": equivariance_vs_order(),
              "architectures": architectures_at_equal_budget()}
    OUT.mkdir(exist_ok=True)
    (OUT / "symmetry.json").write_text(json.dumps(report, indent=1))
    (OUT / "symmetry.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
