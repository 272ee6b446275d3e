"""A deliberately anisotropic potential: the subject of the averaging tests and examples.

    E = Σ_{i<j} [ u_LJ(r_ij) + ε P_L(â · r̂_ij) f_c(r_ij) ]

with u_LJ the smooth Lennard-Jones pair term, â a fixed lab-frame axis, P_L
the Legendre polynomial of even degree L and f_c the C² quintic switch.  The
second term is a sum of spherical harmonics of degree L of the bond
directions: its average over all rotations is exactly zero, so the
rotational average of this potential is exactly the Lennard-Jones potential
once the grid integrates degree L.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import legendre

from ..models.analytic import LennardJones
from ..models.cutoffs import polynomial_cutoff
from ..systems import Batch


class AnisotropicLennardJones(LennardJones):
    """Lennard-Jones (smooth cutoff) plus ε P_L(â · r̂) per bond (see module doc).

    Parameters
    ----------
    sigma, epsilon, cutoff, species
        As for :class:`~atomflux.models.LennardJones` (σ in Å, ε in eV).
    anisotropy
        ε of the orientational term, eV per bond.
    degree
        Even Legendre degree L ≥ 2 (odd degrees cancel between r̂_ij and r̂_ji).
    axis
        The lab-frame axis â (normalised here).
    """

    def __init__(self, sigma: float = 2.3, epsilon: float = 0.2, cutoff: float | None = None,
                 anisotropy: float = 0.02, degree: int = 2, axis: Sequence[float] = (0.0, 0.0, 1.0),
                 species: Sequence[str] | None = None) -> None:
        super().__init__(sigma, epsilon, cutoff, cutoff_mode="smooth", species=species)
        if degree < 2 or degree % 2:
            raise ValueError(f"degree must be even and ≥ 2 (odd degrees cancel over the pair), got {degree}")
        norm = float(np.linalg.norm(axis))
        if norm == 0:
            raise ValueError("axis must be a non-zero vector")
        self.anisotropy, self.degree = float(anisotropy), int(degree)
        self.axis = [float(a) / norm for a in axis]
        self.legendre = [float(c) for c in legendre(self.degree).coeffs[::-1]]  # c_0 + c_1 x + ... + c_L x^L

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(batch, vectors)
        r = torch.linalg.norm(vectors, dim=1)
        cos = vectors @ torch.tensor(self.axis, dtype=vectors.dtype, device=vectors.device) / r
        p_l = sum(c * cos**k for k, c in enumerate(self.legendre) if c)
        half = 0.5 * self.anisotropy * p_l * polynomial_cutoff(r, self.cutoff)
        return {"energy": out["energy"].index_add(0, batch.pairs[:, 0], half)}

    def config(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "epsilon": self.epsilon, "cutoff": self.cutoff, "anisotropy": self.anisotropy,
                "degree": self.degree, "axis": self.axis, "species": self.species}
