"""Many-element cost of the reference architecture: 2, 7 and 25 elements, with and without alchemical compression.

For each number of elements a random fcc alloy of ``--repeat``³ cubic cells
(all elements present) is evaluated by a ``PowerSpectrumPotential`` with the
default hyper-parameters (cutoff 4.5 Å, 8 radial functions, 8 channels,
l ≤ 3, hidden 64-64), float64, one torch thread: energy + forces through
``evaluate`` (the hand-derived gradient path of MD and swap MC), and one
training step (energies and forces loss, backward through the force graph)
on 8 structures of 32 atoms.  "uncompressed": neighbour species mixed by a
weight per (element, radial function, channel) and a one-hot of the centre
element; "compressed": ``n_pseudo`` learned pseudo-elements (an element →
pseudo-element matrix) for both.  Reports descriptor size, parameters, time
per atom (CPU time of this process) and the peak memory of one evaluation per
atom (resident set size, :func:`atomflux.lattice.memory.measure_peak`).
Writes ``benchmarks/results/bench_alchemical.{json,md}`` and the section
between the ``bench_alchemical`` markers of ``docs/benchmarks.md``.

    python benchmarks/bench_alchemical.py [--repeat 6] [--n-pseudo 4]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402

from atomflux.evaluate import evaluate  # noqa: E402
from atomflux.lattice.memory import measure_peak  # noqa: E402
from atomflux.models import PowerSpectrumPotential  # noqa: E402
from atomflux.systems import Batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
#: 25 transition metals (the element set of a many-element alloy model)
METALS = ("Ni", "Cu", "Pd", "Ag", "Pt", "Au", "Al", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Zr", "Nb", "Mo",
          "Ru", "Rh", "Hf", "Ta", "W", "Re", "Os", "Ir", "Zn")


def alloy(elements: tuple[str, ...], repeat: int, seed: int = 0):
    atoms = bulk("Cu", "fcc", a=3.8, cubic=True) * (repeat, repeat, repeat)
    rng = np.random.default_rng(seed)
    symbols = list(elements) * (len(atoms) // len(elements) + 1)
    atoms.set_chemical_symbols([symbols[k] for k in rng.permutation(len(atoms))])
    atoms.rattle(0.05, seed=seed)
    return atoms


def training_step_seconds(model: PowerSpectrumPotential, elements: tuple[str, ...]) -> float:
    batch = Batch.from_atoms([alloy(elements, 2, seed) for seed in range(8)], model.cutoff)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.0)

    def step() -> None:
        optimiser.zero_grad()
        result = evaluate(model, batch, create_graph=True)
        loss = result.energy.square().sum() + result.forces.square().sum()
        loss.backward()

    return timed(step, min_seconds=1.0, clock=time.process_time)


def measure(n_elements: int, n_pseudo: int | None, repeat: int) -> dict:
    elements = METALS[:n_elements]
    torch.manual_seed(0)
    model = PowerSpectrumPotential(list(elements), **({} if n_pseudo is None else {"n_pseudo": n_pseudo})).double()
    atoms = alloy(elements, repeat)
    batch = Batch.from_atoms(atoms, model.cutoff)
    evaluate(model, batch)                                    # one-off allocations outside the measured peak
    _, peak = measure_peak(lambda: evaluate(model, batch))
    seconds = timed(lambda: evaluate(model, batch), min_seconds=2.0, clock=time.process_time)
    return {"elements": n_elements, "n_pseudo": n_pseudo, "atoms": len(atoms), "descriptors": model.n_descriptors,
            "parameters": sum(p.numel() for p in model.parameters()),
            "microseconds_per_atom": 1e6 * seconds / len(atoms),
            "peak_bytes_per_atom": None if peak is None else peak / len(atoms),
            "training_step_ms": 1e3 * training_step_seconds(model, elements)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=6, help="cubic fcc cells per side (4·repeat³ atoms)")
    parser.add_argument("--n-pseudo", type=int, default=4, help="pseudo-elements of the compressed models")
    parser.add_argument("--elements", type=int, nargs="+", default=[2, 7, 25])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n in args.elements:
        for n_pseudo in (None, args.n_pseudo):
            rows.append(measure(n, n_pseudo, args.repeat))
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_alchemical.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    lines = ["| elements | model | descriptors | parameters | energy+forces µs/atom | peak memory kB/atom | "
             "training step ms (8 × 32 atoms) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        kind = "uncompressed" if r["n_pseudo"] is None else f"{r['n_pseudo']} pseudo-elements"
        memory = "n/a" if r["peak_bytes_per_atom"] is None else f"{r['peak_bytes_per_atom'] / 1e3:.1f}"
        lines.append(f"| {r['elements']} | {kind} | {r['descriptors']} | {r['parameters']} | "
                     f"{r['microseconds_per_atom']:.0f} | {memory} | {r['training_step_ms']:.0f} |")
    table = ("\n".join(lines) + f"\n\n{rows[0]['atoms']}-atom random fcc alloys, float64, {args.threads} torch thread, "
             "CPU time; same run. `python benchmarks/bench_alchemical.py`\n")
    (OUT / "bench_alchemical.md").write_text(table)
    text = DOCS.read_text()
    section = f"<!-- bench_alchemical:begin -->\n{table}<!-- bench_alchemical:end -->"
    if "<!-- bench_alchemical:begin -->" in text:
        text = re.sub(r"<!-- bench_alchemical:begin -->.*<!-- bench_alchemical:end -->", lambda m: section, text,
                      flags=re.S)
    else:
        text += f"\n## Many elements: alchemical compression\n\n{section}\n"
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
