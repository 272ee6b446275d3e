"""Training and evaluating models: ``atomflux train``, ``atomflux eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> None:
    from ..io import save_model
    from ..training import TrainConfig, read_frames, train
    from ..training.trainer import report

    frames = read_frames(args.data)
    model = {"cutoff": args.cutoff, "hidden": args.hidden, "n_channels": args.channels,
             "max_angular": args.max_angular}
    cfg = TrainConfig(energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                      stress_weight=args.stress_weight, learning_rate=args.lr, epochs=args.epochs,
                      batch_size=args.batch_size, patience=args.patience,
                      validation_fraction=args.validation_fraction, seed=args.seed, model=model)
    result = train(frames, cfg)
    print(report(result))
    save_model(result.potential, args.output)
    print(f"model written to {args.output}")


def _cmd_eval(args: argparse.Namespace) -> None:
    from ..io import load_model
    from ..plotting import parity_plot
    from ..training import predict_frames, read_frames
    from ..training.metrics import format_metrics

    potential = load_model(args.model)
    frames = read_frames(args.data)
    pred = predict_frames(potential, frames)
    metrics = pred.metrics()
    print(f"{len(frames)} structures from {args.data}:")
    print(format_metrics(metrics))
    parity_plot(pred.reference, pred.predicted, args.plot, title=f"{args.model} on {Path(args.data).name}")
    print(f"parity plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a potential on an extxyz file")
    p.add_argument("data", help="extxyz (or any ASE-readable) file with energies/forces/stress")
    p.add_argument("-o", "--output", default="model.pt", help="model file to write")
    p.add_argument("--cutoff", type=float, default=4.5, help="Å")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="MLP hidden-layer widths")
    p.add_argument("--channels", type=int, default=8, help="species-mixed radial channels")
    p.add_argument("--max-angular", type=int, default=3, help="highest angular degree l")
    p.add_argument("--epochs", type=int, default=300, help="maximum training epochs")
    p.add_argument("--batch-size", type=int, default=8, help="structures per optimiser step")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--patience", type=int, default=40, help="epochs without validation improvement before stopping")
    p.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of energies (per atom)")
    p.add_argument("--forces-weight", type=float, default=10.0, help="loss weight of forces")
    p.add_argument("--stress-weight", type=float, default=100.0, help="loss weight of stress")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="fraction held out for validation and early stopping")
    p.add_argument("--seed", type=int, default=0, help="random seed (split, initialisation)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="errors of a model on an extxyz file, with a parity plot")
    p.add_argument("model", help="model file or shipped model name")
    p.add_argument("data", help="reference structures (extxyz)")
    p.add_argument("--plot", default="parity.png", help="parity plot (PNG)")
    p.add_argument("--json", help="also write the metrics (eV units) to this JSON file")
    p.set_defaults(func=_cmd_eval)
