"""MD speed of ``pair_style atomflux`` (issue 14, LAMMPS side): atom-steps/s before and after, in one run.

Cases (fcc Cu, a = 3.61 Å, rattled by 0.05 Å; NVE from 300 K, 1 fs):

- ``demo``: the shipped model at 256 / 864 / 4 000 atoms, three ways:
  ``plain``; ``uncertainty``: ``compute atomflux/uncertainty`` in thermo every 100
  steps; ``heat flux``: ``compute heat/flux`` with ``centroid/stress/atom`` read
  every step by ``fix ave/time``;
- ``lj``: atomflux ``LennardJones`` through the bridge against LAMMPS's own
  ``lj/cut`` (same parameters) at 864 and 10 976 atoms;
- ``overhead``: ``pair_style atomflux`` against ``atomflux.evaluate`` (forces,
  on a prebuilt periodic batch) of the same model on the same atoms, alternating
  in one process: the bridge overhead per step.

"Before" is a temporary git worktree of ``--before`` (default ``main``: run this
on the branch before merging; after a merge use the commit before it), "after"
is this tree.  Each tree runs in its own worker process (``PYTHONPATH`` at the
tree, so its own Python code and its own plugin build); cases alternate between
the two workers.  The machine may be shared, so both wall-clock and CPU-time
rates are recorded (CPU time of the process, the steadier of the two on a busy
machine; with 2 threads it counts both), with the machine's 1-minute load average
at the start and end of every case.  "After" runs at pair_style atomflux's default
precision (float32 compute for atomflux models); the ``dtype float64`` rows give
the float64 rate of the target case and of LJ.  Writes
``benchmarks/results/bench_md_speed_lammps.json`` and ``.md`` (or ``--name``'s).

    python benchmarks/bench_md_speed_lammps.py [--before main] [--threads 1 2] [--seconds 3] [--name NAME]
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "results"
LJ = {"sigma": 2.3, "epsilon": 0.4, "cutoff": 4.5}
DEMO_VARIANTS = ("plain", "uncertainty", "heat flux")
RESULT = "RESULT "
BRIDGE_DTYPE = "float32"  # pair_style atomflux's default for atomflux models (precision auto), after

# LAMMPS lines of each variant, after the pair style
EXTRA = {
    "plain": "",
    "uncertainty": "compute u all atomflux/uncertainty\nthermo_style custom step pe c_u\n",
    "heat flux": ("compute ke all ke/atom\ncompute pe all pe/atom\ncompute st all centroid/stress/atom NULL virial\n"
                  "compute flux all heat/flux ke pe st\nfix jflux all ave/time 1 1 1 c_flux[1] c_flux[2] c_flux[3]\n"),
}


# ---------------------------------------------------------------- worker side
def structure(n_atoms: int):
    from ase.build import bulk

    repeat = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def data_file(n_atoms: int, folder: Path) -> Path:
    from ase.io import write

    path = folder / f"cu{n_atoms}.data"
    if not path.exists():
        write(path, structure(n_atoms), format="lammps-data", specorder=["Cu"], masses=True)
    return path


def pair_lines(model: str, threads: int, folder: Path, dtype: str | None = None) -> str:
    """The pair style lines; ``dtype`` float32/float64 (a keyword both old and new trees know) or
    ``None`` for the tree's default (old: float64; new: precision auto, float32 compute)."""
    if model == "lj/cut":
        return f"pair_style lj/cut {LJ['cutoff']}\npair_coeff * * {LJ['epsilon']} {LJ['sigma']}\npair_modify shift yes"
    path = "demo" if model == "demo" else folder / "lj.pt"
    option = f" dtype {dtype}" if dtype else ""
    return f"pair_style atomflux threads {threads}{option}\npair_coeff * * {path} Cu"


def start(case: dict, folder: Path):
    """LAMMPS with the case's atoms, pair style and extra lines, after one NVE step."""
    from atomflux.lammps_bridge import start_lammps

    import torch

    torch.set_num_threads(case["threads"])
    lmp = start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(
        f"units metal\natom_style atomic\nread_data {data_file(case['atoms'], folder)}\n"
        f"{pair_lines(case['model'], case['threads'], folder, case.get('dtype'))}\n{EXTRA[case['variant']]}"
        "velocity all create 300 1 mom yes\nfix nve all nve\ntimestep 0.001\nthermo 100\nrun 1")
    return lmp


def timed_run(lmp, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds per step of ``run steps``."""
    wall, cpu = time.perf_counter(), time.process_time()
    lmp.command(f"run {steps} pre no post no")
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def md_rate(case: dict, folder: Path) -> dict:
    """Atom-steps/s of one LAMMPS case: calibrate on 9 steps, then time a window of about
    ``seconds`` that ends on a multiple of 100 steps (so thermo every 100 reads the
    uncertainty exactly once per 100 steps)."""
    lmp = start(case, folder)
    per_step, _ = timed_run(lmp, 9)                                # steps 2 .. 10
    hundreds = max(1, round(case["seconds"] / per_step / 100))
    steps = 100 * hundreds - 10 if case["variant"] == "uncertainty" else max(10, round(case["seconds"] / per_step))
    wall, cpu = timed_run(lmp, steps)
    natoms = lmp.get_natoms()
    lmp.close()
    return {"steps": steps, "wall_rate": natoms / wall, "cpu_rate": natoms / cpu,
            "ms_per_step": 1e3 * wall, "cpu_ms_per_step": 1e3 * cpu}


def overhead(case: dict, folder: Path, repeats: int = 5) -> dict:
    """Time per step of ``pair_style atomflux`` (plain) and of a raw ``evaluate(forces=True)`` of
    the same model (float32 compute, as the bridge's default) on a prebuilt periodic float64 batch of
    the same atoms (float64 accumulation), alternating in one process
    (best of ``repeats``), so that both see the same machine."""
    from atomflux.evaluate import evaluate
    from atomflux.io import load_model
    from atomflux.models import LennardJones
    from atomflux.systems import Batch

    import torch

    lmp = start(case, folder)
    model = load_model("demo") if case["model"] == "demo" else LennardJones(**LJ)
    model = model.to(getattr(torch, BRIDGE_DTYPE))          # the precision the bridge runs the model in (float64 batch)
    batch = Batch.from_atoms(structure(case["atoms"]), model.cutoff)
    per_step, _ = timed_run(lmp, 3)
    steps = max(3, round(case["seconds"] / per_step / (2 * repeats)))
    bridge, raw = [], []
    for _ in range(repeats):
        bridge.append(timed_run(lmp, steps))
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            evaluate(model, batch, forces=True)
        raw.append(((time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps))
    lmp.close()
    return {"bridge_ms": 1e3 * min(w for w, _ in bridge), "bridge_cpu_ms": 1e3 * min(c for _, c in bridge),
            "raw_ms": 1e3 * min(w for w, _ in raw), "raw_cpu_ms": 1e3 * min(c for _, c in raw)}


def worker() -> None:
    """Run the cases sent as JSON lines on stdin with the atomflux found on ``PYTHONPATH``."""
    from atomflux.io import save_model
    from atomflux.models import LennardJones

    folder = Path(tempfile.mkdtemp(prefix="atomflux-bench-"))
    save_model(LennardJones(**LJ), folder / "lj.pt")
    print(RESULT + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        result = overhead(case, folder) if case["kind"] == "overhead" else md_rate(case, folder)
        print(RESULT + json.dumps(result), flush=True)


# ---------------------------------------------------------------- driver side
class Worker:
    """A worker process of one source tree."""

    def __init__(self, tree: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=tree)
        self.read()

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise RuntimeError(f"benchmark worker exited with code {self.process.wait()}")

    def run(self, case: dict) -> dict:
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def before_tree(ref: str, folder: Path) -> Path:
    """A detached git worktree of ``ref`` in ``folder``."""
    tree = folder / "before"
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_md_speed_lammps: cannot check out --before {ref}: {done.stderr.strip()}")
    return tree


def cases(threads: int, args: argparse.Namespace) -> list[dict]:
    common = {"threads": threads, "seconds": args.seconds}
    out = [{"kind": "md", "model": "demo", "atoms": n, "variant": v, **common}
           for n in args.demo_sizes for v in DEMO_VARIANTS]
    # the new tree's float64 on the issue's target case and on LJ: what float32 contributes
    out += [{"kind": "md", "model": "demo", "atoms": n, "variant": "uncertainty", "dtype": "float64", **common}
            for n in args.demo_sizes if n == 864]
    out += [{"kind": "md", "model": m, "atoms": n, "variant": "plain", **common}
            for n in args.lj_sizes for m in ("lj", "lj/cut")]
    out += [{"kind": "md", "model": "lj", "atoms": n, "variant": "plain", "dtype": "float64", **common}
            for n in args.lj_sizes[-1:]]
    out += [{"kind": "overhead", "model": m, "atoms": n, "variant": "plain", **common}
            for m, sizes in (("demo", args.demo_sizes), ("lj", args.lj_sizes)) for n in sizes]
    return out


def measure(args: argparse.Namespace, folder: Path) -> list[dict]:
    before = Worker(before_tree(args.before, folder))
    after = Worker(REPO)
    rows = []
    try:
        for threads in args.threads:
            for case in cases(threads, args):
                row = dict(case)
                row["load_before_case"] = round(os.getloadavg()[0], 2)     # 1-min load average of the machine
                row["after"] = after.run(case)
                if case["kind"] == "md" and case["model"] != "lj/cut" and "dtype" not in case:
                    row["before"] = before.run(case)
                row["load_after_case"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        before.close()
        after.close()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder / "before")],
                       capture_output=True)
    return rows


def k(rate: float) -> str:
    return f"{rate / 1e3:.1f}k" if rate < 1e6 else f"{rate / 1e6:.2f}M"


def markdown(rows: list[dict], meta: dict) -> str:
    def find(**keys):
        return next(r for r in rows if all(r[key] == value for key, value in keys.items()))

    lines = [f"Before: `{meta['before']}` ({meta['before_commit'][:9]}); after: {meta['after_commit'][:9]}"
             f"{' + uncommitted changes' if meta['dirty'] else ''}. Load average at start/end: "
             f"{meta['load_start']} / {meta['load_end']} on {meta['cpus']} CPUs.", "",
             "Atom-steps/s (CPU time; wall clock in brackets), each tree with its default precision (before: "
             "float64; after: float32 compute, float64 accumulation), and the machine's 1-minute load average "
             "when the case started / ended:", "",
             "| model | atoms | case | threads | before | after | speed-up | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "before" not in r:
            continue
        b, a = r["before"], r["after"]
        lines.append(f"| {r['model']} | {r['atoms']} | {r['variant']} | {r['threads']} | "
                     f"{k(b['cpu_rate'])} ({k(b['wall_rate'])}) | {k(a['cpu_rate'])} ({k(a['wall_rate'])}) | "
                     f"{a['cpu_rate'] / b['cpu_rate']:.2f}× ({a['wall_rate'] / b['wall_rate']:.2f}×) | "
                     f"{r['load_before_case']} / {r['load_after_case']} |")
    lines += ["", "After, float64 compute (`dtype float64`), atom-steps/s, CPU (wall):", "",
              "| model | atoms | case | threads | after, float64 | ÷ lj/cut (CPU) | load |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("dtype") == "float64":
            a = r["after"]
            native = (find(kind="md", model="lj/cut", atoms=r["atoms"], threads=r["threads"])["after"]
                      if r["model"] == "lj" else None)
            ratio = f"{a['cpu_ms_per_step'] / native['cpu_ms_per_step']:.1f}×" if native else ""
            lines.append(f"| {r['model']} | {r['atoms']} | {r['variant']} | {r['threads']} | "
                         f"{k(a['cpu_rate'])} ({k(a['wall_rate'])}) | {ratio} | {r['load_before_case']} / "
                         f"{r['load_after_case']} |")
    lines += ["", "`LennardJones` through the bridge vs native `lj/cut` (time per step, CPU [wall]):", "",
              "| atoms | threads | lj/cut (ms) | before (ms) | after (ms) | before ÷ lj/cut | after ÷ lj/cut |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["model"] != "lj" or r["kind"] != "md" or "before" not in r:
            continue
        native = find(kind="md", model="lj/cut", atoms=r["atoms"], threads=r["threads"])["after"]
        b, a = r["before"], r["after"]
        lines.append(f"| {r['atoms']} | {r['threads']} | "
                     f"{native['cpu_ms_per_step']:.2f} [{native['ms_per_step']:.2f}] | "
                     f"{b['cpu_ms_per_step']:.1f} [{b['ms_per_step']:.1f}] | {a['cpu_ms_per_step']:.2f} "
                     f"[{a['ms_per_step']:.2f}] | {b['cpu_ms_per_step'] / native['cpu_ms_per_step']:.1f}× "
                     f"[{b['ms_per_step'] / native['ms_per_step']:.1f}×] | "
                     f"{a['cpu_ms_per_step'] / native['cpu_ms_per_step']:.1f}× "
                     f"[{a['ms_per_step'] / native['ms_per_step']:.1f}×] |")
    lines += ["", "Bridge overhead per step over a raw `evaluate` (forces, prebuilt periodic batch) of the same "
              "model on the same atoms, alternating in one process, best of 5 (after; ms per step, CPU [wall]):", "",
              "| model | atoms | threads | raw evaluate | pair_style atomflux (plain) | overhead |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] != "overhead":
            continue
        o = r["after"]
        lines.append(f"| {r['model']} | {r['atoms']} | {r['threads']} | {o['raw_cpu_ms']:.2f} [{o['raw_ms']:.2f}] | "
                     f"{o['bridge_cpu_ms']:.2f} [{o['bridge_ms']:.2f}] | "
                     f"{o['bridge_cpu_ms'] - o['raw_cpu_ms']:+.2f} ms "
                     f"({100 * (o['bridge_cpu_ms'] / o['raw_cpu_ms'] - 1):+.0f} %) |")
    return "\n".join(lines) + "\n"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="main", help="git ref measured as 'before' (default: main)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: 1 2)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="target length of each timed window, s (default: 3; at least 100 steps "
                             "with uncertainty, at least 10 otherwise)")
    parser.add_argument("--demo-sizes", type=int, nargs="+", default=[256, 864, 4000],
                        help="atoms of the demo-model cases (default: 256 864 4000)")
    parser.add_argument("--lj-sizes", type=int, nargs="+", default=[864, 10976],
                        help="atoms of the LennardJones vs lj/cut cases (default: 864 10976)")
    parser.add_argument("--name", default="bench_md_speed_lammps",
                        help="file name (no suffix) of the JSON and markdown results in benchmarks/results/ "
                             "(default: bench_md_speed_lammps)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    meta = {"before": args.before, "before_commit": git("rev-parse", args.before),
            "after_commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")), "threads": args.threads,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_start": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory(prefix="atomflux-bench-") as folder:
        rows = measure(args, Path(folder))
    meta["load_end"] = round(os.getloadavg()[0], 1)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = markdown(rows, meta)
    (OUT / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
