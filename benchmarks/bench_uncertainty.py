"""Cost of energy+forces+uncertainty relative to energy+forces, at ~1 000 atoms.

Models: the shipped demo base (no uncertainty), its 8-member shallow
ensemble (``demo``) and its LLPR version (``demo-llpr``, 16 posterior
samples). Modes: ``uncertainty="energy"`` (energy σ only: no extra backward)
and ``uncertainty=True`` (forces and stress σ too: one batched backward over
the members). Writes ``benchmarks/results/bench_uncertainty.{json,md}``.

    python benchmarks/bench_uncertainty.py [--atoms 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from ase.build import bulk

from atomflux import Batch, evaluate, load_model

from common import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--atoms", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeat = max(1, round((args.atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True) * (repeat, repeat, repeat)
    atoms.symbols[::5] = "Au"
    atoms.rattle(0.05, seed=0)
    ensemble, llpr = load_model("demo"), load_model("demo-llpr")
    base = llpr.base
    batch = Batch.from_atoms(atoms, base.cutoff)
    cases = {
        "base: energy+forces": (base, False),
        "shallow ensemble (M=8): energy+forces": (ensemble, False),
        "shallow ensemble (M=8): energy+forces+energy σ": (ensemble, "energy"),
        "shallow ensemble (M=8): energy+forces+energy/forces/stress σ": (ensemble, True),
        "LLPR (K=16): energy+forces+energy σ": (llpr, "energy"),
        "LLPR (K=16): energy+forces+energy/forces/stress σ": (llpr, True),
    }
    # three interleaved rounds, best time per case: robust against drifts of machine load
    best = {label: float("inf") for label in cases}
    for _ in range(3):
        for label, (model, unc) in cases.items():
            best[label] = min(best[label], timed(lambda: evaluate(model, batch, forces=True, stress=True,
                                                                  uncertainty=unc), min_seconds=1.0))
    reference = best["base: energy+forces"]
    rows = [{"case": label, "seconds": t, "ratio_vs_base": t / reference} for label, t in best.items()]
    for r in rows:
        print(f"{r['case']:62s} {1000 * r['seconds']:8.1f} ms  × {r['ratio_vs_base']:.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_uncertainty.json").write_text(json.dumps({"atoms": len(atoms), "threads": args.threads, "rows": rows}, indent=2))
    lines = [f"{len(atoms)} atoms, {args.threads} thread(s)", "", "| case | ms | × base |", "|---|---|---|"]
    lines += [f"| {r['case']} | {1000 * r['seconds']:.1f} | {r['ratio_vs_base']:.2f} |" for r in rows]
    (OUT / "bench_uncertainty.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
