"""Smooth switching functions used by the potentials (dimensionless)."""

from __future__ import annotations

import torch


def polynomial_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Quintic switch ``1 - 10x³ + 15x⁴ - 6x⁵`` with ``x = r / cutoff``.

    Equals 1 at r = 0 and 0 at r >= cutoff, with vanishing first and second
    derivatives at both ends (C² everywhere).  Shape follows ``r``.
    """
    x = torch.clamp(r / cutoff, max=1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def switch_r2(r2: torch.Tensor, r_on: float, r_off: float) -> torch.Tensor:
    """C¹ switch in r²: 1 below ``r_on``, 0 above ``r_off`` (both Å).

    Between them ``s = (b - x)² (b + 2x - 3a) / (b - a)³`` with ``x = r²``,
    ``a = r_on²``, ``b = r_off²``; this is the convention of ASE's
    ``LennardJones(smooth=True)``, so the two can be compared directly.
    """
    a, b = r_on**2, r_off**2
    inside = (b - r2) ** 2 * (b + 2.0 * r2 - 3.0 * a) / (b - a) ** 3
    return torch.where(r2 < a, torch.ones_like(r2), torch.where(r2 < b, inside, torch.zeros_like(r2)))
