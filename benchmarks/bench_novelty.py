"""Does the novelty grade stop the Cu3 island that no σ sees (issue 18 (e)), and what does it cost?

Small Cu models trained on EMT bulk, flat slabs and vacancies only (``tests/test_calibration.py``:
``cluster_free_frames``, ``cluster_free_config``; seeds 0-2 and a two-hidden-layer model) get novelty data
fitted on their 24 training structures (:func:`~atomflux.uncertainty.fit_novelty`).  Per model: the largest
per-atom grade on the 16 held-out in-domain structures, on 150 NVE steps (2 fs) of the Cu3 island on
Cu(111) in place and kicked off the surface (every 5 steps, as the guard of the tests checks), with the
island's force error against EMT.  The guard is judged at three thresholds: grade 1 (the farthest training
atom), 1.2× the largest held-out grade (the rule of ``tests/test_novelty.py``, as the σ guards use 2× the
largest in-domain σ) and 1.5 (``atomflux md --max-novelty`` without a number).  Cost:
CPU time of one grade evaluation against one energy + forces call of the same model (float32, as
``atomflux md`` runs it) on an 864-atom Cu cell, measured in the same run.

Writes ``benchmarks/results/bench_novelty.{json,md}`` and the section between the ``bench_novelty`` markers
of ``docs/benchmarks.md``.

    python benchmarks/bench_novelty.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_committee_guard import island_run  # noqa: E402
from common import replace_docs_section, timed  # noqa: E402
from test_calibration import cluster_free_config, cluster_free_frames  # noqa: E402

from atomflux.calculators import AtomfluxCalculator  # noqa: E402
from atomflux.training import train  # noqa: E402
from atomflux.uncertainty import UncertaintyGuard, fit_novelty, novelty_grades  # noqa: E402
from atomflux.uncertainty.novelty import attach_novelty  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
#: Å above the slab's top layer at which the island counts as detached (adsorbed: 2.1 Å), as in the tests
DETACHED = 2.6
#: model name -> (seed, hyper-parameters over the cluster-free defaults)
MODELS = {"seed 0": (0, {}), "seed 1": (1, {}), "seed 2": (2, {}), "[16, 16] seed 0": (0, {"hidden": [16, 16]})}


def measure(label: str, model, frames: list, held_out: list) -> dict:
    attach_novelty(model, fit_novelty(model, frames))
    calc = AtomfluxCalculator(model)
    errors = []
    for frame in held_out:
        atoms = frame.atoms.copy()
        atoms.calc = calc
        errors.append(atoms.get_forces() - frame.forces)
    grades = lambda atoms: novelty_grades(model, atoms)  # noqa: E731
    calm, kicked = island_run(calc, 0.0, grades, "grade"), island_run(calc, 0.03, grades, "grade")
    detached = [c for c in kicked if c["height"] > DETACHED]
    row = {"model": label, "in_domain_rmse": float(np.sqrt(np.mean(np.concatenate(errors) ** 2))),
           "held_out_max_grade": max(float(novelty_grades(model, f.atoms).max()) for f in held_out),
           "in_place_max_grade": max(c["grade"] for c in calm),
           "in_place_island_error": max(c["island_error"] for c in calm),
           "detached_island_grade": [min(c["island_grade"] for c in detached),
                                     max(c["island_grade"] for c in detached)],
           "detached_error": [min(c["island_error"] for c in detached), max(c["island_error"] for c in detached)],
           "kicked": kicked, "calm": calm}
    print(table([row]).splitlines()[-1], flush=True)
    return row


def cost(model) -> dict:
    """CPU seconds of one energy + forces call, of one novelty guard check (the calculator's Verlet list) and of
:func:`novelty_grades` with its own neighbour search, 864-atom Cu cell, float32."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(6)
    atoms.rattle(0.05, seed=1)
    calc = AtomfluxCalculator(model, dtype="float32")
    placed = calc.potential

    def forces() -> None:
        atoms.calc = calc
        calc.reset()
        atoms.get_forces()

    force_time = timed(forces, clock=time.process_time)
    guard = UncertaintyGuard(atoms, threshold=np.inf, quantity="novelty")
    guard_time = timed(guard.current, clock=time.process_time)
    grade_time = timed(lambda: novelty_grades(placed, atoms), clock=time.process_time)
    return {"atoms": len(atoms), "energy_forces_s": force_time, "guard_check_s": guard_time,
            "grades_new_neighbour_list_s": grade_time, "ratio": guard_time / force_time}


def thresholds(row: dict) -> dict[str, float]:
    """The guard thresholds judged (see module doc)."""
    return {"1": 1.0, "1.2× held out": 1.2 * row["held_out_max_grade"], "1.5": 1.5}


def outcome(row: dict, threshold: float) -> str:
    """What the guard at ``threshold`` does: false alarms in domain, or where it stops the kicked island."""
    alarms = [name for name, key in (("held out", "held_out_max_grade"), ("in place", "in_place_max_grade"))
              if row[key] > threshold]
    if alarms:
        return f"{threshold:.2f}: stops {' and '.join(alarms)}"
    stop = next((c for c in row["kicked"] if c["grade"] > threshold), None)
    if stop is None:
        return f"{threshold:.2f}: never stops"
    return f"{threshold:.2f}: {stop['height']:.2f} Å / {stop['island_error']:.1f}"


def table(rows: list[dict]) -> str:
    names = list(thresholds(rows[0]))
    lines = ["| model | in-domain force RMSE | largest grade held out / in place | island grade detached | "
             "island error in place / detached | " + " | ".join(f"guard at {n}: stop height / island error"
                                                                 for n in names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['in_domain_rmse']:.3f} | {r['held_out_max_grade']:.2f} / "
                     f"{r['in_place_max_grade']:.2f} | {r['detached_island_grade'][0]:.2f}–"
                     f"{r['detached_island_grade'][1]:.2f} | {r['in_place_island_error']:.2f} / "
                     f"{r['detached_error'][0]:.1f}–{r['detached_error'][1]:.1f} | "
                     + " | ".join(outcome(r, t) for t in thresholds(r).values()) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], timing: dict) -> str:
    return ("Novelty grade (largest per-atom Mahalanobis distance of the standardised descriptor / the largest "
            "among the training atoms; errors in eV/Å; island MD in place and kicked, checked every 5 steps, "
            f"detached = more than {DETACHED} Å above the slab):\n\n" + table(rows)
            + f"\nCost of one novelty guard check, {timing['atoms']}-atom Cu cell, float32, CPU time, 1 thread: "
              f"{1e3 * timing['guard_check_s']:.1f} ms ({1e3 * timing['grades_new_neighbour_list_s']:.1f} ms with a "
              f"neighbour search of its own) against {1e3 * timing['energy_forces_s']:.1f} ms for energy + forces "
              f"({timing['ratio']:.2f}×; at the default check interval of 10 steps ≈ "
              f"{100 * timing['ratio'] / 10:.0f} % of the MD cost).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    frames, held_out = cluster_free_frames()
    rows, models = [], {}
    for label, (seed, hyper) in MODELS.items():
        models[label] = train(frames, cluster_free_config(seed=seed, **hyper)).potential
        rows.append(measure(label, models[label], frames, held_out))
    timing = cost(models["seed 0"])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_novelty.json").write_text(json.dumps({"models": rows, "cost": timing}, indent=1))
    text = markdown(rows, timing)
    (OUT / "bench_novelty.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    replace_docs_section("bench_novelty", text)


if __name__ == "__main__":
    main()
