"""LAMMPS: ``atomflux lammps`` (run an input with pair_style atomflux; export pair models)."""

from __future__ import annotations

import argparse
from pathlib import Path

LAMMPS_HELP = """\
atomflux lammps in.lammps [LAMMPS options, e.g. -var T 300 -log log.lammps]
    run a LAMMPS input script with pair_style atomflux and compute
    atomflux/uncertainty available (also under mpiexec -n N)
atomflux lammps export-pair-python MODEL [-o module.py]
    pair_style python module for a pairwise model (LennardJones, Morse)
atomflux lammps export-table MODEL [-o model.table] [--points N]
    pair_style table file for a pairwise model
"""


def _cmd_lammps(args: argparse.Namespace) -> None:
    words = list(args.arguments)
    if not words or words[0] in ("-h", "--help"):
        print(LAMMPS_HELP)
        return
    if words[0] in ("export-pair-python", "export-table"):
        _lammps_export(words[0], words[1:])
        return
    from ..lammps_bridge import PluginBuildError, run_script

    script, lammps_args = words[0], words[1:]
    try:
        lmp = run_script(script, args=lammps_args)
    except (FileNotFoundError, ImportError, PluginBuildError):
        raise
    except Exception as error:  # LAMMPS raises plain Exception with its error text
        raise ValueError(f"LAMMPS stopped with an error: {str(error).strip()}") from None
    lmp.close()
    lmp.finalize()


def _lammps_export(kind: str, words: list[str]) -> None:
    from ..lammps_bridge import export_pair_python, export_table

    parser = argparse.ArgumentParser(prog=f"atomflux lammps {kind}")
    parser.add_argument("model", help="model file (or shipped name) of a pair potential")
    parser.add_argument("-o", "--output", help="file to write")
    if kind == "export-table":
        parser.add_argument("--points", type=int, default=5000, help="grid points in r")
    args = parser.parse_args(words)
    stem = Path(args.model).stem
    if kind == "export-pair-python":
        output = args.output or f"atomflux_{stem}.py".replace("-", "_")
        commands = export_pair_python(args.model, output)
    else:
        output = args.output or f"{stem}.table"
        commands = export_table(args.model, output, n_points=args.points)
    print(f"wrote {output}; use it with:\n{commands}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lammps", help="run a LAMMPS input with pair_style atomflux; export pair models",
                       description=LAMMPS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       add_help=False)
    p.add_argument("arguments", nargs=argparse.REMAINDER,
                   help="input script and LAMMPS options, or an export sub-command")
    p.set_defaults(func=_cmd_lammps, pass_through=True)
