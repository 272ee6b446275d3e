"""Cost of driving i-PI: time per MD step of i-PI + ``atomflux ipi`` vs the model alone.

Cases (fcc Cu with 25 % Au, rattled; ~100 and ~1 000 atoms by default), one torch thread,
the shipped ``demo`` model (energy, forces, virial; no uncertainty):

- ``i-PI step``: wall time from one completed MD step to the next while i-PI runs NVE
  with the driver answering — i-PI's integrator and outputs, the socket round trip,
  unit and cell conversions, neighbour search and batch building, and the model;
- ``evaluate``: the time spent inside ``atomflux.evaluate`` *during those same steps*
  (timed around the driver's call), so that a busy, shared machine slows both alike.
  Overhead = median over steps of (i-PI step / evaluate) − 1;
- ``raw evaluate`` (context, measured separately): the same call on a prebuilt batch.

Path integrals (``--beads``, default 8 beads of ~100 atoms, PILE-L NVT): median time per
step with all beads in one message (``<batch_size>``, one batched evaluate call) vs one
structure per message; the two run alternately (``--repeats`` times each) and the best
median of each is kept.

Writes ``benchmarks/results/bench_ipi.json`` and ``.md``.

    python benchmarks/bench_ipi.py [--sizes 108 1008] [--steps 20] [--beads 8] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.io import write

from common import timed

OUT = Path(__file__).resolve().parent / "results"


def structure(n_atoms: int):
    """fcc Cu with every fourth atom Au, about ``n_atoms`` atoms, rattled."""
    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    sizes = (repeat, repeat, max(1, round(n_atoms / (4 * repeat * repeat))))
    atoms = bulk("Cu", "fcc", a=3.66, cubic=True) * sizes
    atoms.symbols[::4] = "Au"
    atoms.rattle(0.05, seed=0)
    return atoms


def ipi_xml(address: str, steps: int, beads: int, batch_size: int) -> str:
    dynamics = ("<dynamics mode='nve'><timestep units='femtosecond'>2</timestep></dynamics>" if beads == 1 else
                "<dynamics mode='nvt'><timestep units='femtosecond'>1</timestep><thermostat mode='pile_l'>"
                "<tau units='femtosecond'>100</tau></thermostat></dynamics>")
    return f"""<simulation verbosity='quiet'>
  <ffsocket mode='unix' name='driver'><address>{address}</address><batch_size>{batch_size}</batch_size></ffsocket>
  <total_steps>{steps}</total_steps>
  <prng><seed>1</seed></prng>
  <output prefix='sim'>
    <properties stride='10' filename='out'>[ step, conserved{{electronvolt}}, potential{{electronvolt}} ]</properties>
  </output>
  <system>
    <initialize nbeads='{beads}'>
      <file mode='ase' units='angstrom' cell_units='angstrom'>start.extxyz</file>
      <velocities mode='thermal' units='kelvin'>300</velocities>
    </initialize>
    <forces><force forcefield='driver'/></forces>
    <motion mode='dynamics'>{dynamics}</motion>
    <ensemble><temperature units='kelvin'>300</temperature></ensemble>
  </system>
</simulation>"""


def ipi_steps(driver, atoms, steps: int, beads: int = 1, batch_size: int = 1) -> dict[str, np.ndarray]:
    """Per MD step after step 0: wall time (s) and time inside ``evaluate`` (s), from one i-PI run."""
    from atomflux.ipi import driver as driver_module
    from atomflux.ipi.protocol import connect, disconnect, socket_path

    evaluations: list[float] = []                      # seconds of each evaluate call
    replies: list[tuple[int, int, float]] = []         # (structures received, evaluate calls, time) per reply
    original = driver_module.evaluate

    def timed_evaluate(potential, batch, **kwargs):
        start = time.perf_counter()
        result = original(potential, batch, **kwargs)
        evaluations.append(time.perf_counter() - start)
        return result

    address = f"atomflux-bench-{uuid.uuid4().hex[:10]}"
    driver_module.evaluate = timed_evaluate
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp) / "start.extxyz", atoms, format="extxyz")
        (Path(tmp) / "input.xml").write_text(ipi_xml(address, steps, beads, batch_size))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        process = subprocess.Popen([str(Path(sys.executable).parent / "i-pi"), "input.xml"], cwd=tmp, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            sock = connect(address, timeout=120, abort=lambda: None if process.poll() is None else "i-PI exited")
            driver.serve(sock, on_reply=lambda session: replies.append((session.structures, len(evaluations),
                                                                        time.perf_counter())))
            disconnect(sock)
            process.wait(timeout=120)
        finally:
            driver_module.evaluate = original
            if process.poll() is None:
                process.kill()
            socket_path(address).unlink(missing_ok=True)
    # a step is complete when i-PI has received all its beads (i-PI sends full batches here: B divides beads)
    cumulative = np.cumsum(evaluations)
    boundaries = [(stamp, cumulative[calls - 1]) for structures, calls, stamp in replies if structures % beads == 0]
    stamps, evaluate_total = np.array(boundaries).T
    return {"step": np.diff(stamps), "evaluate": np.diff(evaluate_total)}


def raw_seconds(model, atoms) -> float:
    """Energy, forces and virial on a prebuilt batch (no neighbour search), mean time (s)."""
    from atomflux.evaluate import evaluate
    from atomflux.systems import Batch

    batch = Batch.from_atoms(atoms, model.cutoff)
    return timed(lambda: evaluate(model, batch, forces=True, stress=True), min_seconds=3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 1008])
    parser.add_argument("--steps", type=int, default=20, help="i-PI steps per run (half above 500 atoms)")
    parser.add_argument("--beads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each path-integral case")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from atomflux.io import load_model
    from atomflux.ipi import IPIDriver

    model = load_model("demo")
    rows = []
    for n in args.sizes:
        atoms = structure(n)
        run = ipi_steps(IPIDriver(model, atoms, uncertainty=False), atoms,
                        args.steps if len(atoms) < 500 else max(6, args.steps // 2))
        rows.append({"atoms": len(atoms), "raw_evaluate_ms": 1e3 * raw_seconds(model, atoms),
                     "ipi_step_ms": 1e3 * float(np.median(run["step"])),
                     "evaluate_in_run_ms": 1e3 * float(np.median(run["evaluate"])),
                     "overhead": float(np.median(run["step"] / run["evaluate"])) - 1})
        print(rows[-1], flush=True)
    atoms = structure(args.sizes[0])
    driver = IPIDriver(model, atoms, uncertainty=False)
    medians: dict[int, list[tuple[float, float]]] = {args.beads: [], 1: []}
    for _ in range(args.repeats):
        for batch_size in (args.beads, 1):
            run = ipi_steps(driver, atoms, args.steps, args.beads, batch_size)
            medians[batch_size].append((float(np.median(run["step"])), float(np.median(run["evaluate"]))))
    batched, single = min(medians[args.beads]), min(medians[1])
    beads = {"beads": args.beads, "atoms": len(atoms), "batched_step_ms": 1e3 * batched[0],
             "batched_evaluate_ms": 1e3 * batched[1], "single_step_ms": 1e3 * single[0],
             "single_evaluate_ms": 1e3 * single[1], "batched_speedup": single[0] / batched[0]}
    print(beads, flush=True)
    OUT.mkdir(exist_ok=True)
    meta = {"machine": platform.machine(), "torch": torch.__version__, "threads": args.threads, "model": "demo",
            "dtype": "float64", "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    (OUT / "bench_ipi.json").write_text(json.dumps({"meta": meta, "md": rows, "path_integral": beads}, indent=2))
    lines = ["| atoms | raw evaluate (ms) | i-PI step (ms) | evaluate in those steps (ms) | i-PI overhead |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['atoms']} | {r['raw_evaluate_ms']:.1f} | {r['ipi_step_ms']:.1f} | {r['evaluate_in_run_ms']:.1f} "
              f"| {100 * r['overhead']:+.1f} % |" for r in rows]
    lines += ["", f"Path integrals, {beads['beads']} beads × {beads['atoms']} atoms (ms per step):", "",
              "| messages | i-PI step | evaluate in those steps |", "|---|---|---|",
              f"| all beads in one (batch_size {beads['beads']}) | {beads['batched_step_ms']:.1f} "
              f"| {beads['batched_evaluate_ms']:.1f} |",
              f"| one structure each | {beads['single_step_ms']:.1f} | {beads['single_evaluate_ms']:.1f} |",
              "", f"Batched speed-up per step: {beads['batched_speedup']:.2f}×; load average during the run "
              f"{meta['load_average_1min']:.1f} on {meta['cpus']} CPUs."]
    (OUT / "bench_ipi.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
