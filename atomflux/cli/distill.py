"""Distilling a teacher into a fast student: ``atomflux distill``."""

from __future__ import annotations

import argparse

from .arguments import DefaultsRawDescriptionFormatter, add_threads_option, fraction, non_negative, positive

DESCRIPTION = """\
Distil a slow teacher (a foundation model such as sevennet:7net-0, any atomflux model, or ASE's EMT) into
a fast atomflux student by active learning, for MD at the given temperatures (and strains):

  round 0   rattled frames of the structures at every condition, labelled by the teacher; first student
  round k   Langevin MD with student k-1 at every condition (stopped when its force σ exceeds
            --stop-uncertainty); per condition the --uncertain frames of largest force σ and --random
            others are labelled by the teacher; student k-1 is tested on them (frames it never saw);
            below --max-force-rmse and --max-force-sigma at every condition: done; else student k is
            trained (warm start) on all training labels and its shallow ensemble calibrated on all
            held-out labels

Writes the run folder -o: run.json (settings, teacher, versions), round-NNN/ (labels.extxyz, student.pt,
metrics.json), student.pt (the final student; teacher, validated conditions and guard thresholds in its
metadata), summary.png. The same command resumes an interrupted run; more --rounds extend an unconverged
one; other settings into the same folder are refused (--restart moves it aside)."""


def _cmd_distill(args: argparse.Namespace) -> None:
    from ..distill import DistillConfig, Teacher, distill
    from ..structure_files import read_structure

    config = DistillConfig(temperatures=args.temperatures, strains=args.strains, max_rounds=args.rounds,
                           max_force_rmse=args.max_force_rmse, max_force_sigma=args.max_force_sigma,
                           initial_frames=args.initial_frames, rattle=args.rattle,
                           initial_md_steps=args.initial_md_steps, md_steps=args.md_steps,
                           sample_interval=args.sample_interval, timestep=args.timestep, friction=args.friction,
                           stop_uncertainty=args.stop_uncertainty, n_uncertain=args.uncertain, n_random=args.random,
                           holdout_fraction=args.holdout_fraction, n_members=args.members, cutoff=args.cutoff,
                           n_channels=args.channels, max_angular=args.max_angular, hidden=args.hidden,
                           epochs=args.epochs, learning_rate=args.lr, patience=args.patience, seed=args.seed)
    config.check()
    structures = [read_structure(path) for path in args.structures]
    teacher = Teacher(args.teacher, trust=args.trust_model, batch_atoms=args.teacher_batch_atoms)
    args.on_interrupt = lambda: (f"the finished rounds are in {args.output}; the same command resumes from the "
                                 "first unfinished round")
    result = distill(teacher, structures, args.output, config, restart=args.restart)
    if not result.converged:
        print(f"not converged after {len(result.rounds) - 1} rounds; {result.student_file} is the last student "
              f"(not validated); rerun with more --rounds to go on")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a slow teacher model into a fast student by active learning",
                       description=DESCRIPTION, formatter_class=DefaultsRawDescriptionFormatter)
    p.add_argument("teacher", help="the teacher: model spec (sevennet:7net-0), model file, shipped model name, or "
                                   "'emt' (ASE's EMT)")
    p.add_argument("structures", nargs="+", metavar="STRUCTURE",
                   help="starting structures (periodic cells; any ASE-readable file, one structure each)")
    p.add_argument("-o", "--output", default="distill-run", help="run folder")
    p.add_argument("--temperatures", type=positive(float), nargs="+", default=[300.0], help="MD temperatures, K")
    p.add_argument("--strains", type=float, nargs="+", default=[0.0],
                   help="isotropic linear strains of the cells (0.01 = edges 1 %% longer), each at every temperature")
    p.add_argument("--rounds", type=positive(int), default=5, help="most active-learning rounds after round 0")
    p.add_argument("--max-force-rmse", type=positive(float), default=0.05,
                   help="bound on the student's force-component RMSE vs the teacher at every condition, eV/Å")
    p.add_argument("--max-force-sigma", type=positive(float), default=0.05,
                   help="bound on the student's mean calibrated force-component σ at every condition, eV/Å")
    p.add_argument("--initial-frames", type=positive(int), default=8,
                   help="round 0: rattled frames per structure and condition")
    p.add_argument("--rattle", type=non_negative(float), default=0.05,
                   help="round 0: RMS displacement per component at 300 K, Å (scaled by √(T/300 K))")
    p.add_argument("--initial-md-steps", type=non_negative(int), default=0,
                   help="round 0: also Langevin steps with the teacher per structure and condition (0: none)")
    p.add_argument("--md-steps", type=positive(int), default=200, help="student MD steps per structure and condition")
    p.add_argument("--sample-interval", type=positive(int), default=10, help="MD steps between candidate frames")
    p.add_argument("--timestep", type=positive(float), default=2.0, help="fs")
    p.add_argument("--friction", type=positive(float), default=0.02, help="Langevin friction, 1/fs")
    p.add_argument("--stop-uncertainty", type=positive(float), default=0.5,
                   help="stop a student MD run when the largest per-atom force σ exceeds this, eV/Å")
    p.add_argument("--uncertain", type=positive(int), default=4,
                   help="frames of largest force σ labelled per condition and round")
    p.add_argument("--random", type=non_negative(int), default=2,
                   help="further frames drawn at random per condition and round")
    p.add_argument("--holdout-fraction", type=fraction, default=0.25,
                   help="fraction of each round's labels held out to calibrate the uncertainty")
    p.add_argument("--members", type=positive(int), default=8, help="members of the student's shallow ensemble")
    p.add_argument("--cutoff", type=positive(float), default=4.5, help="student cutoff, Å")
    p.add_argument("--channels", type=positive(int), default=8, help="student: species-mixed radial channels")
    p.add_argument("--max-angular", type=non_negative(int), default=3, help="student: highest angular degree l")
    p.add_argument("--hidden", type=positive(int), nargs="+", default=[32, 32], help="student: MLP widths")
    p.add_argument("--epochs", type=positive(int), default=150, help="most training epochs per round")
    p.add_argument("--lr", type=positive(float), default=3e-3, help="Adam learning rate")
    p.add_argument("--patience", type=positive(int), default=30,
                   help="epochs without validation improvement before a round's training stops")
    p.add_argument("--seed", type=int, default=0, help="random seed (MD, rattling, selection, splits, training)")
    add_threads_option(p)
    p.add_argument("--teacher-batch-atoms", type=positive(int), default=256,
                   help="most atoms per teacher evaluation (a model teacher labels several structures at once; its "
                        "memory grows with the atoms: SevenNet-0 needs ~5.6 GB for 1000)")
    p.add_argument("--trust-model", action="store_true",
                   help="allow a third-party pickle checkpoint outside its package as teacher")
    p.add_argument("--restart", action="store_true",
                   help="-o holds another run: move it aside (never deleted) and start over")
    p.set_defaults(func=_cmd_distill)
