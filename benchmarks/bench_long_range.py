"""Cost of the long-range head (Ewald vs PME) against the short-range model, vs system size.

Rock-salt NaCl supercells (rattled), one untrained ``LongRangePotential``
(cutoff 4.5 Å, accuracy 1e-3 eV/Å) evaluated for energy, forces and stress
with ``method="ewald"`` and ``method="pme"`` (Ewald skipped where its [k, N]
arrays would pass ~2 GB), and its own short-range part
alone (``potential.short_range``) on the same batch, all in one run, one
torch thread.  The first call of each size (parameter tuning) is not timed.
Scaling exponents are least-squares slopes of log time vs log atoms.
Writes ``benchmarks/results/bench_long_range.{json,md}``.

    python benchmarks/bench_long_range.py [--repeats 4 6 8 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from atomflux import evaluate
from atomflux.models import LongRangePotential
from atomflux.models.long_range_field import ewald_entries
from atomflux.systems import Batch

from common import timed

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 3, 4, 5, 6, 8],
                        help="supercell repeats of the 8-atom cubic cell (atoms = 8 n³)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LongRangePotential(["Na", "Cl"], cutoff=4.5, accuracy=1e-3).double().eval()
    rows = []
    for n in args.repeats:
        atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(n)
        atoms.rattle(0.05, seed=n)
        batch = Batch.from_atoms(atoms, model.cutoff)
        row = {"atoms": len(atoms)}
        row["short_range_s"] = timed(lambda: evaluate(model.short_range, batch, stress=True), min_seconds=1.0)
        energies = {}
        for method in ("ewald", "pme"):
            model.method = method
            if method == "ewald":  # torch-pme's Ewald holds [k, N] arrays: skip what would not fit in ~2 GB
                _, _, spacing = model.field.settings(len(atoms), batch.cell[0])
                row["ewald_entries"] = ewald_entries(len(atoms), batch.cell[0], spacing)
                if row["ewald_entries"] > 6 * 10**7:
                    row["ewald_s"], energies["ewald"] = float("nan"), float("nan")
                    continue
            energies[method] = float(evaluate(model, batch, forces=False).energy[0])   # tunes once
            row[f"{method}_s"] = timed(lambda: evaluate(model, batch, stress=True), min_seconds=1.0)
        row["ewald_minus_pme_eV_per_atom"] = (energies["ewald"] - energies["pme"]) / len(atoms)
        rows.append(row)
        print(row, flush=True)
    atoms_log = np.log([r["atoms"] for r in rows])
    slopes = {}
    for key in ("short_range_s", "ewald_s", "pme_s"):
        measured = [(x, np.log(r[key])) for x, r in zip(atoms_log, rows) if np.isfinite(r[key])]
        if len(measured) > 1:
            slopes[key] = float(np.polyfit(*zip(*measured), 1)[0])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_long_range.json").write_text(json.dumps({"rows": rows, "scaling_exponents": slopes,
                                                           "threads": args.threads}, indent=2))
    lines = ["| atoms | short-range (s) | + Ewald (s) | + PME (s) | Ewald − PME (eV/atom) |", "|---|---|---|---|---|"]
    lines += [f"| {r['atoms']} | {r['short_range_s']:.3g} | {r['ewald_s']:.3g} | {r['pme_s']:.3g} | "
              f"{r['ewald_minus_pme_eV_per_atom']:.2g} |" for r in rows]
    lines.append(f"\nscaling exponents (time ∝ atoms^x): {', '.join(f'{k}: {v:.2f}' for k, v in slopes.items())}")
    (OUT / "bench_long_range.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
