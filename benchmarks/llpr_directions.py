"""How well do r eigen-directions of the LLPR posterior reproduce the exact force σ?  (issue 18 (f))

The LLPR force variance of a component with last-layer row ψ = -∂φ/∂x is ψᵀΣψ
(Σ the posterior covariance, F + 1 = 65 directions for the demo model).
``evaluate`` estimates it from K = 16 centred posterior samples (15 directions
at the cost of 16 cotangents).  A deterministic alternative at the same or
lower cost keeps r directions d_j and reports Σ_j (ψ·d_j)², exact within their
span and never above ψᵀΣψ.  Two choices of the r directions are compared:

* ``top-Σ``: the r leading eigenvectors u_j of Σ, d_j = √λ_j u_j;
* ``top-C``: the r directions that carry most of the variance of training-like
  rows: the leading eigenvectors v_j of Σ^½ C Σ^½ (C the model's own LLPR
  precision matrix, which is dominated by its training force rows),
  d_j = Σ^½ v_j.

For each estimator the ratio σ_estimate / σ_exact of every force component is
reported (quantiles), on held-out EMT bulk frames (``emt_dataset``, a seed the
demo model never saw) and per category of ``stress_test_dataset``.  The K = 16
row uses the model's own samples (the ones ``evaluate`` differentiates).

    python benchmarks/llpr_directions.py [--frames 16] [--per-category 4] [--ranks 4 8 15]

Writes ``benchmarks/results/llpr_directions.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


def estimators(llpr, ranks: list[int]) -> dict[str, torch.Tensor]:
    """Direction matrices D [F+1, r] (variance = Σ_j (ψ·d_j)²) of every estimator, the exact one last."""
    sigma, _ = llpr._posterior_float64()
    eigenvalues, vectors = torch.linalg.eigh(sigma)
    order = torch.argsort(eigenvalues, descending=True)
    eigenvalues, vectors = eigenvalues[order].clamp(min=0.0), vectors[:, order]
    root = vectors * eigenvalues.sqrt()                                     # Σ = root rootᵀ
    sym_root = root @ vectors.T                                            # Σ^½ (symmetric)
    weighted = sym_root @ llpr.covariance.double() @ sym_root
    w_values, w_vectors = torch.linalg.eigh(0.5 * (weighted + weighted.T))
    w_vectors = w_vectors[:, torch.argsort(w_values, descending=True)]
    out = {"K=16 samples": llpr.sample_offsets().double() / np.sqrt(llpr.n_samples)}
    for r in ranks:
        out[f"top-Σ r={r}"] = root[:, :r]
        out[f"top-C r={r}"] = sym_root @ w_vectors[:, :r]
    out["exact"] = root
    return out


def force_rows(llpr, structures) -> torch.Tensor:
    """Last-layer rows ψ [3N, F+1] of all force components of ``structures``."""
    from atomflux import Batch
    from atomflux.uncertainty.lastlayer import structure_rows

    rows = [structure_rows(llpr, Batch.from_atoms(atoms, llpr.cutoff).to(torch.float64))[1] for atoms in structures]
    return torch.cat(rows).double()


def ratios(rows: torch.Tensor, directions: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    exact = ((rows @ directions["exact"]) ** 2).sum(1).sqrt()
    keep = exact > 1e-8 * float(exact.max())                              # components without neighbours: σ = 0
    return {name: (((rows @ d) ** 2).sum(1).sqrt()[keep] / exact[keep]).numpy()
            for name, d in directions.items() if name != "exact"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16, help="held-out EMT MD runs (2 snapshots each) (default: %(default)s)")
    parser.add_argument("--per-category", type=int, default=4, help="stress-test structures per category (default: %(default)s)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 15], help="directions r (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the held-out structures (default: %(default)s)")
    args = parser.parse_args()
    from atomflux import load_model
    from atomflux.reference_data import emt_dataset, stress_test_dataset

    torch.set_num_threads(1)
    llpr = load_model("demo-llpr", dtype=torch.float64)
    directions = estimators(llpr, args.ranks)
    sigma, _ = llpr._posterior_float64()
    spectrum = torch.linalg.eigvalsh(sigma).flip(0).numpy()
    precision = torch.linalg.eigvalsh(llpr.covariance.double()).flip(0).clamp(min=0).numpy()
    sets = {"held-out EMT bulk": emt_dataset(n_trajectories=args.frames, snapshots=2, seed=args.seed)}
    sets.update(stress_test_dataset(per_category=args.per_category, seed=args.seed))
    table = {name: ratios(force_rows(llpr, structures), directions) for name, structures in sets.items()}
    table = {name: rows for name, rows in table.items() if len(next(iter(rows.values())))}   # isolated atoms: no forces
    result = {"posterior_eigenvalues": spectrum.tolist(), "precision_eigenvalues": precision.tolist(),
              "regulariser": float(llpr.regulariser), "alpha_squared": float(llpr.alpha_squared),
              "quantiles": list(QUANTILES),
              "ratios": {s: {e: {"n": int(len(v)), "mean": float(v.mean()),
                                 "quantiles": np.quantile(v, QUANTILES).tolist()} for e, v in rows.items()}
                         for s, rows in table.items()}}
    OUT.mkdir(exist_ok=True)
    (OUT / "llpr_directions.json").write_text(json.dumps(result, indent=2))
    lines = [f"Posterior Σ eigenvalues (eV², largest first): {', '.join(f'{x:.3g}' for x in spectrum[:20])}, … "
             f"{spectrum[-1]:.3g}; ς² = {float(llpr.regulariser):.3g}; C eigenvalues ≥ ς²: "
             f"{int((precision >= float(llpr.regulariser)).sum())} of {len(precision)}", "",
             "σ_estimate / σ_exact per force component: " + ", ".join(f"q{int(100 * q)}" for q in QUANTILES) + " (mean)", "",
             "| structures | components | " + " | ".join(table[next(iter(table))]) + " |",
             "|---|---|" + "---|" * len(table[next(iter(table))])]
    for s, rows in result["ratios"].items():
        n = next(iter(rows.values()))["n"]
        cells = [" / ".join(f"{x:.2f}" for x in (v["quantiles"][1], v["quantiles"][3], v["quantiles"][5]))
                 + f" ({v['mean']:.2f})" for v in rows.values()]
        lines.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    lines.insert(4, "cells: q5 / median / q95 (mean)")
    (OUT / "llpr_directions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
