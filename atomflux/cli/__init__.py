"""The ``atomflux`` command line: one module per group of sub-commands.

Each module has ``register(sub)``, which adds its sub-commands (with
``func`` set to the function that runs them) to the top-level parser.  Every
sub-command shows its defaults in ``--help``.

How runs end:

- exit 0: done;
- exit 2 and ONE line ``atomflux <command>: error: <what is wrong, how to fix it>``
  for an ordinary mistake: a bad option value, a missing, empty, unreadable or
  malformed file, a model of the wrong kind, an output folder holding another
  run, a missing optional package (the project's ``ValueError``/``OSError``/
  ``ImportError`` and the file errors of ASE);
- exit 3: a model that extrapolates past the guard (``--max-uncertainty``);
- exit 130 after Ctrl-C (or SIGTERM, e.g. a batch system's time limit), with one line
  saying what was saved and how to resume;
- anything else is a bug in atomflux: the end of its traceback and a line
  saying so (``--debug`` or ``ATOMFLUX_DEBUG=1`` shows full tracebacks, also
  for ordinary mistakes).

Warnings are printed as one line ``atomflux <command>: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
import warnings
from typing import Iterator, NoReturn

from . import (demo, distill, ferroelectric, hamiltonian, ipi, kappa, lammps, md, novelty, segregation, symmetry,
               train, transport, uncertainty)
from .arguments import DefaultsHelpFormatter

#: sub-command modules, in the order ``atomflux --help`` lists them
COMMAND_MODULES = (train, md, uncertainty, novelty, kappa, transport, lammps, ipi, hamiltonian, symmetry, segregation,
                   ferroelectric, distill, demo)

#: optional packages and the extra that installs them
OPTIONAL_PACKAGES = {"pyscf": "hamiltonian", "lammps": "lammps", "mpi4py": "lammps"}

DEBUG_HELP = "show full Python tracebacks (also for ordinary mistakes); or set ATOMFLUX_DEBUG=1"


class OneLineErrorParser(argparse.ArgumentParser):
    """A parser whose errors are one line, ``atomflux md: error: argument --timestep: must be > 0, got 0``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _SubParsers(argparse._SubParsersAction):
    """Sub-parsers that show their defaults in ``--help`` unless told otherwise, and accept ``--debug``."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        parser = super().add_parser(name, **kwargs)
        parser.register("action", "parsers", _SubParsers)
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="atomflux", description="ML interatomic potentials with uncertainty.")
    parser.register("action", "parsers", _SubParsers)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
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
    debug = bool(args.debug or os.environ.get("ATOMFLUX_DEBUG"))
    command = " ".join(str(word) for word in (args.command, getattr(args, "action", None)) if word)
    with _one_line_warnings(command, enabled=not debug), _terminate_like_ctrl_c():
        try:
            if getattr(args, "threads", None) is not None:  # the fitting commands' --threads
                from ..threads import set_threads

                set_threads(args.threads)
            args.func(args)
        except KeyboardInterrupt:
            hint = getattr(args, "on_interrupt", None)
            print(f"\natomflux {command}: interrupted; {hint() if callable(hint) else 'its outputs may be missing or incomplete'}",
                  file=sys.stderr)
            return 130
        except ExtrapolationError as err:
            print(f"atomflux {command}: stopped: {err}", file=sys.stderr)
            return 3
        except Exception as err:
            message = _ordinary_mistake(err, PluginBuildError)
            if message is None or debug:
                if message is None:
                    traceback.print_exception(err, limit=None if debug else -3)
                    print(f"atomflux {command}: internal error ({type(err).__name__}): this is a bug in atomflux, "
                          "not in your input; please report it with the command and the traceback "
                          f"{'above' if debug else '(rerun with --debug for the full one)'}", file=sys.stderr)
                    return 1
                raise
            print(f"atomflux {command}: error: {message}", file=sys.stderr)
            return 2
    return 0


def _ordinary_mistake(err: Exception, plugin_error: type) -> str | None:
    """The one-line message for an error caused by the input or the environment; None for a bug."""
    from ase.io.formats import UnknownFileTypeError

    if isinstance(err, ImportError):
        package = (err.name or "").split(".")[0]
        extra = OPTIONAL_PACKAGES.get(package)
        hint = f"; install it with: pip install 'atomflux[{extra}]'" if extra else ""
        return f"{err}{hint}"
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    if isinstance(err, (ValueError, OSError, UnknownFileTypeError, plugin_error)):
        return str(err) or type(err).__name__
    if _raised_by(err, f"{os.sep}ase{os.sep}io{os.sep}"):  # a parser of ASE failed on a malformed file
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "the file is malformed or truncated"
        return f"could not read an input file ({type(err).__name__}: {detail})"
    return None


def _raised_by(err: BaseException, path_part: str) -> bool:
    """True when the innermost frame of ``err``'s traceback is in a file whose path contains ``path_part``."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and path_part in frames[-1].filename


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """SIGTERM (a batch system's time limit, ``kill``) ends a command like Ctrl-C: checkpoints kept, one line."""
    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings(command: str, enabled: bool = True) -> Iterator[None]:
    """Print warnings as ``atomflux <command>: warning: <message>`` (one line, no source line)."""
    if not enabled:
        yield
        return
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest, **kw: (
        f"atomflux {command}: warning: {' '.join(str(message).split())}\n")
    try:
        yield
    finally:
        warnings.formatwarning = original
