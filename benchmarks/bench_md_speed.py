"""MD throughput (atom-steps per second) of the demo model, before and after, in one run.

Each measurement is one *case* function ``case(n_atoms, mode, threads, min_seconds) -> dict``
run in a fresh process, against this tree ("after") and against a detached checkout of
``--before`` ("before"), interleaved.  Cases (add new front ends as new functions in
``CASES``):

- ``ase``: ASE ``VelocityVerlet`` (2 fs, fcc Cu at 300 K) with ``AtomfluxCalculator``.

Modes:

- ``plain``: energy and forces (``uncertainty=False``);
- ``energy-sigma``: an observer reads the energy uncertainty at every step
  (``uncertainty="energy"``);
- ``energy-sigma-float32``: the same with the model in float32;
- ``heat-flux``: an observer reads the heat flux at every step (``track_heat_flux``);
- ``default``: the default calculator (``uncertainty="full"``) with no observer.

Both wall-clock and CPU-time rates are recorded (CPU time of the worker process is the
steadier of the two on a shared machine; with 2 threads it counts both).  The LAMMPS
side (``pair_style atomflux``) is measured by ``bench_md_speed_lammps.py``.  Writes
``benchmarks/results/bench_md_speed.{json,md}``.

    python benchmarks/bench_md_speed.py [--sizes 256 864 4000] [--threads 1 2] [--modes ...]
                                        [--cases ase] [--before e11f2fe] [--min-seconds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, run_worker, source_tree  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
#: the commit before the fast descriptor path (issue 14): the default "before"
BEFORE = "e11f2fe"
MODES = ("plain", "energy-sigma", "energy-sigma-float32", "heat-flux", "default")


def fcc_copper(n_atoms: int, temperature: float = 300.0):
    """Cubic fcc Cu supercell of about ``n_atoms`` atoms with Maxwell–Boltzmann velocities."""
    import numpy as np
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    return atoms


def ase_velocity_verlet(n_atoms: int, mode: str, threads: int, min_seconds: float) -> dict:
    """Atom-steps/s of ASE VelocityVerlet with AtomfluxCalculator("demo") in ``mode``."""
    import torch
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from atomflux.calculators import AtomfluxCalculator

    torch.set_num_threads(threads)
    atoms = fcc_copper(n_atoms)
    options = {"plain": dict(uncertainty=False), "energy-sigma": dict(uncertainty="energy"),
               "energy-sigma-float32": dict(uncertainty="energy", dtype=torch.float32),
               "heat-flux": dict(uncertainty=False, track_heat_flux=True), "default": {}}[mode]
    calc = AtomfluxCalculator("demo", **options)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, 2 * units.fs)
    observed = []
    if mode.startswith("energy-sigma"):
        dyn.attach(lambda: observed.append(calc.get_property("energy_uncertainty", atoms)), interval=1)
    elif mode == "heat-flux":
        dyn.attach(lambda: observed.append(calc.heat_flux(atoms)), interval=1)
    dyn.run(2)  # warm-up
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while steps < 3 or time.perf_counter() - start < min_seconds:
        dyn.run(1)
        steps += 1
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"atoms": len(atoms), "steps": steps, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "atom_steps_per_second": len(atoms) * steps / seconds,
            "atom_steps_per_cpu_second": len(atoms) * steps / cpu_seconds}


#: front ends measured by this benchmark; each takes (n_atoms, mode, threads, min_seconds)
CASES: dict[str, Callable[[int, str, int, float], dict]] = {"ase": ase_velocity_verlet}


def worker(argv: list[str]) -> None:
    case, n_atoms, mode, threads, min_seconds = argv
    print(json.dumps(CASES[case](int(n_atoms), mode, int(threads), float(min_seconds))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 864, 4000], help="atoms (default: %(default)s)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="what MD computes")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="front ends")
    parser.add_argument("--before", default=BEFORE, help="git ref measured as 'before' (default: %(default)s); "
                        "'none' skips it")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="measured seconds per run (default: %(default)s)")
    args = parser.parse_args()
    script = Path(__file__).resolve()
    rows = []
    before_ref = None if args.before == "none" else args.before
    with source_tree(before_ref) as before_tree:
        versions = {"after": None} if before_tree is None else {"before": before_tree, "after": None}
        for case in args.cases:
            for n_atoms in args.sizes:
                for mode in args.modes:
                    for threads in args.threads:
                        row = {"case": case, "mode": mode, "threads": threads, "load_before": load_average()}
                        for version, tree in versions.items():
                            result = run_worker(script, [case, str(n_atoms), mode, str(threads),
                                                         str(args.min_seconds)], tree)
                            row["atoms"] = result["atoms"]
                            row[version] = result["atom_steps_per_second"]
                            row[f"{version}_per_cpu_second"] = result["atom_steps_per_cpu_second"]
                        row["speedup"] = row["after"] / row["before"] if "before" in row else None
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    meta = {"before": before_ref, "machine": platform.processor() or platform.machine(),
            "python": platform.python_version()}
    (OUT / "bench_md_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"before = {before_ref}; atom-steps per wall second (per CPU second)", "",
             "| case | atoms | mode | threads | before | after | after/before | load |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        before = f"{r['before']:.0f} ({r['before_per_cpu_second']:.0f})" if "before" in r else "–"
        speedup = f"{r['speedup']:.1f}×" if r["speedup"] else "–"
        lines.append(f"| {r['case']} | {r['atoms']} | {r['mode']} | {r['threads']} | {before} | "
                     f"{r['after']:.0f} ({r['after_per_cpu_second']:.0f}) | {speedup} | {r['load_before']:.1f} |")
    (OUT / "bench_md_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
