"""Uncertainty: ``atomflux llpr``, ``atomflux ensemble``, ``atomflux calibrate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .model_options import add_model_options


def _split_for_calibration(train_path: str, validation_path: str | None, seed: int):
    from ..training import read_frames
    from ..training.trainer import split_frames

    frames = read_frames(train_path)
    if validation_path:
        return frames, read_frames(validation_path)
    train_frames, validation = split_frames(frames, 0.2, seed)
    print(f"no --validation file: calibrating on {len(validation)} of {len(frames)} structures held out")
    return train_frames, validation


def _cmd_llpr(args: argparse.Namespace) -> None:
    from ..io import load_model, save_model
    from ..models.base import floating_dtype
    from ..records import check_output_path
    from ..systems import Batch
    from ..uncertainty import add_llpr

    check_output_path(args.output)
    base = load_model(args.model, trust=args.trust_model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    dtype = floating_dtype(base)
    batches = [Batch.from_atoms(f.atoms, base.cutoff, dtype=dtype) for f in train_frames]
    val_batches = [Batch.from_atoms(f.atoms, base.cutoff, dtype=dtype) for f in validation]
    model = add_llpr(base, batches, val_batches, [f.energy for f in validation], n_samples=args.samples,
                     last_layer=args.last_layer)
    save_model(model, args.output)
    print(f"LLPR from {len(batches)} structures, calibration {model.metadata['uncertainty']['calibration']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_ensemble(args: argparse.Namespace) -> None:
    from ..io import load_model, save_model
    from ..records import check_output_path
    from ..systems import Batch
    from ..uncertainty import fit_shallow_ensemble

    check_output_path(args.output)
    base = load_model(args.model, trust=args.trust_model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    model = fit_shallow_ensemble(
        base, [Batch.from_atoms(f.atoms, base.cutoff) for f in train_frames], [f.energy for f in train_frames],
        [Batch.from_atoms(f.atoms, base.cutoff) for f in validation], [f.energy for f in validation],
        n_members=args.members, loss=args.loss, seed=args.seed)
    save_model(model, args.output)
    print(f"shallow ensemble: {model.metadata['uncertainty']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from ..io import load_model
    from ..training import read_frames
    from ..uncertainty.report import calibration_report

    model = load_model(args.model, trust=args.trust_model)
    frames = read_frames(args.data)
    reports = calibration_report(model, frames, args.plots)
    print(f"calibration of {args.model} on {len(frames)} structures from {args.data}:")
    for report in reports:
        print(report.line())
    print(f"plots: {args.plots}-*-error-vs-sigma.png, {args.plots}-*-zscores.png")
    if args.json:
        from dataclasses import asdict

        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2))


def _uncertainty_fit_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command taking a trained model, its training data and a calibration set."""
    p = sub.add_parser(name, help=help_text)
    add_model_options(p)
    p.add_argument("data", help="training structures (extxyz)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--validation", help="structures to calibrate on (default: hold out 20 %% of data)")
    p.add_argument("--seed", type=int, default=0, help="random seed (validation split)")
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

    p = sub.add_parser("calibrate", help="calibration report of a model's uncertainty on held-out data")
    add_model_options(p)
    p.add_argument("data", help="held-out structures with reference energies/forces (extxyz)")
    p.add_argument("--plots", default="calibration", help="prefix of the PNG plots")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=_cmd_calibrate)
