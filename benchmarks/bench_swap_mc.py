"""Swap Monte Carlo speed: local batched ΔE vs whole-system recomputation, same chain, one run.

A Cu(111) slab with 20 % Au (~2 000 atoms), the demo model in float64, one
torch thread.  Both engines drive the same :class:`~atomflux.sampling.SwapChain`
(same seed, so the same accepted swaps): ``LocalSwapEnergy`` (per-atom
energies of the atoms within the cutoff of the two sites, ``--batch`` trials
per call) and ``FullSwapEnergy`` (every trial a whole-system evaluation — the
"before": what a calculator-level swap costs, batched).  Reports swap
attempts per second, their ratio, and checks that both chains end in the same
configuration.  Writes ``benchmarks/results/bench_swap_mc.{json,md}`` and the
section between the ``bench_swap_mc`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_swap_mc.py [--size 12 12 14] [--attempts 400] [--full-attempts 20]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import fcc111

from atomflux.io import load_model
from atomflux.sampling import FullSwapEnergy, LocalSwapEnergy, SwapChain

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[12, 12, 14])
    parser.add_argument("--attempts", type=int, default=200, help="attempts timed with the local engine, per batch size")
    parser.add_argument("--full-attempts", type=int, default=16, help="attempts timed with whole-system energies")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64], help="trials per call to compare")
    parser.add_argument("--temperature", type=float, default=800.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("demo", dtype="float64")
    atoms = slab(tuple(args.size))
    local = {b: rate(LocalSwapEnergy(model, atoms), args.attempts, b, args.temperature) for b in args.batches}
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
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_swap_mc.json").write_text(json.dumps(result, indent=2))
    rows = "".join(f"| {result['formula']} ({len(atoms)} atoms) | local ΔE, {b} trials per call | {r:.1f} | {acc:.3f} |\n"
                   for b, (r, acc) in local.items())
    table = ("| slab | engine | swap attempts / s | acceptance |\n|---|---|---|---|\n" + rows +
             f"| | whole system per trial (before) | {full_rate:.2f} | {full_acceptance:.3f} |\n\n"
             f"Speed-up {result['speedup']:.0f}x (best batch {best}) (target ≥ 50x), same run, {args.threads} torch thread, demo model "
             f"in float64, {args.temperature:g} K; both engines give the same chain: "
             f"{result['same_chain_first_8_attempts']}. `python benchmarks/bench_swap_mc.py`\n")
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
    main()
