"""The stress-test verdict of the shipped demo models per seed and per sample size, before and after.

For each seed and ``per_category``, :func:`atomflux.reference_data.stress_test_dataset`
structures are evaluated with the demo models of ``--before`` (a git revision) and those in
``atomflux/data``: per category and quantity (energies per atom, force components) the
fraction of |error|/σ below 3 (honest: ≥ 90 %), the signed misses (z ≥ 3 / z ≤ −3: all of one
sign is a bias, both signs scatter), the mean error and the mean σ.  Writes
``benchmarks/results/bench_stress_test_seeds.{json,md}``.

    python benchmarks/bench_stress_test_seeds.py [--before e2bf4163] [--seeds 2024 2025 2026] [--per-category 8 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from atomflux import load_model
from atomflux.reference_data import STRESS_TEST_CATEGORIES, stress_test_dataset
from atomflux.training import read_frames
from atomflux.uncertainty.report import errors_and_sigmas

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
NAMES = ("demo", "demo-llpr")


def models(before: str) -> dict[str, object]:
    """``before <name>`` from the git revision ``before`` and ``after <name>`` from atomflux/data."""
    out = {}
    for name in NAMES:
        path = ROOT / "build" / f"before-{before}-{name}.pt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(subprocess.run(["git", "show", f"{before}:atomflux/data/{name}.pt"], cwd=ROOT,
                                            capture_output=True, check=True).stdout)
        out[f"before {name}"] = load_model(path)
    out.update({f"after {name}": load_model(name) for name in NAMES})
    return out


def verdicts(model, structures: dict[str, list]) -> dict[str, dict[str, dict]]:
    """category -> quantity -> statistics of |z| = |error|/σ."""
    out: dict[str, dict[str, dict]] = {}
    for category, atoms in structures.items():
        for quantity, (errors, sigmas) in errors_and_sigmas(model, read_frames(atoms)).items():
            if quantity == "stress":
                continue
            z = errors / sigmas
            out.setdefault(category, {})[quantity] = {
                "count": int(len(z)), "within_3sigma": float(np.mean(np.abs(z) < 3)),
                "misses_high": int(np.sum(z >= 3)), "misses_low": int(np.sum(z <= -3)),
                "mean_error": float(np.mean(errors)), "rmse": float(np.sqrt(np.mean(errors**2))),
                "mean_sigma": float(np.mean(sigmas))}
    return out


def markdown(results: dict, seeds: list[int]) -> str:
    lines = []
    for per_category, by_model in results.items():
        for quantity in ("energy", "forces"):
            lines += [f"**{quantity}**, {per_category} per category: % of |error|/σ below 3, seeds "
                      + " / ".join(map(str, seeds)), "", "| category | " + " | ".join(by_model) + " |",
                      "|---|" + "---|" * len(by_model)]
            for category in STRESS_TEST_CATEGORIES:
                cells = []
                for by_seed in by_model.values():
                    stats = [by_seed[str(s)].get(category, {}).get(quantity) for s in seeds]
                    cells.append("–" if stats[0] is None else
                                 " / ".join(f"{100 * x['within_3sigma']:.0f}" for x in stats))
                lines.append(f"| {category} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="e2bf4163", help="git revision of the 'before' demo models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2024, 2025, 2026], help="stress-test seeds")
    parser.add_argument("--per-category", type=int, nargs="+", default=[8, 20], help="structures per category")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    loaded = models(args.before)
    results: dict[int, dict[str, dict]] = {}
    for per_category in args.per_category:
        for seed in args.seeds:
            structures = stress_test_dataset(per_category=per_category, seed=seed)
            for label, model in loaded.items():
                results.setdefault(per_category, {}).setdefault(label, {})[str(seed)] = verdicts(model, structures)
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"before": args.before, "seeds": args.seeds, "seconds": time.time() - start, "results": results}
    (OUT / "bench_stress_test_seeds.json").write_text(json.dumps(record, indent=1))
    text = markdown(results, args.seeds)
    (OUT / "bench_stress_test_seeds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
