"""fc3 force sets: batched atomflux evaluation vs the one-by-one ASE loop, same model, one run.

Also the end-to-end κ time of LJ argon (3x3x3 supercell, 11³ mesh, RTA).
Writes ``benchmarks/results/bench_lattice.{json,md}``.

    python benchmarks/bench_lattice.py [--model demo] [--supercell 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from ase.build import bulk

from atomflux import AtomfluxCalculator
from atomflux.lattice import compute_forces, thermal_conductivity
from atomflux.lattice.kappa import _to_ase, build_phono3py
from atomflux.models import LennardJones

OUT = Path(__file__).resolve().parent / "results"


def one_by_one(cells, calc):
    forces = []
    for cell in cells:
        atoms = cell.copy()
        atoms.calc = calc
        forces.append(atoms.get_forces())
    return forces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--supercell", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for label, structure, model in (("demo model, fcc Cu", bulk("Cu", "fcc", a=3.6), args.model),
                                    ("LennardJones, fcc Ar", bulk("Ar", "fcc", a=5.26), LennardJones(3.405, 0.0103, 8.5))):
        ph3 = build_phono3py(structure, (args.supercell,) * 3)
        cells = [_to_ase(c) for c in ph3.supercells_with_displacements]
        calc = AtomfluxCalculator(model, uncertainty=False)
        start = time.perf_counter()
        one_by_one(cells, calc)
        loop = time.perf_counter() - start
        start = time.perf_counter()
        compute_forces(cells, calc, uncertainty=False, progress=False)
        batched = time.perf_counter() - start
        rows.append({"case": label, "supercells": len(cells), "atoms_per_supercell": len(cells[0]),
                     "one_by_one_s": loop, "batched_s": batched, "speedup": loop / batched})
        print(f"{label}: {len(cells)} supercells × {len(cells[0])} atoms: one-by-one {loop:.2f} s, "
              f"batched {batched:.2f} s, × {loop / batched:.1f}")
    start = time.perf_counter()
    thermal_conductivity(bulk("Ar", "fcc", a=5.26), AtomfluxCalculator(LennardJones(3.405, 0.0103, 8.5)),
                         supercell=(3, 3, 3), mesh=(11, 11, 11), temperatures=(20, 40, 80), progress=False)
    end_to_end = time.perf_counter() - start
    print(f"end-to-end κ of LJ argon (3x3x3, 11³ mesh, RTA, 3 temperatures): {end_to_end:.2f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_lattice.json").write_text(json.dumps({"threads": args.threads, "rows": rows,
                                                         "lj_argon_kappa_end_to_end_s": end_to_end}, indent=2))
    lines = ["| case | supercells | atoms | one-by-one (s) | batched (s) | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['supercells']} | {r['atoms_per_supercell']} | {r['one_by_one_s']:.2f} | "
              f"{r['batched_s']:.2f} | {r['speedup']:.1f}× |" for r in rows]
    lines.append(f"\nend-to-end κ of LJ argon (3x3x3, 11³, RTA, 3 T): {end_to_end:.2f} s")
    (OUT / "bench_lattice.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
