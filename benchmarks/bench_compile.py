"""Does ``torch.compile`` help the descriptor on CPU?  Eager vs compiled, one run.

The hand-derived descriptor stages of the demo model on 864 fcc Cu atoms: the
forward (pair terms, density, power spectrum) and the backward (their VJPs
for one cotangent), each eager and compiled with ``torch.compile(dynamic=True)``
(the number of pairs changes every MD step).  Reports the compile time and the
CPU time per call.  (TorchScript, ``torch.jit.script``, is deprecated in
torch 2.x and not measured.)  Writes ``benchmarks/results/bench_compile.{json,md}``.

    python benchmarks/bench_compile.py [--atoms 864] [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timed  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atoms", type=int, default=864, help="atoms (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="(default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from ase.build import bulk

    from atomflux import Batch, load_model
    from atomflux.models.centre_table import CentreTable
    from atomflux.models.power_spectrum_kernel import (density, pair_terms, pair_vjp, padded_vectors,
                                                       power_spectrum, power_spectrum_vjp)

    dtype = getattr(torch, args.dtype)
    model = load_model("demo", dtype=dtype)
    repeat = max(1, round((args.atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=0)
    batch = Batch.from_atoms(atoms, model.cutoff, dtype=dtype)
    table = CentreTable.from_centres(batch.pairs[:, 0], len(atoms))
    spec = model.descriptor_spec(dtype, torch.device("cpu"))
    with torch.no_grad():
        slots = padded_vectors(batch.pair_vectors(), table.slots, table.n_atoms * table.width, model.cutoff)
        radial = model.radial_weights[1:2].clone()          # Cu only
        centre = (model.centre_weights[1] * model.inv_neighbours).expand(len(atoms), -1).clone()
        cotangent = torch.randn(len(atoms), model.n_descriptors, 1, dtype=dtype)

        def forward(vectors):
            terms = pair_terms(spec, vectors, None, radial, centre)
            return power_spectrum(spec, density(terms))

        terms = pair_terms(spec, slots, None, radial, centre)
        a = density(terms)

        def backward(a_):
            return pair_vjp(spec, terms, power_spectrum_vjp(spec, a_, cotangent))[0]

        rows = []
        for label, fn, arg in (("forward", forward, slots), ("backward", backward, a)):
            eager = timed(lambda: fn(arg), min_seconds=2.0, clock=time.process_time)
            start = time.perf_counter()
            compiled = torch.compile(fn, dynamic=True)
            compiled(arg)
            compile_seconds = time.perf_counter() - start
            fast = timed(lambda: compiled(arg), min_seconds=2.0, clock=time.process_time)
            torch.testing.assert_close(compiled(arg), fn(arg))
            rows.append({"stage": label, "eager_ms": 1e3 * eager, "compiled_ms": 1e3 * fast,
                         "compile_s": compile_seconds, "speedup": eager / fast})
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_compile.json").write_text(json.dumps({"atoms": len(atoms), "dtype": args.dtype, "rows": rows},
                                                       indent=2))
    lines = [f"{len(atoms)} atoms, {args.dtype}, 1 thread, CPU time", "",
             "| stage | eager (ms) | compiled (ms) | speed-up | compile time (s) |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['speedup']:.2f}× | "
              f"{r['compile_s']:.0f} |" for r in rows]
    (OUT / "bench_compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
