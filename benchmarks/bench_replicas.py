"""Issue 14 case (d): R replicas of transport MD batched vs one at a time, in one run.

Transport-production work per step: velocity Verlet, forces, per-atom energies and
receiver virials, and the heat flux, for R replicas of small fcc Cu cells (64–256 atoms) at 300 K
with the demo model (float32 compute, no uncertainty: what ``atomflux md --transport``
runs).  Modes, each in a fresh process, interleaved:

- ``batched``: the R replicas in one batched evaluation per step
  (:mod:`atomflux.md_replicas`, the ``--replicas R`` path);
- ``one-at-a-time``: the same integrator and evaluation, one replica per evaluation;
- ``ase``: one replica through ASE ``VelocityVerlet`` + ``AtomfluxCalculator`` with the
  heat flux read at every step (the ``--replicas 1`` path of ``run_transport_md``).

Rates are replica-atom-steps per second (R·N·steps / time: what Green–Kubo statistics
grow with), per wall second and per CPU second of the worker (the steadier measure on a
shared machine; with 2 threads it counts both); the 1-minute load average is recorded
before each measurement.  Every mode runs against this tree ("after") and a detached
checkout of ``--before`` ("before"), interleaved.  Writes
``benchmarks/results/bench_replicas.{json,md}``.

    python benchmarks/bench_replicas.py [--replicas 8] [--atoms 64 108 256] [--threads 1 2] [--min-seconds 4]
                                        [--before main]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_replicas, load_average, run_worker, source_tree  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
MODES = ("batched", "one-at-a-time", "ase")


def _copper(n_atoms: int):
    """fcc Cu, cubic cells repeated n1 ≤ n2 ≤ n3 times: the most nearly cubic repeat closest to ``n_atoms``
    (64 atoms: 2 × 2 × 4)."""
    from ase.build import bulk

    repeats = [(a, b, c) for a in range(1, 9) for b in range(a, 9) for c in range(b, 9)]
    repeat = min(repeats, key=lambda r: (abs(4 * r[0] * r[1] * r[2] - n_atoms), r[2] - r[0]))
    return bulk("Cu", "fcc", a=3.61, cubic=True) * repeat


def _measure(step, n_replica_atoms: int, min_seconds: float) -> dict:
    for _ in range(2):  # warm-up
        step()
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while steps < 3 or time.perf_counter() - start < min_seconds:
        step()
        steps += 1
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"steps": steps, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "rate": n_replica_atoms * steps / seconds, "rate_cpu": n_replica_atoms * steps / cpu_seconds}


def worker(mode: str, n_replicas: int, n_atoms: int, threads: int, min_seconds: float) -> dict:
    import numpy as np
    import torch
    from ase import units

    from atomflux.md_replicas import ReplicaForces, ReplicaState, verlet_step

    torch.set_num_threads(threads)
    atoms = _copper(n_atoms)
    calc, momenta = demo_replicas(atoms, n_replicas)
    masses = atoms.get_masses()
    if mode == "ase":
        from ase.md.verlet import VelocityVerlet

        atoms.set_momenta(momenta[0])
        atoms.calc = calc
        dyn = VelocityVerlet(atoms, 2 * units.fs)
        fluxes = []
        dyn.attach(lambda: fluxes.append(calc.heat_flux(atoms)), interval=1)
        result = _measure(lambda: dyn.run(1), len(atoms), min_seconds)
    else:
        groups = [list(range(n_replicas))] if mode == "batched" else [[r] for r in range(n_replicas)]
        runs = []
        for group in groups:
            forces_of = ReplicaForces(calc.potential, atoms, len(group))
            state = ReplicaState(np.repeat(atoms.positions[None], len(group), axis=0), momenta[group])
            runs.append([state, forces_of, forces_of(state.positions)])

        def step() -> None:
            for run in runs:
                state, forces_of, forces = run
                run[2] = verlet_step(state, forces, forces_of, masses, 2.0)
                forces_of.heat_flux(state.momenta)

        result = _measure(step, n_replicas * len(atoms), min_seconds)
    return {"mode": mode, "atoms": len(atoms), "replicas": n_replicas if mode != "ase" else 1, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8, help="R (default: %(default)s)")
    parser.add_argument("--atoms", type=int, nargs="+", default=[64, 108, 256],
                        help="atoms per replica (default: %(default)s)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="measured seconds per mode (default: %(default)s)")
    parser.add_argument("--before", default="main",
                        help="git ref measured as 'before' in the same run (default: %(default)s; 'none': skip)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, n_replicas, n_atoms, threads, min_seconds = args.worker
        print(json.dumps(worker(mode, int(n_replicas), int(n_atoms), int(threads), float(min_seconds))))
        return
    script = Path(__file__).resolve()
    before_ref = None if args.before == "none" else args.before
    rows = []
    with source_tree(before_ref) as before_tree:
        versions = {"after": None} if before_tree is None else {"before": before_tree, "after": None}
        for threads in args.threads:
            for n_atoms in args.atoms:
                by_version = {v: {"version": v, "threads": threads, "replicas": args.replicas} for v in versions}
                for mode in MODES:
                    for version, tree in versions.items():  # interleaved: before and after at the same load
                        row = by_version[version]
                        row[f"load_{mode}"] = load_average()
                        result = run_worker(script, [mode, str(args.replicas), str(n_atoms), str(threads),
                                                     str(args.min_seconds)], tree)
                        row["atoms"] = result["atoms"]
                        row[mode], row[f"{mode}_cpu"] = result["rate"], result["rate_cpu"]
                for row in by_version.values():
                    row["speedup"] = row["batched"] / row["one-at-a-time"]
                    row["speedup_cpu"] = row["batched_cpu"] / row["one-at-a-time_cpu"]
                    row["speedup_vs_ase_cpu"] = row["batched_cpu"] / row["ase_cpu"]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    meta = {"before": before_ref, "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "target": "batched >= 1.5x one-at-a-time per replica (CPU)"}
    (OUT / "bench_replicas.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"before = {before_ref}; replica-atom-steps per wall second (per CPU second); demo model float32, "
             "heat flux every step", "",
             "| atoms | R | threads | version | batched | one at a time | ASE path (R=1) | batched / one at a time | "
             "batched / ASE (CPU) | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['replicas']} | {r['threads']} | {r['version']} | "
                     f"{r['batched']:.0f} ({r['batched_cpu']:.0f}) | "
                     f"{r['one-at-a-time']:.0f} ({r['one-at-a-time_cpu']:.0f}) | {r['ase']:.0f} ({r['ase_cpu']:.0f}) | "
                     f"{r['speedup']:.2f}× ({r['speedup_cpu']:.2f}×) | {r['speedup_vs_ase_cpu']:.2f}× | "
                     f"{r['load_batched']:.1f} |")
    (OUT / "bench_replicas.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
