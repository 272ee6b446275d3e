"""Lattice thermal conductivity: ``atomflux kappa``.

The output folder is a run record (``run.json``): rerunning the same command
resumes the cached force sets; other parameters or another model are refused
(``--restart`` moves the old run aside).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from pathlib import Path

from .model_options import DEFAULT_MODEL, add_model_options

OUR_WARNINGS = ("CutoffCrossingWarning", "LatticeWarning", "MemoryBudgetWarning")


def _file_digest(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16]


def _parameters(args: argparse.Namespace, atoms) -> dict:
    """Everything that changes the numbers (compared when resuming)."""
    from ..records import fingerprint

    cell = args.cell
    if cell is not None and cell not in ("quasi-harmonic", "qha"):
        cell = {"file": cell, "sha256": _file_digest(cell)}
    renormalise = None if args.renormalise is None else {"file": args.renormalise,
                                                         "sha256": _file_digest(args.renormalise)}
    return {"structure": fingerprint(atoms), "supercell": args.supercell, "mesh": args.mesh,
            "temperatures": args.temperatures, "method": args.method, "statistics": args.statistics,
            "displacement": args.displacement, "relax": args.relax, "pair_cutoff": args.pair_cutoff,
            "uncertainty": not args.no_uncertainty, "symmetrize": args.symmetrize,
            "on_cutoff_crossing": args.on_cutoff_crossing, "check_displacement": args.check_displacement,
            "cell": cell, "renormalise": renormalise}


def _print_warnings(caught: list) -> None:
    """Our own warnings as one line each (the result's table repeats the lattice ones); others unchanged."""
    seen = set()
    for w in caught:
        if type(w.message).__name__ == "MemoryBudgetWarning" and str(w.message) not in seen:
            seen.add(str(w.message))
            print(f"atomflux kappa: warning: {w.message}", file=sys.stderr)
        elif type(w.message).__name__ not in OUR_WARNINGS:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _convergence(atoms, calc, args: argparse.Namespace, out: Path) -> None:
    from ..lattice import mesh_convergence, supercell_convergence
    from ..lattice.convergence import plot_scans

    temperature = args.temperatures[0]
    meshes = [[m + step for m in args.mesh] for step in (-4, -2, 0, 2, 4) if min(args.mesh) + step >= 3]
    supercells = [[s + step for s in args.supercell] for step in (-1, 0, 1) if min(args.supercell) + step >= 1]
    common = dict(temperature=temperature, method=args.method, statistics=args.statistics,
                  displacement=args.displacement, symmetrize=None if args.symmetrize == "none" else args.symmetrize,
                  memory_budget=args.memory_budget, workdir=out / "phono3py" / "convergence")
    scans = [mesh_convergence(atoms, calc, meshes=meshes, supercell=args.supercell, **common),
             supercell_convergence(atoms, calc, supercells=supercells, mesh=args.mesh, **common)]
    for scan in scans:
        print(scan.table())
        scan.to_json(out / f"convergence-{scan.parameter}.json")
    plot_scans(scans, out / "convergence.png")
    print(f"written: convergence-mesh.json, convergence-supercell.json, convergence.png in {out}")


def _cmd_kappa(args: argparse.Namespace) -> None:
    from ..calculators import make_calculator
    from ..lattice import phonons, thermal_conductivity
    from ..lattice.checks import validate_settings
    from ..lattice.kappa import build_phono3py, read_structure, set_mesh
    from ..records import claim_result, finish_run, model_record, open_run

    validate_settings(supercell=args.supercell, mesh=args.mesh, displacement=args.displacement,
                      temperatures=args.temperatures, cutoff_pair_distance=args.pair_cutoff)
    if args.memory_budget is not None:
        from ..lattice.memory import parse_budget

        parse_budget(args.memory_budget)
    atoms = read_structure(args.structure)
    set_mesh(build_phono3py(atoms, args.supercell, displacement=args.displacement), args.mesh)  # before any output
    models = args.model or [DEFAULT_MODEL]
    calc = make_calculator(models, trust=args.trust_model)
    out = Path(args.output_dir)
    parameters = _parameters(args, atoms)
    if open_run(out, "kappa", parameters, model_record(" ".join(map(str, models)), calc),
                info={"memory_budget": args.memory_budget, "converge": args.converge}, restart=args.restart):
        print(f"resuming the run in {out} (cached force sets are reused)")
    symmetrize = None if args.symmetrize == "none" else args.symmetrize
    cell = args.cell
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = thermal_conductivity(atoms, calc, supercell=tuple(args.supercell), mesh=tuple(args.mesh),
                                          temperatures=tuple(args.temperatures), method=args.method,
                                          statistics=args.statistics, displacement=args.displacement,
                                          relax=args.relax, cutoff_pair_distance=args.pair_cutoff, cell=cell,
                                          renormalise=args.renormalise, symmetrize=symmetrize,
                                          on_cutoff_crossing=args.on_cutoff_crossing,
                                          probe_displacement=args.check_displacement, workdir=out / "phono3py",
                                          uncertainty=not args.no_uncertainty, memory_budget=args.memory_budget)
        _print_warnings(caught)
        print(result.table())
        stem = claim_result(out, "kappa", parameters)
        result.to_json(out / f"{stem}.json", inputs=parameters)
        result.plot(out / f"{stem}.png")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bands = phonons(atoms if result.cell is None else _at_cell(atoms, result.cell), calc,
                            supercell=tuple(args.supercell), symmetrize=symmetrize)
        _print_warnings(caught)
        bands.plot(out / "dispersion.png")
        print(f"written: {out / (stem + '.json')}, {out / (stem + '.png')}, {out / 'dispersion.png'}, "
              f"force sets in {out / 'phono3py'}")
        if args.converge:
            _convergence(atoms if result.cell is None else _at_cell(atoms, result.cell), calc, args, out)
        finish_run(out, {"result": f"{stem}.json", "kappa_isotropic_W_per_mK": result.isotropic()[0].tolist()})
    except KeyboardInterrupt:
        print(f"\natomflux kappa: interrupted; the force sets computed so far are cached in {out / 'phono3py'}: "
              "run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None


def _at_cell(atoms, cell):
    scaled = atoms.copy()
    scaled.set_cell(cell, scale_atoms=True)
    return scaled


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kappa", help="lattice thermal conductivity with phono3py (κ ± model uncertainty)")
    p.add_argument("structure", help="unit cell, any ASE-readable file")
    add_model_options(p, committee=True)
    p.add_argument("--supercell", type=int, nargs=3, default=[3, 3, 3], help="supercell for fc2/fc3 (positive integers)")
    p.add_argument("--mesh", type=int, nargs=3, default=[11, 11, 11], help="q-point mesh (positive integers)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0], help="K")
    p.add_argument("--method", choices=["rta", "lbte"], default="rta",
                   help="rta: relaxation-time approximation; lbte: direct solution")
    p.add_argument("--statistics", choices=["quantum", "classical"], default="quantum",
                   help="phonon occupations (classical: to compare with classical MD)")
    p.add_argument("--displacement", type=float, default=0.03, help="finite displacement, Å")
    p.add_argument("--relax", action="store_true", help="relax positions and cell first")
    p.add_argument("--pair-cutoff", type=float, help="Å: skip fc3 displacement pairs farther apart (fewer supercells)")
    p.add_argument("--no-uncertainty", action="store_true", help="skip the per-member κ")
    p.add_argument("--symmetrize", choices=["projector", "traditional", "none"], default="projector",
                   help="fc2/fc3 symmetrisation: projector (as phono3py.load), traditional (as the phono3py "
                        "command line), none")
    p.add_argument("--on-cutoff-crossing", choices=["warn", "adapt", "error"], default="warn",
                   help="when displaced pairs can cross a non-smooth model cutoff: warn, adapt (smaller "
                        "displacement), or stop")
    p.add_argument("--check-displacement", action="store_true",
                   help="also solve κ at displacement/3 (one more force set) and warn if it moves by > 5 %%")
    p.add_argument("--cell",
                   help="compute at this cell: an MD trajectory/extxyz (its mean cell, e.g. from NPT) or "
                        "'quasi-harmonic' (one temperature)")
    p.add_argument("--renormalise", metavar="SNAPSHOTS",
                   help="MD snapshots at the temperature (one fixed cell): fc2 replaced by effective force "
                        "constants fitted to their forces (one temperature)")
    p.add_argument("--memory-budget",
                   help="peak memory of one batched force evaluation: a size (4GB, 500MiB) or a fraction of "
                        "the available memory (0.25); default $ATOMFLUX_MEMORY_BUDGET or 0.5")
    p.add_argument("--converge", action="store_true",
                   help="also scan the mesh (±2, ±4; at least 3) and the supercell (±1) around the settings at the first "
                        "temperature: table, convergence-*.json and convergence.png")
    p.add_argument("--restart", action="store_true",
                   help="start over in an output folder that holds another run (it is moved aside, not deleted)")
    p.add_argument("-o", "--output-dir", default="kappa-output", help="output folder (a run record)")
    p.set_defaults(func=_cmd_kappa)
