"""The active-learning loop of :func:`distill`: rounds of student MD, selection, teacher labels, retraining.

Run folder (a record, :mod:`atomflux.records`)::

    RUN/run.json                 parameters, teacher spec and fingerprint, versions; compared on resume
    RUN/round-000/labels.extxyz  teacher labels of the round (info: condition, split, kind, student σ)
    RUN/round-000/student.pt     the student trained in the round (calibrated shallow ensemble)
    RUN/round-000/metrics.json   the round's numbers; written last: a round without it is done again
    RUN/round-00k/extrapolation-<condition>.extxyz   frames where the guard stopped the student's MD
    RUN/student.pt               the final student, its teacher and validated conditions in its metadata
    RUN/summary.png              force RMSE and mean σ vs round, per condition

Round 0 labels rattled (and optionally teacher-MD) frames of the starting
structures and trains the first student.  Round k ≥ 1 runs MD with student
k−1 at every condition, labels the selected frames, and measures student
k−1 against the teacher on them — frames it has neither trained nor been
calibrated on, drawn from its own MD at the conditions it is meant for.  When
its force RMSE and mean force σ are below the bounds at every condition, it
is the final student; otherwise student k is trained (warm start) on every
training label so far and calibrated on every held-out label so far.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from ..records import finish_run, fingerprint, open_run, read_run, update_info, write_atomically
from ..training.dataset import frame_from_atoms
from .config import Condition, DistillConfig
from .sampling import md_frames, rattled_frames, student_md
from .selection import select_frames
from .student import errors_at, train_student
from .teacher import Teacher

COMMAND = "distill"
LABELS, STUDENT, METRICS = "labels.extxyz", "student.pt", "metrics.json"
#: decimals of the positions in an extxyz file (Å): candidates are rounded to them before the teacher labels
#: them, so that the labels belong to the stored positions and a resumed run relabels exactly the same frames
STORED_DECIMALS = 8


@dataclass
class DistillResult:
    """What :func:`distill` produced.

    Attributes
    ----------
    student : Potential
        The final student (calibrated shallow ensemble), as loaded from ``student_file``.
    student_file : Path
        Its model file (teacher spec, validated conditions and guard thresholds in its metadata).
    converged : bool
        Its force RMSE and σ were below the bounds at every condition.
    rounds : list of dict
        Every round's metrics (as in ``round-*/metrics.json``).
    folder : Path
        The run folder.
    """

    student: Any
    student_file: Path
    converged: bool
    rounds: list[dict[str, Any]]
    folder: Path


def versions() -> dict[str, str]:
    """Versions of the packages whose numbers enter a distillation (compared on resume)."""
    import ase
    import torch

    from .. import __version__

    return {"atomflux": __version__, "torch": torch.__version__, "ase": ase.__version__, "numpy": np.__version__}


def distill(teacher: Teacher | Any, structures: Sequence[Atoms], output: str | Path,
            config: DistillConfig | None = None, restart: bool = False, progress: bool = True,
            log: Callable[[str], None] | None = print) -> DistillResult:
    """Distil ``teacher`` into a fast atomflux student by active learning at the conditions of ``config``.

    Parameters
    ----------
    teacher
        A :class:`Teacher`, or what it accepts: a model file, shipped name or spec
        (``"sevennet:7net-0"``), ``"emt"``, a Potential, an ASE calculator.
    structures
        Starting structures (periodic cells); every one is sampled at every condition.
    output
        The run folder.  Running again into it resumes the same run (same
        teacher, structures, settings, package versions), extends a finished
        unconverged run when ``config.max_rounds`` is larger, and refuses a different run.
    config
        Conditions, bounds, sampling, student and training settings.
    restart
        Move an existing run in ``output`` aside and start over.
    progress
        Progress bars while training.
    log
        Receives one line per round (``None``: quiet).

    Returns
    -------
    DistillResult
    """
    from ..io import load_model

    config = config or DistillConfig()
    config.check()
    teacher = teacher if isinstance(teacher, Teacher) else Teacher(teacher)
    structures = _checked_structures(structures)
    first = len(structures) * (config.initial_frames + config.initial_md_steps // config.sample_interval)
    if len(config.conditions()) * _held_out(first, config.holdout_fraction) < 2:
        raise ValueError(f"round 0 would hold out fewer than 2 of its {first} labels per condition, and the "
                         "uncertainty needs at least 2 held-out frames to be calibrated; raise the initial frames "
                         "(--initial-frames) or the holdout fraction")
    out = Path(output)
    parameters = {**config.parameters(), "teacher": teacher.spec, "versions": versions(),
                  "structures": [fingerprint(a) for a in structures],
                  "formulas": [a.get_chemical_formula() for a in structures]}
    resuming = open_run(out, COMMAND, parameters, model=teacher.record(), info={"max_rounds": config.max_rounds},
                        restart=restart)
    say = log or (lambda line: None)
    rounds = _completed_rounds(out)
    if resuming:
        say(f"resuming {out}: {len(rounds)} round(s) done")
    update_info(out, max_rounds=config.max_rounds)
    conditions = config.conditions()
    if not rounds:
        rounds.append(_round_zero(teacher, structures, conditions, config, out / _round_name(0), progress))
        say(_round_line(rounds[-1]))
    while not rounds[-1].get("converged") and len(rounds) <= config.max_rounds:
        k = len(rounds)
        previous = load_model(out / _round_name(k - 1) / STUDENT)
        rounds.append(_round(k, teacher, previous, structures, conditions, config, out, progress))
        say(_round_line(rounds[-1]))
    return _finish(out, teacher, rounds, conditions, config, say)


def _checked_structures(structures: Sequence[Atoms]) -> list[Atoms]:
    structures = list(structures)
    if not structures:
        raise ValueError("no starting structures given")
    for k, atoms in enumerate(structures):
        if not atoms.pbc.all():
            raise ValueError(f"starting structure {k} ({atoms.get_chemical_formula()}) is not periodic in 3-D: "
                             "distillation samples bulk MD; give a periodic cell")
    return [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in structures]


def _round_name(k: int) -> str:
    return f"round-{k:03d}"


def _completed_rounds(out: Path) -> list[dict[str, Any]]:
    """Metrics of the rounds already done, in order (a round without metrics.json is not done)."""
    rounds = []
    while (out / _round_name(len(rounds)) / METRICS).is_file():
        rounds.append(json.loads((out / _round_name(len(rounds)) / METRICS).read_text()))
    return rounds


def _labelled_frames(out: Path, upto: int, split: str):
    """Frames of rounds 0..upto with the given split, read back from the run folder (what every resume sees)."""
    import ase.io

    frames = []
    for k in range(upto + 1):
        for atoms in ase.io.read(out / _round_name(k) / LABELS, index=":"):
            if atoms.info.get("split") == split:
                frames.append(frame_from_atoms(atoms))
    return frames


def _held_out(count: int, fraction: float) -> int:
    """How many of a condition's ``count`` new labels are held out: at least one, never all."""
    return min(max(1, int(round(fraction * count))), count - 1) if count > 1 else 0


def _as_stored(frames: list[Atoms]) -> list[Atoms]:
    """``frames`` with their positions rounded as ``labels.extxyz`` stores them (in place, bit for bit: the
    numbers read back from the printed decimals)."""
    for frame in frames:
        frame.positions = np.array([[float(f"{x:.{STORED_DECIMALS}f}") for x in row] for row in frame.positions])
    return frames


def _write_labels(folder: Path, labelled: list[Atoms], rng: np.random.Generator, fraction: float) -> None:
    """Mark a held-out part of each condition's labels and write them all to ``labels.extxyz``."""
    import ase.io

    for name in dict.fromkeys(a.info["condition"] for a in labelled):
        members = [a for a in labelled if a.info["condition"] == name]
        held = set(rng.permutation(len(members))[:_held_out(len(members), fraction)].tolist())
        for j, atoms in enumerate(members):
            atoms.info["split"] = "holdout" if j in held else "train"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / LABELS, lambda tmp: ase.io.write(tmp, labelled, format="extxyz"))


def _train_and_save(k: int, out: Path, config: DistillConfig, previous, progress: bool) -> dict[str, Any]:
    from ..io import save_model

    train_frames = _labelled_frames(out, k, "train")
    holdout = _labelled_frames(out, k, "holdout")
    student, metrics = train_student(train_frames, holdout, config, k, previous, progress)
    save_model(student, out / _round_name(k) / STUDENT)
    return {"n_train": len(train_frames), "n_holdout": len(holdout), "metrics": metrics}


def _round_zero(teacher: Teacher, structures: list[Atoms], conditions: list[Condition], config: DistillConfig,
                folder: Path, progress: bool) -> dict[str, Any]:
    from ..io import load_model

    start = time.perf_counter()
    candidates = []
    for si, atoms in enumerate(structures):
        for ci, condition in enumerate(conditions):
            rng = np.random.default_rng([config.seed, 0, si, ci])
            frames = [(f, "rattled") for f in rattled_frames(atoms, condition, config.initial_frames, config.rattle,
                                                            rng)]
            if config.initial_md_steps:
                frames += [(f, "teacher_md") for f in md_frames(atoms, teacher.md_calculator(), condition,
                                                                config.initial_md_steps, config.sample_interval,
                                                                config.timestep, config.friction, rng)]
            for frame, kind in frames:
                frame.info.update(condition=condition.name, structure=si, kind=kind, round=0)
                candidates.append(frame)
    labelled = teacher.label(_as_stored(candidates))
    _write_labels(folder, labelled, np.random.default_rng([config.seed, 0, 1]), config.holdout_fraction)
    training = _train_and_save(0, folder.parent, config, None, progress)
    student = load_model(folder / STUDENT)
    per_condition = {c.name: errors_at(student, _frames_of(folder, c.name, "holdout")) for c in conditions}
    metrics = {"round": 0, "tested_student": 0, "tested_on": "round 0's held-out labels (its calibration set)",
               "conditions": per_condition, "converged": False, "n_labels": len(labelled),
               "n_labels_total": len(labelled), "training": training,
               "wall_s": time.perf_counter() - start}
    _write_metrics(folder, metrics)
    return metrics


def _frames_of(folder: Path, condition: str, split: str | None = None):
    """A round's labelled frames of one condition (and split, None: all), read back from its labels file."""
    import ase.io

    return [frame_from_atoms(a) for a in ase.io.read(folder / LABELS, index=":")
            if a.info["condition"] == condition and split in (None, a.info.get("split"))]


def _round(k: int, teacher: Teacher, previous, structures: list[Atoms], conditions: list[Condition],
           config: DistillConfig, out: Path, progress: bool) -> dict[str, Any]:
    """Round k: MD with student k−1, selection, labels, student k−1 tested, student k trained unless converged."""
    from ..calculators import AtomfluxCalculator
    from ..progress import progress as progress_bar

    start = time.perf_counter()
    folder = out / _round_name(k)
    folder.mkdir(parents=True, exist_ok=True)
    selected: list[Atoms] = []
    md: dict[str, dict[str, Any]] = {}
    runs = len(structures) * len(conditions)
    with progress_bar(runs, f"round {k}: student MD", unit="run", enabled=progress) as bar:
        for ci, condition in enumerate(conditions):
            frames, force_sigma, energy_sigma, stops = [], [], [], []
            for si, atoms in enumerate(structures):
                calc = AtomfluxCalculator(previous, uncertainty="full")
                found = student_md(atoms, calc, condition, config.md_steps, config.sample_interval, config.timestep,
                                   config.friction, config.stop_uncertainty,
                                   np.random.default_rng([config.seed, k, si, ci]),
                                   folder / f"extrapolation-{condition.name}.extxyz")
                for frame in found.frames:
                    frame.info.update(condition=condition.name, structure=si, round=k)
                frames += found.frames
                force_sigma += found.force_sigma
                energy_sigma += found.energy_sigma
                stops.append(found.stopped_at)
                bar.update(1)
            uncertain, random = select_frames(force_sigma, config.n_uncertain, config.n_random,
                                              np.random.default_rng([config.seed, k, ci, 1]))
            for kind, picks in (("uncertain", uncertain), ("random", random)):
                for i in picks:
                    frames[i].info.update(kind=kind, student_force_sigma=force_sigma[i],
                                          student_energy_sigma=energy_sigma[i])
                    selected.append(frames[i])
            md[condition.name] = {"n_candidates": len(frames), "stopped_at_step": stops,
                                  "largest_force_sigma": max(force_sigma), "largest_energy_sigma": max(energy_sigma)}
    labelled = teacher.label(_as_stored(selected))
    _write_labels(folder, labelled, np.random.default_rng([config.seed, k, 1]), config.holdout_fraction)
    per_condition = {c.name: {**errors_at(previous, _frames_of(folder, c.name)), **md[c.name]} for c in conditions}
    converged = all(m["force_rmse"] <= config.max_force_rmse and m["force_sigma"] <= config.max_force_sigma
                    for m in per_condition.values())
    total = sum(r["n_labels"] for r in _completed_rounds(out)) + len(labelled)
    metrics = {"round": k, "tested_student": k - 1,
               "tested_on": f"round {k}'s labels: frames of student {k - 1}'s own MD, never trained or calibrated on",
               "conditions": per_condition, "converged": converged, "n_labels": len(labelled),
               "n_labels_total": total,
               "training": None if converged else _train_and_save(k, out, config, previous, progress),
               "wall_s": time.perf_counter() - start}
    _write_metrics(folder, metrics)
    return metrics


def _write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    write_atomically(folder / METRICS, lambda tmp: tmp.write_text(json.dumps(metrics, indent=1)))


def _round_line(metrics: dict[str, Any]) -> str:
    k = metrics["round"]
    parts = [f"{name} force RMSE {1000 * m['force_rmse']:.1f} meV/Å, σ {1000 * m['force_sigma']:.1f} meV/Å, "
             f"1σ coverage {100 * m['force_coverage_1sigma']:.0f} %" for name, m in metrics["conditions"].items()]
    verdict = "converged" if metrics["converged"] else ("first student trained" if k == 0 else
                                                        f"student {k} trained")
    return (f"round {k}: {metrics['n_labels']} labels ({metrics['n_labels_total']} in all); student "
            f"{metrics['tested_student']}: " + "; ".join(parts) + f"; {verdict} ({metrics['wall_s']:.0f} s)")


def _finish(out: Path, teacher: Teacher, rounds: list[dict[str, Any]], conditions: list[Condition],
            config: DistillConfig, say: Callable[[str], None]) -> DistillResult:
    import warnings

    from ..io import load_model, save_model
    from .plots import summary_plot

    last = rounds[-1]
    converged = bool(last["converged"])
    index = last["tested_student"] if converged else last["round"]
    student = load_model(out / _round_name(index) / STUDENT)
    validated = last if converged else None
    guard = None
    if validated is not None:  # the largest uncertainty the validated student showed at the validated conditions
        guard = {"forces_eV_per_A": max(m["largest_force_sigma"] for m in validated["conditions"].values()),
                 "energy_eV_per_atom": max(m["largest_energy_sigma"] for m in validated["conditions"].values())}
    student.metadata["distillation"] = {
        "teacher": teacher.spec, "teacher_fingerprint": teacher.record()["fingerprint"],
        "conditions": [{"temperature_K": c.temperature, "strain": c.strain, "name": c.name} for c in conditions],
        "bounds": {"force_rmse_eV_per_A": config.max_force_rmse, "force_sigma_eV_per_A": config.max_force_sigma},
        "converged": converged, "student_round": index,
        "validated": None if validated is None else validated["conditions"],
        "guard_thresholds": guard, "run_folder": str(out)}
    final = out / STUDENT
    save_model(student, final)
    plot = summary_plot(rounds, out / "summary.png", title=f"{teacher.spec} → student")
    summary = {"converged": converged, "student_round": index, "student_file": str(final), "plot": str(plot),
               "rounds": len(rounds) - 1, "labels": sum(r["n_labels"] for r in rounds),
               "wall_s": sum(r["wall_s"] for r in rounds)}
    finish_run(out, summary)
    if converged:
        say(f"student {index} reproduces {teacher.spec} within the bounds at every condition "
            f"(force RMSE ≤ {1000 * config.max_force_rmse:g} meV/Å, σ ≤ {1000 * config.max_force_sigma:g} meV/Å): "
            f"{final}; summary plot {plot}")
    else:
        warnings.warn(f"not converged after {len(rounds) - 1} rounds: student {index} ({final}) has not been "
                      f"validated at the conditions; run again with more rounds (the run resumes) or looser bounds",
                      RuntimeWarning, stacklevel=3)
    return DistillResult(load_model(final), final, converged, rounds, out)


def read_rounds(folder: str | Path) -> list[dict[str, Any]]:
    """Metrics of the completed rounds of a distillation run folder."""
    read_run(folder)
    return _completed_rounds(Path(folder))


def round_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """One round's metrics (an item of :func:`read_rounds`) in the units of a report.

    Returns
    -------
    dict
        Round index, labels (this round and in total), which student was tested, wall time (s), whether
        it converged, and per condition: force RMSE and mean force σ (meV/Å), 1σ force coverage
        (fraction) and, where the teacher gives energies, energy RMSE (meV/atom).
    """
    conditions = metrics["conditions"]
    return {"round": metrics["round"], "labels": metrics["n_labels"], "labels_total": metrics["n_labels_total"],
            "tested_student": metrics["tested_student"], "wall_s": metrics["wall_s"],
            "converged": metrics["converged"],
            "force_rmse_meV_per_A": {c: 1000 * m["force_rmse"] for c, m in conditions.items()},
            "force_sigma_meV_per_A": {c: 1000 * m["force_sigma"] for c, m in conditions.items()},
            "coverage_1sigma": {c: m["force_coverage_1sigma"] for c, m in conditions.items()},
            "energy_rmse_meV_per_atom": {c: 1000 * m["energy_rmse"] for c, m in conditions.items()
                                         if "energy_rmse" in m}}
