"""``pair_style atomflux`` with a message-passing model (SevenNet-0, 5 layers × 5 Å = 25 Å reach).

On one MPI rank the model gets the local atoms in the periodic box (atomflux's own
periodic neighbour list, no ghost atoms). Per cell size (diamond Si, 8 atoms per cubic
cell, rattled by 0.05 Å; NVE from 300 K, 1 fs, 1 torch thread), measured in one run:

- ``lammps_ms``: ms per MD step of ``pair_style atomflux`` + ``pair_coeff * * sevennet:7net-0 Si``;
- ``sevennet_ase_ms``: ms per step of ASE ``VelocityVerlet`` with SevenNet's own
  ``SevenNetCalculator`` (the model's own front end);
- ``atomflux_ase_ms``: the same with ``AtomfluxCalculator("sevennet:7net-0")``;
- ``ghosts_full_shell``: ghost atoms LAMMPS would hold on one rank for a ghost shell of the
  whole reach (``comm_modify cutoff 27``: 25 Å + 2 Å skin), the cost the periodic route avoids
  (counted with ``pair_style zero``; under MPI each rank holds about this many, and
  ``pair_style atomflux`` logs the ratio once).

Writes ``benchmarks/results/bench_lammps_message_passing.json`` and ``.md``.

With ``--halo N ...`` it measures instead, for cubic Si supercells N×N×N (8 N³ atoms), each
case in its own process(es) (1 torch thread per process, ``mpiexec`` of the mpich wheel):

- ``serial_ms``: ``pair_style atomflux`` on one MPI rank (periodic box, no ghosts);
- ``halo_ms``: the same on 2 ranks with the per-layer halo (ghost shell of one cutoff,
  5 Å + 2 Å skin; node features exchanged between SevenNet's five interactions), and the
  ghost atoms of both ranks together (``halo_ghosts``);
- ``full_shell_ghosts``: the ghost atoms of both ranks for a shell of the whole reach
  (``comm_modify cutoff 27``, counted with ``pair_style zero``), which the full-shell fallback
  (``halo no``) would evaluate: ~10⁴ per rank at every size here, beyond this machine's
  memory for SevenNet-0 (the unfolded 4 253-atom cluster had reached 14 GB), so not timed;
- ``serial_flux_ms``: one rank with ``compute heat/flux`` (``centroid/stress/atom``) at every
  step: the receiver virials through an in-process halo of one cutoff (one forward and four
  backward passes more), where the unfolded system of the whole reach needed > 14 GB;
- ``own_ase_ms``: ASE ``VelocityVerlet`` with the model's own calculator (``SevenNetCalculator``);
- ``*_gb``: peak resident memory per process (ru_maxrss), GB.

Writes ``benchmarks/results/bench_lammps_message_passing_halo.json`` and ``.md``.

``--halo N ... --model mace`` (run with ``.venv-mace/bin/python``) measures the same table for a
small two-layer MACE built here with random weights (C and Si, r_max 4 Å, 8 Å reach,
8x0e+8x1o, float64; the model of ``tests/test_foreign_mace.py``), saved as a mace-torch
pickle and loaded with ``pair_style atomflux trust yes``, on rattled cubic zincblende SiC
N×N×N (8 N³ atoms); the ASE column is mace-torch's own ``MACECalculator``, and the full
shell is 8 Å + 2 Å skin. Writes ``bench_lammps_message_passing_halo_mace.json`` and ``.md``.

``--halo N ... --before REF`` measures, in the same run, the one-rank plain and heat-flux steps of the
tree of git ref REF (a temporary worktree put first on ``PYTHONPATH`` of its worker processes) beside
this tree's, case by case (``before_serial_ms``, ``before_serial_flux_ms``); ``--rounds R`` repeats the
one-rank cases R times, interleaved, and reports medians (all values under ``rounds``); ``--flux-only``
leaves out the 2-rank, full-shell and ASE cases.

    python benchmarks/bench_lammps_message_passing.py [--repeats 1 2 4 8] [--seconds 3]
    python benchmarks/bench_lammps_message_passing.py --halo 3 4 5 [--steps 2]
    .venv-mace/bin/python benchmarks/bench_lammps_message_passing.py --halo 5 11 --model mace
    .venv-mace/bin/python benchmarks/bench_lammps_message_passing.py --halo 5 --model mace --before main --flux-only --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
REACH_PLUS_SKIN = 27.0
#: the many-body heat flux at every step (centroid virials through the halo of one cutoff)
HEAT_FLUX = ("compute ke all ke/atom\ncompute pe all pe/atom\ncompute cs all centroid/stress/atom NULL virial\n"
             "compute flux all heat/flux ke pe cs\nfix flux all ave/time 1 1 1 c_flux[*]")


def crystal(cells: int):
    """Rattled diamond Si: ``cells`` cubic 8-atom cells stacked along x, y, z in turn."""
    from ase.build import bulk

    repeat = [1, 1, 1]
    for k in range(int(np.log2(cells))):
        repeat[k % 3] *= 2
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * tuple(repeat)
    atoms.rattle(0.05, seed=0)
    return atoms


def per_step(run, seconds: float) -> float:
    """Seconds per step of ``run(steps)``: one calibration step, then a window of about ``seconds``."""
    start = time.perf_counter()
    run(1)
    steps = max(3, round(seconds / (time.perf_counter() - start)))
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def lammps_case(atoms, folder: Path, pair: str, extra: str = ""):
    from ase.io import write

    from atomflux.lammps_bridge import start_lammps

    data = folder / f"{atoms.get_chemical_formula()}.data"
    write(data, atoms, format="lammps-data", specorder=sorted(set(atoms.get_chemical_symbols())), masses=True)
    lmp = start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n{extra}\n{pair}\n"
                        "velocity all create 300 1 mom yes\nfix nve all nve\ntimestep 0.001\nthermo 1000\nrun 0")
    return lmp


def ase_ms(atoms, calculator, seconds: float) -> float:
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dynamics = VelocityVerlet(atoms, 1.0 * units.fs)
    return 1e3 * per_step(dynamics.run, seconds)


def measure(cells: int, seconds: float, folder: Path) -> dict:
    from sevenn.calculator import SevenNetCalculator

    from atomflux.calculators import AtomfluxCalculator

    atoms = crystal(cells)
    lmp = lammps_case(atoms, folder, "pair_style atomflux\npair_coeff * * sevennet:7net-0 Si")
    lammps = 1e3 * per_step(lambda n: lmp.command(f"run {n} pre no post no"), seconds)
    lmp.close()
    counter = lammps_case(atoms, folder, "pair_style zero 5.0\npair_coeff * *", f"comm_modify cutoff {REACH_PLUS_SKIN}")
    ghosts = int(counter.extract_global("nghost"))
    counter.close()
    return {"atoms": len(atoms), "lammps_ms": lammps,
            "sevennet_ase_ms": ase_ms(atoms, SevenNetCalculator("7net-0", device="cpu"), seconds),
            "atomflux_ase_ms": ase_ms(atoms, AtomfluxCalculator("sevennet:7net-0"), seconds),
            "ghosts_full_shell": ghosts, "load_average": os.getloadavg()[0]}


def cubic_crystal(n: int, model: str):
    """Rattled n × n × n cubic 8-atom cells: diamond Si for SevenNet-0, zincblende SiC for the small MACE."""
    from ase.build import bulk

    atoms = (bulk("SiC", "zincblende", a=4.36, cubic=True) if model == "mace"
             else bulk("Si", "diamond", a=5.43, cubic=True)) * (n, n, n)
    atoms.rattle(0.05, seed=0)
    return atoms


def small_mace_file(folder: Path) -> Path:
    """The two-layer random-weight MACE of ``tests/test_foreign_mace.py``, saved as a mace-torch pickle."""
    import torch

    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import small_mace_model

    path = folder / "small-mace.model"
    torch.save(small_mace_model(), path)
    return path


def pair_lines(model: str, folder: Path) -> str:
    """``pair_style``/``pair_coeff`` of the benchmarked model (the MACE file lives in ``folder``)."""
    if model == "mace":
        return f"pair_style atomflux trust yes\npair_coeff * * mace:{folder / 'small-mace.model'} C Si"
    return "pair_style atomflux\npair_coeff * * sevennet:7net-0 Si"


def own_calculator(model: str, folder: Path):
    """The model's own ASE calculator: ``SevenNetCalculator`` or mace-torch's ``MACECalculator``."""
    if model == "mace":
        from mace.calculators import MACECalculator

        return MACECalculator(model_paths=str(folder / "small-mace.model"), default_dtype="float64", device="cpu")
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator("7net-0", device="cpu")


def peak_gb() -> float:
    """Peak resident memory of this process, GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def worker(args: argparse.Namespace) -> None:
    """One case, in its own process (under mpiexec for LAMMPS): writes ``{out}.rank{r}.json``."""
    import torch

    torch.set_num_threads(1)
    atoms = cubic_crystal(args.size, args.model)
    folder = Path(args.folder)
    result: dict = {"atoms": len(atoms)}
    if args.case == "ase":
        result["ms"] = ase_ms(atoms, own_calculator(args.model, folder), 0.0)
        rank = 0
    else:
        pair = "pair_style zero 4.0\npair_coeff * *" if args.case == "zero" else pair_lines(args.model, folder)
        reach_plus_skin = 10.0 if args.model == "mace" else REACH_PLUS_SKIN
        extra = {"zero": f"comm_modify cutoff {reach_plus_skin}", "atomflux": "", "flux": HEAT_FLUX}[args.case]
        lmp = lammps_case(atoms, folder, pair, extra)
        rank = lmp.extract_setting("world_rank")
        result.update(nlocal=int(lmp.extract_global("nlocal")), nghost=int(lmp.extract_global("nghost")))
        if args.case != "zero":
            lmp.command("run 1 pre no post no")
            start = time.perf_counter()
            lmp.command(f"run {args.steps} pre no post no")
            result["ms"] = 1e3 * (time.perf_counter() - start) / args.steps
        lmp.close()
    result["gb"] = peak_gb()
    Path(f"{args.out}.rank{rank}.json").write_text(json.dumps(result))


def run_case(case: str, size: int, ranks: int, steps: int, folder: Path, model: str,
             tree: Path | None = None) -> list[dict]:
    """Results of every rank of one case (``atomflux``, ``flux``, ``zero`` or ``ase``) in fresh processes,
    with the atomflux of ``tree`` (a checkout) instead of this one where given."""
    out = folder / f"{case}-{size}-{ranks}{'-before' if tree else ''}"
    command = [sys.executable, __file__, "--worker", case, "--size", str(size), "--steps", str(steps),
               "--folder", str(folder), "--out", str(out), "--model", model]
    if case != "ase":
        command = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(ranks), *command]
    environment = dict(os.environ)
    if tree is not None:    # ahead of this tree's editable install, which sits at the end of sys.meta_path
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), environment.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"{case} on {ranks} rank(s), size {size} failed:\n{done.stderr[-3000:]}")
    return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(ranks)]


def measure_halo(size: int, steps: int, folder: Path, model: str, before: Path | None = None,
                 flux_only: bool = False, rounds: int = 1) -> dict:
    """One row of the halo table (see the module docstring); the one-rank times are medians of ``rounds``."""
    row: dict = {}
    times: dict[str, list[float]] = {}
    for _ in range(rounds):    # before and after interleaved: the machine's load drifts
        for prefix, tree in ([("before_", before)] if before is not None else []) + [("", None)]:
            serial = run_case("atomflux", size, 1, steps, folder, model, tree)
            flux = run_case("flux", size, 1, steps, folder, model, tree)
            times.setdefault(f"{prefix}serial_ms", []).append(serial[0]["ms"])
            times.setdefault(f"{prefix}serial_flux_ms", []).append(flux[0]["ms"])
            row.update({"atoms": serial[0]["atoms"], f"{prefix}serial_gb": serial[0]["gb"],
                        f"{prefix}serial_flux_gb": flux[0]["gb"]})
    row.update({name: float(np.median(values)) for name, values in times.items()})
    row["rounds"] = {name: values for name, values in times.items()} if rounds > 1 else None
    if not flux_only:
        halo = run_case("atomflux", size, 2, steps, folder, model)
        shell = run_case("zero", size, 2, steps, folder, model)
        ase = run_case("ase", size, 1, steps, folder, model)
        row.update(halo_ms=max(r["ms"] for r in halo), halo_gb=max(r["gb"] for r in halo),
                   halo_ghosts=sum(r["nghost"] for r in halo), full_shell_ghosts=sum(r["nghost"] for r in shell),
                   own_ase_ms=ase[0]["ms"], own_ase_gb=ase[0]["gb"])
    row["load_average"] = os.getloadavg()[0]
    return row


def halo_markdown(rows: list[dict], model: str) -> str:
    shell, calculator = ("10 Å", "MACECalculator") if model == "mace" else ("27 Å", "SevenNetCalculator")
    lines = ["| atoms | 1 rank ms/step | 2 ranks, halo ms/step | 1 rank / 2 ranks | ghosts (halo, both ranks) | "
             f"ghosts per atom (halo) | ghosts ({shell} full shell, both ranks) | ghosts per atom (full shell) | "
             f"{calculator} (ASE) ms/step | 1 rank + heat/flux ms/step | heat/flux / plain | "
             "peak GB: 1 rank / halo rank / heat/flux / ASE | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['serial_ms']:.0f} | {r['halo_ms']:.0f} | "
                     f"{r['serial_ms'] / r['halo_ms']:.2f} | "
                     f"{r['halo_ghosts']} | {r['halo_ghosts'] / r['atoms']:.1f} | {r['full_shell_ghosts']} | "
                     f"{r['full_shell_ghosts'] / r['atoms']:.1f} | {r['own_ase_ms']:.0f} | "
                     f"{r['serial_flux_ms']:.0f} | {r['serial_flux_ms'] / r['serial_ms']:.2f} | "
                     f"{r['serial_gb']:.1f} / {r['halo_gb']:.1f} / {r['serial_flux_gb']:.1f} / "
                     f"{r['own_ase_gb']:.1f} | "
                     f"{r['load_average']:.1f} |")
    return "\n".join(lines) + "\n"


def before_markdown(rows: list[dict], ref: str) -> str:
    """The heat-flux cost on one rank, this tree beside ``ref``, measured in the same run."""
    lines = [f"| atoms | {ref}: plain ms/step | {ref}: + heat/flux ms/step | {ref}: heat/flux / plain | "
             "this tree: plain ms/step | this tree: + heat/flux ms/step | this tree: heat/flux / plain | "
             "heat-flux step, before / after | peak GB heat/flux, before / after | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['before_serial_ms']:.0f} | {r['before_serial_flux_ms']:.0f} | "
                     f"{r['before_serial_flux_ms'] / r['before_serial_ms']:.2f} | {r['serial_ms']:.0f} | "
                     f"{r['serial_flux_ms']:.0f} | **{r['serial_flux_ms'] / r['serial_ms']:.2f}** | "
                     f"{r['before_serial_flux_ms'] / r['serial_flux_ms']:.2f} | "
                     f"{r['before_serial_flux_gb']:.1f} / {r['serial_flux_gb']:.1f} | {r['load_average']:.1f} |")
    return "\n".join(lines) + "\n"


def before_tree(ref: str, folder: Path) -> Path:
    """A detached git worktree of ``ref`` in ``folder`` (removed by :func:`remove_tree`)."""
    tree = folder / "before"
    done = subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree), ref],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_lammps_message_passing: cannot check out --before {ref}: {done.stderr.strip()}")
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tree)], capture_output=True)


def markdown(rows: list[dict]) -> str:
    lines = ["| atoms | pair_style atomflux ms/step | SevenNetCalculator (ASE) ms/step | AtomfluxCalculator (ASE) "
             "ms/step | LAMMPS / SevenNet ASE | ghosts of a full 27 Å shell (1 rank) | ghosts per atom | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atoms']} | {r['lammps_ms']:.0f} | {r['sevennet_ase_ms']:.0f} | {r['atomflux_ase_ms']:.0f} | "
                     f"{r['lammps_ms'] / r['sevennet_ase_ms']:.2f} | {r['ghosts_full_shell']} | "
                     f"{r['ghosts_full_shell'] / r['atoms']:.0f} | {r['load_average']:.1f} |")
    return "\n".join(lines) + "\n"


def main_halo(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="atomflux-bench-") as tmp:
        if args.model == "mace":
            small_mace_file(Path(tmp))
        before = before_tree(args.before, Path(tmp)) if args.before else None
        try:
            rows = []
            for size in args.halo:
                rows.append(measure_halo(size, args.steps, Path(tmp), args.model, before, args.flux_only,
                                         args.rounds))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if before is not None:
                remove_tree(before)
    OUT.mkdir(exist_ok=True)
    described = {"mace": "two-layer MACE, random weights, r_max 4 Å, 8x0e+8x1o (float64)",
                 "sevennet": "sevennet:7net-0 (float32)"}[args.model]
    record = {"benchmark": f"bench_lammps_message_passing --halo --model {args.model}", "model": described,
              "threads_per_process": 1, "steps": args.steps, "before": args.before, "machine": platform.platform(),
              "cpus": os.cpu_count(), "rows": rows}
    name = "bench_lammps_message_passing_halo" + ("_mace" if args.model == "mace" else "")
    name += f"_before_{'_'.join(map(str, args.halo))}" if args.before else ""
    table = before_markdown(rows, args.before) if args.before else ""
    table += "" if args.flux_only else halo_markdown(rows, args.model)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=2))
    (OUT / f"{name}.md").write_text(table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="cell sizes in cubic 8-atom Si cells (powers of two; default: 1 2 4 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window per case, s (default: 3)")
    parser.add_argument("--halo", type=int, nargs="+", metavar="N",
                        help="instead: the 1-rank / 2-rank halo / full-shell / ASE table for N×N×N cubic Si cells")
    parser.add_argument("--steps", type=int, default=2, help="timed MD steps per --halo case (default: 2)")
    parser.add_argument("--model", choices=["sevennet", "mace"], default="sevennet",
                        help="--halo: SevenNet-0 on Si, or a small two-layer MACE built here on SiC "
                             "(run with .venv-mace/bin/python) (default: sevennet)")
    parser.add_argument("--before", metavar="REF",
                        help="--halo: also the one-rank plain and heat-flux steps of git ref REF, in the same run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--halo: one-rank plain and heat-flux cases repeated this many times, interleaved with "
                             "--before's, and the median reported (default: 1)")
    parser.add_argument("--flux-only", action="store_true",
                        help="--halo: only the one-rank plain and heat-flux steps (no 2-rank, full-shell, ASE cases)")
    parser.add_argument("--worker", choices=["atomflux", "flux", "zero", "ase"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.case = args.worker
        worker(args)
        return
    if args.halo:
        main_halo(args)
        return
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="atomflux-bench-") as tmp:
        rows = []
        for cells in args.repeats:
            rows.append(measure(cells, args.seconds, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    record = {"benchmark": "bench_lammps_message_passing", "model": "sevennet:7net-0 (float32)", "threads": 1,
              "machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}
    (OUT / "bench_lammps_message_passing.json").write_text(json.dumps(record, indent=2))
    (OUT / "bench_lammps_message_passing.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
