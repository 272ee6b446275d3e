"""The averaging suffix of a model spec: ``MODEL@GRID[:ORDER][:inversion]``.

Wherever a model is named (``load_model``, ``AtomfluxCalculator``, the CLI's
``--model``, ``pair_coeff``, the i-PI driver), appending ``@GRID:ORDER``
evaluates its rotational average instead (see :mod:`atomflux.symmetry`)::

    demo@lebedev:3                 Lebedev grid exact to degree 3 (24 rotations)
    model.pt@legendre:4            i-PI's product grid, degree 4 (75 rotations)
    sevennet:7net-0@lebedev:3:inversion   also the improper rotations (48)
    model.pt@random                one random rotation per evaluation (``@random:8``: eight)

``ORDER`` defaults to 3 (1 for ``random``).  A file whose name contains
``@`` is still found: an existing path is never split, and neither is a name
whose text after the last ``@`` does not look like a suffix
(``mace:/models/run@v2.model`` stays a MACE spec).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .quadrature import GRIDS

#: order used when a suffix names only the grid
DEFAULT_ORDER = {"lebedev": 3, "legendre": 3, "random": 1}
#: what the text after the last "@" must look like to be read as an averaging suffix
SUFFIX_SHAPE = re.compile(r"[A-Za-z]+(:[^:@/\\.]*)*")
SYNTAX = "MODEL@GRID[:ORDER][:inversion] with GRID one of lebedev, legendre, random (e.g. demo@lebedev:3)"


@dataclass(frozen=True)
class AverageSpec:
    """Which rotational average to take: grid name, order, inversion (see :func:`rotation_grid`)."""

    grid: str = "lebedev"
    order: int = 3
    inversion: bool = False

    def __str__(self) -> str:
        return f"{self.grid}:{self.order}" + (":inversion" if self.inversion else "")

    @classmethod
    def parse(cls, text: str) -> "AverageSpec":
        """``"lebedev:3"``, ``"legendre"``, ``"random:4"``, ``"lebedev:2:inversion"`` → an AverageSpec."""
        words = text.split(":")
        grid = words[0]
        if grid not in GRIDS:
            raise ValueError(f"model suffix '@{text}' not understood: write {SYNTAX}")
        rest = words[1:]
        inversion = bool(rest) and rest[-1] == "inversion"
        if inversion:
            rest = rest[:-1]
        if len(rest) > 1 or (rest and not rest[0].isdigit()):
            raise ValueError(f"model suffix '@{text}' not understood: write {SYNTAX}")
        order = int(rest[0]) if rest else DEFAULT_ORDER[grid]
        if grid == "random" and order < 1:
            raise ValueError(f"model suffix '@{text}': a random grid needs at least 1 rotation")
        return cls(grid, order, inversion)


def split_average(model: object) -> tuple[object, AverageSpec | None]:
    """``("demo", AverageSpec("lebedev", 3))`` for ``"demo@lebedev:3"``; ``(model, None)`` without a suffix.

    Only strings and paths are split, never a path that exists, and never at an ``@`` followed by
    something that is not shaped like a suffix (letters, then ``:``-separated words without dots or
    slashes): such names are left to the model loaders.  A suffix of that shape that is not valid
    (``@lebdev:3``) raises ``ValueError``.
    """
    if not isinstance(model, (str, Path)) or Path(model).exists() or Path(str(model).split(":", 1)[-1]).exists():
        return model, None  # a file, or a spec naming a file ("mace:PATH"), is never split
    text = str(model)
    if "@" not in text:
        return model, None
    base, _, suffix = text.rpartition("@")
    if not SUFFIX_SHAPE.fullmatch(suffix):
        return model, None
    if not base:
        raise ValueError(f"model spec {text!r} names no model before '@': write {SYNTAX}")
    return (base if isinstance(model, str) else Path(base)), AverageSpec.parse(suffix)
