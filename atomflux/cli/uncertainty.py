"""Uncertainty: ``atomflux llpr``, ``atomflux ensemble``, ``atomflux calibrate``."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from .arguments import add_threads_option
from .model_options import add_model_options


def _split_for_calibration(train_path: str, validation_path: str | None, seed: int):
    from ..training import read_frames
    from ..training.trainer import RUN_KEY, split_frames

    frames = read_frames(train_path)
    if validation_path:
        return frames, read_frames(validation_path)
    train_frames, validation = split_frames(frames, 0.2, seed, by_run=True)
    runs = {f.atoms.info[RUN_KEY] for f in frames if RUN_KEY in f.atoms.info}
    if runs:
        print(f"no --validation file: calibrating on {len(validation)} of {len(frames)} structures held out "
              f"(whole MD runs by info[{RUN_KEY!r}]: {len(runs)} runs)")
    else:
        print(f"no --validation file: calibrating on {len(validation)} of {len(frames)} structures held out")
        warnings.warn(f"{train_path} has no info[{RUN_KEY!r}] naming the MD run of each frame, so the held-out frames "
                      "are drawn one by one: snapshots of one run on both sides make the calibration optimistic; "
                      f"tag the frames with {RUN_KEY}=<run> or give --validation structures from other runs",
                      RuntimeWarning, stacklevel=2)
    return train_frames, validation


def _cmd_llpr(args: argparse.Namespace) -> None:
    from ..io import load_model, save_model
    from ..records import check_output_path
    from ..uncertainty import add_llpr

    check_output_path(args.output, keep_existing=True)
    base = load_model(args.model, trust=args.trust_model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    model = add_llpr(base, train_frames, validation, n_samples=args.samples, quantities=args.targets,
                     last_layer=args.last_layer, progress=True)
    save_model(model, args.output)
    print(f"LLPR from {len(train_frames)} structures ({', '.join(args.targets)}), "
          f"calibration {model.metadata['uncertainty']['calibration']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_ensemble(args: argparse.Namespace) -> None:
    from ..io import load_model, save_model
    from ..records import check_output_path
    from ..uncertainty import fit_shallow_ensemble

    check_output_path(args.output, keep_existing=True)
    base = load_model(args.model, trust=args.trust_model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    model = fit_shallow_ensemble(base, train_frames, validation, n_members=args.members, loss=args.loss,
                                 quantities=args.targets, seed=args.seed, progress=True)
    save_model(model, args.output)
    print(f"shallow ensemble: {model.metadata['uncertainty']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from ..io import load_model

    if args.data is None and not args.stress_test:
        raise ValueError("nothing to calibrate on: give held-out structures (extxyz) and/or --stress-test")
    model = load_model(args.model, trust=args.trust_model)
    records = []
    if args.data is not None:
        from ..training import read_frames
        from ..uncertainty.report import calibration_report

        frames = read_frames(args.data)
        reports = calibration_report(model, frames, args.plots, title=f"{Path(str(args.model)).name} on {Path(args.data).name}")
        print(f"calibration of {args.model} on {len(frames)} structures from {args.data}:")
        for report in reports:
            print(report.line())
        print(f"plots: {args.plots}-reliability.png, {args.plots}-*-error-vs-sigma.png, {args.plots}-*-zscores.png")
        records += [{"kind": "calibration", **asdict(r)} for r in reports]
    if args.stress_test:
        from ..reference_data import stress_test_dataset
        from ..uncertainty.report import stress_test_report

        structures = stress_test_dataset(model.species, per_category=args.per_category, seed=args.stress_seed)
        rows = stress_test_report(model, structures, plot=f"{args.plots}-stress-test.png")
        total = sum(len(v) for v in structures.values())
        print(f"stress test of {args.model}: {total} EMT structures off a bulk training domain "
              f"({args.per_category} per category, seed {args.stress_seed}); |z| = |error|/σ, "
              f"honest: ≥ 90 % of |z| < 3")
        for row in rows:
            print(row.line())
        failing = sorted({f"{r.category} ({r.quantity})" for r in rows if not r.honest and r.quantity != "stress"})
        print("every category honest for energies and forces" if not failing
              else f"overconfident: {', '.join(failing)}")
        print(f"plot: {args.plots}-stress-test.png")
        records += [{"kind": "stress_test", **asdict(r)} for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))


def _targets(p: argparse.ArgumentParser) -> None:
    quantities = ["energy", "forces", "stress"]  # atomflux.uncertainty.lastlayer.QUANTITIES (no torch import for --help)
    p.add_argument("--targets", nargs="+", choices=quantities, default=quantities,
                   help="reference quantities the uncertainty is fitted and calibrated on (where the data have them)")


def _uncertainty_fit_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command taking a trained model, its training data and a calibration set."""
    p = sub.add_parser(name, help=help_text)
    add_model_options(p)
    p.add_argument("data", help="training structures (extxyz)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--validation", help="structures to calibrate on (default: hold out 20 %% of data, whole MD runs where the "
                        "frames name theirs in info['md_run'])")
    p.add_argument("--seed", type=int, default=0, help="random seed (validation split)")
    add_threads_option(p)
    _targets(p)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = _uncertainty_fit_parser(sub, "llpr", "add calibrated LLPR uncertainty to a trained model")
    p.add_argument("--samples", type=int, default=16, help="posterior samples for force/stress uncertainty")
    p.add_argument("--last-layer", help="name of the model's last linear layer: its input are the features "
                                        "(forward hook), for models that do not return 'features'")
    p.set_defaults(func=_cmd_llpr)

    p = _uncertainty_fit_parser(sub, "ensemble", "make a trained model a calibrated shallow ensemble")
    p.add_argument("--members", type=int, default=8, help="ensemble members M")
    p.add_argument("--loss", choices=["nll", "crps"], default="nll", help="loss fitting the members' spread")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("calibrate", help="calibration report of a model's uncertainty: held-out data and/or "
                                         "an off-domain stress test")
    add_model_options(p)
    p.add_argument("data", nargs="?", help="held-out structures with reference energies/forces/stress (extxyz)")
    p.add_argument("--stress-test", action="store_true",
                   help="also generate EMT structures off a bulk domain (isolated atoms, dimers, clusters, surfaces, "
                        "vacancies, interstitials, strong strain, melts) for the model's elements and report "
                        "z-scores per category (needs elements ASE's EMT describes)")
    p.add_argument("--per-category", type=int, default=8, help="stress-test structures per category")
    p.add_argument("--stress-seed", type=int, default=2024, help="random seed of the stress-test structures")
    p.add_argument("--plots", default="calibration", help="prefix of the PNG plots")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=_cmd_calibrate)
