"""Small fitting commands with 1 vs 2 torch threads (``--threads``), in one run.

``atomflux train`` (a small EMT Cu/Au data set, a few epochs) and ``atomflux ensemble``
on the trained model, each as a user runs it (a fresh ``python -m atomflux.cli``
process), with ``--threads 1`` and ``--threads 2`` interleaved, ``--repeats`` times.
Wall seconds and CPU seconds of the child are recorded with the 1-minute load
average before each run: the choice of the default ``--threads`` (see
:mod:`atomflux.threads`) rests on these numbers.  Writes
``benchmarks/results/bench_threads.{json,md}``.

    python benchmarks/bench_threads.py [--threads 1 2] [--repeats 2] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def _timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="values of --threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each command per thread count")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    args = parser.parse_args()
    import ase.io

    from atomflux.reference_data import emt_dataset

    cli = [sys.executable, "-m", "atomflux.cli"]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        folder = Path(tmp)
        data = folder / "data.extxyz"
        frames = emt_dataset(n_trajectories=4, snapshots=8, elements=("Cu", "Au"), seed=1)
        ase.io.write(data, frames)
        base = folder / "base.pt"
        subprocess.run(cli + ["train", str(data), "-o", str(base), "--epochs", "2"], check=True, capture_output=True)
        for repeat in range(args.repeats):
            for threads in args.threads:
                tag = f"{threads}-{repeat}"
                commands = {
                    "train": cli + ["train", str(data), "-o", str(folder / f"m{tag}.pt"), "--epochs",
                                    str(args.epochs), "--threads", str(threads)],
                    "ensemble": cli + ["ensemble", str(base), str(data), "-o", str(folder / f"e{tag}.pt"),
                                       "--threads", str(threads)],
                }
                for name, command in commands.items():
                    load = load_average()
                    wall, cpu = _timed(command)
                    runs.append({"command": name, "threads": threads, "repeat": repeat, "load": load,
                                 "wall_s": wall, "cpu_s": cpu})
                    print(json.dumps(runs[-1]), flush=True)
    rows = []
    for name in ("train", "ensemble"):
        for threads in args.threads:
            mine = [r for r in runs if r["command"] == name and r["threads"] == threads]
            rows.append({"command": name, "threads": threads, "wall_s": statistics.median(r["wall_s"] for r in mine),
                         "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                         "load": statistics.mean(r["load"] for r in mine)})
    OUT.mkdir(exist_ok=True)
    meta = {"frames": len(frames), "atoms_per_frame": len(frames[0]), "epochs": args.epochs,
            "cpus": os.cpu_count()}
    (OUT / "bench_threads.json").write_text(json.dumps({"meta": meta, "runs": runs, "rows": rows}, indent=2))
    lines = [f"{len(frames)} EMT Cu/Au frames of {len(frames[0])} atoms; train {args.epochs} epochs; median of "
             f"{args.repeats} runs (fresh process each, interleaved)", "",
             "| command | --threads | wall s | CPU s | load |", "|---|---|---|---|---|"]
    lines += [f"| {r['command']} | {r['threads']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load']:.1f} |"
              for r in rows]
    (OUT / "bench_threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
