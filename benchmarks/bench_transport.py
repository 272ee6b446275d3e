"""Transport analysis costs, measured in one run.

1. Cepstral Green–Kubo of a 10⁶-step, 3-component flux (target ≤ 10 s).
2. Heat flux cost relative to energy+forces alone, ~1 000 atoms, demo model and LJ.

Writes ``benchmarks/results/bench_transport.{json,md}``.

    python benchmarks/bench_transport.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from scipy.signal import lfilter

from atomflux import AtomfluxCalculator, Batch, evaluate
from atomflux.analysis.greenkubo import cepstral_integral
from atomflux.md import thermalize
from atomflux.models import LennardJones

from common import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    flux = lfilter([1], [1, -0.95], rng.normal(size=(1_000_000, 3)), axis=0)
    start = time.perf_counter()
    result = cepstral_integral(flux, 1.0)
    gk_seconds = time.perf_counter() - start
    exact = 1.0 * (1 + 0.95) / (2 * (1 - 0.95)) / (1 - 0.95**2)
    print(f"cepstral GK, 10^6 x 3 flux: {gk_seconds:.2f} s (value {result.value:.3f} ± {result.error:.3f}, exact {exact:.3f})")
    rows = []
    for label, model, structure in (
            ("demo model, Cu", "demo", bulk("Cu", "fcc", a=3.62, cubic=True) * (6, 6, 7)),
            ("LennardJones, Ar", LennardJones(3.405, 0.0103, 8.5), bulk("Ar", "fcc", a=5.26, cubic=True) * (6, 6, 7))):
        thermalize(structure, 300, rng)
        potential = AtomfluxCalculator(model).potential
        batch = Batch.from_atoms(structure, potential.cutoff)
        velocities = torch.tensor(structure.get_velocities() * units.fs)
        masses = torch.tensor(structure.get_masses())

        def forces_only():
            evaluate(potential, batch, forces=True)

        def forces_and_flux():
            evaluate(potential, batch, forces=True, velocities=velocities, masses=masses)

        t_forces, t_flux = timed(forces_only), timed(forces_and_flux)
        rows.append({"case": label, "atoms": len(structure), "forces_s": t_forces, "forces_and_heat_flux_s": t_flux,
                     "heat_flux_overhead": t_flux / t_forces - 1})
        print(f"{label} ({len(structure)} atoms): forces {1000 * t_forces:.1f} ms, + heat flux {1000 * t_flux:.1f} ms "
              f"(overhead {100 * (t_flux / t_forces - 1):.1f} %)")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_transport.json").write_text(json.dumps({"threads": args.threads, "cepstral_1e6x3_seconds": gk_seconds,
                                                          "heat_flux": rows}, indent=2))
    lines = [f"cepstral Green–Kubo, 10⁶ steps × 3 components: {gk_seconds:.2f} s (target ≤ 10 s)", "",
             "| case | atoms | forces (ms) | forces + heat flux (ms) | overhead |", "|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['atoms']} | {1000 * r['forces_s']:.1f} | {1000 * r['forces_and_heat_flux_s']:.1f} | "
              f"{100 * r['heat_flux_overhead']:.1f} % |" for r in rows]
    (OUT / "bench_transport.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
