"""Swap Monte Carlo speed: local batched ΔE vs whole-system recomputation, same chain, one run.

A Cu(111) slab with 20 % Au (~2 000 atoms), the demo model in float64, one
torch thread.  Both engines drive the same :class:`~atomflux.sampling.SwapChain`
(same seed, so the same accepted swaps): ``LocalSwapEnergy`` (per-atom
energies of the atoms within the cutoff of the two sites, ``--batch`` trials
per call) and ``FullSwapEnergy`` (every trial a whole-system evaluation — the
"before": what a calculator-level swap costs, batched).  Reports swap
attempts per second, their ratio, and checks that both chains end in the same
configuration.  ``--before REF``: the local engine of git ref REF (a temporary
checkout, in a fresh process) timed in the same run, for a before/after of the
local engine itself.  Writes ``benchmarks/results/bench_swap_mc.{json,md}`` and the
section between the ``bench_swap_mc`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_swap_mc.py [--size 12 12 14] [--attempts 400] [--full-attempts 20] [--before cff0caed]
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
from common import run_worker, source_tree  # noqa: E402

from atomflux.io import load_model  # noqa: E402
from atomflux.sampling import FullSwapEnergy, LocalSwapEnergy, SwapChain  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


def slab(size: tuple[int, int, int]):
    atoms = fcc111("Cu", size=size, a=3.6, vacuum=8.0)
    rng = np.random.default_rng(0)
    atoms.numbers[rng.choice(len(atoms), len(atoms) // 5, replace=False)] = 79
    return atoms


def rate(engine, attempts: int, batch: int, temperature: float) -> tuple[float, np.ndarray]:
    chain = SwapChain(engine, temperature, np.random.default_rng(1), batch_size=batch)
    start = time.perf_counter()
    chain.attempt(attempts)
    elapsed = time.perf_counter() - start
    return attempts / elapsed, chain.counts.acceptance


def local_rates(size: tuple[int, int, int], attempts: int, batches: list[int], temperature: float
                ) -> dict[int, tuple[float, float]]:
    """Attempts per second and acceptance of the local engine for each trial batch size."""
    model = load_model("demo", dtype="float64")
    atoms = slab(size)
    return {b: rate(LocalSwapEnergy(model, atoms), attempts, b, temperature) for b in batches}


def worker(argv: list[str]) -> None:
    """``--worker SIZE(3) ATTEMPTS TEMPERATURE THREADS BATCH...``: local rates as one JSON line."""
    size, attempts, temperature, threads = tuple(map(int, argv[:3])), int(argv[3]), float(argv[4]), int(argv[5])
    torch.set_num_threads(threads)
    rates = local_rates(size, attempts, [int(b) for b in argv[6:]], temperature)
    print(json.dumps({str(b): [r, float(acc)] for b, (r, acc) in rates.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[12, 12, 14])
    parser.add_argument("--attempts", type=int, default=200, help="attempts timed with the local engine, per batch size")
    parser.add_argument("--full-attempts", type=int, default=16, help="attempts timed with whole-system energies")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64], help="trials per call to compare")
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
        before = {int(b): tuple(v) for b, v in found.items()}
    local = local_rates(tuple(args.size), args.attempts, args.batches, args.temperature)
    best = max(local, key=lambda b: local[b][0])
    local_rate, local_acceptance = local[best]
    full_rate, full_acceptance = rate(FullSwapEnergy(model, atoms, atoms_per_call=4 * len(atoms)),
                                      args.full_attempts, 4, args.temperature)
    # the same chain: the first attempts of both engines accept the same swaps
    same = [LocalSwapEnergy(model, atoms), FullSwapEnergy(model, atoms)]
    ends = []
    for engine in same:
        SwapChain(engine, args.temperature, np.random.default_rng(5), batch_size=8).attempt(8)
        ends.append(engine.numbers.copy())
    result = {"atoms": len(atoms), "formula": atoms.get_chemical_formula(), "model": "demo (float64)",
              "threads": args.threads, "temperature_K": args.temperature, "best_batch": best,
              "local_attempts_per_s_by_batch": {str(b): r for b, (r, _) in local.items()},
              "local_attempts_per_s": local_rate, "local_acceptance": float(local_acceptance),
              "full_attempts_per_s": full_rate, "full_acceptance": float(full_acceptance),
              "speedup": local_rate / full_rate, "same_chain_first_8_attempts": bool(np.array_equal(*ends))}
    if before is not None:
        best_before = max(before.values())[0]
        result.update(before_ref=args.before, before_local_attempts_per_s_by_batch={str(b): r for b, (r, _) in before.items()},
                      before_local_attempts_per_s=best_before, local_speedup_over_before=local_rate / best_before,
                      before_speedup=best_before / full_rate)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_swap_mc.json").write_text(json.dumps(result, indent=2))
    rows = "".join(f"| {result['formula']} ({len(atoms)} atoms) | local ΔE, {b} trials per call | {r:.1f} | {acc:.3f} |\n"
                   for b, (r, acc) in local.items())
    if before is not None:
        rows += "".join(f"| | local ΔE at {args.before} (before), {b} trials per call | {r:.1f} | {acc:.3f} |\n"
                        for b, (r, acc) in before.items())
    table = ("| slab | engine | swap attempts / s | acceptance |\n|---|---|---|---|\n" + rows +
             f"| | whole system per trial (before) | {full_rate:.2f} | {full_acceptance:.3f} |\n\n"
             f"Speed-up {result['speedup']:.0f}x (best batch {best}) (target ≥ 50x), same run, {args.threads} torch thread, demo model "
             f"in float64, {args.temperature:g} K; both engines give the same chain: "
             f"{result['same_chain_first_8_attempts']}." +
             (f" Local engine {result['local_speedup_over_before']:.2f}x faster than at {args.before} "
              f"(which gave {result['before_speedup']:.0f}x over whole-system energies in this run)."
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
