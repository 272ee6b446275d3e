"""Cost of driving i-PI: time per MD step of i-PI + ``atomflux ipi`` vs the model alone.

Cases (fcc Cu with 25 % Au, rattled; ~100 and ~1 000 atoms by default), one torch thread:

- ``raw evaluate``: energy, forces and virial on a prebuilt batch (no neighbour search);
- ``batch + evaluate``: the same with the neighbour search every call (what any
  driver or ASE calculator pays per step);
- ``i-PI step``: wall time between consecutive replies of the driver while i-PI
  runs NVE — i-PI's integrator and outputs, the socket round trip, unit and cell
  conversions, batch building and the model.  Overhead = i-PI step / raw evaluate − 1.

MD times are medians over calls / steps (robust on a shared machine); path-integral
times are means over whole runs.

Path integrals (``--beads``, default 8 beads of ~100 atoms): time per step with all beads
in one message (``<batch_size>8``, one batched evaluate call) vs one structure per message.

Writes ``benchmarks/results/bench_ipi.json`` and ``.md``.

    python benchmarks/bench_ipi.py [--sizes 108 1008] [--steps 20] [--beads 8] [--threads 1]
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


def ipi_seconds_per_step(driver, atoms, steps: int, beads: int = 1, batch_size: int = 1) -> float:
    """Wall time per i-PI MD step with ``driver`` answering, after step 0: the median interval
    between replies for one bead, the mean over the run for path integrals."""
    from atomflux.ipi.protocol import connect, disconnect, socket_path

    address = f"atomflux-bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp) / "start.extxyz", atoms, format="extxyz")
        (Path(tmp) / "input.xml").write_text(ipi_xml(address, steps, beads, batch_size))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        process = subprocess.Popen([str(Path(sys.executable).parent / "i-pi"), "input.xml"], cwd=tmp, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        stamps: list[tuple[int, float]] = []
        try:
            sock = connect(address, timeout=120, abort=lambda: None if process.poll() is None else "i-PI exited")
            driver.serve(sock, on_reply=lambda session: stamps.append((session.structures, time.perf_counter())))
            disconnect(sock)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            socket_path(address).unlink(missing_ok=True)
    if beads == 1:
        return float(np.median(np.diff([t for _, t in stamps[1:]])))
    # i-PI evaluates all beads at step 0 and once per step after it: time the `steps` steps after step 0
    first = next(t for structures, t in stamps if structures >= beads)
    return (stamps[-1][1] - first) / steps


def raw_seconds(model, atoms, prebuilt: bool, copies: int = 1, median_of: int = 0) -> float:
    """Energy, forces and virial of ``copies`` × ``atoms`` in one call: the mean time (``timed``), or the
    median of ``median_of`` calls."""
    from atomflux.evaluate import evaluate
    from atomflux.systems import Batch

    systems = [atoms] * copies
    batch = Batch.from_atoms(systems, model.cutoff)

    def call() -> None:
        evaluate(model, batch if prebuilt else Batch.from_atoms(systems, model.cutoff), forces=True, stress=True)

    if not median_of:
        return timed(call, min_seconds=3.0)
    call()
    durations = []
    for _ in range(median_of):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return float(np.median(durations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 1008])
    parser.add_argument("--steps", type=int, default=20, help="i-PI steps per case (fewer above 500 atoms)")
    parser.add_argument("--beads", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from atomflux.io import load_model
    from atomflux.ipi import IPIDriver

    model = load_model("demo")
    rows = []
    for n in args.sizes:
        atoms = structure(n)
        driver = IPIDriver(model, atoms, uncertainty=False)
        steps = args.steps if len(atoms) < 500 else max(6, args.steps // 2)
        raw = raw_seconds(model, atoms, prebuilt=True, median_of=steps)
        with_nl = raw_seconds(model, atoms, prebuilt=False, median_of=steps)
        step = ipi_seconds_per_step(driver, atoms, steps)
        rows.append({"atoms": len(atoms), "raw_evaluate_ms": 1e3 * raw, "batch_and_evaluate_ms": 1e3 * with_nl,
                     "ipi_step_ms": 1e3 * step, "overhead_vs_raw": step / raw - 1,
                     "overhead_vs_batch_and_evaluate": step / with_nl - 1})
        print(rows[-1], flush=True)
    atoms = structure(args.sizes[0])
    driver = IPIDriver(model, atoms, uncertainty=False)
    beads = {"beads": args.beads, "atoms": len(atoms),
             "raw_one_call_ms": 1e3 * raw_seconds(model, atoms, prebuilt=False, copies=args.beads),
             "raw_separate_calls_ms": 1e3 * args.beads * raw_seconds(model, atoms, prebuilt=False),
             "ipi_batched_step_ms": 1e3 * ipi_seconds_per_step(driver, atoms, args.steps, args.beads, args.beads),
             "ipi_single_step_ms": 1e3 * ipi_seconds_per_step(driver, atoms, args.steps, args.beads, 1)}
    beads["batched_speedup"] = beads["ipi_single_step_ms"] / beads["ipi_batched_step_ms"]
    print(beads, flush=True)
    OUT.mkdir(exist_ok=True)
    meta = {"machine": platform.machine(), "torch": torch.__version__, "threads": args.threads, "model": "demo",
            "dtype": "float64"}
    (OUT / "bench_ipi.json").write_text(json.dumps({"meta": meta, "md": rows, "path_integral": beads}, indent=2))
    lines = ["| atoms | raw evaluate (ms) | batch + evaluate (ms) | i-PI step (ms) | overhead vs raw | vs batch + evaluate |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['atoms']} | {r['raw_evaluate_ms']:.1f} | {r['batch_and_evaluate_ms']:.1f} | {r['ipi_step_ms']:.1f} "
              f"| {100 * r['overhead_vs_raw']:+.1f} % | {100 * r['overhead_vs_batch_and_evaluate']:+.1f} % |"
              for r in rows]
    lines += ["", f"Path integrals, {beads['beads']} beads × {beads['atoms']} atoms:", "",
              "| | ms per step |", "|---|---|",
              f"| raw: one evaluate call on all beads | {beads['raw_one_call_ms']:.1f} |",
              f"| raw: one evaluate call per bead | {beads['raw_separate_calls_ms']:.1f} |",
              f"| i-PI, batch_size {beads['beads']} (one message) | {beads['ipi_batched_step_ms']:.1f} |",
              f"| i-PI, one structure per message | {beads['ipi_single_step_ms']:.1f} |",
              f"| batched speed-up | {beads['batched_speedup']:.2f}× |"]
    (OUT / "bench_ipi.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
