"""The Hamiltonian head: ``atomflux hamiltonian data|train|eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import add_threads_option, non_negative, positive


def _cmd_hamiltonian(args: argparse.Namespace) -> None:
    from ..hamiltonian import data as hdata

    if args.action == "data":
        if Path(args.output).is_dir():
            raise ValueError(f"-o {args.output} is a folder; give a file name, e.g. -o {Path(args.output) / 'data.json'}")
        args.on_interrupt = lambda: (f"{hdata.saved_count(args.output)}; the same command computes the rest")
        frames = hdata.generate(args.molecules, args.per_molecule, seed=args.seed,
                                reference={"method": args.method, "basis": args.basis}, n_virtual=args.virtual,
                                cache=args.output, restart=args.restart)
        print(f"{len(frames)} geometries of {', '.join(args.molecules)} ({args.method}/{args.basis} levels, "
              f"STO-3G baseline) written to {args.output}")
    elif args.action == "train":
        from ..hamiltonian.train import alignment_text, level_errors, train_hamiltonian
        from ..io import save_model

        from ..records import check_output_path

        if Path(args.output).is_dir():
            raise ValueError(f"-o {args.output} is a folder; give a model file name, e.g. "
                             f"-o {Path(args.output) / 'hamiltonian.pt'}")
        check_output_path(args.output, keep_existing=True)

        frames = hdata.read_frames(args.data)
        validation = hdata.read_frames(args.validation) if args.validation else []
        reference = hdata.reference_of(args.data)
        result = train_hamiltonian(frames, validation, epochs=args.epochs, learning_rate=args.lr, seed=args.seed)
        metrics = level_errors(result.model, validation or frames)
        metrics.pop("levels")
        reference["levels"] = alignment_text(reference["n_virtual"])
        save_model(result.model, args.output, metadata={
            "reference": reference, "training_molecules": sorted({f.name for f in frames}),
            "metrics": metrics, "description": f"Hamiltonian head trained on {len(frames)} geometries"})
        print(_level_table(metrics, "validation" if validation else "training"))
        print(f"model written to {args.output}")
    else:
        _hamiltonian_eval(args)


def _level_table(metrics: dict, label: str) -> str:
    lines = [f"orbital-energy errors on the {label} set (MAE, eV): model | plain STO-3G RHF",
             "| molecule | occupied | HOMO | LUMO | STO-3G occupied | STO-3G HOMO | STO-3G LUMO |",
             "|---|---|---|---|---|---|---|"]
    for name, m in list(metrics["per_molecule"].items()) + [("all", metrics)]:
        lines.append(f"| {name} | {m['occupied_mae_eV']:.3f} | {m['homo_mae_eV']:.3f} | {m['lumo_mae_eV']:.3f} | "
                     f"{m['minimal_basis_occupied_mae_eV']:.3f} | {m['minimal_basis_homo_mae_eV']:.3f} | "
                     f"{m['minimal_basis_lumo_mae_eV']:.3f} |")
    return "\n".join(lines)


def _hamiltonian_eval(args: argparse.Namespace) -> None:
    from ..calculators import HamiltonianCalculator
    from ..hamiltonian import data as hdata
    from ..hamiltonian.plots import level_diagram, level_parity_plot
    from ..hamiltonian.train import level_errors

    calc = HamiltonianCalculator(args.model)
    frames = hdata.read_frames(args.data)
    metrics = level_errors(calc.model, frames)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    level_parity_plot(metrics, out / "levels-parity.png", title=f"{args.model} on {Path(args.data).name}")
    names = [f.name for f in frames]
    name = args.molecule or names[0]
    if name not in names:
        raise ValueError(f"no molecule {name!r} in {args.data} (it has {', '.join(sorted(set(names)))})")
    k = names.index(name)
    level_diagram(frames[k], metrics["levels"][k]["predicted"], out / f"levels-{name}.png",
                  title=f"{name} (held-out geometry): STO-3G vs model vs {calc.reference.get('method', '')}/"
                        f"{calc.reference.get('basis', '')}")
    print(_level_table(metrics, Path(args.data).name))
    metrics.pop("levels")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"plots: {out / 'levels-parity.png'}, {out / f'levels-{name}.png'}; metrics: {out / 'metrics.json'}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hamiltonian", help="Hamiltonian head: make pyscf data, train, evaluate (orbital energies)")
    hsub = p.add_subparsers(dest="action", required=True)
    q = hsub.add_parser("data", help="large-basis MO energies + STO-3G baseline for distorted molecules (pyscf)")
    q.add_argument("--molecules", nargs="+", default=["H2O", "NH3", "CH4", "C2H4", "CH3OH"],
                   help="ASE g2 names of closed-shell molecules")
    q.add_argument("--per-molecule", type=positive(int), default=40, help="distorted geometries per molecule")
    q.add_argument("--seed", type=int, default=0, help="random seed")
    q.add_argument("--method", default="RHF", help="RHF or a DFT functional pyscf knows (e.g. PBE0)")
    q.add_argument("--basis", default="cc-pvdz", help="reference basis (pyscf name)")
    q.add_argument("--virtual", type=non_negative(int), default=1, help="virtual levels to fit besides the occupied ones")
    q.add_argument("-o", "--output", default="hamiltonian-data.json",
                   help="data file to write (JSON; an interrupted run resumes into it)")
    q.add_argument("--restart", action="store_true",
                   help="-o holds data of another request: move it aside (never deleted) and start over")
    q = hsub.add_parser("train", help="train a Hamiltonian model on a data file")
    q.add_argument("data", help="data file from `atomflux hamiltonian data`")
    q.add_argument("--validation", help="held-out data file (model selection and the reported errors)")
    q.add_argument("--epochs", type=positive(int), default=1500, help="training epochs")
    q.add_argument("--lr", type=positive(float), default=1e-2, help="learning rate")
    q.add_argument("--seed", type=int, default=0, help="random seed")
    q.add_argument("-o", "--output", default="hamiltonian.pt", help="model file to write (an existing file is kept: give a new name)")
    add_threads_option(q)
    q = hsub.add_parser("eval", help="errors on a data file, level parity plot and level diagram")
    q.add_argument("model", help="Hamiltonian model file or shipped name")
    q.add_argument("data", help="data file from `atomflux hamiltonian data`")
    q.add_argument("--molecule", help="molecule of the level diagram (default: the first in the file)")
    q.add_argument("--output-dir", default="hamiltonian-eval", help="folder for plots and metrics")
    p.set_defaults(func=_cmd_hamiltonian)
