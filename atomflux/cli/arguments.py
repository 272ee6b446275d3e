"""Help formatters, and argument types that refuse impossible numbers while parsing, naming the option.

``p.add_argument("--timestep", type=positive(float))`` makes
``atomflux md --timestep 0`` end with
``atomflux md: error: argument --timestep: must be > 0, got 0``.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after every option that has a meaningful default (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class DefaultsRawDescriptionFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in ``--help`` and the description's line breaks kept."""


def _number(kind: type, text: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive(kind: type = float) -> Callable[[str], float | int]:
    """Type for numbers > 0 (``kind``: ``int`` or ``float``)."""
    def parse(text: str) -> float | int:
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative(kind: type = float) -> Callable[[str], float | int]:
    """Type for numbers ≥ 0 (``kind``: ``int`` or ``float``)."""
    def parse(text: str) -> float | int:
        value = _number(kind, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
        return value

    parse.__name__ = f"non-negative {kind.__name__}"
    return parse


def fraction(text: str) -> float:
    """Type for a fraction 0 ≤ x < 1."""
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 up to (not including) 1, got {text}")
    return value


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch threads of a fitting command (applied by :func:`atomflux.cli.main`)."""
    from ..threads import FITTING_THREADS

    parser.add_argument("--threads", type=positive(int), default=FITTING_THREADS,
                        help="CPU threads torch uses. Small fitting calls gain little from more, and on a machine "
                             "whose cores are busy they run several times slower with more than 1 "
                             "(docs/benchmarks.md); raise it on an idle machine for large data or a slow teacher")
