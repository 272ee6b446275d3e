"""Cost of the heat flux of a message-passing model (unfolded system) over plain forces.

A two-layer MACE (r_max 4 Å, so interaction range R = 8 Å; random weights, float64) on
cubic zincblende SiC cells of growing size L, in one run: energy + forces; "before":
energy + forces + per-atom flux virials (``flux_virials=True``, four backward passes on
the whole unfolded cluster); "after": energy + forces + the flux vector with given
velocities (what MD needs: one forward-mode and one backward pass on the message-passing
part of the cluster); the cluster sizes and the ratios to plain forces as a function of
L / R.  Needs mace-torch: run with the second environment,

    .venv-mace/bin/python benchmarks/bench_semilocal_flux.py [REPEATS ...]

Writes benchmarks/results/bench_semilocal_flux.{json,md}.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from ase.build import bulk

from common import REPO, load_average, timed

sys.path.insert(0, str(REPO / "tests"))
from conftest import small_mace_model  # noqa: E402  (the same model as tests/test_foreign_mace.py)


def main() -> None:
    import tempfile

    from atomflux import Batch, evaluate, load_model
    from atomflux.systems import unfold

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/small.model"
        torch.save(small_mace_model(), path)
        potential = load_model(f"mace:{path}", trust=True)
    reach = potential.interaction_range
    rows = []
    for repeat in [int(a) for a in sys.argv[1:]] or [1, 2, 3, 4, 5]:
        atoms = bulk("SiC", "zincblende", a=4.36, cubic=True) * ((repeat,) * 3)
        atoms.rattle(0.05, seed=repeat)
        batch = Batch.from_atoms(atoms, potential.cutoff)
        plain = timed(lambda: evaluate(potential, batch, forces=True), min_seconds=3, clock=time.process_time)
        flux = timed(lambda: evaluate(potential, batch, forces=True, flux_virials=True), min_seconds=3,
                     clock=time.process_time)
        velocities = torch.tensor(np.random.default_rng(repeat).normal(0, 0.01, (len(atoms), 3)))
        masses = torch.tensor(atoms.get_masses())
        vector = timed(lambda: evaluate(potential, batch, forces=True, velocities=velocities, masses=masses),
                       min_seconds=3, clock=time.process_time)
        cluster, _ = unfold(batch, 0, reach)
        part, _ = unfold(batch, 0, reach, hops=potential.n_layers)
        rows.append({"atoms": len(atoms), "cell_A": float(atoms.cell.lengths()[0]),
                     "cell_over_reach": float(atoms.cell.lengths()[0] / reach),
                     "unfolded_atoms": int(len(cluster.numbers)), "unfolded_pairs": int(len(cluster.pairs)),
                     "message_passing_atoms": int(len(part.numbers)), "message_passing_pairs": int(len(part.pairs)),
                     "cell_pairs": int(len(batch.pairs)), "forces_ms": 1e3 * plain,
                     "forces_and_flux_virials_ms": 1e3 * flux, "ratio_before": flux / plain,
                     "forces_and_flux_vector_ms": 1e3 * vector, "ratio_after": vector / plain,
                     "load": load_average()})
        print(rows[-1], flush=True)
    result = {"model": "MACE 2 layers, r_max 4 Å, 8x0e+8x1o, float64", "interaction_range_A": reach,
              "threads": 1, "clock": "CPU time of this process", "rows": rows}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_semilocal_flux.json").write_text(json.dumps(result, indent=2))
    lines = [f"{result['model']}; R = {reach:g} Å; 1 thread; CPU time", "",
             "| atoms | cell / R | unfolded atoms (pairs / cell pairs) | message-passing part (pairs / cell pairs) "
             "| forces (ms) | + flux virials (before) | + flux vector (after) | load |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['atoms']} | {r['cell_over_reach']:.2f} | {r['unfolded_atoms']} "
              f"({r['unfolded_pairs'] / r['cell_pairs']:.1f}×) | {r['message_passing_atoms']} "
              f"({r['message_passing_pairs'] / r['cell_pairs']:.1f}×) | {r['forces_ms']:.0f} | "
              f"{r['forces_and_flux_virials_ms']:.0f} ms = {r['ratio_before']:.1f}× | "
              f"{r['forces_and_flux_vector_ms']:.0f} ms = {r['ratio_after']:.1f}× | {r['load']:.1f} |" for r in rows]
    (out / "bench_semilocal_flux.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
