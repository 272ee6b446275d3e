"""The rotational average of a potential, as a potential.

:class:`AveragedPotential` keeps the :class:`~atomflux.models.Potential`
contract, so every atomflux front end takes it unchanged (``evaluate``, the
ASE calculator, the i-PI driver, ``pair_style atomflux``, force sets, LLPR):
its per-atom energy is

    e_i(r) = Σ_k w_k e_i^base(r R_kᵀ)

computed in one forward pass of the base model on K rotated copies of the
batch (pair vectors ``r R_kᵀ``); :func:`~atomflux.evaluate.evaluate`
differentiates through the rotations, so forces, stress, virials, pair
gradients and the heat flux are those of the averaged energy (F = Σ w_k F'_k
R_k, S = Σ w_k R_kᵀ S'_k R_k).  Every other per-atom output (``features``,
``energy_ensemble``, ``llpr_features``) is averaged with the same weights,
which makes ensemble members and the LLPR variance those of the averaged
model (its energy is linear in the averaged last-layer features).

The spread over rotations (``*_rot_std``) needs each rotation's forces; the
ASE calculator :class:`~atomflux.symmetry.RotationalAverage` computes it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.base import Potential
from ..systems import Batch
from .quadrature import GridSampler
from .rotate import rotate_vectors, rotated_copies
from .spec import AverageSpec

#: attributes read from the base model (uncertainty and third-party-model hooks)
DELEGATED = ("uncertainty_scale", "energy_variance", "posterior", "n_samples", "n_ensemble", "n_features",
             "interaction_range", "dtypes")


class AveragedPotential(Potential):
    """``base`` averaged over a rotational quadrature (see module doc).

    Parameters
    ----------
    base
        Any potential (atomflux model, LLPR, shallow ensemble, third-party adapter).
    average
        The grid: an :class:`AverageSpec`, or its text (``"lebedev:3"``).
    seed
        Seed of the random rotations (``random`` grids draw afresh at every evaluation).

    Attributes
    ----------
    grid : GridSampler
        ``grid()`` is the quadrature of the next evaluation.
    """

    architecture = "AveragedPotential"

    def __init__(self, base: Potential, average: AverageSpec | str = AverageSpec(), seed: int = 0) -> None:
        if not getattr(base, "predicts_energy", True):
            raise ValueError(f"{type(base).__name__} predicts no energy: there is nothing to average")
        if isinstance(base, AveragedPotential):
            raise ValueError("this model is already rotationally averaged; give one averaging suffix only")
        if getattr(base, "long_range", False):
            raise ValueError(f"{type(base).__name__} is exactly rotation invariant and its long-range part depends on "
                             "positions and cell, which rotated pair-vector copies do not carry: use it without "
                             "an averaging suffix")
        super().__init__(base.species, base.cutoff)
        self.base = base
        self.average = AverageSpec.parse(average) if isinstance(average, str) else average
        self.strictly_local = bool(getattr(base, "strictly_local", False))
        self.metadata = dict(getattr(base, "metadata", {}) or {})
        self.grid = GridSampler(self.average.grid, self.average.order, self.average.inversion, seed)

    def __getattr__(self, name: str) -> Any:
        if name in DELEGATED:
            base = self.__dict__["_modules"].get("base")
            if base is None:
                raise AttributeError(name)
            return getattr(base, name)
        return super().__getattr__(name)

    def config(self) -> dict[str, Any]:
        """The base's architecture and config with the grid (for fingerprints; not a model file)."""
        try:
            base_config = self.base.config()
        except NotImplementedError:
            base_config = None
        return {"average": str(self.average), "base_architecture": getattr(self.base, "architecture", ""),
                "base": base_config}

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = self.grid()
        rotations = torch.as_tensor(grid.rotations, dtype=vectors.dtype, device=vectors.device)
        weights = torch.as_tensor(grid.weights, dtype=vectors.dtype, device=vectors.device)
        outputs = self.base(rotated_copies(batch, rotations), rotate_vectors(vectors, rotations))
        n_atoms = len(batch.numbers)
        averaged = {}
        for name, value in outputs.items():
            if value.shape[0] != len(weights) * n_atoms:
                raise ValueError(f"{type(self.base).__name__} output {name!r} is not per atom "
                                 f"(shape {tuple(value.shape)}): cannot average it over rotations")
            per_rotation = value.reshape((len(weights), n_atoms) + tuple(value.shape[1:]))
            averaged[name] = torch.tensordot(weights.to(value.dtype), per_rotation, dims=1)
        return averaged
