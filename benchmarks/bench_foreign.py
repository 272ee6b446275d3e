"""SevenNet-0 on the κ force sets of Si: atomflux (batched evaluate) vs SevenNetCalculator one structure at a time.

The displaced supercells are phono3py's for Si, conventional 8-atom cell,
2×2×2 supercell (64 atoms).  Each method runs in its own process, so the peak
resident memory (ru_maxrss) is its own; the forces of the two are compared.
Writes ``benchmarks/results/bench_foreign.json`` and ``.md``.

    python benchmarks/bench_foreign.py [--supercells 48] [--atoms-per-chunk 512] [--threads 1]
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
    parser.add_argument("--supercells", type=int, default=48, help="how many displaced supercells (0: all)")
    parser.add_argument("--atoms-per-chunk", type=int, default=512, help="atoms per batched evaluate call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    ours = measure("atomflux", args.supercells, args.atoms_per_chunk, args.threads)
    theirs = measure("sevennet", args.supercells, args.atoms_per_chunk, args.threads)
    n = len(ours["forces"])
    difference = float(np.abs(np.array(ours.pop("forces")) - np.array(theirs.pop("forces"))).max())
    result = {"system": "Si, 2x2x2 conventional supercell (64 atoms), phono3py displacements",
              "supercells": n, "atoms_per_chunk": args.atoms_per_chunk, "threads": args.threads,
              "atomflux_batched": ours, "sevennet_calculator_one_by_one": theirs,
              "speed_up": theirs["seconds"] / ours["seconds"],
              "memory_ratio": ours["peak_rss_MiB"] / theirs["peak_rss_MiB"],
              "max_force_difference_eV_per_A": difference, "machine": platform.processor() or platform.machine()}
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_foreign.json").write_text(json.dumps(result, indent=2))
    table = ("| method | supercells | time (s) | s/supercell | peak RSS (MiB) |\n|---|---|---|---|---|\n"
             f"| atomflux `sevennet:7net-0`, batched ({args.atoms_per_chunk} atoms/call) | {n} | {ours['seconds']:.1f} | "
             f"{ours['seconds'] / n:.3f} | {ours['peak_rss_MiB']:.0f} |\n"
             f"| `SevenNetCalculator`, one by one | {n} | {theirs['seconds']:.1f} | {theirs['seconds'] / n:.3f} | "
             f"{theirs['peak_rss_MiB']:.0f} |\n\n"
             f"speed-up {result['speed_up']:.2f}×, memory ratio {result['memory_ratio']:.2f}, "
             f"max force difference {difference:.2g} eV/Å ({args.threads} thread(s))\n")
    (OUT / "bench_foreign.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
