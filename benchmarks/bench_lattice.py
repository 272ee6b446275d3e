"""Lattice κ: batched force sets, the cost of symmetrisation, and memory-bounded chunks; all ratios in one run.

1. fc3 force sets: batched atomflux evaluation vs the one-by-one ASE loop, same model.
2. End-to-end κ of LJ argon (3x3x3 supercell, 11³ mesh, RTA) with fc2/fc3 symmetrised by the symfc
   projector (default, as phono3py.load), the traditional scheme, or not at all: time and κ.
3. Memory: the demo LLPR model (8 posterior samples) on the fc3 force sets of Cu (3x3x3): peak memory
   per chunk for several budgets (measured), against one unbounded chunk measured in the same run.

Writes ``benchmarks/results/bench_lattice.{json,md}``.

    python benchmarks/bench_lattice.py [--model demo] [--supercell 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from ase.build import bulk

from atomflux import AtomfluxCalculator
from atomflux.lattice import compute_forces, thermal_conductivity
from atomflux.lattice.kappa import build_phono3py, to_ase
from atomflux.models import LennardJones

OUT = Path(__file__).resolve().parent / "results"


def one_by_one(cells, calc):
    forces = []
    for cell in cells:
        atoms = cell.copy()
        atoms.calc = calc
        forces.append(atoms.get_forces())
    return forces


def batching(args) -> list[dict]:
    rows = []
    for label, structure, model in (("demo model, fcc Cu", bulk("Cu", "fcc", a=3.6), args.model),
                                    ("LennardJones, fcc Ar", bulk("Ar", "fcc", a=5.26), LennardJones(3.405, 0.0103, 8.5))):
        ph3 = build_phono3py(structure, (args.supercell,) * 3)
        cells = [to_ase(c) for c in ph3.supercells_with_displacements]
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
    return rows


def symmetrisation() -> list[dict]:
    rows = []
    for a, note in ((5.26, "clean"), (5.3797, "shell 0.006 Å outside r_c (corrupted force sets)")):
        for scheme in ("projector", "traditional", None):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = thermal_conductivity(bulk("Ar", "fcc", a=a), AtomfluxCalculator(LennardJones(3.405, 0.0103, 8.5)),
                                              supercell=(3, 3, 3), mesh=(11, 11, 11), temperatures=(20, 40, 80),
                                              symmetrize=scheme, progress=False)
            rows.append({"a": a, "note": note, "symmetrize": str(scheme), "seconds": time.perf_counter() - start,
                         "kappa_40K": float(result.kappa[1, 0])})
            print(f"LJ Ar a={a} ({note}), symmetrize={scheme}: {rows[-1]['seconds']:.2f} s, "
                  f"κ(40 K) = {rows[-1]['kappa_40K']:.4f} W/mK")
    return rows


def memory() -> list[dict]:
    ph3 = build_phono3py(bulk("Cu", "fcc", a=3.6), (3, 3, 3))
    cells = [to_ase(c) for c in ph3.supercells_with_displacements]
    calc = AtomfluxCalculator("demo-llpr")
    rows = []
    for budget in ("100MB", "200MB", "400MB", "100GB"):
        start = time.perf_counter()
        result = compute_forces(cells, calc, memory_budget_bytes=budget, progress=False)
        peaks = result.peak_bytes
        rows.append({"budget": budget, "chunks": len(peaks), "largest_chunk_supercells": max(a for a, _ in peaks) // 27,
                     "largest_peak_MB": max(p for _, p in peaks) / 1e6,
                     "peak_after_probe_MB": max((p for _, p in peaks[1:]), default=0) / 1e6,
                     "bytes_per_atom": max(p / a for a, p in peaks[1:]) if len(peaks) > 1 else peaks[0][1] / peaks[0][0],
                     "seconds": time.perf_counter() - start})
        print(f"demo-llpr, {len(cells)} Cu supercells × 27 atoms, budget {budget}: {rows[-1]['chunks']} chunks "
              f"(≤ {rows[-1]['largest_chunk_supercells']} supercells), largest measured peak "
              f"{rows[-1]['largest_peak_MB']:.0f} MB ({rows[-1]['bytes_per_atom'] / 1e6:.2f} MB/atom), "
              f"{rows[-1]['seconds']:.1f} s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--supercell", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = batching(args)
    sym = symmetrisation()
    mem = memory()
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_lattice.json").write_text(json.dumps({"threads": args.threads, "rows": rows, "symmetrisation": sym,
                                                        "memory": mem}, indent=2))
    lines = ["| case | supercells | atoms | one-by-one (s) | batched (s) | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['supercells']} | {r['atoms_per_supercell']} | {r['one_by_one_s']:.2f} | "
              f"{r['batched_s']:.2f} | {r['speedup']:.1f}× |" for r in rows]
    lines += ["", "| LJ Ar a (Å) | symmetrize | κ(40 K) (W/mK) | end-to-end (s) |", "|---|---|---|---|"]
    lines += [f"| {r['a']} | {r['symmetrize']} | {r['kappa_40K']:.4f} | {r['seconds']:.2f} |" for r in sym]
    lines += ["", "| budget | chunks | largest chunk (supercells) | largest measured peak (MB) | MB/atom | time (s) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['budget']} | {r['chunks']} | {r['largest_chunk_supercells']} | {r['largest_peak_MB']:.0f} | "
              f"{r['bytes_per_atom'] / 1e6:.2f} | {r['seconds']:.1f} |" for r in mem]
    (OUT / "bench_lattice.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
