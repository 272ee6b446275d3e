"""Distillation: the loop's cost (labels and wall time per round) and the student's MD speed vs its teacher.

For each teacher (ASE's EMT on fcc Cu; SevenNet-0 on diamond Si unless
``--no-sevennet``) the script runs ``atomflux.distill`` on a small cell, then
times Langevin MD of the teacher and of the distilled student (its
uncertainty off, as in production MD) on the same cells, each method and cell
in its own process so that the peak resident memory (VmHWM) is its own.
One torch thread.  The distillation runs are records: with ``--output-folder``
a second call resumes them (finished: nothing to redo) and only times the MD.  Writes ``benchmarks/results/bench_distill.json`` and ``.md``.

    python benchmarks/bench_distill.py [--no-sevennet] [--output-folder DIR]
    python benchmarks/bench_distill.py --student STUDENT.pt [--repeats 2 4]

``--student`` times a given SevenNet-0 student (e.g. one of
``examples/distill_si_sevennet``) against SevenNet-0 instead of distilling one
(no EMT case), on cells of ``--repeats`` conventional cells per edge (default
2 4: 64 and 512 atoms) of diamond Si, or of ``--structure`` (the student's
conventional cell, any ASE-readable file), and writes
``bench_distill_student.json`` / ``.md`` (``bench_distill_student-NAME`` with
``--name NAME``).

    python benchmarks/bench_distill.py --student STUDENT.pt --structure nacl8.extxyz --name nacl --repeats 2 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"

#: teacher → (structure builder arguments, distillation settings, MD cells as repeats of the conventional cell)
CASES = {
    "emt": {"element": "Cu", "lattice": "fcc", "a": 3.6, "repeat": 2, "md_repeats": [2, 4],
            "config": dict(temperatures=[300.0, 600.0], max_rounds=8, max_force_rmse=0.02, max_force_sigma=0.02,
                           md_steps=200, initial_frames=8, n_uncertain=4, n_random=4)},
    "sevennet:7net-0": {"element": "Si", "lattice": "diamond", "a": 5.43, "repeat": 1, "md_repeats": [1, 2],
                        "config": dict(temperatures=[300.0], max_rounds=3, max_force_rmse=0.1, max_force_sigma=0.1,
                                       md_steps=100, initial_frames=8, n_uncertain=3, n_random=2)},
}


def cell(case: dict, repeat: int):
    """``repeat``³ conventional cells of the case (its ``structure`` file when it names one)."""
    from ase.build import bulk
    from ase.io import read

    if case.get("structure"):
        return read(case["structure"]) * (repeat, repeat, repeat)
    return bulk(case["element"], case["lattice"], a=case["a"], cubic=True) * (repeat, repeat, repeat)


def md_rate(teacher: str, student_file: str | None, case: dict, repeat: int, steps: int, queue) -> None:
    """Atom-steps/s of Langevin MD (2 fs, 300 K) with the teacher (student_file None) or the student."""
    import numpy as np
    import torch
    from ase import units
    from ase.md.langevin import Langevin

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from atomflux.distill import Teacher

    atoms = cell(case, repeat)
    if student_file is None:
        atoms.calc = Teacher(teacher).md_calculator()
    else:
        from atomflux import AtomfluxCalculator

        atoms.calc = AtomfluxCalculator(student_file, uncertainty=False)
    atoms.rattle(0.02, seed=0)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.02 / units.fs, rng=np.random.default_rng(0))
    dyn.run(2)  # set-up (model loading, first neighbour list) not timed
    start = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - start
    queue.put({"atoms": len(atoms), "steps": steps, "atom_steps_per_s": len(atoms) * steps / seconds,
               "peak_rss_MiB": peak_rss_mib()})


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB; unlike ru_maxrss it is not inherited across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_process(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=md_rate, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def distil(teacher: str, case: dict, folder: Path) -> dict:
    import torch

    from atomflux.distill import DistillConfig, distill

    torch.set_num_threads(1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = distill(teacher, [cell(case, case["repeat"])], folder / teacher.replace(":", "_"),
                         DistillConfig(**case["config"]), progress=False)
    wall = time.perf_counter() - start
    rounds = [{"round": r["round"], "labels": r["n_labels"], "wall_s": r["wall_s"],
               "tested_student": r["tested_student"],
               "force_rmse_meV_per_A": {c: 1000 * m["force_rmse"] for c, m in r["conditions"].items()},
               "force_sigma_meV_per_A": {c: 1000 * m["force_sigma"] for c, m in r["conditions"].items()},
               "coverage_1sigma": {c: m["force_coverage_1sigma"] for c, m in r["conditions"].items()}}
              for r in result.rounds]
    return {"converged": result.converged, "wall_s": wall, "rounds": rounds, "student_file": str(result.student_file),
            "settings": case["config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-sevennet", action="store_true", help="EMT only")
    parser.add_argument("--output-folder", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--student", help="time this distilled SevenNet-0 student instead of distilling one")
    parser.add_argument("--structure", help="with --student: its conventional cell (ASE-readable file; "
                                            "default: diamond Si, a = 5.43 Å)")
    parser.add_argument("--name", help="with --student: suffix of the output files (bench_distill_student-NAME)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[2, 4],
                        help="with --student: MD cells, conventional cells per edge")
    args = parser.parse_args()
    if args.student:
        student_speed(args.student, args.repeats, args.structure, args.name)
        return
    teachers = ["emt"] + ([] if args.no_sevennet else ["sevennet:7net-0"])
    report = {"machine": platform.processor() or platform.machine(), "threads": 1, "teachers": {}}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        folder = Path(args.output_folder or tmp)
        for teacher in teachers:
            case = CASES[teacher]
            entry = distil(teacher, case, folder)
            speed = []
            for repeat in case["md_repeats"]:
                slow = teacher.startswith("sevennet")
                teacher_rate = in_process(teacher, None, case, repeat, 3 if slow else 50)
                student_rate = in_process(teacher, entry["student_file"], case, repeat, 50)
                speed.append({"atoms": teacher_rate["atoms"], "teacher": teacher_rate, "student": student_rate,
                              "speed_ratio": student_rate["atom_steps_per_s"] / teacher_rate["atom_steps_per_s"]})
            entry["md_speed"] = speed
            report["teachers"][teacher] = entry
            print(json.dumps({teacher: {k: v for k, v in entry.items() if k != "rounds"}}, indent=1), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_distill.json").write_text(json.dumps(report, indent=1))
    (OUT / "bench_distill.md").write_text(markdown(report))
    print(markdown(report))


def student_speed(student_file: str, repeats: list[int], structure: str | None = None, name: str | None = None) -> None:
    """SevenNet-0 vs a given student on cells of ``repeats`` conventional cells per edge (of ``structure``, a
    file, or diamond Si); results in ``bench_distill_student[-name].json`` / ``.md``."""
    teacher, case = "sevennet:7net-0", {**CASES["sevennet:7net-0"], "structure": structure}
    rows = []
    for repeat in repeats:
        teacher_rate = in_process(teacher, None, case, repeat, 3)
        student_rate = in_process(teacher, student_file, case, repeat, 50)
        rows.append({"atoms": teacher_rate["atoms"], "teacher": teacher_rate, "student": student_rate,
                     "speed_ratio": student_rate["atom_steps_per_s"] / teacher_rate["atom_steps_per_s"]})
        print(json.dumps(rows[-1]), flush=True)
    report = {"machine": platform.processor() or platform.machine(), "threads": 1, "student": student_file,
              "structure": structure or "diamond Si, a = 5.43 Å",
              "load_average": list(os.getloadavg()), "md_speed": rows}
    lines = ["# SevenNet-0 vs a distilled student: Langevin MD speed (2 fs, 300 K, 1 thread)", "",
             f"Student `{student_file}`, cells of `{report['structure']}`; load average at the end "
             f"{report['load_average'][0]:.1f}.", "",
             "| atoms | SevenNet-0 atom-steps/s | student atom-steps/s | ratio | peak RSS SevenNet-0 / student (MiB) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['atoms']} | {r['teacher']['atom_steps_per_s']:.1f} | {r['student']['atom_steps_per_s']:.0f} | "
              f"{r['speed_ratio']:.0f} | {r['teacher']['peak_rss_MiB']:.0f} / {r['student']['peak_rss_MiB']:.0f} |"
              for r in rows]
    OUT.mkdir(exist_ok=True)
    stem = "bench_distill_student" + (f"-{name}" if name else "")
    (OUT / f"{stem}.json").write_text(json.dumps(report, indent=1))
    (OUT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def markdown(report: dict) -> str:
    lines = ["# Distillation: loop cost and student vs teacher MD speed", "",
             f"Machine: {report['machine']}, 1 torch thread.", ""]
    for teacher, entry in report["teachers"].items():
        lines += [f"## Teacher `{teacher}`", "",
                  f"Converged: {entry['converged']}; loop wall time {entry['wall_s']:.0f} s; settings "
                  f"`{json.dumps(entry['settings'])}`.", "",
                  "| round | labels | wall (s) | student tested | force RMSE (meV/Å) | mean σ (meV/Å) | 1σ coverage |",
                  "|---|---|---|---|---|---|---|"]
        for r in entry["rounds"]:
            conds = list(r["force_rmse_meV_per_A"])
            rmse = ", ".join(f"{c} {r['force_rmse_meV_per_A'][c]:.1f}" for c in conds)
            sigma = ", ".join(f"{c} {r['force_sigma_meV_per_A'][c]:.1f}" for c in conds)
            cover = ", ".join(f"{c} {100 * r['coverage_1sigma'][c]:.0f} %" for c in conds)
            lines.append(f"| {r['round']} | {r['labels']} | {r['wall_s']:.1f} | {r['tested_student']} | {rmse} | "
                         f"{sigma} | {cover} |")
        lines += ["", "| atoms | teacher atom-steps/s | student atom-steps/s | ratio | teacher peak RSS (MiB) | "
                      "student peak RSS (MiB) |", "|---|---|---|---|---|---|"]
        for s in entry["md_speed"]:
            lines.append(f"| {s['atoms']} | {s['teacher']['atom_steps_per_s']:.0f} | "
                         f"{s['student']['atom_steps_per_s']:.0f} | {s['speed_ratio']:.1f} | "
                         f"{s['teacher']['peak_rss_MiB']:.0f} | {s['student']['peak_rss_MiB']:.0f} |")
        lines.append("")
    lines.append("Round 0's errors are the first student on its own held-out labels (its calibration set); round "
                 "k's are student k−1 on frames of its own MD that it never trained or was calibrated on.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
