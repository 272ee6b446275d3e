"""Molecular dynamics: ``atomflux md`` (and ``--transport`` heat-flux runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_md(args: argparse.Namespace) -> None:
    import ase.io

    from ..calculators import AtomfluxCalculator
    from ..md import run_md

    atoms = ase.io.read(args.structure)
    if args.repeat:
        atoms = atoms * tuple(args.repeat)
    if args.transport:
        _transport_md(atoms, args)
        return
    calc = AtomfluxCalculator(args.model, uncertainty="energy", dtype=args.precision)
    observers = ()
    if args.max_uncertainty is not None:
        from ..uncertainty import UncertaintyGuard

        if not calc.uncertainty:
            raise ValueError(f"--max-uncertainty needs a model with uncertainty; {args.model} has none")
        observers = (UncertaintyGuard(atoms, args.max_uncertainty, action=args.on_extrapolation,
                                      logfile=Path(args.log).with_suffix(".uncertainty.log"),
                                      save=Path(args.trajectory).with_suffix(".extrapolation.extxyz")),)
    summary = run_md(atoms, calc, temperature=args.temperature, steps=args.steps, timestep=args.timestep,
                     ensemble=args.ensemble, trajectory=args.trajectory, logfile=args.log, interval=args.interval,
                     seed=args.seed, observers=observers)
    print(json.dumps(summary, indent=2))


def _transport_md(atoms, args: argparse.Namespace) -> None:
    from ..calculators import AtomfluxCalculator
    from ..md import run_transport_md

    path = run_transport_md(atoms, AtomfluxCalculator(args.model, uncertainty=False, dtype=args.precision), args.output,
                            temperature=args.temperature, equilibration_steps=args.equilibration,
                            production_steps=args.steps, timestep=args.timestep, stride=args.stride,
                            checkpoint_interval=args.checkpoint, seed=args.seed)
    print(f"heat flux written to {path}; trajectory {Path(args.output) / 'production.traj'}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("md", help="ASE molecular dynamics with a model (--transport: heat-flux production run)")
    p.add_argument("structure", help="any ASE-readable structure file")
    p.add_argument("--model", default="demo", help="model file or shipped name")
    p.add_argument("--repeat", type=int, nargs=3, help="replicate the structure n1 n2 n3 times")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (production steps with --transport)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs")
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="langevin",
                   help="NVE (velocity Verlet) or NVT (Langevin)")
    p.add_argument("--trajectory", default="md.traj", help="ASE trajectory file")
    p.add_argument("--log", default="md.log", help="MD log file")
    p.add_argument("--interval", type=int, default=10, help="write trajectory and log every N steps")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities, thermostat)")
    p.add_argument("--precision", choices=["float32", "float64"], default="float32",
                   help="model arithmetic; energies, forces and stress are summed in float64 either way "
                        "(float32 is ~1.6x faster and deviates from float64 10^4x less than the demo model's "
                        "own error: docs/benchmarks.md)")
    p.add_argument("--max-uncertainty", type=float,
                   help="eV/atom: energy uncertainty above which the run stops (or warns) and saves the frame")
    p.add_argument("--on-extrapolation", choices=["stop", "warn"], default="stop",
                   help="what to do when --max-uncertainty is exceeded")
    transport = p.add_argument_group("transport runs (--transport): NVT equilibration, then NVE recording the heat flux")
    transport.add_argument("--transport", action="store_true",
                           help="NVT equilibration, then NVE production recording the heat flux")
    transport.add_argument("--equilibration", type=int, default=2000, help="NVT steps")
    transport.add_argument("--stride", type=int, default=10, help="trajectory frame every N production steps")
    transport.add_argument("--checkpoint", type=int, default=1000, help="checkpoint every N steps (rerun to resume)")
    transport.add_argument("-o", "--output", default="transport-run", help="output folder")
    p.set_defaults(func=_cmd_md)
