"""Lattice thermal conductivity: ``atomflux kappa``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .model_options import DEFAULT_MODEL, add_model_options


def _cmd_kappa(args: argparse.Namespace) -> None:
    import ase.io

    from ..calculators import make_calculator
    from ..lattice import phonons, thermal_conductivity

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atoms = ase.io.read(args.structure)
    calc = make_calculator(args.model or [DEFAULT_MODEL], trust=args.trust_model)
    result = thermal_conductivity(atoms, calc, supercell=tuple(args.supercell), mesh=tuple(args.mesh),
                                  temperatures=tuple(args.temperatures), method=args.method,
                                  statistics=args.statistics, displacement=args.displacement, relax=args.relax,
                                  cutoff_pair_distance=args.pair_cutoff,
                                  workdir=out / "phono3py", uncertainty=not args.no_uncertainty)
    print(result.table())
    result.to_json(out / "kappa.json")
    result.plot(out / "kappa.png")
    bands = phonons(atoms, calc, supercell=tuple(args.supercell))
    bands.plot(out / "dispersion.png")
    print(f"written: {out / 'kappa.json'}, {out / 'kappa.png'}, {out / 'dispersion.png'}, force sets in {out / 'phono3py'}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kappa", help="lattice thermal conductivity with phono3py (κ ± model uncertainty)")
    p.add_argument("structure", help="unit cell, any ASE-readable file")
    add_model_options(p, committee=True)
    p.add_argument("--supercell", type=int, nargs=3, default=[3, 3, 3], help="supercell for fc2/fc3")
    p.add_argument("--mesh", type=int, nargs=3, default=[11, 11, 11], help="q-point mesh")
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0], help="K")
    p.add_argument("--method", choices=["rta", "lbte"], default="rta",
                   help="rta: relaxation-time approximation; lbte: direct solution")
    p.add_argument("--statistics", choices=["quantum", "classical"], default="quantum",
                   help="phonon occupations (classical: to compare with classical MD)")
    p.add_argument("--displacement", type=float, default=0.03, help="Å")
    p.add_argument("--relax", action="store_true", help="relax positions and cell first")
    p.add_argument("--pair-cutoff", type=float, help="Å: skip fc3 displacement pairs farther apart (fewer supercells)")
    p.add_argument("--no-uncertainty", action="store_true", help="skip the per-member κ")
    p.add_argument("--output-dir", default="kappa-output", help="output folder")
    p.set_defaults(func=_cmd_kappa)
