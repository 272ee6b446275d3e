"""How much of a calibration test's verdict is the seed: energy calibration of small user fits over seeds.

Issue 18's tests (b) and (c) add LLPR / a post-hoc shallow ensemble to the
shipped base from 40 fresh EMT frames (``emt_dataset(20 × 2, seed)``), calibrate
on 60 (LLPR) or 20 (ensemble) more and check the energy 1σ / 2σ coverage
(60–80 % / ≥ 90 %) on 100 unseen frames.  ``emt_dataset`` labels 2 snapshots
20 fs apart per MD run, so frames come in nearly identical pairs: the tests see
half as many independent energies as frames.  For every combination of seeds
this script reports the calibrated energy factor α next to the *oracle* factor
(α² = mean z² of the test set itself, the NLL optimum there), the coverage at
both, the correlation of z between the two frames of a run, and the rank
correlation of |error| with σ.  Coverage at the oracle factor is the best any
single calibration factor can do on that test set.

Writes ``benchmarks/results/bench_calibration_seeds.{json,md}`` and the section
between the ``bench_calibration_seeds`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_calibration_seeds.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from atomflux import load_model
from atomflux.reference_data import emt_dataset
from atomflux.training import read_frames
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble
from atomflux.uncertainty.lastlayer import LastLayerDesign, Observations, last_layer_design

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKERS = ("<!-- bench_calibration_seeds:begin -->", "<!-- bench_calibration_seeds:end -->")
#: name -> (MD runs, seed); the first of each kind is the seed of the tests
SETS = {"train303": (20, 303), "train606": (20, 606), "calib101": (30, 101), "calib707": (30, 707),
        "user404": (30, 404), "user808": (30, 808), "test202": (50, 202), "test505": (50, 505)}


def subset(design: LastLayerDesign, structures: range) -> LastLayerDesign:
    """The observations of the given structures (renumbered from 0)."""
    keep = torch.tensor(list(structures))
    renumber = torch.full((len(design.n_atoms),), -1, dtype=torch.long)
    renumber[keep] = torch.arange(len(keep))

    def part(obs: Observations) -> Observations:
        mask = renumber[obs.owner] >= 0
        return Observations(obs.rows[mask], obs.residuals[mask], renumber[obs.owner[mask]])

    return LastLayerDesign(*(part(getattr(design, q)) for q in ("energy", "forces", "stress")),
                           design.n_atoms[keep])


def energy_sigma(model, design: LastLayerDesign) -> np.ndarray:
    """Uncalibrated energy σ (eV, α = 1) of every structure: LLPR φᵀΣ₁φ, or the ensemble's member spread."""
    rows = design.energy.rows
    if hasattr(model, "energy_variance"):
        return (model.energy_variance(rows) / float(model.alpha_squared)).sqrt().numpy()
    weights = torch.cat([model.last_layer.weight, model.last_layer.bias[:, None]], 1).detach().to(rows.dtype)
    spread = rows @ (weights - weights.mean(0)).T * float(model.energy_scale)
    return spread.pow(2).mean(1).sqrt().numpy()


def coverage(z: np.ndarray) -> tuple[float, float]:
    return float(np.mean(np.abs(z) <= 1)), float(np.mean(np.abs(z) <= 2))


def measure(label: str, model, alpha: float, tests: dict[str, LastLayerDesign]) -> list[dict]:
    rows = []
    for name, design in tests.items():
        errors, sigma = design.energy.residuals.numpy(), energy_sigma(model, design)
        z = errors / sigma
        oracle = float(np.sqrt(np.mean(z**2)))
        rows.append({"fit": label, "test": name, "alpha": alpha, "oracle_alpha": oracle,
                     "coverage": coverage(z / alpha), "coverage_at_oracle": coverage(z / oracle),
                     "pair_correlation": float(np.corrcoef(z[0::2], z[1::2])[0, 1]),
                     "spearman_error_sigma": float(spearmanr(np.abs(errors), sigma).statistic)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    base = load_model("demo-llpr").base
    designs = {name: last_layer_design(base, read_frames(emt_dataset(n_trajectories=n, snapshots=2, seed=seed)))
               for name, (n, seed) in SETS.items()}
    print(f"designs: {time.perf_counter() - start:.0f} s", flush=True)
    tests = {name: designs[name] for name in ("test202", "test505", "calib101", "calib707")}
    results = []
    for train, calib in (("train303", "calib101"), ("train606", "calib707")):
        llpr = add_llpr(base, designs[train], designs[calib])
        results += measure(f"LLPR {train} / {calib}", llpr, float(llpr.alpha_squared) ** 0.5,
                           {k: v for k, v in tests.items() if k != calib})
    for user in ("user404", "user808"):
        n = len(designs[user].n_atoms)
        ensemble = fit_shallow_ensemble(base, subset(designs[user], range(40)), subset(designs[user], range(40, n)),
                                        n_members=8)
        own = {f"{user}[:40] (fit)": subset(designs[user], range(40)),
               f"{user}[40:] (calibration)": subset(designs[user], range(40, n))}
        results += measure(f"ensemble {user}[:40] / [40:]", ensemble, float(ensemble.uncertainty_scale),
                           {**own, **tests})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_calibration_seeds.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (OUT / "bench_calibration_seeds.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    docs = DOCS.read_text()
    if MARKERS[0] in docs and MARKERS[1] in docs:
        head, rest = docs.split(MARKERS[0], 1)
        DOCS.write_text(head + MARKERS[0] + "\n" + text + MARKERS[1] + rest.split(MARKERS[1], 1)[1])


def markdown(results: list[dict]) -> str:
    lines = ["| fit / calibration | evaluated on | α | coverage 1σ / 2σ | oracle α | coverage at oracle α | "
             "z pair corr. | Spearman(abs err, σ) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['fit']} | {r['test']} | {r['alpha']:.3f} | {100 * r['coverage'][0]:.0f} / "
                     f"{100 * r['coverage'][1]:.0f} % | {r['oracle_alpha']:.3f} | {100 * r['coverage_at_oracle'][0]:.0f}"
                     f" / {100 * r['coverage_at_oracle'][1]:.0f} % | {r['pair_correlation']:.3f} | "
                     f"{r['spearman_error_sigma']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
