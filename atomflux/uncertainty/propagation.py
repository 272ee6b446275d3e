"""Propagate model uncertainty into any observable: once per ensemble member.

``propagate(observable, potential)`` calls ``observable(member)`` for each
member potential (shallow-ensemble member or LLPR posterior sample, with the
calibrated spread) and returns mean ± standard deviation.  ``member`` is an
ordinary potential: wrap it in :class:`~atomflux.AtomfluxCalculator` to use it
with any ASE-based workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..models.base import Potential, n_members
from ..systems import Batch


class EnsembleMember(Potential):
    """Member m of an uncertainty-capable potential, as a potential of its own.

    Its energy is e_i + α (e_i,m - mean_m e_i,m): the member's deviation
    scaled by the potential's calibration α around the mean prediction.
    """

    def __init__(self, potential: Potential, index: int) -> None:
        super().__init__(potential.species, potential.cutoff)
        self.potential, self.index = potential, int(index)
        self.strictly_local = getattr(potential, "strictly_local", False)
        self.long_range = getattr(potential, "long_range", False)  # evaluate differentiates positions and strain
        if hasattr(potential, "interaction_range"):
            self.interaction_range = potential.interaction_range
        self.scale = float(getattr(potential, "uncertainty_scale", 1.0))

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.potential(batch, vectors)
        members = out["energy_ensemble"]
        energy = out["energy"] + self.scale * (members[:, self.index] - members.mean(1))
        return {"energy": energy}


def members(potential: Potential) -> list[EnsembleMember]:
    """All members of an uncertainty-capable potential."""
    count = n_members(potential)
    if count == 0:
        raise ValueError(f"{type(potential).__name__} has no ensemble members: fit a shallow ensemble or LLPR first")
    return [EnsembleMember(potential, m) for m in range(count)]


@dataclass
class Propagated:
    """An observable propagated through the members: ``mean``, ``std`` and all ``values``."""

    mean: Any
    std: Any
    values: np.ndarray


def propagate(observable: Callable[[Potential], Any], potential: Potential) -> Propagated:
    """Evaluate ``observable(member)`` for every member; return mean ± std (ddof=0)."""
    values = np.array([np.asarray(observable(member), dtype=float) for member in members(potential)])
    return Propagated(values.mean(0), values.std(0), values)
