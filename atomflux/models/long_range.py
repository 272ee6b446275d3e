"""A power-spectrum potential with a long-range head: learned charges in Ewald/PME fields.

Per atom i, a linear head on the short-range model's last-layer features f_i
plus a learnt charge of its species gives one "charge" per exponent p (:mod:`atomflux.models.long_range_field`):
q_i (e) for Coulomb (p = 1), c_i for dispersion (p = 6, kernel -c_i c_j / r⁶ eV).
With ``neutral`` the Coulomb charges of every system are shifted by their
mean, so each system has total charge 0.  The energy is

    E = Σ_i e_i^SR + Σ_i q_i Ṽ_i                                          (eV)

with Ṽ_i the field of all other atoms and images minus the smoothly
excluded pairs within the cutoff (so the short-range model alone describes
them).  The per-atom energies are e_i = e_i^SR + q_i Ṽ_i (half of every pair
term to each atom).

The long-range energy depends on absolute positions and on the cell, not
only on pair vectors: the model declares ``long_range = True`` and
:func:`atomflux.evaluate` differentiates it with respect to positions and
strain (forces, stress, ensemble members).  Per-atom virials, pair gradients
and the heat flux are not defined for it (see :func:`atomflux.evaluate`).

Uncertainty: the ``features`` output is the Jacobian of the atomic energy
with respect to the readout and charge-head weights, [f_i, u_i f_i, u_i]
per charge channel with u_i = ∂E/∂q_i (the Gauss–Newton linearisation of
the long-range energy in the charge head), so LLPR covers both heads.  A
shallow ensemble (``n_ensemble > 1``) varies the short-range readout only;
all members share the long-range energy.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..systems import Batch
from .long_range_field import LongRangeField
from .power_spectrum import PowerSpectrumPotential
from .base import Potential


class LongRangePotential(Potential):
    """:class:`~atomflux.models.PowerSpectrumPotential` plus learned charges in long-range fields.

    Parameters
    ----------
    species, cutoff, n_radial, n_channels, max_angular, hidden, n_ensemble
        The short-range model (see :class:`~atomflux.models.PowerSpectrumPotential`); the cutoff (Å)
        is also the exclusion radius of the long-range part.
    exponents : sequence of int
        One charge channel per exponent: 1 (Coulomb, charges in e) and/or 6 (dispersion).
    neutral : bool
        Constrain the Coulomb charges of every system to sum to zero.
    accuracy : float
        Target RMS force error of the k-space sums for unit charges, eV/Å.
    method : str
        ``"auto"`` (Ewald for small cells, PME for large), ``"ewald"``, ``"pme"`` or ``"p3m"``;
        non-periodic systems use the direct sum.  May be changed after loading (``potential.method``).
    """

    architecture = "LongRangePotential"
    strictly_local = False
    #: energies depend on positions and cell beyond the cutoff (Ewald/PME): evaluate differentiates
    #: positions and strain, and pair_style atomflux refuses the model
    long_range = True

    def __init__(self, species: Sequence[str], cutoff: float = 4.5, n_radial: int = 8, n_channels: int = 8,
                 max_angular: int = 3, hidden: Sequence[int] = (64, 64), n_ensemble: int = 1,
                 exponents: Sequence[int] = (1,), neutral: bool = True, accuracy: float = 1e-3,
                 method: str = "auto") -> None:
        super().__init__(species, cutoff)
        self.short_range = PowerSpectrumPotential(species, cutoff, n_radial, n_channels, max_angular, hidden,
                                                  n_ensemble)
        self.field = LongRangeField(cutoff, exponents, accuracy, method)
        self.neutral = bool(neutral)
        n = self.short_range.n_features
        self.charge_head = torch.nn.Linear(n, len(self.field.exponents))
        torch.nn.init.normal_(self.charge_head.weight, std=0.3 / math.sqrt(n))
        torch.nn.init.zeros_(self.charge_head.bias)
        #: a charge per species and channel added to the head's output (formal charges are learnt fastest here)
        self.species_charges = torch.nn.Parameter(torch.zeros(self.n_species, len(self.field.exponents)))
        self.n_ensemble = self.short_range.n_ensemble

    @property
    def method(self) -> str:
        return self.field.method

    @method.setter
    def method(self, value: str) -> None:
        self.field.method = value

    @property
    def n_features(self) -> int:
        return self.short_range.n_features * (1 + len(self.field.exponents)) + len(self.field.exponents)

    def config(self) -> dict[str, Any]:
        return {**self.short_range.config(), "exponents": self.field.exponents, "neutral": self.neutral,
                "accuracy": self.field.accuracy, "method": self.field.method}

    def fit_statistics(self, batches: Sequence[Batch], energies: Sequence[float | None],
                       forces_rms: float | None = None) -> None:
        """Statistics of the short-range model (descriptor standardisation, energy baseline)."""
        self.short_range.fit_statistics(batches, energies, forces_rms)

    def charges(self, batch: Batch, features: torch.Tensor) -> torch.Tensor:
        """Charges [N, C] from the short-range features (Coulomb column neutral per system if asked)."""
        charges = self.charge_head(features) + self.species_charges[self.species_index(batch.numbers)]
        if self.neutral and 1 in self.field.exponents:
            c = self.field.exponents.index(1)
            mean = _system_mean(charges[:, c], batch)
            charges = torch.cat([charges[:, :c], (charges[:, c] - mean)[:, None], charges[:, c + 1:]], dim=1)
        return charges

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.short_range(batch, vectors))
        features = out["features"]
        charges = self.charges(batch, features)
        fields = self.field.fields(batch, vectors, charges)
        long_range = (charges * fields).sum(1)
        out["energy"] = out["energy"] + long_range
        if "energy_ensemble" in out:
            out["energy_ensemble"] = out["energy_ensemble"] + long_range[:, None]
        # ∂E/∂q_i = 2 Ṽ_i (E is quadratic in q); with neutrality, q_i = q̂_i - mean q̂: minus the system mean
        slopes = 2 * fields
        if self.neutral and 1 in self.field.exponents:
            c = self.field.exponents.index(1)
            slopes = torch.cat([slopes[:, :c], (slopes[:, c] - _system_mean(slopes[:, c], batch))[:, None],
                                slopes[:, c + 1:]], dim=1)
        jacobian = [features] + [slopes[:, c:c + 1] * features for c in range(slopes.shape[1])] + [slopes]
        out["features"] = torch.cat(jacobian, dim=1)
        out["charges"] = charges
        out["long_range_energy"] = long_range
        return out


def _system_mean(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean of per-atom values [N] over each atom's system, broadcast back to [N]."""
    sums = torch.zeros(batch.n_systems, dtype=values.dtype, device=values.device).index_add(0, batch.system, values)
    return (sums / batch.n_atoms.to(values.dtype))[batch.system]


__all__ = ["LongRangePotential"]
