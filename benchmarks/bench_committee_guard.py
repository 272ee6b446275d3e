"""Which uncertainty sees a Cu3 island the model never saw leave a surface (issue 18 (e))?

Small Cu models are trained on EMT bulk, flat slabs and vacancies only (no cluster, dimer or adatom;
``tests/test_calibration.py::cluster_free_frames``).  A Cu3 island on Cu(111) is then run for 150 NVE steps
(2 fs) in place and kicked off the surface (``cluster_on_surface``); every 5 steps the script records the
guard's force quantity (largest per-atom norm of the force σ, eV/Å) on the island and on all atoms, the
island's height and its force error against EMT.  The guard of the tests stops above 2× the largest
per-atom force σ on 16 held-out in-domain structures: it works when the detached island's σ exceeds that
and the island in place stays below it.

Rows: committees of independently trained models (:class:`~atomflux.calculators.Committee`: the members'
population std, the same per-atom quantity as for ensembles) of 3, 4 and 5 members differing in seed
(initialisation, validation split, batch order), seed and bootstrap resample of the training structures,
architecture (cutoff, widths, depth, channels, l_max), and width/depth; the single model's LLPR and post-hoc
shallow ensemble for reference.  Then atomflux's LLPR (``add_llpr``) with features beyond the last layer
(both hidden layers; the standardised descriptor as well), on a two-hidden-layer model, on static lifts of
the island.  The descriptor novelty grade, which does see the island, is ``bench_novelty.py``'s.

Writes ``benchmarks/results/bench_committee_guard.{json,md}`` and the section between the
``bench_committee_guard`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_committee_guard.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import replace_docs_section  # noqa: E402
from test_calibration import cluster_free_config, cluster_free_frames, cluster_on_surface  # noqa: E402
from test_committee_guard import bootstrap_member  # noqa: E402

from atomflux.calculators import AtomfluxCalculator, Committee  # noqa: E402
from atomflux.evaluate import evaluate  # noqa: E402
from atomflux.models.base import Potential  # noqa: E402
from atomflux.systems import Batch  # noqa: E402
from atomflux.training import train  # noqa: E402
from atomflux.uncertainty import add_llpr, fit_shallow_ensemble  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
#: Å above the slab's top layer at which the island counts as detached (adsorbed: 2.1 Å), as in the tests
DETACHED = 2.6

#: member name -> (seed, bootstrap resample? (then the defaults), model hyper-parameters over the cluster-free defaults)
MEMBERS = {**{f"seed{k}": (k, False, {}) for k in range(5)},
           **{f"boot{k}": (k, True, {}) for k in range(5)},
           "cut4.0": (10, False, {"cutoff": 4.0}), "cut5.0": (11, False, {"cutoff": 5.0}),
           "wide32x32": (12, False, {"hidden": [32, 32]}),
           "ch8-l3": (13, False, {"hidden": [8], "n_channels": 8, "max_angular": 3}),
           "cut5.5-16x16": (14, False, {"cutoff": 5.5, "hidden": [16, 16], "n_radial": 8}),
           **{f"deep{k}": (20 + k, False, {"hidden": [32, 32]}) for k in range(5)}}
COMMITTEES = {**{f"seeds ×{n}": [f"seed{k}" for k in range(n)] for n in (3, 4, 5)},
              **{f"seeds + bootstrap ×{n}": [f"boot{k}" for k in range(n)] for n in (3, 4, 5)},
              "architectures ×5": ["cut4.0", "cut5.0", "wide32x32", "ch8-l3", "cut5.5-16x16"],
              "[32, 32] seeds ×5": [f"deep{k}" for k in range(5)],
              "seeds + bootstrap + architectures ×10": [f"boot{k}" for k in range(5)] +
              ["cut4.0", "cut5.0", "wide32x32", "ch8-l3", "cut5.5-16x16"]}


def train_member(frames: list, seed: int, bootstrap: bool, model: dict):
    """A cluster-free model (on a bootstrap resample: the committee of the test)."""
    if bootstrap:
        return bootstrap_member(frames, seed)
    return train(frames, cluster_free_config(seed=seed, **model)).potential


def per_atom_sigma(calc, atoms) -> np.ndarray:
    """Norm of each atom's force σ [N] (eV/Å), the guard's force quantity before its max over atoms."""
    return np.linalg.norm(calc.get_property("forces_uncertainty", atoms), axis=1)


def island_run(calc, kick: float, per_atom: Callable[[Atoms], np.ndarray], name: str) -> list[dict]:
    """The island MD of the tests (150 NVE steps of 2 fs), recorded every 5 steps: height (Å), the largest
    ``per_atom(atoms)`` value on the island (``island_<name>``) and on all atoms (``<name>``), and the largest
    island force error against EMT (eV/Å)."""
    atoms, n_slab = cluster_on_surface(kick=kick)
    atoms.calc = calc
    checks = []

    def record() -> None:
        values = per_atom(atoms)
        reference = atoms.copy()
        reference.calc = EMT()
        error = np.linalg.norm(calc.get_property("forces", atoms) - reference.get_forces(), axis=1)
        checks.append({"height": float(atoms.positions[n_slab:, 2].mean() - atoms.positions[:n_slab, 2].max()),
                       f"island_{name}": float(values[n_slab:].max()), name: float(values.max()),
                       "island_error": float(error[n_slab:].max())})

    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    dynamics.attach(record, interval=5)
    dynamics.run(150)
    return checks


def measure(label: str, calc, held_out: list) -> dict:
    """In-domain σ and RMSE on the held-out structures, the island's σ in place and detached."""
    largest, errors = 0.0, []
    for frame in held_out:
        atoms = frame.atoms.copy()
        atoms.calc = calc
        largest = max(largest, float(per_atom_sigma(calc, atoms).max()))
        errors.append(calc.get_property("forces", atoms) - frame.forces)
    sigma = lambda atoms: per_atom_sigma(calc, atoms)  # noqa: E731
    calm, kicked = island_run(calc, 0.0, sigma, "sigma"), island_run(calc, 0.03, sigma, "sigma")
    detached = [c for c in kicked if c["height"] > DETACHED]
    threshold = 2 * largest
    row = {"uncertainty": label, "in_domain_rmse": float(np.sqrt(np.mean(np.concatenate(errors) ** 2))),
           "in_domain_max_sigma": largest, "in_place_sigma": max(c["sigma"] for c in calm),
           "in_place_island_error": max(c["island_error"] for c in calm),
           "detached_sigma": [min(c["island_sigma"] for c in detached), max(c["island_sigma"] for c in detached)],
           "detached_error": [min(c["island_error"] for c in detached), max(c["island_error"] for c in detached)],
           "guard_stops_detached": any(c["sigma"] > threshold for c in detached),
           "guard_quiet_in_place": max(c["sigma"] for c in calm) <= threshold,
           "kicked": kicked}
    print(committee_table([row]).splitlines()[-1], flush=True)
    return row


class HiddenActivations(Potential):
    """A PowerSpectrumPotential whose ``features`` are the SiLU outputs of all its hidden layers (with
    ``descriptor``, also the standardised descriptor entering the first layer): LLPR beyond the last layer."""

    def __init__(self, model, descriptor: bool) -> None:
        super().__init__(model.species, model.cutoff)
        self.model, self.descriptor = model, descriptor

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        captured = []
        hooks = [layer.register_forward_hook(lambda module, inputs, output: captured.append((inputs[0], output)))
                 for layer in self.model.backbone if isinstance(layer, torch.nn.Linear)]
        try:
            outputs = dict(self.model(batch, vectors))
        finally:
            for hook in hooks:
                hook.remove()
        parts = [torch.nn.functional.silu(output) for _, output in captured]
        if self.descriptor:
            parts.insert(0, captured[0][0][:, :self.model.n_descriptors])
        outputs["features"] = torch.cat(parts, dim=1)
        return outputs


def llpr_beyond_last_layer(model, frames: list, held_out: list) -> list[dict]:
    """:func:`~atomflux.uncertainty.add_llpr` (force-aware, calibrated on the held-out structures) on several
    feature sets of one model: largest in-domain per-atom force σ, the island's σ and error at static lifts."""
    atoms, n_slab = cluster_on_surface(kick=0.0)
    feature_sets = {"last layer (model's own)": model, "both hidden layers": HiddenActivations(model, False),
                    "descriptor + both hidden layers": HiddenActivations(model, True)}
    rows = []
    for label, source in feature_sets.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 16 calibration structures: a wide factor interval
            llpr = add_llpr(source, frames, held_out)

        def result(structure):
            return evaluate(llpr, Batch.from_atoms(structure, model.cutoff), forces=True, uncertainty=True)

        largest = max(float(result(f.atoms).forces_uncertainty.norm(dim=1).max()) for f in held_out)
        island = {}
        for lift in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0):
            lifted = atoms.copy()
            lifted.positions[n_slab:, 2] += lift
            reference = lifted.copy()
            reference.calc = EMT()
            res = result(lifted)
            error = np.linalg.norm(res.forces.numpy() - reference.get_forces(), axis=1)[n_slab:].max()
            island[lift] = (float(res.forces_uncertainty.norm(dim=1)[n_slab:].max()), float(error))
        rows.append({"features": label, "in_domain_max_sigma": largest, "island": island})
        print(llpr_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def committee_table(rows: list[dict]) -> str:
    lines = ["| uncertainty | in-domain force RMSE | largest in-domain σ (threshold = 2×) | σ in place (all atoms) | "
             "island σ detached | island error in place / detached | guard stops detached / quiet in place |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['uncertainty']} | {r['in_domain_rmse']:.3f} | {r['in_domain_max_sigma']:.3f} "
                     f"({2 * r['in_domain_max_sigma']:.2f}) | {r['in_place_sigma']:.3f} | "
                     f"{r['detached_sigma'][0]:.2f}–{r['detached_sigma'][1]:.2f} | {r['in_place_island_error']:.2f} / "
                     f"{r['detached_error'][0]:.1f}–{r['detached_error'][1]:.1f} | "
                     f"{yes_no(r['guard_stops_detached'])} / {yes_no(r['guard_quiet_in_place'])} |")
    return "\n".join(lines) + "\n"


def llpr_table(rows: list[dict]) -> str:
    lifts = list(rows[0]["island"])
    lines = ["| LLPR features | largest in-domain σ | " +
             " | ".join(f"island +{lift:g} Å: σ / error" for lift in lifts) + " |",
             "|---|---|" + "---|" * len(lifts)]
    for r in rows:
        lines.append(f"| {r['features']} | {r['in_domain_max_sigma']:.3f} | " +
                     " | ".join(f"{s:.2f} / {e:.1f}" for s, e in r["island"].values()) + " |")
    return "\n".join(lines) + "\n"


def markdown(committees: list[dict], llpr: list[dict]) -> str:
    return ("Committees and the single model's last-layer uncertainty (force σ and errors in eV/Å; the island's "
            f"MD in place and kicked, detached = more than {DETACHED} Å above the slab):\n\n"
            + committee_table(committees)
            + "\nLLPR beyond the last layer (model with hidden [16, 16]; static lifts of the island, σ and error "
              "the largest over its atoms):\n\n" + llpr_table(llpr)
            + "\nWhat does see the island, the descriptor novelty grade: `bench_novelty.py` (next section).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    frames, held_out = cluster_free_frames()
    models = {}
    for name, (seed, bootstrap, model) in MEMBERS.items():
        models[name] = train_member(frames, seed, bootstrap, model)
    print(f"{len(models)} models trained: {time.perf_counter() - start:.0f} s", flush=True)
    committees = [measure(label, Committee([AtomfluxCalculator(models[m]) for m in members], names=members), held_out)
                  for label, members in COMMITTEES.items()]
    base = train(frames, cluster_free_config(seed=0)).potential  # the xfailed tests' model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 16 calibration structures: a wide factor interval
        single = {"LLPR of one model": add_llpr(base, frames, held_out),
                  "shallow ensemble (8) of one model": fit_shallow_ensemble(base, frames, held_out, n_members=8)}
    committees += [measure(label, AtomfluxCalculator(model), held_out) for label, model in single.items()]
    deep = train(frames, cluster_free_config(seed=0, hidden=[16, 16])).potential
    llpr = llpr_beyond_last_layer(deep, frames, held_out)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_committee_guard.json").write_text(json.dumps(
        {"committees": committees, "llpr_beyond_last_layer": llpr}, indent=1))
    text = markdown(committees, llpr)
    (OUT / "bench_committee_guard.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    replace_docs_section("bench_committee_guard", text)


if __name__ == "__main__":
    main()
