"""How much of a calibration test's verdict is the seed: small user fits on independent structures.

Issue 18's tests (b) and (c) add LLPR / a post-hoc shallow ensemble to the
shipped base from a user's 40 EMT structures and check the 1σ / 2σ coverage
(60–80 % / ≥ 90 %) of energies per atom and force components on 100 unseen
structures.  Every structure here is the single snapshot of its own MD run
(``emt_dataset(snapshots=1)``): two snapshots of one run share their energy
error (z correlation 0.96–1.00, measured before), so they count as one.

For each fit (LLPR: covariance from 40 structures, calibrated on 60; ensemble:
spread fitted on 40, calibrated on the next 20 or 40 of the same user set) and
each evaluated set of 100 structures the script reports the calibrated energy
factor α next to the *oracle* factor (α² = mean z² of the evaluated set itself,
the NLL optimum there, and the best any single factor can do), the coverage
of energies and forces as the tests measure it
(:func:`~atomflux.uncertainty.report.errors_and_sigmas`), and the rank
correlation of |energy error| with σ.

Writes ``benchmarks/results/bench_calibration_seeds.{json,md}`` and the section
between the ``bench_calibration_seeds`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_calibration_seeds.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from common import replace_docs_section

from atomflux import load_model
from atomflux.reference_data import emt_dataset
from atomflux.training import read_frames
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble
from atomflux.uncertainty.report import errors_and_sigmas

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
#: name -> (independent MD runs, seed); the first of each kind is the seed of the tests
#: (tests/test_uncertainty.py); none is a seed of the demo models (emt_dataset seeds 0 and 1)
SETS = {"train31": (40, 31), "train32": (40, 32), "train33": (40, 33),
        "calib21": (60, 21), "calib22": (60, 22), "calib23": (60, 23),
        "user41": (80, 41), "user42": (80, 42), "user43": (80, 43),
        "test11": (100, 11), "test12": (100, 12)}


def coverage(z: np.ndarray) -> list[float]:
    return [float(np.mean(np.abs(z) <= 1)), float(np.mean(np.abs(z) <= 2))]


def measure(label: str, model, tests: dict[str, list]) -> list[dict]:
    rows = []
    for name, frames in tests.items():
        data = errors_and_sigmas(model, frames)
        errors, sigma = data["energy"]
        z = errors / sigma
        oracle = float(np.sqrt(np.mean(z**2)))
        calibration = model.metadata["uncertainty"]["calibration"]
        alpha = calibration["scale"] if "scale" in calibration else np.sqrt(calibration["alpha_squared"])
        rows.append({"fit": label, "test": name, "alpha": float(alpha),
                     "energy": coverage(z), "forces": coverage(np.divide(*data["forces"])),
                     "oracle_factor": oracle, "energy_at_oracle": coverage(z / oracle),
                     "spearman_error_sigma": float(spearmanr(np.abs(errors), sigma).statistic)})
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)  # the factor-interval warning of 20 calibration structures
    start = time.perf_counter()
    base = load_model("demo-llpr").base
    frames = {name: read_frames(emt_dataset(n_trajectories=n, snapshots=1, seed=seed))
              for name, (n, seed) in SETS.items()}
    print(f"data: {time.perf_counter() - start:.0f} s", flush=True)
    tests = {name: frames[name] for name in ("test11", "test12")}
    results = []
    for k in (1, 2, 3):
        llpr = add_llpr(base, frames[f"train3{k}"], frames[f"calib2{k}"])
        results += measure(f"LLPR train3{k} (40) / calib2{k} (60)", llpr, tests)
    for k in (1, 2, 3):
        user = frames[f"user4{k}"]
        for n_calibration in (20, 40):
            ensemble = fit_shallow_ensemble(base, user[:40], user[40:40 + n_calibration], n_members=8)
            results += measure(f"ensemble user4{k}[:40] / [40:{40 + n_calibration}]", ensemble, tests)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_calibration_seeds.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (OUT / "bench_calibration_seeds.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    replace_docs_section("bench_calibration_seeds", text)


def markdown(results: list[dict]) -> str:
    lines = ["| fit (structures) / calibration | evaluated on | energy α | energy 1σ / 2σ | forces 1σ / 2σ | "
             "oracle energy factor | energy at oracle | Spearman(abs err, σ) |", "|---|---|---|---|---|---|---|---|"]
    percent = lambda pair: f"{100 * pair[0]:.0f} / {100 * pair[1]:.0f} %"
    for r in results:
        lines.append(f"| {r['fit']} | {r['test']} | {r['alpha']:.3f} | {percent(r['energy'])} | "
                     f"{percent(r['forces'])} | {r['oracle_factor']:.3f} | {percent(r['energy_at_oracle'])} | "
                     f"{r['spearman_error_sigma']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
