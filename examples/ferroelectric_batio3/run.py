"""SevenNet-0 → an atomflux student for BaTiO3 → heating NPT ramps → phases and T_c (issue 24, item 5).

Stages (each writes into ``results/`` and reuses what it finds; ``results/work/`` holds the
big files and is not committed):

1. **teacher** (Python API): SevenNet-0 (``sevennet:7net-0``) on the 5-atom cell: zero-pressure
   cubic lattice constant; the tetragonal (P4mm), orthorhombic (Amm2) and rhombohedral (R3m)
   phases relaxed (positions and cell, symmetry kept by ASE's ``FixSymmetry``) from a small polar
   distortion along [001], [011], [111]; energies per formula unit relative to cubic, c/a, Ti
   off-centring, polarization with nominal Born charges; also the clamped-cell double well (cell
   fixed at the cubic one, only positions relaxed).
2. **distill**: ``atomflux distill sevennet:7net-0 cubic.extxyz tetragonal.extxyz
   rhombohedral.extxyz`` (2×2×2 = 40-atom cells of the teacher's relaxed phases) over
   temperatures and small strains.
3. **student**: stage 1 repeated with the distilled student (its own relaxed phases), and the
   student's energies on the teacher's relaxed structures: ordering, double-well depths, c/a.
4. **md**: ``atomflux md STRUCTURE --model student.pt --ensemble npt --pressure 0
   --temperature-ramp T0:T1:dT --repeat n n n -o ...`` at each size of ``--sizes`` in turn.
5. **analyse**: ``atomflux ferroelectric`` on the ramps (nominal Born charges of
   ``shared/notes/ferroelectric.md``) in the temperature windows of ``ANALYSES``, and the student's
   calibrated σ along every ramp.
6. **maps**: ``atomflux ferroelectric`` on the 4×4×4 heating ramp with local-dipole maps (last frame)
   at the temperatures of ``MAP_TEMPERATURES``.

    OMP_NUM_THREADS=1 python run.py --stages teacher distill student
    OMP_NUM_THREADS=1 python run.py --stages md --sizes 3 4 --ramp 100:1100:100 --steps 1500
    OMP_NUM_THREADS=1 python run.py --stages md --sizes 3 4 --ramp 800:100:100 --steps 1500
    OMP_NUM_THREADS=1 python run.py --stages analyse maps

``--work`` reads (and writes) the big files somewhere other than ``results/work/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEACHER = "sevennet:7net-0"
STAGES = ("teacher", "distill", "student", "md", "analyse", "maps")
#: nominal Born charges (shared/notes/ferroelectric.md), e
BORN = {"Ba": 2.77, "Ti": 6.26, "O": -3.01}
#: polar directions of the three ferroelectric phases (Ti displacement), in the cubic cell's axes
PHASES = {"tetragonal": (0, 0, 1), "orthorhombic": (0, 1, 1), "rhombohedral": (1, 1, 1)}
EV_TO_MEV = 1000.0


def cubic_cell(a: float):
    """The 5-atom cubic perovskite BaTiO3 with lattice constant ``a`` (Å): Ba at the corner, Ti at the centre."""
    from ase import Atoms

    return Atoms("BaTiO3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5),
                                             (0, 0.5, 0.5)], cell=np.eye(3) * a, pbc=True)


def atomflux(*words: str, log: Path | None = None, cwd: Path | None = None) -> float:
    """Run ``atomflux WORDS`` with this interpreter, echo (and keep in ``log``) its output; the wall time, s."""
    command = [sys.executable, "-m", "atomflux.cli", *words]
    print("$ atomflux " + " ".join(words), flush=True)
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd) as proc:
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if log is not None:
        with log.open("a") as f:
            f.write("$ atomflux " + " ".join(words) + "\n" + "".join(lines))
    if proc.returncode != 0:
        raise SystemExit(f"atomflux {words[0]} failed (exit {proc.returncode})")
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- phases of a model
def relax(atoms, calc, cell: bool, fmax: float = 2e-4, steps: int = 1000):
    """Relax positions (and the cell when ``cell``) keeping the starting structure's space group; a copy."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calc
    atoms.set_constraint(FixSymmetry(atoms, symprec=1e-4))
    target = FrechetCellFilter(atoms) if cell else atoms
    BFGS(target, logfile=None).run(fmax=fmax, steps=steps)
    atoms.set_constraint()
    return atoms


def zero_pressure_cubic(calc, grid: np.ndarray) -> float:
    """Zero of the pressure of the ideal cubic cell on a grid of lattice constants (linear interpolation), Å."""
    pressures = []
    for a in grid:
        atoms = cubic_cell(float(a))
        atoms.calc = calc
        pressures.append(-float(np.mean(atoms.get_stress()[:3])))
    pressures = np.asarray(pressures)
    k = int(np.nonzero(np.diff(np.sign(pressures)))[0][0])
    return float(grid[k] + (grid[k + 1] - grid[k]) * pressures[k] / (pressures[k] - pressures[k + 1]))


def describe(atoms, energy_cubic: float) -> dict:
    """Energy per f.u. vs cubic (meV), lattice lengths and angles, c/a, Ti off-centring, P (nominal Born charges)."""
    from atomflux.analysis.ferroelectric import local_dipoles, perovskite_cells

    cellpar = atoms.cell.cellpar()
    lengths = np.sort(cellpar[:3])
    ideal = cubic_cell(1.0).get_scaled_positions()
    fractional = atoms.get_scaled_positions() - ideal
    fractional -= np.rint(fractional)
    u = fractional @ atoms.cell.array                                    # displacements from the ideal sites, Å
    reference = cubic_cell(1.0)
    reference.set_cell(atoms.cell, scale_atoms=True)
    p = local_dipoles(perovskite_cells(reference, "Ba", "Ti", "O"), atoms, BORN)
    return {"energy_meV_per_fu": EV_TO_MEV * (atoms.get_potential_energy() - energy_cubic),
            "lengths_A": cellpar[:3].tolist(), "angles_deg": cellpar[3:].tolist(),
            "c_over_a": float(lengths[-1] / lengths[0]), "volume_A3": float(atoms.get_volume()),
            "ti_offcentre_vs_Ba_cube_A": float(np.linalg.norm(u[1] - u[0])),
            "ti_offcentre_vs_O6_A": float(np.linalg.norm(u[1] - u[2:].mean(axis=0))),
            "polarization_uC_cm2": np.asarray(p.p_uc_cm2).reshape(-1, 3)[0].tolist()}


LAMBDAS = np.round(np.linspace(-1.5, 1.5, 13), 3)


def double_well(calc, cubic, polar) -> list[float]:
    """Energies (meV/f.u., vs ``cubic``) along the straight path cubic → polar (same cell) scaled by λ = LAMBDAS."""
    energies = []
    for lam in LAMBDAS:
        atoms = cubic.copy()
        atoms.positions = cubic.positions + lam * (polar.positions - cubic.positions)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    cubic = cubic.copy()
    cubic.calc = calc
    return (EV_TO_MEV * (np.asarray(energies) - cubic.get_potential_energy()) / (len(cubic) // 5)).tolist()


def phases_of(calc, label: str) -> dict:
    """Cubic lattice constant and the relaxed polar phases of ``calc`` (full relaxation and clamped cubic cell)."""
    start = time.perf_counter()
    a0 = zero_pressure_cubic(calc, np.round(np.arange(3.95, 4.0601, 0.01), 3))
    cubic = relax(cubic_cell(a0), calc, cell=True)                      # polish (stays cubic by symmetry)
    e_cubic = cubic.get_potential_energy()
    result = {"model": label, "double_well_lambda": LAMBDAS.tolist(), "cubic_a_A": float(cubic.cell.cellpar()[0]), "cubic_a_grid_A": a0,
              "relaxed": {"cubic": describe(cubic, e_cubic)}, "clamped_cubic_cell": {}, "structures": {"cubic": cubic}}
    for phase, direction in PHASES.items():
        start_structure = cubic.copy()
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        start_structure.positions[1] += 0.08 * d       # Ti
        start_structure.positions[2:] -= 0.04 * d      # O
        clamped = relax(start_structure, calc, cell=False)
        result["clamped_cubic_cell"][phase] = describe(clamped, e_cubic)
        result["clamped_cubic_cell"][phase]["double_well_meV_per_fu"] = double_well(calc, cubic, clamped)
        result["structures"][f"clamped-{phase}"] = clamped
        full = relax(clamped, calc, cell=True)
        result["relaxed"][phase] = describe(full, e_cubic)
        result["structures"][phase] = full
        print(f"{label} {phase}: ΔE = {result['relaxed'][phase]['energy_meV_per_fu']:.2f} meV/f.u. "
              f"(clamped cubic cell {result['clamped_cubic_cell'][phase]['energy_meV_per_fu']:.2f}), "
              f"c/a = {result['relaxed'][phase]['c_over_a']:.4f}", flush=True)
    result["wall_s"] = time.perf_counter() - start
    return result


def stage_teacher(out: Path, work: Path) -> dict:
    import torch
    from ase.io import write

    from atomflux import AtomfluxCalculator

    torch.set_num_threads(1)
    result = phases_of(AtomfluxCalculator(TEACHER, uncertainty=False), "SevenNet-0")
    for phase, atoms in result.pop("structures").items():
        write(work / f"teacher-{phase}-5.extxyz", atoms)
        write(work / f"{phase}.extxyz", atoms * (2, 2, 2))             # the distillation's 40-atom cells
    return result


# ---------------------------------------------------------------------------------------------- distillation
STRUCTURES = ("cubic.extxyz", "tetragonal.extxyz", "rhombohedral.extxyz")
DISTILL_OPTIONS = ["--temperatures", "200", "600", "1000", "--strains", "-0.01", "0", "0.01", "--rounds", "4",
                   "--max-force-rmse", "0.08", "--max-force-sigma", "0.08", "--cutoff", "5.0",
                   "--initial-frames", "3", "--md-steps", "150", "--uncertain", "2", "--random", "1",
                   "--epochs", "60", "--patience", "15", "--teacher-batch-atoms", "240"]


def stage_distill(out: Path, work: Path) -> dict:
    """`atomflux distill` on the teacher's 40-atom cells (cubic, tetragonal, rhombohedral), as a user runs it."""
    from atomflux.distill import read_rounds, round_summary

    wall = atomflux("distill", TEACHER, *STRUCTURES, "-o", "distill", *DISTILL_OPTIONS, cwd=work,
                    log=out / "distill.log")
    rounds = read_rounds(work / "distill")
    run = json.loads((work / "distill" / "run.json").read_text())
    (out / "summary.png").write_bytes((work / "distill" / "summary.png").read_bytes())
    return {"command": "atomflux distill " + " ".join([TEACHER, *STRUCTURES, "-o", "distill", *DISTILL_OPTIONS]),
            "wall_s_this_call": wall, "summary": run.get("summary"), "rounds": [round_summary(r) for r in rounds]}



# ---------------------------------------------------------------------------------------------- student vs teacher
def student_file(work: Path) -> Path:
    return work / "distill" / "student.pt"


def ensemble_difference(calc, atoms, reference) -> tuple[float, float]:
    """E(atoms) − E(reference) per formula unit (meV) with the student's shallow-ensemble spread (1σ, meV)."""
    energies = []
    for structure in (atoms, reference):
        structure = structure.copy()
        structure.calc = calc
        structure.get_potential_energy()
        energies.append((calc.results["energy"], np.asarray(calc.results["energy_ensemble"]), len(structure) // 5))
    (e1, m1, n1), (e0, m0, n0) = energies
    per_member = m1 / n1 - m0 / n0
    return EV_TO_MEV * (e1 / n1 - e0 / n0), EV_TO_MEV * float(np.std(per_member, ddof=1))


def stage_student(out: Path, work: Path) -> dict:
    """The student's own phases (relaxed like the teacher's) and its energies on the teacher's structures."""
    import torch
    from ase.io import read

    from atomflux import AtomfluxCalculator
    from atomflux.plotting import pyplot, save_figure

    torch.set_num_threads(1)
    path = student_file(work)
    mean = AtomfluxCalculator(str(path), uncertainty=False)
    own = phases_of(mean, "student")
    own.pop("structures")
    full = AtomfluxCalculator(str(path), uncertainty="energy")
    teacher = json.loads((out / "results.json").read_text())["teacher"]
    cubic = read(work / "teacher-cubic-5.extxyz")
    on_teacher = {}
    for phase in PHASES:
        for kind, name in (("relaxed", phase), ("clamped_cubic_cell", f"clamped-{phase}")):
            atoms = read(work / f"teacher-{name}-5.extxyz")
            value, sigma = ensemble_difference(full, atoms, cubic)
            # the same in the 40-atom cell the student was trained on (a check that the 5-atom cell is no problem)
            value40, _ = ensemble_difference(full, atoms * (2, 2, 2), cubic * (2, 2, 2))
            on_teacher.setdefault(kind, {})[phase] = {
                "student_meV_per_fu": value, "student_sigma_meV_per_fu": sigma, "student_40_atoms_meV_per_fu": value40,
                "teacher_meV_per_fu": teacher[kind][phase]["energy_meV_per_fu"]}
    wells = {}
    for phase in PHASES:
        clamped = read(work / f"teacher-clamped-{phase}-5.extxyz")
        wells[phase] = double_well(mean, cubic, clamped)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    lam = np.asarray(teacher["double_well_lambda"])
    for k, phase in enumerate(PHASES):
        axes[0].plot(lam, teacher["clamped_cubic_cell"][phase]["double_well_meV_per_fu"], "-o", color=f"C{k}",
                     ms=3, label=f"{phase} [{''.join(map(str, PHASES[phase]))}] SevenNet-0")
        axes[0].plot(lam, wells[phase], "--s", color=f"C{k}", ms=3, mfc="none", label="student")
    axes[0].set(xlabel="λ (fraction of the teacher's clamped-cell polar displacement)", ylabel="E − E_cubic (meV/f.u.)",
                title="double wells, cell clamped at the cubic a")
    axes[0].legend(fontsize=7)
    names = ["cubic", *PHASES]
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, [teacher["relaxed"][p]["energy_meV_per_fu"] for p in names], 0.4, label="SevenNet-0, own relaxation")
    axes[1].bar(x + 0.2, [own["relaxed"][p]["energy_meV_per_fu"] for p in names], 0.4, label="student, own relaxation")
    axes[1].errorbar(x + 0.2, [0] + [on_teacher["relaxed"][p]["student_meV_per_fu"] for p in PHASES],
                     yerr=[0] + [on_teacher["relaxed"][p]["student_sigma_meV_per_fu"] for p in PHASES], fmt="kx",
                     label="student on the teacher's structures ±σ")
    axes[1].set_xticks(x, names)
    axes[1].set(ylabel="E − E_cubic (meV/f.u.)", title="relaxed phases (0 K, 0 GPa)")
    axes[1].legend(fontsize=7)
    save_figure(fig, out / "phases.png")
    return {"student": str(path.relative_to(work)), "own_phases": own, "on_teacher_structures": on_teacher,
            "double_well_on_teacher_path_meV_per_fu": wells}


# ---------------------------------------------------------------------------------------------- NPT ramps
def ramp_folder(work: Path, size: int, ramp: str) -> Path:
    t0, t1 = (float(x) for x in ramp.split(":")[:2])
    return work / "md" / f"{'heating' if t1 > t0 else 'cooling'}-L{size}"


def stage_md(out: Path, work: Path, sizes: list[int], ramp: str, steps: int, interval: int, start: str) -> dict:
    """`atomflux md --ensemble npt --temperature-ramp` with the student at each size (one after another)."""
    (work / "md").mkdir(exist_ok=True)
    done = {}
    for size in sizes:
        folder = ramp_folder(work, size, ramp)
        options = [f"{start}", "--model", str(student_file(work)), "--ensemble", "npt", "--pressure", "0",
                   "--temperature-ramp", ramp, "--steps", str(steps), "--timestep", "2", "--interval", str(interval),
                   "--barostat-time", "500", "--thermostat-time", "100",
                   "--repeat", str(size), str(size), str(size), "--seed", str(size), "-o", str(folder)]
        wall = atomflux("md", *options, cwd=work, log=out / f"md-{folder.name}.log")
        done[folder.name] = {"command": "atomflux md " + " ".join(options), "wall_s_this_call": wall,
                             "atoms": 5 * size ** 3}
    return done


def ramp_uncertainty(work: Path, folder: Path, frames_per_temperature: int = 4) -> list[dict]:
    """The student's calibrated σ (energy per atom, forces) on a few frames of every temperature of a ramp."""
    import torch
    from ase.io import read

    from atomflux import AtomfluxCalculator

    torch.set_num_threads(1)
    calc = AtomfluxCalculator(str(student_file(work)), uncertainty="full")
    thermo = json.loads((folder / "thermo.json").read_text())
    rows = []
    for k, row in enumerate(thermo):
        frames = read(folder / f"stage-{k}.traj", ":")
        picks = np.linspace(len(frames) // 3, len(frames) - 1, frames_per_temperature).astype(int)
        energy_sigma, force_sigma = [], []
        for i in picks:
            atoms = frames[i]
            calc.get_property("forces_uncertainty", atoms)
            energy_sigma.append(calc.results["energy_uncertainty"] / len(atoms))
            force_sigma.append(float(np.sqrt(np.mean(calc.results["forces_uncertainty"] ** 2))))
        rows.append({"temperature_K": row["temperature_K"], "energy_sigma_meV_per_atom": 1000 * max(energy_sigma),
                     "force_sigma_meV_per_A": 1000 * max(force_sigma)})
    return rows


#: `atomflux ferroelectric` calls: output name → (ramp folders, temperature window K).  Sizes are compared only
#: where the student stayed inside the uncertainty its distillation saw (3×3×3 up to 700 K; see README)
ANALYSES = {"ferroelectric-heating-L3-L4": (["heating-L3", "heating-L4"], (100, 700)),
            "ferroelectric-L4": (["heating-L4", "cooling-L4"], (100, 900)),
            "ferroelectric-all": (["heating-L3", "heating-L4", "cooling-L3", "cooling-L4"], (100, 800))}


def stage_analyse(out: Path, work: Path, discard: int) -> dict:
    """`atomflux ferroelectric` (nominal Born charges) on the ramps, and the student's σ along every ramp."""
    import shutil

    born = ",".join(f"{k}={v:g}" for k, v in BORN.items())
    found = {}
    for name, (folders, window) in ANALYSES.items():
        runs = [str(work / "md" / f) for f in folders if (work / "md" / f / "thermo.json").is_file()]
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        words = [*runs, "--born", born, "--discard", str(discard), "--temperature-window", *(f"{t:g}" for t in window),
                 "--map-layers", "0"]
        atomflux("ferroelectric", *words, "-o", str(target), log=out / f"{name}.log")
        found[name] = {"command": "atomflux ferroelectric " + " ".join(words),
                       "summary": json.loads((target / "ferroelectric.json").read_text())}
    ramps = sorted(p for p in (work / "md").glob("*-L*") if (p / "thermo.json").is_file())
    found["student_sigma_along_ramps"] = {p.name: ramp_uncertainty(work, p) for p in ramps}
    return found


#: K: the local-dipole maps of the 4×4×4 heating ramp (rhombohedral, tetragonal, the student's disordered 700 K)
MAP_TEMPERATURES = (100, 400, 700)


def stage_maps(out: Path, work: Path, discard: int) -> dict:
    """`atomflux ferroelectric` on the 4×4×4 heating ramp with local-dipole maps at ``MAP_TEMPERATURES``."""
    import shutil

    target = out / "maps-heating-L4"
    if target.exists():
        shutil.rmtree(target)
    (out / "maps-heating-L4.log").unlink(missing_ok=True)
    words = [str(work / "md" / "heating-L4"), "--born", ",".join(f"{k}={v:g}" for k, v in BORN.items()),
             "--discard", str(discard), "--temperature-window", "100", "900",
             "--map-temperatures", *(f"{t:g}" for t in MAP_TEMPERATURES)]
    atomflux("ferroelectric", *words, "-o", str(target), log=out / "maps-heating-L4.log")
    return {"command": "atomflux ferroelectric " + " ".join(words),
            "maps": sorted(str(p.relative_to(out)) for p in (target / "ferroelectric-maps").glob("*.png"))}


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("-o", "--output", default=str(HERE / "results"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 4], help="md: supercells n×n×n of 5 atoms")
    parser.add_argument("--ramp", default="100:1100:100", help="md: T0:T1:dT, K")
    parser.add_argument("--steps", type=int, default=1500, help="md: steps (2 fs) per temperature")
    parser.add_argument("--interval", type=int, default=10, help="md: frame every N steps")
    parser.add_argument("--start", default="teacher-rhombohedral-5.extxyz", help="md: starting cell (in work/)")
    parser.add_argument("--discard", type=int, default=50, help="analyse, maps: frames discarded per temperature")
    parser.add_argument("--work", help="folder of the big files (default: <output>/work)")
    args = parser.parse_args()
    out = Path(args.output)
    work = Path(args.work) if args.work else out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    for stage in args.stages:
        extra = {"md": dict(sizes=args.sizes, ramp=args.ramp, steps=args.steps, interval=args.interval,
                            start=args.start), "analyse": dict(discard=args.discard),
                 "maps": dict(discard=args.discard)}.get(stage, {})
        found = globals()[f"stage_{stage}"](out, work, **extra)
        results = json.loads(results_file.read_text()) if results_file.is_file() else {}   # other calls' stages
        results[stage] = {**results.get(stage, {}), **found} if stage == "md" else found
        results_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
