"""``pair_style atomflux`` with a message-passing model (SevenNet-0, 5 layers × 5 Å = 25 Å reach).

On one MPI rank the model gets the local atoms in the periodic box (atomflux's own
periodic neighbour list, no ghost atoms). Per cell size (diamond Si, 8 atoms per cubic
cell, rattled by 0.05 Å; NVE from 300 K, 1 fs, 1 torch thread), measured in one run:

- ``lammps_ms``: ms per MD step of ``pair_style atomflux`` + ``pair_coeff * * sevennet:7net-0 Si``;
- ``sevennet_ase_ms``: ms per step of ASE ``VelocityVerlet`` with SevenNet's own
  ``SevenNetCalculator`` (the model's own front end);
- ``atomflux_ase_ms``: the same with ``AtomfluxCalculator("sevennet:7net-0")``;
- ``ghosts_full_shell``: ghost atoms LAMMPS would hold on one rank for a ghost shell of the
  whole reach (``comm_modify cutoff 27``: 25 Å + 2 Å skin), the cost the periodic route avoids
  (counted with ``pair_style zero``; under MPI each rank holds about this many, and
  ``pair_style atomflux`` logs the ratio once).

Writes ``benchmarks/results/bench_lammps_message_passing.json`` and ``.md``.

    python benchmarks/bench_lammps_message_passing.py [--repeats 1 2 4 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
REACH_PLUS_SKIN = 27.0


def crystal(cells: int):
    """Rattled diamond Si: ``cells`` cubic 8-atom cells stacked along x, y, z in turn."""
    from ase.build import bulk

    repeat = [1, 1, 1]
    for k in range(int(np.log2(cells))):
        repeat[k % 3] *= 2
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * tuple(repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def per_step(run, seconds: float) -> float:
    """Seconds per step of ``run(steps)``: one calibration step, then a window of about ``seconds``."""
    start = time.perf_counter()
    run(1)
    steps = max(3, round(seconds / (time.perf_counter() - start)))
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def lammps_case(atoms, folder: Path, pair: str, extra: str = ""):
    from ase.io import write

    from atomflux.lammps_bridge import start_lammps

    data = folder / f"si{len(atoms)}.data"
    write(data, atoms, format="lammps-data", specorder=["Si"], masses=True)
    lmp = start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n{extra}\n{pair}\n"
                        "velocity all create 300 1 mom yes\nfix nve all nve\ntimestep 0.001\nthermo 1000\nrun 0")
    return lmp


def ase_ms(atoms, calculator, seconds: float) -> float:
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, 1.0 * units.fs)
    return 1e3 * per_step(dynamics.run, seconds)


def measure(cells: int, seconds: float, folder: Path) -> dict:
    from sevenn.calculator import SevenNetCalculator

    from atomflux.calculators import AtomfluxCalculator

    atoms = crystal(cells)
    lmp = lammps_case(atoms, folder, "pair_style atomflux\npair_coeff * * sevennet:7net-0 Si")
    lammps = 1e3 * per_step(lambda n: lmp.command(f"run {n} pre no post no"), seconds)
    lmp.close()
    counter = lammps_case(atoms, folder, "pair_style zero 5.0\npair_coeff * *", f"comm_modify cutoff {REACH_PLUS_SKIN}")
    ghosts = int(counter.extract_global("nghost"))
    counter.close()
    return {"atoms": len(atoms), "lammps_ms": lammps,
            "sevennet_ase_ms": ase_ms(atoms, SevenNetCalculator("7net-0", device="cpu"), seconds),
            "atomflux_ase_ms": ase_ms(atoms, AtomfluxCalculator("sevennet:7net-0"), seconds),
            "ghosts_full_shell": ghosts, "load_average": os.getloadavg()[0]}


def markdown(rows: list[dict]) -> str:
    lines = ["| atoms | pair_style atomflux ms/step | SevenNetCalculator (ASE) ms/step | AtomfluxCalculator (ASE) "
             "ms/step | LAMMPS / SevenNet ASE | ghosts of a full 27 Å shell (1 rank) | ghosts per atom | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['lammps_ms']:.0f} | {r['sevennet_ase_ms']:.0f} | {r['atomflux_ase_ms']:.0f} | "
                     f"{r['lammps_ms'] / r['sevennet_ase_ms']:.2f} | {r['ghosts_full_shell']} | "
                     f"{r['ghosts_full_shell'] / r['atoms']:.0f} | {r['load_average']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="cell sizes in cubic 8-atom Si cells (powers of two; default: 1 2 4 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window per case, s (default: 3)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="atomflux-bench-") as tmp:
        rows = []
        for cells in args.repeats:
            rows.append(measure(cells, args.seconds, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    record = {"benchmark": "bench_lammps_message_passing", "model": "sevennet:7net-0 (float32)", "threads": 1,
              "machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}
    (OUT / "bench_lammps_message_passing.json").write_text(json.dumps(record, indent=2))
    (OUT / "bench_lammps_message_passing.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
