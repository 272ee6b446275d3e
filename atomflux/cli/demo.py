"""The end-to-end demonstration: ``atomflux demo``."""

from __future__ import annotations

import argparse


def _cmd_demo(args: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(args.output, quick=args.quick, model=args.model)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demonstration on the shipped model")
    p.add_argument("--output", default="demo-output", help="output folder")
    p.add_argument("--model", default="demo", help="model file or shipped name")
    p.add_argument("--quick", action="store_true", help="smaller, faster run (for tests)")
    p.set_defaults(func=_cmd_demo)
