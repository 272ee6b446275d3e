"""Cost of energy+forces+uncertainty relative to energy+forces, with peak memory, before and after.

Models: the shipped demo base (no uncertainty), its 8-member shallow ensemble
(``demo``) and its LLPR version (``demo-llpr``, 16 posterior samples).  Modes:
``uncertainty="energy"`` (energy σ only) and ``uncertainty=True`` (forces and
stress σ too: every member's forces).  Fcc Cu with every fifth atom Au, rattled;
``evaluate`` with forces and stress on a prebuilt batch, and the "no stress"
cases with forces only (issue 18's bound: energy + forces + force σ against
plain energy + forces); "× base" is the ratio to the base case of the same
stress setting.

Times: ``--repeats`` processes per size and version (the versions alternate),
three interleaved rounds in each, best time per case, in CPU time of the process (steadier than wall time on a shared
machine; with more than one thread it counts all of them).  Memory: one fresh process per case, growth of the peak resident set
during one evaluation.  "Before" (``--before``, a git ref checked out in a
temporary worktree) is measured in the same run, at the sizes in
``--before-sizes``.  ``--dtype float32``: the models compute in float32 on the
float64 batch (float64 accumulation, as ``atomflux md`` runs them).
Writes ``benchmarks/results/bench_uncertainty.{json,md}`` (float64) or
``bench_uncertainty_float32.{json,md}``.

    python benchmarks/bench_uncertainty.py [--sizes 1000 10000] [--threads 1] [--before e2bf4163] [--repeats 2] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, run_worker, source_tree, timed  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
BEFORE = "e2bf4163"
#: label → (model, uncertainty, stress); "× base" divides by the base case of the same stress setting
CASES = {
    "base: energy+forces": ("base", False, True),
    "shallow ensemble (M=8): energy+forces": ("demo", False, True),
    "shallow ensemble (M=8): energy+forces+energy σ": ("demo", "energy", True),
    "shallow ensemble (M=8): energy+forces+energy/forces/stress σ": ("demo", True, True),
    "LLPR (K=16): energy+forces+energy σ": ("demo-llpr", "energy", True),
    "LLPR (K=16): energy+forces+energy/forces/stress σ": ("demo-llpr", True, True),
    "base: energy+forces, no stress": ("base", False, False),
    "shallow ensemble (M=8): energy+forces+energy/forces σ, no stress": ("demo", True, False),
    "LLPR (K=16): energy+forces+energy/forces σ, no stress": ("demo-llpr", True, False),
}


def reference_case(label: str) -> str:
    """The plain energy+forces case a case is compared with (same stress setting)."""
    return "base: energy+forces" if CASES[label][2] else "base: energy+forces, no stress"


def setup(n_atoms: int, threads: int, dtype: str = "float64"):
    import torch
    from ase.build import bulk

    from atomflux import Batch, load_model

    torch.set_num_threads(threads)
    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True) * (repeat, repeat, repeat)
    atoms.symbols[::5] = "Au"
    atoms.rattle(0.05, seed=0)
    llpr = load_model("demo-llpr", dtype=getattr(torch, dtype))
    models = {"demo": load_model("demo", dtype=getattr(torch, dtype)), "demo-llpr": llpr, "base": llpr.base}
    return atoms, Batch.from_atoms(atoms, llpr.cutoff), models


def time_cases(n_atoms: int, threads: int, dtype: str) -> dict:
    from atomflux import evaluate

    atoms, batch, models = setup(n_atoms, threads, dtype)
    best = {label: float("inf") for label in CASES}
    for _ in range(3):  # interleaved rounds, best time per case: robust against drifts of machine load
        for label, (name, unc, stress) in CASES.items():
            best[label] = min(best[label], timed(lambda: evaluate(models[name], batch, forces=True, stress=stress,
                                                                  uncertainty=unc), min_seconds=1.0,
                                                 clock=time.process_time))
    return {"atoms": len(atoms), "seconds": best}


def memory_case(n_atoms: int, threads: int, dtype: str, label: str) -> dict:
    from atomflux import evaluate

    atoms, batch, models = setup(n_atoms, threads, dtype)
    name, unc, stress = CASES[label]
    small, small_batch, _ = setup(32, threads, dtype)
    evaluate(models[name], small_batch, forces=True, stress=stress, uncertainty=unc)  # libraries and caches loaded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    evaluate(models[name], batch, forces=True, stress=stress, uncertainty=unc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"atoms": len(atoms), "peak_growth_MiB": (after - before) / 1024}


def worker(argv: list[str]) -> None:
    kind, n_atoms, threads, dtype, *label = argv
    result = time_cases(int(n_atoms), int(threads), dtype) if kind == "time" else \
        memory_case(int(n_atoms), int(threads), dtype, label[0])
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="atoms (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--before", default=BEFORE, help="git ref measured as 'before' ('none' skips it)")
    parser.add_argument("--before-sizes", type=int, nargs="*", default=[1000],
                        help="sizes at which 'before' is measured (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="worker processes per version, alternating; best time per case (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="compute precision of the models (default: %(default)s)")
    args = parser.parse_args()
    script = Path(__file__).resolve()
    rows = []
    with source_tree(None if args.before == "none" else args.before) as before_tree:
        for n_atoms in args.sizes:
            versions = {"after": None}
            if before_tree is not None and n_atoms in args.before_sizes:
                versions = {"before": before_tree, "after": None}
            loads = {version: [] for version in versions}
            seconds: dict[str, dict[str, float]] = {version: {} for version in versions}
            for _ in range(args.repeats):  # versions alternate, best time per case over the repeats
                for version, tree in versions.items():
                    loads[version].append(load_average())
                    times = run_worker(script, ["time", str(n_atoms), str(args.threads), args.dtype], tree)
                    for label, value in times["seconds"].items():
                        seconds[version][label] = min(seconds[version].get(label, float("inf")), value)
            for version, tree in versions.items():
                for label in CASES:
                    memory = run_worker(script, ["memory", str(n_atoms), str(args.threads), args.dtype, label], tree)
                    row = {"version": version, "atoms": times["atoms"], "case": label,
                           "seconds": seconds[version][label],
                           "ratio_vs_base": seconds[version][label] / seconds[version][reference_case(label)],
                           "peak_growth_MiB": memory["peak_growth_MiB"], "load": loads[version]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    stem = "bench_uncertainty" + ("" if args.dtype == "float64" else f"_{args.dtype}")
    (OUT / f"{stem}.json").write_text(json.dumps({"threads": args.threads, "before": args.before, "dtype": args.dtype,
                                                  "rows": rows}, indent=2))
    lines = [f"{args.threads} thread(s); {args.dtype}; before = {args.before}", "",
             "| version | atoms | case | CPU ms | × base | peak growth (MiB) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['version']} | {r['atoms']} | {r['case']} | {1000 * r['seconds']:.1f} | {r['ratio_vs_base']:.2f} | "
              f"{r['peak_growth_MiB']:.0f} |" for r in rows]
    (OUT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
