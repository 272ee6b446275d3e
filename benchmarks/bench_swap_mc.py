"""Swap Monte Carlo speed: the local ΔE engine vs whole-system recomputation, same chain, one run.

A Cu(111) slab with 20 % Au (~2 000 atoms), the demo model in float64, one
torch thread.  Both engines drive the same :class:`~atomflux.sampling.SwapChain`
(same seed, so the same accepted swaps): the local engine that
``swap_energy`` picks (``DensitySwapEnergy`` for the power-spectrum model:
stored neighbour densities updated by the pair terms a swap changes, the
pairs' radial and angular factors cached per set of positions;
``LocalSwapEnergy`` before it: every pair of the affected atoms) with
``--batches`` trials per call, and ``FullSwapEnergy`` (every trial a
whole-system evaluation — what a calculator-level swap costs) at 1 and 4
trials per call, its best taken (with whole-system ΔE any accepted swap makes
every later trial of a batch stale, so batches mostly add recomputations).
Reports swap attempts per second (wall clock and CPU time), their ratio,
and checks that both chains end in the same configuration.  ``--before REF``:
the local engine of git ref REF (a temporary checkout, in a fresh process)
timed in the same run.  Writes ``benchmarks/results/bench_swap_mc.{json,md}``
and the section between the ``bench_swap_mc`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_swap_mc.py [--size 12 12 14] [--attempts 600] [--full-attempts 16] [--before 29a48173]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import fcc111

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, run_worker, source_tree  # noqa: E402

from atomflux.io import load_model  # noqa: E402
from atomflux.sampling import FullSwapEnergy, SwapChain, swap_energy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


def slab(size: tuple[int, int, int]):
    atoms = fcc111("Cu", size=size, a=3.6, vacuum=8.0)
    rng = np.random.default_rng(0)
    atoms.numbers[rng.choice(len(atoms), len(atoms) // 5, replace=False)] = 79
    return atoms


def rate(engine, attempts: int, batch: int, temperature: float) -> tuple[float, float, float]:
    """Attempts per second (wall clock, CPU time) and acceptance of a chain on ``engine``."""
    chain = SwapChain(engine, temperature, np.random.default_rng(1), batch_size=batch)
    start, cpu = time.perf_counter(), time.process_time()
    chain.attempt(attempts)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return attempts / wall, attempts / cpu, float(chain.counts.acceptance)


def local_rates(size: tuple[int, int, int], attempts: int, batches: list[int], temperature: float
                ) -> dict[int, tuple[float, float, float]]:
    """Rates and acceptance of the local engine (``swap_energy``'s choice) for each trial batch size."""
    model = load_model("demo", dtype="float64")
    atoms = slab(size)
    return {b: rate(swap_energy(model, atoms), attempts, b, temperature) for b in batches}


def worker(argv: list[str]) -> None:
    """``--worker SIZE(3) ATTEMPTS TEMPERATURE THREADS BATCH...``: local rates as one JSON line."""
    size, attempts, temperature, threads = tuple(map(int, argv[:3])), int(argv[3]), float(argv[4]), int(argv[5])
    torch.set_num_threads(threads)
    rates = local_rates(size, attempts, [int(b) for b in argv[6:]], temperature)
    engine = type(swap_energy(load_model("demo", dtype="float64"), slab(size))).__name__
    print(json.dumps({"engine": engine, "rates": {str(b): list(r) for b, r in rates.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[12, 12, 14])
    parser.add_argument("--attempts", type=int, default=600, help="attempts timed with the local engine, per batch size")
    parser.add_argument("--full-attempts", type=int, default=16, help="attempts timed with whole-system energies")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="trials per call to compare")
    parser.add_argument("--temperature", type=float, default=800.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", default=None, help="git ref whose local engine is timed too (e.g. cff0caed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("demo", dtype="float64")
    atoms = slab(tuple(args.size))
    before = None
    if args.before:
        with source_tree(args.before) as tree:
            found = run_worker(Path(__file__), [*map(str, args.size), str(args.attempts), str(args.temperature),
                                                str(args.threads), *map(str, args.batches)], tree)
        before_engine = found["engine"]
        before = {int(b): tuple(v) for b, v in found["rates"].items()}
    engine_name = type(swap_energy(model, atoms)).__name__
    local = local_rates(tuple(args.size), args.attempts, args.batches, args.temperature)
    best = max(local, key=lambda b: local[b][0])
    full = {b: rate(FullSwapEnergy(model, atoms, atoms_per_call=4 * len(atoms)), args.full_attempts, b,
                    args.temperature) for b in (1, 4)}
    best_full = max(full, key=lambda b: full[b][0])
    # the same chain: the first attempts of both engines accept the same swaps
    same = [swap_energy(model, atoms), FullSwapEnergy(model, atoms)]
    ends = []
    for engine in same:
        SwapChain(engine, args.temperature, np.random.default_rng(5), batch_size=8).attempt(8)
        ends.append(engine.numbers.copy())
    best_cpu = max(r[1] for r in local.values())
    best_full_cpu = max(r[1] for r in full.values())
    result = {"atoms": len(atoms), "formula": atoms.get_chemical_formula(), "model": "demo (float64)",
              "threads": args.threads, "temperature_K": args.temperature, "load_average": load_average(),
              "local_engine": engine_name, "best_batch": best,
              "local_by_batch": {str(b): dict(zip(("wall_per_s", "cpu_per_s", "acceptance"), r))
                                 for b, r in local.items()},
              "full_by_batch": {str(b): dict(zip(("wall_per_s", "cpu_per_s", "acceptance"), r)) for b, r in full.items()},
              "local_attempts_per_s": local[best][0], "full_attempts_per_s": full[best_full][0],
              "speedup": local[best][0] / full[best_full][0], "speedup_cpu_time": best_cpu / best_full_cpu,
              "speedup_vs_full_batch_4": local[best][0] / full[4][0],
              "same_chain_first_8_attempts": bool(np.array_equal(*ends))}
    if before is not None:
        best_before = max(v[0] for v in before.values())
        result.update(before_ref=args.before, before_engine=before_engine,
                      before_by_batch={str(b): dict(zip(("wall_per_s", "cpu_per_s", "acceptance"), r))
                                       for b, r in before.items()},
                      before_local_attempts_per_s=best_before, local_speedup_over_before=local[best][0] / best_before,
                      local_speedup_over_before_cpu_time=best_cpu / max(v[1] for v in before.values()),
                      before_speedup=best_before / full[best_full][0])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_swap_mc.json").write_text(json.dumps(result, indent=2))
    rows = "".join(f"| {result['formula']} ({len(atoms)} atoms) | {engine_name}, {b} trials per call | {r:.1f} | "
                   f"{cpu:.1f} | {acc:.3f} |\n" for b, (r, cpu, acc) in local.items())
    if before is not None:
        rows += "".join(f"| | {before_engine} at {args.before} (before), {b} trials per call | {r:.1f} | {cpu:.1f} | "
                        f"{acc:.3f} |\n" for b, (r, cpu, acc) in before.items())
    rows += "".join(f"| | whole system per trial (FullSwapEnergy), {b} trials per call | {r:.2f} | {cpu:.2f} | "
                    f"{acc:.3f} |\n" for b, (r, cpu, acc) in full.items())
    table = ("| slab | engine | attempts / s (wall) | attempts / s (CPU time) | acceptance |\n|---|---|---|---|---|\n" + rows +
             f"\nSpeed-up {result['speedup']:.0f}x wall clock, {result['speedup_cpu_time']:.0f}x CPU time "
             f"(best local batch {best} vs the whole-system engine at its best batch {best_full}; target ≥ 50x), "
             f"same run, {args.threads} torch thread, load average {result['load_average']:.1f}, demo model "
             f"in float64, {args.temperature:g} K; both engines give the same chain: "
             f"{result['same_chain_first_8_attempts']}." +
             (f" {engine_name} {result['local_speedup_over_before']:.2f}x faster (wall; "
              f"{result['local_speedup_over_before_cpu_time']:.2f}x CPU time) than {before_engine} at {args.before} "
              f"(which gave {result['before_speedup']:.0f}x over the whole-system engine in this run)."
              if before is not None else "") +
             f" `python benchmarks/bench_swap_mc.py{' --before ' + args.before if before is not None else ''}`\n")
    (OUT / "bench_swap_mc.md").write_text(table)
    text = DOCS.read_text()
    section = f"<!-- bench_swap_mc:begin -->\n{table}<!-- bench_swap_mc:end -->"
    if "<!-- bench_swap_mc:begin -->" in text:
        text = re.sub(r"<!-- bench_swap_mc:begin -->.*<!-- bench_swap_mc:end -->", lambda m: section, text, flags=re.S)
    else:
        text += f"\n## Swap Monte Carlo: local batched ΔE vs whole-system energies\n\n{section}\n"
    DOCS.write_text(text)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
