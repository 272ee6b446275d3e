"""Calibration of the shipped models' uncertainties, in and off the training domain, before and after.

"Before" are the demo models as shipped at git revision ``BEFORE_REVISION``
(bulk-only training data, α calibrated on energies only); "after" are the
models in ``atomflux/data``.  In-domain: 100 held-out EMT structures
(``emt_dataset(50 trajectories × 2 snapshots, seed 202)``), coverage, NLL and
miscalibration area per quantity.  Off-domain: ``stress_test_dataset`` with
fresh seeds, the fraction of |error|/σ below 3 and the median |z| per category.
A user's post-hoc fit, measured in the same run: LLPR and a shallow ensemble
added to the shipped base on 40 fresh EMT structures (calibrated on 20 more),
once with the energy-only method of ``BEFORE_REVISION``
(``quantities=("energy",)``) and once force-aware (energies, forces, stress).
Writes ``benchmarks/results/bench_calibration.{json,md}`` and the section
between the ``bench_calibration`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_calibration.py [--per-category 8] [--seeds 2024 2025] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from common import replace_docs_section

from atomflux import load_model
from atomflux.reference_data import STRESS_TEST_CATEGORIES, emt_dataset, stress_test_dataset
from atomflux.training import read_frames
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble
from atomflux.uncertainty.calibration import CalibrationReport, ZScoreStats
from atomflux.uncertainty.report import UNITS, errors_and_sigmas

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
BEFORE_REVISION = "e11f2fe"


def before_models() -> dict[str, Path]:
    """The demo models of ``BEFORE_REVISION``, extracted with ``git show`` into ``build/``."""
    paths = {}
    for name in ("demo", "demo-llpr"):
        path = ROOT / "build" / f"before-{BEFORE_REVISION}-{name}.pt"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            blob = subprocess.run(["git", "show", f"{BEFORE_REVISION}:atomflux/data/{name}.pt"], cwd=ROOT,
                                  capture_output=True, check=True).stdout
            path.write_bytes(blob)
        paths[name] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=8, help="stress-test structures per category and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2024, 2025], help="stress-test seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    in_domain = read_frames(emt_dataset(n_trajectories=50, snapshots=2, seed=202))
    stress: dict[str, list] = {c: [] for c in STRESS_TEST_CATEGORIES}
    for seed in args.seeds:
        for category, atoms in stress_test_dataset(per_category=args.per_category, seed=seed).items():
            stress[category] += atoms
    models = {f"before {name}": load_model(path) for name, path in before_models().items()}
    models.update({"after demo": load_model("demo"), "after demo-llpr": load_model("demo-llpr")})
    models.update(user_fits(models["after demo-llpr"].base))
    calibration, stress_rows = [], []
    for label, model in models.items():
        off_domain = not label.startswith("user")  # the user fits are compared in domain only
        for quantity, (err, sig) in errors_and_sigmas(model, in_domain).items():
            calibration.append({"model": label, **asdict(CalibrationReport.from_errors(quantity, UNITS[quantity], err, sig))})
        for category, atoms in (stress.items() if off_domain else ()):
            for quantity, (err, sig) in errors_and_sigmas(model, read_frames(atoms)).items():
                row = ZScoreStats.from_errors(category, quantity, UNITS[quantity], err, sig)
                stress_rows.append({"model": label, **asdict(row)})
        print(f"{label}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    settings = {"before_revision": BEFORE_REVISION, "per_category": args.per_category, "seeds": args.seeds,
                "in_domain_structures": len(in_domain), "threads": args.threads}
    (OUT / "bench_calibration.json").write_text(json.dumps(
        {"settings": settings, "in_domain": calibration, "stress_test": stress_rows}, indent=2))
    text = markdown(calibration, stress_rows, list(models), settings)
    (OUT / "bench_calibration.md").write_text(text)
    print(text)
    replace_docs_section("bench_calibration", text)


def user_fits(base) -> dict:
    """LLPR and shallow ensemble fitted on a small user data set, energy-only and force-aware."""
    user = read_frames(emt_dataset(n_trajectories=30, snapshots=2, seed=404))
    train, validation = user[:40], user[40:]
    fits = {}
    for label, quantities in (("energy-only", ("energy",)), ("force-aware", ("energy", "forces", "stress"))):
        fits[f"user LLPR, {label}"] = add_llpr(base, train, validation, quantities=quantities)
        fits[f"user ensemble, {label}"] = fit_shallow_ensemble(base, train, validation, n_members=8,
                                                               quantities=quantities)
    return fits


def markdown(calibration: list[dict], stress_rows: list[dict], labels: list[str], settings: dict) -> str:
    lines = [f"In domain: {settings['in_domain_structures']} held-out EMT structures (seed 202). "
             "Coverage: fraction of errors within 1σ / 2σ (Gaussian: 68.3 % / 95.4 %).", "",
             "| model | quantity | RMSE | mean σ | 1σ | 2σ | NLL | miscal. area |", "|---|---|---|---|---|---|---|---|"]
    for r in calibration:
        lines.append(f"| {r['model']} | {r['quantity']} ({r['unit']}) | {r['rmse']:.3g} | {r['mean_sigma']:.3g} | "
                     f"{100 * r['coverage_1sigma']:.1f} % | {100 * r['coverage_2sigma']:.1f} % | {r['nll']:.2f} | "
                     f"{r['miscalibration_area']:.3f} |")
    labels = [label for label in labels if not label.startswith("user")]
    lines += ["", f"Off domain: `stress_test_dataset`, {settings['per_category']} structures per category and seed, "
              f"seeds {', '.join(map(str, settings['seeds']))}. Cell: % of |error|/σ below 3 (honest: ≥ 90 %) "
              "and median |z|.", ""]
    for quantity in ("energy", "forces"):
        lines += [f"**{quantity}**", "", "| category | " + " | ".join(labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for category in STRESS_TEST_CATEGORIES:
            cells = []
            for label in labels:
                row = next((r for r in stress_rows if r["model"] == label and r["category"] == category
                            and r["quantity"] == quantity), None)
                cells.append("–" if row is None else f"{100 * row['within_3sigma']:.0f} % ({row['median_abs_z']:.2g})")
            lines.append(f"| {category} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
