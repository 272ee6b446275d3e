"""The end-to-end demonstration: ``atomflux demo``."""

from __future__ import annotations

import argparse


def _cmd_demo(args: argparse.Namespace) -> None:
    from ..demo import run_demo

    args.on_interrupt = lambda: (f"finished steps are kept in {args.output}; the same command resumes the MD runs "
                                 "and redoes the rest")
    run_demo(args.output, quick=args.quick, model=args.model, restart=args.restart)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demonstration on the shipped model")
    p.add_argument("--output", default="demo-output", help="output folder")
    p.add_argument("--model", default="demo", help="model file or shipped name")
    p.add_argument("--quick", action="store_true", help="smaller, faster run (for tests)")
    p.add_argument("--restart", action="store_true",
                   help="the output folder holds another demo: move it aside (never deleted) and start over")
    p.set_defaults(func=_cmd_demo)
