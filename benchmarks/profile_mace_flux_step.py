"""Where a one-rank heat-flux step of the small two-layer MACE goes, 1 torch thread (run with ``.venv-mace``).

``periodic_flux_step`` (what ``pair_style atomflux`` runs on one rank on a step with ``compute
centroid/stress/atom``) is split at the end of its ``unfold`` and around each ``torch.autograd.grad``
call (the four backward passes, weights 1, x, y, z); it alternates with the plain step's ``evaluate``
(forces, stress, per-atom energies). Medians of ``repeats`` after one warm-up, ms, on rattled cubic
zincblende SiC N×N×N (8 N³ atoms), the model of ``tests/test_foreign_mace.py``. Writes
``benchmarks/results/profile_mace_flux_step.json``.

    .venv-mace/bin/python benchmarks/profile_mace_flux_step.py [--size 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PARTS = ("unfold", "forward", "backward w=1", "backward w=x", "backward w=y", "backward w=z", "sums and folding")


def one_step(potential, batch) -> dict[str, float]:
    """Seconds of each part of one ``periodic_flux_step``, and of one plain ``evaluate``."""
    from atomflux import evaluate
    from atomflux.lammps_bridge import whole_system

    start = time.perf_counter()
    evaluate(potential, batch, forces=True, stress=True, energies=True)
    marks = [time.perf_counter()]
    unfold, grad = whole_system.unfold, torch.autograd.grad

    def marked(function):
        def call(*args, **kwargs):
            if function is grad:
                marks.append(time.perf_counter())
            out = function(*args, **kwargs)
            marks.append(time.perf_counter())
            return out
        return call

    with mock.patch.object(whole_system, "unfold", marked(unfold)), mock.patch.object(torch.autograd, "grad",
                                                                                        marked(grad)):
        whole_system.periodic_flux_step(potential, batch)
    marks.append(time.perf_counter())
    # marks: start of the flux step, unfold done, then (start, end) of each backward pass, end of the step
    times = {"plain": marks[0] - start, "flux step": marks[-1] - marks[0], "unfold": marks[1] - marks[0],
             "forward": marks[2] - marks[1], "sums and folding": marks[-1] - marks[-2]}
    for k, part in enumerate(PARTS[2:6]):
        times[part] = marks[3 + 2 * k] - marks[2 + 2 * k]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5, help="N: N×N×N cubic 8-atom SiC cells (default: 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default: 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from ase.build import bulk
    from conftest import small_mace_model

    from atomflux import Batch
    from atomflux.foreign.mace import mace_from_object

    potential = mace_from_object(small_mace_model())
    atoms = bulk("SiC", "zincblende", a=4.36, cubic=True) * ((args.size,) * 3)
    atoms.rattle(0.05, seed=0)
    batch = Batch.from_atoms(atoms, potential.cutoff)
    one_step(potential, batch)
    runs = [one_step(potential, batch) for _ in range(args.repeats)]
    median = {name: 1e3 * float(np.median([run[name] for run in runs])) for name in runs[0]}
    record = {"atoms": len(atoms), "repeats": args.repeats, "ms": median,
              "flux_step_over_plain": median["flux step"] / median["plain"], "load_average": os.getloadavg()[0]}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "profile_mace_flux_step.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
