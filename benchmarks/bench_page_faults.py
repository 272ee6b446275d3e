"""Minor page faults and CPU time per MD step in the ASE and replica paths, before and after, in one run.

Issue 14: each force call frees its few-MB tensors, and glibc's default settings hand
them back to the system, so the next step faults the same pages in again
(:mod:`atomflux.heap`).  Cases, each in a fresh process, against this tree ("after")
and a detached checkout of ``--before`` ("before"), interleaved:

- ``ase-md``: :func:`atomflux.md.run_md` (NVE, 2 fs, fcc Cu at 300 K) with the demo model
  through ``AtomfluxCalculator`` (float32, as ``atomflux md`` runs it);
- ``replicas``: R replicas in lockstep (:class:`atomflux.md_replicas.ReplicaForces` + velocity
  Verlet + heat flux every step: the ``atomflux md --transport --replicas R`` step).

Faults are ``getrusage(RUSAGE_SELF).ru_minflt`` differences over the measured steps, after
5 warm-up steps; times are CPU seconds of the worker (1 torch thread).  Writes
``benchmarks/results/bench_page_faults.{json,md}``.

    python benchmarks/bench_page_faults.py [--before main] [--sizes 256 864] [--replica-atoms 256] [--replicas 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import demo_replicas, load_average, run_worker, source_tree  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WARM_UP = 5


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def ase_md(n_atoms: int, steps: int) -> dict:
    """Faults and CPU time per step of ``run_md`` (the observer reads them at every step)."""
    from ase.build import bulk

    from atomflux.calculators import AtomfluxCalculator
    from atomflux.md import run_md

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    marks: list[tuple[int, float]] = []
    run_md(atoms, AtomfluxCalculator("demo", dtype="float32"), temperature=300.0, steps=WARM_UP + steps,
           ensemble="nve", interval=1, progress=False,
           observers=(lambda: marks.append((_faults(), time.process_time())),))
    (f0, t0), (f1, t1) = marks[WARM_UP], marks[-1]
    measured = len(marks) - 1 - WARM_UP
    return {"atoms": len(atoms), "faults_per_step": (f1 - f0) / measured, "cpu_ms_per_step": 1e3 * (t1 - t0) / measured}


def replicas(n_atoms: int, n_replicas: int, steps: int) -> dict:
    """Faults and CPU time per step of R replicas advanced together."""
    import numpy as np
    from ase.build import bulk

    from atomflux.md_replicas import ReplicaForces, ReplicaState, verlet_step

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    calc, momenta = demo_replicas(atoms, n_replicas)
    forces_of = ReplicaForces(calc.potential, atoms, n_replicas)
    state = ReplicaState(np.repeat(atoms.positions[None], n_replicas, axis=0), momenta)
    forces, masses = forces_of(state.positions), atoms.get_masses()
    for k in range(WARM_UP + steps):
        if k == WARM_UP:
            f0, t0 = _faults(), time.process_time()
        forces = verlet_step(state, forces, forces_of, masses, 2.0)
        forces_of.heat_flux(state.momenta)
    return {"atoms": len(atoms), "replicas": n_replicas, "faults_per_step": (_faults() - f0) / steps,
            "cpu_ms_per_step": 1e3 * (time.process_time() - t0) / steps}


def worker(case: str, n_atoms: int, n_replicas: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    return ase_md(n_atoms, steps) if case == "ase-md" else replicas(n_atoms, n_replicas, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="main", help="git ref measured as 'before' (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 864], help="atoms of the ASE MD runs")
    parser.add_argument("--replica-atoms", type=int, default=256, help="atoms per replica (default: %(default)s)")
    parser.add_argument("--replicas", type=int, default=8, help="R (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="measured steps (default: %(default)s)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, n_atoms, n_replicas, steps = args.worker
        print(json.dumps(worker(case, int(n_atoms), int(n_replicas), int(steps))))
        return
    script = Path(__file__).resolve()
    cases = [("ase-md", n, 1) for n in args.sizes] + [("replicas", args.replica_atoms, args.replicas)]
    rows = []
    with source_tree(args.before) as before_tree:
        for case, n_atoms, n_replicas in cases:
            row = {"case": case, "replicas": n_replicas, "load": load_average()}
            for version, tree in (("before", before_tree), ("after", None)):
                result = run_worker(script, [case, str(n_atoms), str(n_replicas), str(args.steps)], tree)
                row["atoms"] = result["atoms"]
                row[f"{version}_faults"], row[f"{version}_cpu_ms"] = result["faults_per_step"], result["cpu_ms_per_step"]
            row["speedup_cpu"] = row["before_cpu_ms"] / row["after_cpu_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_page_faults.json").write_text(json.dumps({"before": args.before, "rows": rows}, indent=2))
    lines = [f"before = {args.before}; minor page faults and CPU ms per MD step (1 thread)", "",
             "| case | atoms | R | faults before | faults after | CPU ms before | CPU ms after | speed-up (CPU) | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['atoms']} | {r['replicas']} | {r['before_faults']:.0f} | {r['after_faults']:.0f} | "
                     f"{r['before_cpu_ms']:.1f} | {r['after_cpu_ms']:.1f} | {r['speedup_cpu']:.2f}× | {r['load']:.1f} |")
    (OUT / "bench_page_faults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
