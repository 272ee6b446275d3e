"""Throughput of energy+forces: atomflux LJ and the reference architecture vs ASE's LennardJones.

Writes ``benchmarks/results/bench_evaluate.json`` and ``.md``: atom-steps per
second (atoms × evaluations / wall second, neighbour list included: the
calculator reuses its pairs within the skin, as in MD) for 100, 1 000 and
10 000 atoms, the ratio of each atomflux model to ASE's ``LennardJones``
measured in the same run, and the peak resident memory of each case (each
case runs in its own process).  ``atomflux-demo-float32`` is the demo model
computing in float32 (float64 accumulation); ``atomflux-demo-shuffled`` the
demo model on the same atoms in random order (does spatial sorting pay?).

    python benchmarks/bench_evaluate.py [--sizes 100 1000 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path


OUT = Path(__file__).resolve().parent / "results"


def structure(n_atoms: int, shuffled: bool = False):
    import numpy as np
    from ase.build import bulk

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=0)
    return atoms[np.random.default_rng(0).permutation(len(atoms))] if shuffled else atoms


def calculator(kind: str):
    if kind == "ase-lj":
        from ase.calculators.lj import LennardJones

        return LennardJones(sigma=2.3, epsilon=0.4, rc=4.5)
    from atomflux.calculators import AtomfluxCalculator
    from atomflux.models import LennardJones

    model = LennardJones(2.3, 0.4, 4.5) if kind == "atomflux-lj" else "demo"
    dtype = "float32" if kind.endswith("float32") else "float64"
    return AtomfluxCalculator(model, uncertainty=False, dtype=dtype)  # energy + forces only


def run_case(kind: str, n_atoms: int, threads: int, queue) -> None:
    import torch

    torch.set_num_threads(threads)
    atoms = structure(n_atoms, shuffled=kind.endswith("shuffled"))
    atoms.calc = calculator(kind)
    atoms.get_forces()  # warm-up
    repeats, start = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - start < 2.0:
        atoms.positions[0, 0] += 1e-6  # force a new calculation
        atoms.get_forces()
        repeats += 1
        if time.perf_counter() - start > 30:
            break
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    queue.put({"model": kind, "n_atoms": len(atoms), "evaluations": repeats,
               "seconds_per_evaluation": elapsed / repeats,
               "atom_steps_per_second": len(atoms) * repeats / elapsed, "peak_rss_MiB": peak})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.sizes:
        for kind in ("ase-lj", "atomflux-lj", "atomflux-demo", "atomflux-demo-float32", "atomflux-demo-shuffled"):
            queue = ctx.Queue()
            proc = ctx.Process(target=run_case, args=(kind, n, args.threads, queue))
            proc.start()
            row = queue.get()
            proc.join()
            rows.append(row)
            print(f"{kind:14s} {row['n_atoms']:6d} atoms: {row['atom_steps_per_second']:12.0f} atom-steps/s, "
                  f"{1000 * row['seconds_per_evaluation']:9.2f} ms/eval, peak {row['peak_rss_MiB']:.0f} MiB")
    for row in rows:
        ref = next(r for r in rows if r["n_atoms"] == row["n_atoms"] and r["model"] == "ase-lj")
        row["speed_ratio_vs_ase_lj"] = row["atom_steps_per_second"] / ref["atom_steps_per_second"]
    OUT.mkdir(exist_ok=True)
    meta = {"threads": args.threads, "machine": platform.machine(), "python": platform.python_version()}
    (OUT / "bench_evaluate.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| model | atoms | atom-steps/s | ms/eval | × ASE LJ | peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['n_atoms']} | {r['atom_steps_per_second']:.0f} | "
              f"{1000 * r['seconds_per_evaluation']:.2f} | {r['speed_ratio_vs_ase_lj']:.2f} | {r['peak_rss_MiB']:.0f} |"
              for r in rows]
    (OUT / "bench_evaluate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
