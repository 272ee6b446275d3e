"""SevenNet-0 on the κ force sets of Si: atomflux (batched evaluate) vs SevenNetCalculator one structure at a time.

The displaced supercells are phono3py's for Si, conventional 8-atom cell,
2×2×2 supercell (64 atoms).  Each method runs in its own process, so the peak
resident memory (ru_maxrss) is its own; the forces of the two are compared.
Writes ``benchmarks/results/bench_foreign.json`` and ``.md``.

    python benchmarks/bench_foreign.py [--supercells 32] [--atoms-per-chunk 64 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"


def supercells(count: int):
    from ase.build import bulk

    from atomflux.lattice.kappa import _to_ase, build_phono3py

    ph3 = build_phono3py(bulk("Si", "diamond", a=5.43, cubic=True), (2, 2, 2), "auto", None, 0.03)
    cells = [_to_ase(c) for c in ph3.supercells_with_displacements if c is not None]
    return cells[:count] if count else cells


def run(method: str, count: int, atoms_per_chunk: int, threads: int, queue) -> None:
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    from atomflux.lattice.forcesets import compute_forces

    cells = supercells(count)
    if method == "atomflux":
        from atomflux import AtomfluxCalculator

        calc = AtomfluxCalculator("sevennet:7net-0")
    else:
        from sevenn.calculator import SevenNetCalculator

        calc = SevenNetCalculator("7net-0", device="cpu")
    warm = cells[0].copy()
    warm.calc = calc
    warm.get_forces()  # first call (lazy set-up) is not timed
    start = time.perf_counter()
    forces = compute_forces(cells, calc, uncertainty=False, atoms_per_chunk=atoms_per_chunk, progress=False).forces
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "forces": np.asarray(forces).tolist()})


def measure(method: str, count: int, atoms_per_chunk: int, threads: int) -> dict:
    queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=run, args=(method, count, atoms_per_chunk, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supercells", type=int, default=32, help="how many displaced supercells (0: all)")
    parser.add_argument("--atoms-per-chunk", type=int, nargs="+", default=[64, 512],
                        help="atoms per batched evaluate call (64: one supercell per call)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    theirs = measure("sevennet", args.supercells, 0, args.threads)
    reference = np.array(theirs.pop("forces"))
    n = len(reference)
    rows = [f"| `SevenNetCalculator`, one by one | {n} | {theirs['seconds']:.1f} | {theirs['seconds'] / n:.3f} | "
            f"{theirs['peak_rss_MiB']:.0f} | 1 | 1 |"]
    ours = {}
    for chunk in args.atoms_per_chunk:
        result = measure("atomflux", args.supercells, chunk, args.threads)
        result["max_force_difference_eV_per_A"] = float(np.abs(np.array(result.pop("forces")) - reference).max())
        result["speed_up"] = theirs["seconds"] / result["seconds"]
        result["memory_ratio"] = result["peak_rss_MiB"] / theirs["peak_rss_MiB"]
        ours[str(chunk)] = result
        rows.append(f"| atomflux `sevennet:7net-0`, {chunk} atoms per `evaluate` | {n} | {result['seconds']:.1f} | "
                    f"{result['seconds'] / n:.3f} | {result['peak_rss_MiB']:.0f} | {result['speed_up']:.2f} | "
                    f"{result['memory_ratio']:.2f} |")
    summary = {"system": "Si, 2x2x2 conventional supercell (64 atoms), phono3py displacements", "supercells": n,
               "threads": args.threads, "sevennet_calculator_one_by_one": theirs, "atomflux_by_atoms_per_chunk": ours,
               "machine": platform.processor() or platform.machine()}
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_foreign.json").write_text(json.dumps(summary, indent=2))
    worst = max(r["max_force_difference_eV_per_A"] for r in ours.values())
    table = ("| method | supercells | time (s) | s/supercell | peak RSS (MiB) | speed-up | memory ratio |\n"
             "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
             f"\n\nmax force difference to SevenNetCalculator {worst:.2g} eV/Å; {args.threads} torch thread(s)\n")
    (OUT / "bench_foreign.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
