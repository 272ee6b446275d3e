"""Cost of the LAMMPS bridge: time per MD step through ``pair_style atomflux``
vs the raw :func:`atomflux.evaluate` of the same model on the same atoms.

Cases (fcc Cu, rattled; 1 000 and 10 000 atoms by default):

- ``demo``: the shipped many-body model — bridge (LAMMPS NVE step: neighbour
  lists, ghost atoms, the Python callback, force accumulation) vs raw
  ``evaluate(forces=True)`` on a prebuilt periodic batch;
- ``lj``: atomflux ``LennardJones`` through the bridge vs raw evaluate, and
  vs LAMMPS's own ``pair_style lj/cut`` with the same parameters.

The target is bridge overhead ≤ 10 % over raw evaluate.  Writes
``benchmarks/results/bench_lammps.json`` and ``.md``.

    python benchmarks/bench_lammps.py [--sizes 1000 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from ase.build import bulk
from ase.io import write

from common import timed

OUT = Path(__file__).resolve().parent / "results"
LJ = {"sigma": 2.3, "epsilon": 0.4, "cutoff": 4.5}


def structure(n_atoms: int):
    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def lammps_seconds_per_step(data: Path, pair_lines: str, steps: int) -> float:
    from atomflux.lammps_bridge import start_lammps

    lmp = start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n{pair_lines}\n"
                        "velocity all create 300 1\nfix nve all nve\ntimestep 0.001\nthermo 1000\nrun 1")
    start = time.perf_counter()
    lmp.command(f"run {steps} pre no post no")
    seconds = (time.perf_counter() - start) / steps
    lmp.close()
    return seconds


def raw_seconds(model, atoms) -> float:
    from atomflux.evaluate import evaluate
    from atomflux.systems import Batch

    batch = Batch.from_atoms(atoms, model.cutoff)
    return timed(lambda: evaluate(model, batch, forces=True), min_seconds=3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from atomflux.io import load_model, save_model
    from atomflux.models import LennardJones

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lj_path = Path(tmp) / "lj.pt"
        save_model(LennardJones(**LJ), lj_path)
        models = {"demo": load_model("demo"), "lj": load_model(lj_path)}
        for n in args.sizes:
            atoms = structure(n)
            data = Path(tmp) / f"cu{n}.data"
            write(data, atoms, format="lammps-data", specorder=["Cu"], masses=True)
            for name, model in models.items():
                raw = raw_seconds(model, atoms)
                steps = max(3, int(4.0 / raw))
                path = "demo" if name == "demo" else lj_path
                bridge = lammps_seconds_per_step(data, f"pair_style atomflux threads {args.threads}\n"
                                                 f"pair_coeff * * {path} Cu", steps)
                row = {"model": name, "atoms": len(atoms), "raw_evaluate_ms": 1e3 * raw,
                       "bridge_ms_per_step": 1e3 * bridge, "bridge_overhead": bridge / raw - 1.0}
                if name == "lj":
                    native = lammps_seconds_per_step(
                        data, f"pair_style lj/cut {LJ['cutoff']}\npair_coeff * * {LJ['epsilon']} {LJ['sigma']}\n"
                        "pair_modify shift yes", max(20, steps))
                    row["lj_cut_ms_per_step"] = 1e3 * native
                    row["bridge_over_lj_cut"] = bridge / native
                rows.append(row)
                print(json.dumps(row))
    OUT.mkdir(exist_ok=True)
    meta = {"threads": args.threads, "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__}
    (OUT / "bench_lammps.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["| model | atoms | raw evaluate (ms) | pair_style atomflux (ms/step) | overhead | lj/cut (ms/step) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        native = f"{r['lj_cut_ms_per_step']:.2f}" if "lj_cut_ms_per_step" in r else "–"
        lines.append(f"| {r['model']} | {r['atoms']} | {r['raw_evaluate_ms']:.1f} | {r['bridge_ms_per_step']:.1f} | "
                     f"{100 * r['bridge_overhead']:+.1f} % | {native} |")
    (OUT / "bench_lammps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
