"""Green–Kubo estimators on processes with known integrals: bias and 1σ coverage over many seeds.

Compares, on the same samples (3 components each):

- **old, whole spectrum**: cepstral analysis with the AIC cutoff over the whole
  spectrum (the former default of `atomflux transport` and `compare`);
- **old, F*·τ = 0.5**: the same at one bandwidth chosen with knowledge of the
  answer (F* = 0.5/τ: the setting of the former test, the first case below,
  quoted in issue 13 with −3.5 % bias and 53 % coverage);
- **new**: the bandwidth scan with the Akaike-weighted plateau average
  (:func:`atomflux.analysis.bandwidth.bandwidth_scan`), which needs no τ.

Processes: Ornstein–Uhlenbeck (one Lorentzian; several correlation times τ)
and a crystal-like sum of a slow OU (lifetime τ, 70 % of the integral) and a
damped oscillator (the broad background).  Also times both estimators on a
10⁶-step flux.  Writes ``benchmarks/results/bench_greenkubo.{json,md}``.

    python benchmarks/bench_greenkubo.py [--seeds 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from atomflux.analysis.bandwidth import bandwidth_scan
from atomflux.analysis.greenkubo import cepstral_integral
from atomflux.analysis.synthetic import crystal_like, ornstein_uhlenbeck

OUT = Path(__file__).resolve().parent / "results"

CASES = {  # name: (generator(seed), τ in time units, T/τ); the first is the former test's setting
    "OU, τ = 5 fs, dt = 0.5 fs (former test)": (lambda s: ornstein_uhlenbeck(20_000, 5.0, dt=0.5, seed=s), 5.0, 2000),
    "OU, τ = 2": (lambda s: ornstein_uhlenbeck(80_000, 2.0, seed=s), 2.0, 40_000),
    "OU, τ = 10": (lambda s: ornstein_uhlenbeck(80_000, 10.0, seed=s), 10.0, 8000),
    "OU, τ = 40": (lambda s: ornstein_uhlenbeck(80_000, 40.0, seed=s), 40.0, 2000),
    "crystal-like, τ = 100": (lambda s: crystal_like(2**16, 100.0, seed=s), 100.0, 2**16 / 100),
    "crystal-like, τ = 300": (lambda s: crystal_like(2**17, 300.0, seed=s), 300.0, 2**17 / 300),
    "crystal-like, τ = 1000 (short)": (lambda s: crystal_like(2**17, 1000.0, seed=s), 1000.0, 2**17 / 1000),
}


def summary(values: np.ndarray, errors: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    relative = values / exact - 1
    return {"bias": float(relative.mean()), "bias_error": float(relative.std(ddof=1) / np.sqrt(len(values))),
            "rms": float(np.sqrt((relative**2).mean())), "coverage_1sigma": float(np.mean(np.abs(values - exact) <= errors)),
            "max_abs_z": float(np.max(np.abs(values - exact) / errors))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for name, (generate, tau, run_length_over_tau) in CASES.items():
        start = time.perf_counter()
        results = {"old, whole spectrum": [], "old, F*·τ = 0.5": [], "new: bandwidth scan": []}
        exact, converged = [], []
        for seed in range(args.seeds):
            f = generate(10_000 + seed)
            exact.append(f.integral)
            for label, estimate in (("old, whole spectrum", cepstral_integral(f.series, f.dt)),
                                    ("old, F*·τ = 0.5", cepstral_integral(f.series, f.dt, max_frequency=0.5 / tau))):
                results[label].append((estimate.value, estimate.error))
            scan = bandwidth_scan(f.series, f.dt)
            results["new: bandwidth scan"].append((scan.value, scan.error))
            converged.append(scan.converged)
        converged = np.array(converged)
        for label, pairs in results.items():
            values, errors = np.array(pairs).T
            row = {"case": name, "run_length_over_tau": run_length_over_tau, "estimator": label,
                   **summary(values, errors, np.array(exact))}
            if label.startswith("new"):
                headlined = (summary(values[converged], errors[converged], np.array(exact)[converged])
                             if converged.sum() > 1 else {"bias": np.nan, "bias_error": np.nan, "coverage_1sigma": np.nan})
                row.update(converged_fraction=float(converged.mean()),
                           converged_only={k: headlined[k] for k in ("bias", "bias_error", "coverage_1sigma")})
            rows.append(row)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        for row in rows[-3:]:
            print(f"   {row['estimator']:22s} bias {100 * row['bias']:+5.1f} ± {100 * row['bias_error']:.1f} %, "
                  f"1σ coverage {100 * row['coverage_1sigma']:.0f} %, max |z| {row['max_abs_z']:.1f}", flush=True)
    flux = ornstein_uhlenbeck(1_000_000, 20.0, seed=0).series
    start = time.perf_counter()
    cepstral_integral(flux, 1.0)
    old_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bandwidth_scan(flux, 1.0)
    new_seconds = time.perf_counter() - start
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_greenkubo.json").write_text(json.dumps({"seeds": args.seeds, "rows": rows,
                                                          "seconds_1e6x3": {"old": old_seconds, "new": new_seconds}},
                                                         indent=2))
    lines = [f"Green–Kubo estimators, {args.seeds} seeds per case, 3 components per sample "
             "(bias: mean of value/exact − 1 ± its standard error; coverage: |value − exact| ≤ 1σ, 68 % expected; "
             "converged: runs the new estimator headlines, with their bias and coverage)",
             "", "| process | T/τ | estimator | bias | 1σ coverage | rms error | max \\|z\\| | converged (bias, coverage) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['run_length_over_tau']:.0f} | {r['estimator']} | "
                     f"{100 * r['bias']:+.1f} ± {100 * r['bias_error']:.1f} % | {100 * r['coverage_1sigma']:.0f} % | "
                     f"{100 * r['rms']:.1f} % | {r['max_abs_z']:.1f} | "
                     + (f"{100 * r['converged_fraction']:.0f} % ({100 * r['converged_only']['bias']:+.1f} %, "
                        f"{100 * r['converged_only']['coverage_1sigma']:.0f} %) |" if "converged_fraction" in r
                        else "– |"))
    lines += ["", f"10⁶ steps × 3 components: old (whole spectrum) {old_seconds:.2f} s, new (scan) {new_seconds:.2f} s"]
    (OUT / "bench_greenkubo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
