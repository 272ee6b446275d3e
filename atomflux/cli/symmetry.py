"""Symmetry-breaking diagnostics: ``atomflux symmetry MODEL STRUCTURES...``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .model_options import MODEL_HELP, add_trust_option

DESCRIPTION = """\
How far a model is from rotation invariant, on your structures: its average over
rotational grids of increasing order against a high-order reference grid
(|E - E_ref|, |F - F_ref|, and the net torque on isolated structures), its
rotational spread beside its own uncertainty and its error on labelled data,
and, for isolated molecules/clusters, angular momentum and energy in NVE with
and without averaging.  Writes symmetry.json and symmetry.png.

To run a model averaged anywhere else, add a suffix to its name:
MODEL@lebedev:3 (see the README, "Approximately invariant models")."""


def _read_sets(paths: list[str], index: str, limit: int) -> dict[str, list]:
    import ase.io
    import numpy as np

    sets = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no structure file {path!r}")
        try:
            structures = ase.io.read(path, index=index)
        except Exception as err:  # ASE raises many kinds for unreadable files
            raise ValueError(f"cannot read structures from {path} ({type(err).__name__}: {err})") from None
        structures = structures if isinstance(structures, list) else [structures]
        if not structures:
            raise ValueError(f"{path} holds no structures at index {index!r}")
        if len(structures) > limit:
            keep = np.linspace(0, len(structures) - 1, limit).round().astype(int)
            structures = [structures[k] for k in keep]
        name = Path(path).stem
        while name in sets:
            name += "'"
        sets[name] = structures
    return sets


def _cmd_symmetry(args: argparse.Namespace) -> None:
    from ..records import fingerprint, model_record, open_run
    from ..symmetry import split_average
    from ..symmetry.average import model_for_averaging
    from ..symmetry.diagnostics import NVESettings, plot_report, symmetry_report

    if split_average(args.model)[1] is not None:
        raise ValueError(f"give the model without an averaging suffix ({args.model!r}): this command compares "
                         "grids itself (--grid, --orders)")
    if args.max_structures < 1 or args.nve_steps < 0 or args.timestep <= 0 or args.temperature < 0:
        raise ValueError("--max-structures must be ≥ 1, --nve-steps ≥ 0, --timestep > 0 fs and --temperature ≥ 0 K")
    sets = _read_sets(args.structures, args.index, args.max_structures)
    model = model_for_averaging(args.model, args.trust_model)
    nve = NVESettings(steps=args.nve_steps, timestep=args.timestep, temperature=args.temperature,
                      order=args.nve_order, mts_interval=args.mts_interval, seed=args.seed)
    parameters = {"structures": {name: [fingerprint(a) for a in s] for name, s in sets.items()},
                  "grid": args.grid, "orders": sorted(set(args.orders)), "reference_order": args.reference_order,
                  "inversion": args.inversion, "nve": vars(nve)}
    out = Path(args.output)
    open_run(out, "symmetry", parameters, model_record(args.model, model), restart=args.restart)
    report = symmetry_report(model, sets, grid=args.grid, orders=args.orders, reference_order=args.reference_order,
                             inversion=args.inversion, nve=nve, label=args.model)
    print(report.summary())
    (out / "symmetry.json").write_text(json.dumps({"inputs": parameters, **report.to_dict()}, indent=1))
    plot_report(report, out / "symmetry.png")
    print(f"written: {out / 'symmetry.json'}, {out / 'symmetry.png'}")


def register(sub: argparse._SubParsersAction) -> None:
    from . import DefaultsHelpFormatter

    class Formatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Defaults shown, description kept as written."""

    p = sub.add_parser("symmetry", help="measure a model's rotational symmetry breaking (grids, torque, NVE)",
                       description=DESCRIPTION, formatter_class=Formatter)
    p.add_argument("model", help=MODEL_HELP + "; without an @GRID suffix")
    p.add_argument("structures", nargs="+", help="structure files (any ASE format), one structure set each")
    add_trust_option(p)
    p.add_argument("-o", "--output", default="symmetry-output", help="output folder")
    p.add_argument("--grid", choices=["lebedev", "legendre"], default="lebedev",
                   help="kind of rotational grid")
    p.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2, 3, 4, 6],
                   help="grid orders (degree integrated exactly) to compare; 0 is the bare model")
    p.add_argument("--reference-order", type=int, default=8,
                   help="order of the reference grid, above every --orders")
    p.add_argument("--inversion", action="store_true", help="include the improper rotations in every grid")
    p.add_argument("--index", default=":", help="which structures of each file (ASE index syntax)")
    p.add_argument("--max-structures", type=int, default=20,
                   help="at most this many structures per file, evenly spaced")
    p.add_argument("--nve-steps", type=int, default=200,
                   help="NVE steps on the first isolated structure of each set; 0: none")
    p.add_argument("--timestep", type=float, default=1.0, help="NVE time step, fs")
    p.add_argument("--temperature", type=float, default=300.0, help="initial NVE temperature, K")
    p.add_argument("--nve-order", type=int, default=3, help="grid order of the averaged NVE run")
    p.add_argument("--mts-interval", type=int, default=0,
                   help="also run NVE with multiple time stepping: the averaged correction every this many "
                        "steps (0: no such run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial NVE velocities")
    p.add_argument("--restart", action="store_true",
                   help="move a different earlier run in the output folder aside and start over")
    p.set_defaults(func=_cmd_symmetry)
