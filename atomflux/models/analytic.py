"""Analytic pair potentials: references to cross-check against ASE and LAMMPS.

Both come with two documented cutoff conventions:

``"shifted"``
    ``u(r) - u(r_c)`` for r < r_c, zero beyond: energy continuous, forces jump
    at r_c.  Same as ASE ``LennardJones(smooth=False)`` and LAMMPS
    ``pair_style lj/cut`` with ``pair_modify shift yes``.
``"smooth"``
    ``u(r) · s(r²)`` with the C¹ switch :func:`~atomflux.models.cutoffs.switch_r2`
    between ``r_on`` (default 0.66 r_c) and r_c: energy and forces continuous.
    Same as ASE ``LennardJones(smooth=True)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..systems import Batch
from .base import Potential
from .cutoffs import switch_r2

CUTOFF_MODES = ("shifted", "smooth")


class PairPotential(Potential):
    """A potential that is a sum of one radial pair term over neighbour pairs.

    Subclasses implement :meth:`raw_pair_energy`.  Atom i gets half of each
    pair term it takes part in.
    """

    strictly_local = True
    pairwise = True

    def __init__(self, cutoff: float, cutoff_mode: str = "shifted", r_on: float | None = None,
                 species: Sequence[str] | None = None) -> None:
        super().__init__(species, cutoff)
        if cutoff_mode not in CUTOFF_MODES:
            raise ValueError(f"cutoff_mode must be one of {CUTOFF_MODES}, got {cutoff_mode!r}")
        self.cutoff_mode = cutoff_mode
        self.r_on = 0.66 * self.cutoff if r_on is None else float(r_on)
        if cutoff_mode == "smooth" and not 0 < self.r_on < self.cutoff:
            raise ValueError(f"need 0 < r_on < cutoff, got r_on={self.r_on}, cutoff={self.cutoff}")

    def raw_pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        """Untruncated pair energy u(r) in eV for distances r in Å."""
        raise NotImplementedError

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        """Pair energy with the cutoff convention applied (eV), same shape as r."""
        inside = r < self.cutoff
        safe_r = torch.where(inside, r, torch.full_like(r, 0.5 * self.cutoff))
        u = self.raw_pair_energy(safe_r)
        if self.cutoff_mode == "shifted":
            u = u - self.raw_pair_energy(torch.full_like(r[:1], self.cutoff))
        else:
            u = u * switch_r2(safe_r**2, self.r_on, self.cutoff)
        return torch.where(inside, u, torch.zeros_like(u))

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.species is not None:
            self.species_index(batch.numbers)
        r = torch.linalg.norm(vectors, dim=1)
        half = 0.5 * self.pair_energy(r)
        energy = torch.zeros(len(batch.numbers), dtype=vectors.dtype, device=vectors.device)
        return {"energy": energy.index_add(0, batch.pairs[:, 0], half)}


class LennardJones(PairPotential):
    """Lennard-Jones ``u(r) = 4ε[(σ/r)¹² - (σ/r)⁶]``.

    Parameters
    ----------
    sigma : float
        σ in Å.
    epsilon : float
        ε in eV.
    cutoff : float
        r_c in Å (default 3σ, as ASE).
    cutoff_mode : {"shifted", "smooth"}
        See the module docstring.
    r_on : float, optional
        Start of the smooth switch in Å (default 0.66 r_c).
    species : list of str, optional
        Elements the potential is meant for (``None``: any).
    """

    architecture = "LennardJones"

    def __init__(self, sigma: float = 1.0, epsilon: float = 1.0, cutoff: float | None = None,
                 cutoff_mode: str = "shifted", r_on: float | None = None,
                 species: Sequence[str] | None = None) -> None:
        super().__init__(3.0 * sigma if cutoff is None else cutoff, cutoff_mode, r_on, species)
        self.sigma = float(sigma)
        self.epsilon = float(epsilon)

    def raw_pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        s2 = (self.sigma / r) ** 2
        s6 = s2 * s2 * s2           # products, not a 6th power: faster, and so is their gradient
        return 4.0 * self.epsilon * (s6 * s6 - s6)

    def config(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "epsilon": self.epsilon, "cutoff": self.cutoff,
                "cutoff_mode": self.cutoff_mode, "r_on": self.r_on, "species": self.species}


class Morse(PairPotential):
    """Morse ``u(r) = D[e^{-2a(r - r0)} - 2e^{-a(r - r0)}]``.

    Parameters
    ----------
    D : float
        Well depth in eV.
    a : float
        Stiffness in 1/Å.
    r0 : float
        Equilibrium distance in Å.
    cutoff : float
        r_c in Å.
    cutoff_mode, r_on, species
        As for :class:`LennardJones`.
    """

    architecture = "Morse"

    def __init__(self, D: float = 1.0, a: float = 1.5, r0: float = 2.5, cutoff: float = 6.0,
                 cutoff_mode: str = "shifted", r_on: float | None = None,
                 species: Sequence[str] | None = None) -> None:
        super().__init__(cutoff, cutoff_mode, r_on, species)
        self.D, self.a, self.r0 = float(D), float(a), float(r0)

    def raw_pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        x = torch.exp(-self.a * (r - self.r0))
        return self.D * (x * x - 2.0 * x)

    def config(self) -> dict[str, Any]:
        return {"D": self.D, "a": self.a, "r0": self.r0, "cutoff": self.cutoff,
                "cutoff_mode": self.cutoff_mode, "r_on": self.r_on, "species": self.species}
