"""SevenNet-0 distilled into a fast atomflux student (diamond Si or rock-salt NaCl): phonons, lattice κ, speed, GK κ.

The real-material application of issue 23.  Every stage goes through the
``atomflux`` command line as a user would run it (``distill``, ``kappa``,
``lammps``, ``transport``, ``compare``), except the committee students and the
phonon comparison, which use the Python API.  What differs between the
crystals (cells, conditions, cutoff, supercells, Green–Kubo cell, temperature
and timestep) is one entry of ``MATERIALS``; ``--material`` picks it:

1. **cell**: the teacher's lattice constant (SevenNet-0 stress on the 8-atom
   conventional cell, zero found by interpolation on a 0.005 Å grid); the
   8-atom, 64-atom (``si64.extxyz``, ``nacl64.extxyz``) and Green–Kubo
   (``si512.data``, ``nacl512.data``, LAMMPS data with masses) cells at it.
2. **distill**: ``atomflux distill sevennet:7net-0 si64.extxyz`` at two
   temperatures × strains −1 %, 0, +1 % (a shallow ensemble student).
3. **committee**: two more students of the same architecture trained from
   scratch with other seeds on the same labels (train / held-out splits of
   the run), calibrated the same way; with the distilled student they are
   the committee whose κ spread is the yardstick.
4. **phonons**: fc2 on the same 2×2×2 supercell (64 atoms) for the teacher and
   every student (:func:`atomflux.lattice.phonons`): frequencies at Γ, X, L,
   DOS, dispersion plot.
5. **kappa**: ``atomflux kappa`` (RTA, quantum statistics, 2×2×2 supercell of
   the conventional cell, 11³ mesh) for the teacher and for the committee
   (repeated ``--model``: κ per member); classical statistics (RTA and LBTE)
   for the distilled student (what classical MD is compared with).
6. **gk**: NVE heat flux of the distilled student in LAMMPS (``pair_style
   atomflux``, ``in.heat_flux``, 512 atoms) → ``atomflux transport`` and
   ``atomflux compare``.

Speed is measured by ``benchmarks/bench_distill.py --student`` (see README).
Outputs: ``results/`` (Si) or ``results-nacl/`` (small, committed);
``results*/work/`` (run folders, force sets, flux files; not committed).  Each
stage reuses what it finds (the commands are run records: rerunning resumes
them).

    python run.py                                   # every stage, Si
    python run.py --material nacl --stages cell distill
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEACHER = "sevennet:7net-0"
STAGES = ("cell", "distill", "committee", "phonons", "kappa", "gk")


@dataclass(frozen=True)
class Material:
    """What differs between the crystals this example distils; lengths Å, temperatures K, times fs.

    ``lattice`` and ``symbols`` are ``ase.build.bulk`` arguments of the conventional cubic cell
    (``len(species)``-species, ``atoms_per_cell`` atoms); the teacher's lattice constant is searched on
    ``a_grid``.  The student is distilled on the ``distill_repeat``³ supercell at ``temperatures`` ×
    ``strains``; phonons and lattice κ use the ``phonon_supercell`` of the conventional cell and the
    ``kappa_mesh``; the Green–Kubo runs use the ``gk_repeat``³ supercell at ``gk_temperature`` with a
    ``gk_timestep_fs`` step."""

    name: str
    lattice: str
    symbols: str
    species: tuple[str, ...]
    atoms_per_cell: int
    a_grid: tuple[float, float, float]        # start, stop (inclusive), step
    temperatures: tuple[float, ...]
    strains: tuple[float, ...]
    cutoff: float
    distill_repeat: int
    phonon_supercell: tuple[int, int, int]
    kappa_mesh: tuple[int, int, int]
    kappa_temperatures: tuple[float, ...]
    gk_repeat: int
    gk_temperature: float
    gk_timestep_fs: float
    output: str                               # results folder, relative to this directory

    def cell(self, a: float):
        """The conventional cubic cell at lattice constant ``a`` (Å)."""
        from ase.build import bulk

        return bulk(self.symbols, self.lattice, a=a, cubic=True)

    def structure(self, atoms: int, suffix: str) -> str:
        """File name of the ``atoms``-atom cell, e.g. ``si64.extxyz``."""
        return f"{self.name}{atoms}.{suffix}"

    @property
    def distill_atoms(self) -> int:
        return self.atoms_per_cell * self.distill_repeat ** 3

    @property
    def gk_atoms(self) -> int:
        return self.atoms_per_cell * self.gk_repeat ** 3


MATERIALS = {
    # diamond Si: the first run (results/); its numbers are in README.md
    "si": Material(name="si", lattice="diamond", symbols="Si", species=("Si",), atoms_per_cell=8,
                   a_grid=(5.43, 5.48, 0.005), temperatures=(300, 600), strains=(-0.01, 0, 0.01), cutoff=5.0,
                   distill_repeat=2, phonon_supercell=(2, 2, 2), kappa_mesh=(11, 11, 11),
                   kappa_temperatures=(300, 600),
                   gk_repeat=4, gk_temperature=300, gk_timestep_fs=2.0, output="results"),
    # rock-salt NaCl: low κ, so that Green–Kubo converges affordably at 700 K (above its Debye temperature,
    # ~320 K, classical statistics suits the comparison with the lattice κ); cutoff between the 4th (a, 5.69 Å)
    # and 5th (a√5/2, 6.36 Å) neighbour shells
    "nacl": Material(name="nacl", lattice="rocksalt", symbols="NaCl", species=("Na", "Cl"), atoms_per_cell=8,
                     a_grid=(5.65, 5.72, 0.005), temperatures=(300, 700), strains=(-0.01, 0, 0.01), cutoff=6.0,
                     distill_repeat=2, phonon_supercell=(2, 2, 2), kappa_mesh=(11, 11, 11),
                     kappa_temperatures=(300, 700),
                     gk_repeat=3, gk_temperature=700, gk_timestep_fs=4.0, output="results-nacl"),
}


def distill_options(material: Material, bound: float, epochs: int) -> list[str]:
    """`atomflux distill` settings (besides teacher, structure and output); ``bound`` on the force RMSE and mean
    σ at every condition, eV/Å."""
    return ["--temperatures", *(f"{t:g}" for t in material.temperatures),
            "--strains", *(f"{e:g}" for e in material.strains), "--rounds", "6",
            "--max-force-rmse", f"{bound:g}", "--max-force-sigma", f"{bound:g}", "--cutoff", f"{material.cutoff:g}",
            "--initial-frames", "4", "--uncertain", "3", "--random", "1", "--epochs", str(epochs),
            "--patience", "15", "--teacher-batch-atoms", "256"]


COMMITTEE_SEEDS = (1, 2)
DEFAULT_GK_SEED = 4242


def kappa_options(material: Material) -> list[str]:
    """Lattice κ settings, identical for teacher and students."""
    return ["--supercell", *map(str, material.phonon_supercell), "--mesh", *map(str, material.kappa_mesh),
            "--temperatures", *(f"{t:g}" for t in material.kappa_temperatures), "--memory-budget", "3GB"]


def atomflux(*words: str, log: Path | None = None, cwd: Path | None = None) -> float:
    """Run ``atomflux WORDS`` (this interpreter's package), echo its output (and keep it in ``log``);
    return the wall time, s."""
    command = [sys.executable, "-m", "atomflux.cli", *words]
    print("$ atomflux " + " ".join(words), flush=True)
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=cwd) as proc:
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if log is not None:
        log.write_text("$ atomflux " + " ".join(words) + "\n" + "".join(lines))
    if proc.returncode != 0:
        raise SystemExit(f"atomflux {words[0]} failed (exit {proc.returncode})")
    return time.perf_counter() - start


def stage_cell(material: Material, out: Path, work: Path) -> dict:
    """The teacher's zero-stress lattice constant and the conventional, distillation and Green–Kubo cells at it."""
    from ase.io import write

    from atomflux import AtomfluxCalculator

    calc = AtomfluxCalculator(TEACHER, uncertainty=False)
    start, stop, step = material.a_grid
    grid = np.round(np.arange(start, stop + step / 10, step), 4)
    pressures = []
    for a in grid:
        atoms = material.cell(float(a))
        atoms.calc = calc
        pressures.append(-float(np.mean(atoms.get_stress()[:3])))   # eV/Å³, positive = compressed
    pressures = np.asarray(pressures)
    k = int(np.nonzero(np.diff(np.sign(pressures)))[0][0])
    a0 = float(grid[k] + (grid[k + 1] - grid[k]) * pressures[k] / (pressures[k] - pressures[k + 1]))
    cell = material.cell(a0)
    write(work / material.structure(len(cell), "extxyz"), cell)
    write(work / material.structure(material.distill_atoms, "extxyz"), cell * ((material.distill_repeat,) * 3))
    write(work / material.structure(material.gk_atoms, "data"), cell * ((material.gk_repeat,) * 3),
          format="lammps-data", specorder=list(material.species), masses=True)
    return {"lattice_constant_A": a0, "grid_A": grid.tolist(),
            "pressure_GPa": (pressures * 160.21766).tolist()}


def stage_distill(material: Material, out: Path, work: Path, bound: float, epochs: int) -> dict:
    options = distill_options(material, bound, epochs)
    structure = material.structure(material.distill_atoms, "extxyz")
    wall = atomflux("distill", TEACHER, structure, "-o", "distill", *options, cwd=work,
                    log=out / "distill.log")
    from atomflux.distill import read_rounds, round_summary

    rounds = read_rounds(work / "distill")
    run = json.loads((work / "distill" / "run.json").read_text())
    summary = {"command": "atomflux distill " + " ".join([TEACHER, structure, "-o", "distill", *options]),
               "wall_s_this_call": wall, "summary": run.get("summary"), "rounds": [round_summary(r) for r in rounds]}
    (out / "summary.png").write_bytes((work / "distill" / "summary.png").read_bytes())
    return summary



def student_files(work: Path) -> list[Path]:
    """The distilled student first, then the committee students."""
    return [work / "distill" / "student.pt"] + [work / "committee" / f"student-seed{s}.pt" for s in COMMITTEE_SEEDS]


def labels(work: Path, upto: int, split: str) -> list:
    """The distillation's teacher labels of rounds 0..upto with the given split ("train" or "holdout")."""
    from ase.io import read

    from atomflux.training.dataset import frame_from_atoms

    return [frame_from_atoms(a) for k in range(upto + 1)
            for a in read(work / "distill" / f"round-{k:03d}" / "labels.extxyz", index=":") if a.info["split"] == split]


def stage_committee(material: Material, out: Path, work: Path) -> dict:
    """Students with other seeds, trained from scratch on the labels the distilled student was trained on and
    calibrated on the same held-out labels (the run's architecture and training settings)."""
    import torch

    from atomflux.distill.config import DistillConfig
    from atomflux.distill.student import errors_at, train_student
    from atomflux.io import load_model, save_model

    torch.set_num_threads(1)
    run = json.loads((work / "distill" / "run.json").read_text())
    settings = {k: v for k, v in run["parameters"].items() if k in DistillConfig.__dataclass_fields__}
    upto = load_model(work / "distill" / "student.pt").metadata["distillation"]["student_round"]
    train_frames, holdout = labels(work, upto, "train"), labels(work, upto, "holdout")
    (work / "committee").mkdir(exist_ok=True)
    walls = {}
    for seed, path in zip(COMMITTEE_SEEDS, student_files(work)[1:]):
        if not path.is_file():
            start = time.perf_counter()
            student, _ = train_student(train_frames, holdout, DistillConfig(**{**settings, "seed": seed}), 0,
                                       progress=False)
            save_model(student, path)
            walls[path.stem] = time.perf_counter() - start
            print(f"committee student seed {seed}: {walls[path.stem]:.0f} s", flush=True)
    from ase.io import read

    from atomflux.training.dataset import frame_from_atoms

    test = [frame_from_atoms(a) for a in read(work / "distill" / f"round-{upto + 1:03d}" / "labels.extxyz", index=":")]
    rows = {}
    for name, path in zip(["distilled"] + [p.stem for p in student_files(work)[1:]], student_files(work)):
        rows[name] = {}
        for subset, frames in (("holdout", holdout), ("test", test)):
            errors = errors_at(load_model(path), frames)
            rows[name][subset] = {"force_rmse_meV_per_A": 1000 * errors["force_rmse"],
                                  "force_sigma_meV_per_A": 1000 * errors["force_sigma"],
                                  "force_coverage_1sigma": errors["force_coverage_1sigma"],
                                  "energy_rmse_meV_per_atom": 1000 * errors["energy_rmse"]}
    return {"labels_of_rounds": f"0..{upto}", "train_frames": len(train_frames), "holdout_frames": len(holdout),
            "test_frames": len(test), "training_wall_s": walls,
            "note": f"holdout: the held-out labels of rounds 0..{upto} (every student's calibration set); test: round "
                    f"{upto + 1}'s labels (frames of the distilled student's MD at every condition, never trained "
                    "or calibrated on by any student)",
            "students": rows}


def calculators(work: Path) -> dict:
    """Teacher and students as ASE calculators (students: mean prediction, uncertainty off)."""
    from atomflux import AtomfluxCalculator

    calcs = {"teacher": AtomfluxCalculator(TEACHER, uncertainty=False)}
    for k, path in enumerate(student_files(work)):
        calcs["distilled" if k == 0 else path.stem] = AtomfluxCalculator(str(path), uncertainty=False)
    return calcs


def stage_phonons(material: Material, out: Path, work: Path) -> dict:
    """Harmonic phonons of teacher and students on the same 2×2×2 supercell: frequencies at Γ, X, L and the DOS."""
    from ase.io import read

    from atomflux.lattice import phonons
    from atomflux.plotting import pyplot, save_figure

    atoms = read(work / material.structure(material.atoms_per_cell, "extxyz"))
    found = {}
    for name, calc in calculators(work).items():
        found[name] = phonons(atoms, calc, supercell=material.phonon_supercell, progress=False)
    points = {}
    for name, ph in found.items():
        at = {}
        for x, label in ph.special_points:
            label = "Γ" if label == "G" else label
            if label in ("Γ", "X", "L") and label not in at:
                at[label] = np.sort(ph.frequencies[int(np.argmin(np.abs(ph.distances - x)))]).tolist()
        points[name] = at
    teacher = found["teacher"]
    rows = {}
    for name, ph in found.items():
        if name == "teacher":
            continue
        rel = {}
        for label, freqs in points[name].items():
            ref = np.asarray(points["teacher"][label])
            keep = ref > 0.5  # acoustic modes at Γ are zero for both
            rel[label] = (np.asarray(freqs)[keep] / ref[keep] - 1).tolist()
        dos_t = np.interp(ph.dos_frequencies, teacher.dos_frequencies, teacher.dos)
        mean_f = lambda f, d: float(np.sum(f * d) / np.sum(d))
        rows[name] = {"relative_difference": rel,
                      "largest_relative_difference": float(max(abs(v) for r in rel.values() for v in r)),
                      "dos_mean_frequency_relative": mean_f(ph.dos_frequencies, ph.dos)
                      / mean_f(teacher.dos_frequencies, teacher.dos) - 1,
                      "dos_l1_difference": float(np.sum(np.abs(ph.dos / np.sum(ph.dos) - dos_t / np.sum(dos_t))))}
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
    for name, ph in found.items():
        style = dict(color="k", lw=1.6) if name == "teacher" else dict(color="C0" if name == "distilled" else "C1",
                                                                      lw=0.8, ls="-" if name == "distilled" else ":")
        ax1.plot(ph.distances, ph.frequencies, **style)
        ax2.plot(ph.dos, ph.dos_frequencies, label=name if name in ("teacher", "distilled") else None, **style)
    ax1.set_xticks([x for x, _ in teacher.special_points],
                   ["Γ" if s == "G" else s for _, s in teacher.special_points])
    for x, _ in teacher.special_points:
        ax1.axvline(x, color="0.8", lw=0.5)
    ax1.set(xlim=(teacher.distances[0], teacher.distances[-1]), ylabel="frequency (THz)",
            title=f"{material.symbols} phonons: SevenNet-0 (black), distilled student (blue), committee (orange dotted)")
    ax2.set(xlabel="DOS (1/THz)")
    ax2.legend(fontsize=8)
    save_figure(fig, out / "phonons.png")
    return {"supercell": list(material.phonon_supercell), "frequencies_THz": points, "students_vs_teacher": rows}


def stage_kappa(material: Material, out: Path, work: Path) -> dict:
    """atomflux kappa: teacher; committee (κ per student); distilled student alone (κ per ensemble member);
    distilled student with classical statistics (RTA and LBTE, for the Green–Kubo comparison)."""
    from atomflux.lattice.kappa import KappaResult

    structure = str(work / material.structure(material.atoms_per_cell, "extxyz"))
    students = [str(p) for p in student_files(work)]
    runs = {"teacher": ["--model", TEACHER, "--no-uncertainty"],
            "committee": [w for p in students for w in ("--model", p)],
            "distilled": ["--model", students[0]],
            "distilled-classical-rta": ["--model", students[0], "--no-uncertainty", "--statistics", "classical"],
            "distilled-classical-lbte": ["--model", students[0], "--no-uncertainty", "--statistics", "classical",
                                         "--method", "lbte"]}
    found = {}
    for name, options in runs.items():
        folder = work / f"kappa-{name}"
        wall = atomflux("kappa", structure, *options, *kappa_options(material), "-o", str(folder),
                        log=out / f"kappa-{name}.log")
        result = KappaResult.from_json(folder / "kappa.json")
        iso, std = result.isotropic()
        members = result.member_isotropic()
        found[name] = {"temperatures_K": result.temperatures.tolist(), "kappa_W_per_mK": iso.tolist(),
                       "std_over_members_W_per_mK": None if std is None else std.tolist(),
                       "members_W_per_mK": None if members is None else members.tolist(),
                       "options": options, "wall_s": wall}
        (out / f"kappa-{name}.json").write_bytes((folder / "kappa.json").read_bytes())
    committee = np.asarray(found["committee"]["members_W_per_mK"])
    teacher = np.asarray(found["teacher"]["kappa_W_per_mK"])
    found["verdict"] = {
        "committee_mean_W_per_mK": committee.mean(0).tolist(), "committee_std_W_per_mK": committee.std(0).tolist(),
        "committee_range_W_per_mK": [committee.min(0).tolist(), committee.max(0).tolist()],
        "teacher_within_committee_range": bool(np.all((teacher >= committee.min(0)) & (teacher <= committee.max(0)))),
        "distilled_minus_teacher_W_per_mK": (committee[0] - teacher).tolist()}
    return found


def stage_gk(material: Material, out: Path, work: Path, production_steps: int, equilibration_steps: int,
             runs: int, parallel: int, seed: int) -> dict:
    """Heat flux of the distilled student in LAMMPS (``parallel`` runs at a time, seeds ``seed`` + r), Green–Kubo κ,
    and the comparison report."""
    student = str(student_files(work)[0])
    timestep_ps = material.gk_timestep_fs / 1000
    suffix = "" if seed == DEFAULT_GK_SEED else f"-seed{seed}"
    # another length or seed: other files
    stems = [f"gk-{production_steps}steps-{equilibration_steps}eq{suffix}-{r}" for r in range(runs)]
    fluxes = [str(work / f"{stem}.dat") for stem in stems]

    def run_lammps(r: int) -> float:
        stem, flux = stems[r], fluxes[r]
        return atomflux("lammps", str(HERE / "in.heat_flux"), "-var", "model", student,
                        "-var", "elements", " ".join(material.species),
                        "-var", "data", str(work / material.structure(material.gk_atoms, "data")),
                        "-var", "temperature", f"{material.gk_temperature:g}",
                        "-var", "timestep", f"{timestep_ps:g}",
                        "-var", "steps", str(production_steps), "-var", "equilibration",
                        str(equilibration_steps), "-var", "seed", str(seed + r), "-var", "flux", str(flux),
                        "-log", str(work / f"{stem}.log"), log=out / f"{stem}.out")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        walls = list(pool.map(run_lammps, [r for r in range(runs) if not Path(fluxes[r]).is_file()]))
    tag = f"{runs}x{production_steps}steps{suffix}"
    atomflux("transport", "--flux", *fluxes, "--timestep", f"{timestep_ps:g}",
             "--output-dir", str(out / f"greenkubo-{tag}"), log=out / f"greenkubo-{tag}.log")
    atomflux("compare", "--lattice", str(work / "kappa-distilled-classical-rta" / "kappa.json"),
             str(work / "kappa-distilled-classical-lbte" / "kappa.json"), "--md", *fluxes,
             "--timestep", f"{timestep_ps:g}", "--atoms", str(material.gk_atoms),
             "--output-dir", str(out / f"compare-{tag}"), log=out / f"compare-{tag}.log")
    found = json.loads((out / f"greenkubo-{tag}" / "greenkubo.json").read_text())["result"]
    return {"atoms": material.gk_atoms, "temperature_K": material.gk_temperature,
            "timestep_fs": material.gk_timestep_fs, "production_steps": production_steps,
            "equilibration_steps": equilibration_steps, "runs": runs, "seeds": [seed + r for r in range(runs)],
            "lammps_wall_s": walls,
            "greenkubo": {k: v for k, v in found.items() if k not in ("scan", "sources", "provenance")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--material", choices=sorted(MATERIALS), default="si",
                        help="crystal (cells, conditions, supercells, Green–Kubo settings: MATERIALS in run.py)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run")
    parser.add_argument("-o", "--output", help="output folder (None: the material's, results/ for si, "
                                               "results-nacl/ for nacl)")
    parser.add_argument("--bound", type=float, default=0.05,
                        help="distill: bound on the student's force RMSE and mean σ at every condition, eV/Å")
    parser.add_argument("--epochs", type=int, default=60, help="distill: most training epochs per round")
    parser.add_argument("--gk-steps", type=int, default=15000, help="NVE steps per Green–Kubo run")
    parser.add_argument("--gk-equilibration", type=int, default=5000, help="NVT steps before each run")
    parser.add_argument("--gk-runs", type=int, default=2, help="independent Green–Kubo runs (seeds SEED + r)")
    parser.add_argument("--gk-seed", type=int, default=DEFAULT_GK_SEED,
                        help="seed of the first Green–Kubo run (another seed: other, independent runs)")
    parser.add_argument("--gk-parallel", type=int, default=1, help="Green–Kubo runs at a time (one process each)")
    args = parser.parse_args()
    material = MATERIALS[args.material]
    out = Path(args.output) if args.output else HERE / material.output
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    record = out / "results.json"
    warnings.filterwarnings("ignore", category=UserWarning)
    for stage in args.stages:
        start = time.perf_counter()
        if stage == "distill":
            found = stage_distill(material, out, work, args.bound, args.epochs)
        elif stage == "gk":
            found = stage_gk(material, out, work, args.gk_steps, args.gk_equilibration, args.gk_runs,
                             args.gk_parallel, args.gk_seed)
        else:
            found = globals()[f"stage_{stage}"](material, out, work)
        found["stage_wall_s"] = time.perf_counter() - start
        results = json.loads(record.read_text()) if record.is_file() else {}   # other stages may run meanwhile
        results[stage] = found
        record.write_text(json.dumps(results, indent=1))
        print(f"stage {stage}: {found['stage_wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
