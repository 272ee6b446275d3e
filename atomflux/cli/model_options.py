"""The ``--model`` options shared by the sub-commands that run a model."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "demo"
MODEL_HELP = ("model file, shipped name (demo) or third-party model spec "
              "(sevennet:7net-0, chgnet:0.3.0, mace:PATH)")


def add_model_options(parser: argparse.ArgumentParser, committee: bool = False) -> None:
    """``--model`` (repeatable for a committee when ``committee``) and ``--trust-model``."""
    if committee:
        parser.add_argument("--model", action="append", metavar="MODEL",
                            help=f"{MODEL_HELP}; repeat it for a committee of models (mean ± their spread) "
                                 f"(default: {DEFAULT_MODEL})")
    else:
        parser.add_argument("model", help=MODEL_HELP)
    add_trust_option(parser)


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-model", action="store_true",
                        help="load a third-party checkpoint that is a pickle from outside its own package "
                             "(only for files you trust: unpickling can run code)")
