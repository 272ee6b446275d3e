"""The ``atomflux`` command line: one module per group of sub-commands.

Each module has ``register(sub)``, which adds its sub-commands (with
``func`` set to the function that runs them) to the top-level parser.  Every
sub-command shows its defaults in ``--help``.  Ordinary mistakes (the
project's own ``ValueError``/``FileNotFoundError``...) end with one line
``atomflux <command>: error: ...`` and exit code 2; a model that
extrapolates past the guard ends with exit code 3.
"""

from __future__ import annotations

import argparse
import sys

from . import demo, hamiltonian, ipi, kappa, lammps, md, symmetry, train, transport, uncertainty

#: sub-command modules, in the order ``atomflux --help`` lists them
COMMAND_MODULES = (train, md, uncertainty, kappa, transport, lammps, ipi, hamiltonian, symmetry, demo)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after every option that has a meaningful default (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class _SubParsers(argparse._SubParsersAction):
    """Sub-parsers that show their defaults in ``--help`` unless told otherwise."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        return super().add_parser(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atomflux", description="ML interatomic potentials with uncertainty.")
    parser.register("action", "parsers", _SubParsers)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..lammps_bridge.plugin import PluginBuildError
    from ..uncertainty.guard import ExtrapolationError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only pass-through commands (`atomflux lammps --help ...`) take words argparse does not know
        if not getattr(args, "pass_through", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.arguments = extra + list(args.arguments)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ImportError, PluginBuildError) as err:
        print(f"atomflux {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ExtrapolationError as err:
        print(f"atomflux {args.command}: stopped: {err}", file=sys.stderr)
        return 3
    return 0
