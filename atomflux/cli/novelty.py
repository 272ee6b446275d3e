"""Novelty grade: ``atomflux novelty`` (the training atoms' descriptor statistics into a model file)."""

from __future__ import annotations

import argparse

from .arguments import DefaultsRawDescriptionFormatter
from .model_options import add_model_options

DESCRIPTION = """\
Adds the novelty grade to a model: per centre species, the mean and a shrinkage-regularised
(Ledoit-Wolf) covariance of the model's standardised per-atom descriptors over the training
structures. An atom's grade is its descriptor's Mahalanobis distance from them divided by the
largest one among the training atoms: grade > 1 is an environment farther out than any training
atom. It sees what no σ sees: environments every fit extrapolates the same way (an ensemble or a
committee shares the bias, so its spread stays small).

The model with novelty data goes to -o (never over an existing file); guard MD with it:
atomflux md STRUCTURE --model OUT.pt --max-novelty [GRADE].
"""


def _cmd_novelty(args: argparse.Namespace) -> None:
    from ..io import load_model, save_model
    from ..records import check_output_path
    from ..structure_files import read_structures
    from ..uncertainty.novelty import attach_novelty, fit_novelty, novelty_grades

    check_output_path(args.output, keep_existing=True)
    model = load_model(args.model, trust=args.trust_model)
    structures = read_structures(args.data)
    novelty = fit_novelty(model, structures, show_progress=True)
    attach_novelty(model, novelty)
    save_model(model, args.output)
    summary = novelty.metadata()
    for symbol, atoms in summary["n_atoms"].items():
        largest = summary["largest_distance"][symbol]
        print(f"{symbol}: {atoms} training atoms, largest Mahalanobis distance {largest:.3g} (grade 1), "
              f"shrinkage {summary['shrinkage'][symbol]:.3g}" if atoms >= 2 else
              f"{symbol}: {atoms} training atoms: every {symbol} atom gets grade inf (no statistics)")
    if args.check:
        checked = read_structures(args.check)
        largest = [float(novelty_grades(model, atoms).max()) for atoms in checked]
        above = sum(grade > 1 for grade in largest)
        print(f"{args.check}: largest per-atom grade per structure {min(largest):.3g}-{max(largest):.3g}; "
              f"{above} of {len(checked)} structures have an atom beyond the training atoms (grade > 1)")
    print(f"model with novelty data written to {args.output}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("novelty", help="add the per-atom novelty grade (descriptor distance from the training "
                                       "atoms) to a model file", description=DESCRIPTION,
                       formatter_class=DefaultsRawDescriptionFormatter)
    add_model_options(p)
    p.add_argument("data", help="the model's training structures (any ASE-readable file, e.g. extxyz)")
    p.add_argument("-o", "--output", required=True, help="model file to write (never over an existing file)")
    p.add_argument("--check", metavar="FILE",
                   help="structures to grade with the new data (e.g. held-out ones): prints the range of their "
                        "largest per-atom grades")
    p.set_defaults(func=_cmd_novelty)
