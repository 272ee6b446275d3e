"""i-PI: ``atomflux ipi`` (a driver for a running i-PI) and ``atomflux ipi run`` (i-PI and driver together)."""

from __future__ import annotations

import argparse
import sys

IPI_DESCRIPTION = """\
atomflux ipi --model MODEL --structure FILE --address NAME [--port PORT]
    connect to a running i-PI (i-pi input.xml) and answer its force requests
atomflux ipi run input.xml --model MODEL [-o FOLDER]
    start i-PI on input.xml and the driver together; wait; clean up
"""


def _uncertainty(args: argparse.Namespace) -> str | bool:
    return False if args.uncertainty == "none" else args.uncertainty


def _pbc(args: argparse.Namespace) -> list[bool] | None:
    return None if args.pbc is None else [bool(p) for p in args.pbc]


def _cmd_driver(args: argparse.Namespace) -> None:
    from ..ipi import run_driver

    if args.structure is None:
        raise ValueError("--structure is required: i-PI sends positions only, so give a file with the element "
                         "of each atom (i-PI's starting structure)")
    try:
        summary = run_driver(args.model, args.structure, address=args.address, port=args.port,
                             socket_prefix=args.socket_prefix, uncertainty=_uncertainty(args), pbc=_pbc(args),
                             connect_timeout=args.connect_timeout, dtype=args.dtype, device=args.device,
                             trust=args.trust_model)
    except KeyboardInterrupt:
        print("atomflux ipi: interrupted; the driver disconnected (i-PI waits for another driver)", file=sys.stderr)
        raise SystemExit(130) from None
    print(summary.describe(), file=sys.stderr if summary.ended != "exit" else sys.stdout)


def _cmd_run(args: argparse.Namespace) -> None:
    from ..ipi.runner import run_ipi

    try:
        run = run_ipi(args.input, args.model, args.structure, output=args.output, forcefield=args.forcefield,
                      uncertainty=_uncertainty(args), pbc=_pbc(args), dtype=args.dtype, device=args.device,
                      trust=args.trust_model, restart=args.restart)
    except KeyboardInterrupt:
        print("atomflux ipi run: interrupted; i-PI was stopped and wrote its RESTART: run the same command "
              "again to continue", file=sys.stderr)
        raise SystemExit(130) from None
    if run.driver is None:
        print(f"the run in {run.folder} is already complete (--restart starts it over)")
    else:
        print(run.driver.describe())
    print(f"i-PI outputs in {run.folder}: {', '.join(run.outputs)} (i-PI log: {run.log})")


def _model_options(p: argparse.ArgumentParser) -> None:
    from .model_options import DEFAULT_MODEL, MODEL_HELP, add_trust_option

    p.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    add_trust_option(p)
    p.add_argument("--uncertainty", choices=["full", "energy", "none"], default="full",
                   help="for models with uncertainty: 'full' sends the committee (member energies, forces, "
                        "virials) and σ in the extras for <ffcommittee parse_json>; 'energy' member energies "
                        "and σ only (faster); 'none' nothing")
    p.add_argument("--pbc", type=int, nargs=3, choices=[0, 1], metavar=("A", "B", "C"),
                   help="periodicity along the cell vectors (1/0), overriding the structure's; default: the "
                        "structure's if it has any, else periodic when i-PI's cell has a volume")
    p.add_argument("--dtype", choices=["float64", "float32"],
                   help="model precision; default: the model's own (float64 for atomflux models)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")


def register(sub: argparse._SubParsersAction) -> None:
    from . import DefaultsHelpFormatter

    class Formatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
        """Keeps the description's lines; shows defaults."""

    p = sub.add_parser("ipi", help="drive i-PI with a model (classical and path-integral MD, committees)",
                       description=IPI_DESCRIPTION, formatter_class=Formatter,
                       usage="atomflux ipi --structure FILE [options]  |  atomflux ipi run input.xml [options]")
    _model_options(p)
    p.add_argument("--structure", help="file with the element of each atom, in i-PI's order (i-PI sends "
                                       "positions only); checked against i-PI's atom count")
    p.add_argument("--address", default="localhost",
                   help="<address> of i-PI's <ffsocket>: UNIX socket name, or TCP host with --port")
    p.add_argument("--port", type=int, help="TCP port (<ffsocket mode='inet'>); without it: UNIX socket")
    p.add_argument("--socket-prefix", default="/tmp/ipi_", help="prefix of UNIX socket files (i-pi -S)")
    p.add_argument("--connect-timeout", type=float, default=60.0, help="seconds to wait for i-PI to listen")
    p.set_defaults(func=_cmd_driver)
    actions = p.add_subparsers(dest="ipi_action", title="one command for i-PI and the driver", metavar="run")
    r = actions.add_parser("run", help="start i-PI on an input file and the driver together",
                           description="Start i-PI on INPUT (in the output folder, with a private socket), "
                                       "drive it with the model, wait for it to finish, clean up.",
                           formatter_class=DefaultsHelpFormatter)
    r.add_argument("input", help="i-PI input file (input.xml)")
    _model_options(r)
    r.add_argument("--structure", help="elements of the atoms; default: i-PI's starting structure (checked "
                                       "against it when given)")
    r.add_argument("-o", "--output", help="run folder (i-PI's outputs, run.json); default ipi-<input name>")
    r.add_argument("--forcefield", help="name of the <ffsocket> to drive when the input has several")
    r.add_argument("--restart", action="store_true", help="move an existing run folder aside and start over")
    r.set_defaults(func=_cmd_run)
