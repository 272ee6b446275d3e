"""Training and evaluating models: ``atomflux train``, ``atomflux eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import add_threads_option, fraction, non_negative, positive


def _cmd_train(args: argparse.Namespace) -> None:
    from ..io import save_model
    from ..records import RunMismatch, finish_run, fingerprint, move_aside, open_run, read_run, update_info
    from ..training import TrainConfig, read_frames, train
    from ..training.dataset import fingerprint as data_fingerprint
    from ..training.trainer import report
    from ..uncertainty.novelty import attach_novelty, fit_novelty

    output = Path(args.output)
    if output.is_dir():
        raise ValueError(f"-o {output} is a folder; give a model file name, e.g. -o {output / 'model.pt'}")
    model = {"cutoff": args.cutoff, "hidden": args.hidden, "n_channels": args.channels,
             "max_angular": args.max_angular}
    if args.pseudo_elements is not None:  # absent otherwise: runs recorded before the option resume as before
        if args.architecture != "PowerSpectrumPotential":
            raise ValueError(f"--pseudo-elements needs --architecture PowerSpectrumPotential, not {args.architecture}")
        model["n_pseudo"] = args.pseudo_elements
    if args.architecture == "LongRangePotential":
        model.update(exponents=args.exponents, accuracy=args.long_range_accuracy)
    cfg = TrainConfig(energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                      stress_weight=args.stress_weight, learning_rate=args.lr, epochs=args.epochs,
                      batch_size=args.batch_size, patience=args.patience,
                      validation_fraction=args.validation_fraction, seed=args.seed, model=model,
                      architecture=args.architecture, augment=args.augment)
    cfg.check()
    frames = read_frames(args.data)
    folder = output.with_name(f"{output.stem}-training")
    settings = cfg.affects_result()
    epochs = settings.pop("epochs")  # more epochs extend a run exactly: not a different run
    parameters = {"data": data_fingerprint(frames), "n_frames": len(frames), **settings}
    if output.exists() and not (folder / "run.json").is_file() and not args.restart:
        raise RunMismatch(f"{output} exists and no training run recorded it (no {folder / 'run.json'}); to keep it, "
                          "write to another file (-o); to replace it, pass --restart (it is moved aside, not deleted)")
    resuming = open_run(folder, "train", parameters, info={"data_file": str(args.data), "epochs": epochs},
                        restart=args.restart)
    if args.restart and output.exists():
        print(f"previous model moved to {move_aside(output)}")
    record = read_run(folder)
    if resuming and record.get("finished") and output.is_file():
        from ..io import load_model

        done = record["summary"]
        if fingerprint(load_model(output)) != done.get("model_fingerprint"):
            raise RunMismatch(f"{output} is not the model that the training run in {folder} wrote; to keep it, "
                              "write to another file (-o); to replace it, pass --restart")
        if epochs < done["epochs_run"]:
            raise RunMismatch(f"{output} was trained for {done['epochs_run']} epochs (asked for {epochs}); to keep "
                              "it, write to another file (-o); to train again, pass --restart")
        if epochs == done["epochs_run"] or done["stopped_early"]:
            print(f"{output} is already trained on this data with these settings ({done['epochs_run']} epochs"
                  f"{', stopped early' if done['stopped_early'] else ''}; finished {record['finished']}); "
                  "pass --restart to train again")
            return
        print(f"extending the training of {output} from {done['epochs_run']} to {epochs} epochs")
    update_info(folder, epochs=epochs)
    checkpoint = folder / "checkpoint.pt"
    args.on_interrupt = lambda: (f"training state in {checkpoint}; the same command resumes it" if checkpoint.is_file()
                                 else "nothing saved yet (no epoch had finished); the same command starts again")
    print(f"training on {len(frames)} structures from {args.data}, at most {cfg.epochs} epochs (record and "
          f"learning curve in {folder}{'; resuming' if checkpoint.is_file() else ''})", flush=True)
    result = train(frames, cfg, checkpoint=checkpoint)
    print(report(result))
    attach_novelty(result.potential, fit_novelty(result.potential, frames))  # for atomflux md --max-novelty
    save_model(result.potential, output, metadata={"run": {k: record[k] for k in ("command", "parameters")}})
    (folder / "history.json").write_text(json.dumps(result.history, indent=1))
    learning_curve(result.history, folder / "learning-curve.png", title=f"{output.name} on {Path(args.data).name}")
    finish_run(folder, {"model_file": str(output), "model_fingerprint": fingerprint(result.potential),
                        "epochs_run": len(result.history), "stopped_early": len(result.history) < cfg.epochs,
                        "metrics": result.metrics})
    print(f"model (with novelty data for atomflux md --max-novelty) written to {output}; learning curve {folder / 'learning-curve.png'}")


def learning_curve(history: list[dict], path: Path, title: str = "") -> Path:
    """Training and validation loss per epoch (log scale), best epoch marked."""
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.semilogy(epochs, [h["train_loss"] for h in history], label="training")
    ax.semilogy(epochs, [h["validation_loss"] for h in history], label="validation")
    best = min(history, key=lambda h: h["validation_loss"])
    ax.axvline(best["epoch"], color="k", ls=":", lw=0.8, label=f"best (epoch {best['epoch']})")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend()
    return save_figure(fig, path)


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
    p = sub.add_parser("train", help="train a potential on an extxyz file",
                       description="Train a PowerSpectrumPotential. Writes the model (-o) and a folder "
                                   "<model>-training/ (run.json: data fingerprint and settings; history.json; "
                                   "learning-curve.png; checkpoint.pt). Interrupted: the same command resumes; "
                                   "more --epochs extend a finished run. Other data or settings into the same -o "
                                   "are refused (--restart moves the old model and folder aside).")
    p.add_argument("data", help="extxyz (or any ASE-readable) file with energies/forces/stress")
    p.add_argument("-o", "--output", default="model.pt", help="model file to write")
    p.add_argument("--cutoff", type=positive(float), default=4.5, help="Å")
    p.add_argument("--hidden", type=positive(int), nargs="+", default=[64, 64], help="MLP hidden-layer widths")
    p.add_argument("--channels", type=positive(int), default=8, help="species-mixed radial channels")
    p.add_argument("--max-angular", type=non_negative(int), default=3, help="highest angular degree l")
    p.add_argument("--pseudo-elements", type=positive(int), default=None,
                   help="alchemical compression: every element a learned mix of this many pseudo-elements "
                        "(neighbour channels and centre species; ~4 for many-element alloys); default: none, "
                        "each element its own weights")
    p.add_argument("--architecture", choices=["PowerSpectrumPotential", "UnconstrainedPotential", "LongRangePotential"],
                   default="PowerSpectrumPotential",
                   help="invariant power spectrum, lab-frame moments (not rotation invariant; see --augment), or "
                        "the power spectrum with learned charges in Ewald/PME fields (needs atomflux[longrange])")
    p.add_argument("--exponents", type=int, nargs="+", choices=[1, 6], default=[1],
                   help="LongRangePotential: 1/r^p channels, 1 = Coulomb (charges in e), 6 = dispersion")
    p.add_argument("--long-range-accuracy", type=positive(float), default=1e-3,
                   help="LongRangePotential: RMS force accuracy of the k-space sums for unit charges, eV/Å")
    p.add_argument("--augment", action="store_true",
                   help="turn every training structure (and its forces, stress) by a random rotation at every step")
    p.add_argument("--epochs", type=positive(int), default=300, help="maximum training epochs")
    p.add_argument("--batch-size", type=positive(int), default=8, help="structures per optimiser step")
    p.add_argument("--lr", type=positive(float), default=3e-3, help="Adam learning rate")
    p.add_argument("--patience", type=positive(int), default=40,
                   help="epochs without validation improvement before stopping")
    p.add_argument("--energy-weight", type=non_negative(float), default=1.0, help="loss weight of energies (per atom)")
    p.add_argument("--forces-weight", type=non_negative(float), default=10.0, help="loss weight of forces")
    p.add_argument("--stress-weight", type=non_negative(float), default=100.0, help="loss weight of stress")
    p.add_argument("--validation-fraction", type=fraction, default=0.1,
                   help="fraction held out for validation and early stopping")
    p.add_argument("--seed", type=int, default=0, help="random seed (split, initialisation)")
    add_threads_option(p)
    p.add_argument("--restart", action="store_true",
                   help="-o holds another model or training run: move it aside (never deleted) and start over")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="errors of a model on an extxyz file, with a parity plot")
    p.add_argument("model", help="model file or shipped model name")
    p.add_argument("data", help="reference structures (extxyz)")
    p.add_argument("--plot", default="parity.png", help="parity plot (PNG)")
    p.add_argument("--json", help="also write the metrics (eV units) to this JSON file")
    p.set_defaults(func=_cmd_eval)
