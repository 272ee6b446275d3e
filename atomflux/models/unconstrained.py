"""An unconstrained variant of the reference architecture: lab-frame Cartesian moments, not invariants.

Same neighbour density as :class:`~atomflux.models.PowerSpectrumPotential`
(radial channels g_c(r_ij), species-mixed, C² cutoff), but the network is fed
the *uncontracted* moments in the lab frame::

    A_i,c,l,α = (1/n̄) Σ_j g_c(r_ij) √w_α m_α(r̂_ij)        (l = 0..max_angular, α: monomials of degree l)

with w_α = l!/(a!b!c!) the multinomial weights, so that Σ_α A²_i,c,l,α is
rotation invariant.  An MLP of all of them can represent the power spectrum
(and more), but nothing makes it invariant: rotating the structure changes
its inputs, and the energy changes unless the network has learned not to
care.  Invariance is learned from data (``TrainConfig(augment=True)``: a
random rotation of every structure at every step) and can be measured and
enforced afterwards by averaging (:mod:`atomflux.symmetry`).  Its rotational
content is of every degree (the MLP is nonlinear), dominated by degrees
≤ max_angular.

Inputs are standardised with scalars per channel and degree (for l > 0 the
root-mean-square block norm, no mean), so standardisation itself does not
favour any direction.  Translation invariance and permutation invariance hold
exactly, as in every atomflux model.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..systems import Batch
from .base import Potential, fit_energy_baseline
from .cutoffs import polynomial_cutoff


def monomial_exponents(max_angular: int) -> list[list[tuple[int, int, int]]]:
    """Exponents (a, b, c) of the monomials x^a y^b z^c of each degree l = 0..max_angular."""
    return [[(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]
            for l in range(max_angular + 1)]


class UnconstrainedPotential(Potential):
    """Many-body potential on lab-frame Cartesian moments (see module doc); not rotation invariant.

    Parameters
    ----------
    species : list of str
        Elements the model knows.
    cutoff : float
        Cutoff radius in Å.
    n_radial : int
        Number of radial basis functions.
    n_channels : int
        Species-mixed radial channels C.
    max_angular : int
        Highest degree l of the moments.
    hidden : sequence of int
        Widths of the MLP hidden layers; the last is the feature size F.
    n_ensemble : int
        Outputs of the last layer; > 1 makes it a shallow ensemble.
    """

    architecture = "UnconstrainedPotential"
    strictly_local = True

    def __init__(self, species: Sequence[str], cutoff: float = 4.5, n_radial: int = 8, n_channels: int = 8,
                 max_angular: int = 3, hidden: Sequence[int] = (64, 64), n_ensemble: int = 1) -> None:
        super().__init__(species, cutoff)
        if not species:
            raise ValueError("UnconstrainedPotential needs at least one species")
        self.n_radial, self.n_channels, self.max_angular = int(n_radial), int(n_channels), int(max_angular)
        self.hidden = [int(h) for h in hidden]
        self.n_ensemble = int(n_ensemble)
        S, K, C = self.n_species, self.n_radial, self.n_channels
        self.radial_weights = torch.nn.Parameter(torch.randn(S, K, C) / math.sqrt(K))
        self.centre_weights = torch.nn.Parameter(torch.ones(S, C))
        exponents = [e for degree in monomial_exponents(self.max_angular) for e in degree]
        multinomial = [math.factorial(sum(e)) / math.prod(math.factorial(x) for x in e) for e in exponents]
        self.register_buffer("exponents", torch.tensor(exponents, dtype=torch.long), persistent=False)
        self.register_buffer("degree_of", torch.tensor([sum(e) for e in exponents], dtype=torch.long),
                             persistent=False)
        self.register_buffer("sqrt_weights", torch.tensor(multinomial).sqrt())
        self.n_monomials = len(exponents)
        self.n_descriptors = C * self.n_monomials
        # statistics of the training data (set by fit_statistics)
        self.register_buffer("inv_neighbours", torch.tensor(1.0))
        self.register_buffer("descriptor_mean", torch.zeros(self.n_descriptors))
        self.register_buffer("descriptor_std", torch.ones(self.n_descriptors))
        self.register_buffer("baseline", torch.zeros(S))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        layers: list[torch.nn.Module] = []
        width = self.n_descriptors + S
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
            width = h
        self.backbone = torch.nn.Sequential(*layers)
        self.last_layer = torch.nn.Linear(width, self.n_ensemble)

    @property
    def n_features(self) -> int:
        return self.hidden[-1] if self.hidden else self.n_descriptors + self.n_species

    def config(self) -> dict[str, Any]:
        return {"species": self.species, "cutoff": self.cutoff, "n_radial": self.n_radial,
                "n_channels": self.n_channels, "max_angular": self.max_angular,
                "hidden": self.hidden, "n_ensemble": self.n_ensemble}

    def descriptors(self, batch: Batch, vectors: torch.Tensor) -> torch.Tensor:
        """Raw lab-frame moments A_i,c,l,α, Tensor [N, C·n_monomials] (channel-major)."""
        species = self.species_index(batch.numbers)
        i, j = batch.pairs[:, 0], batch.pairs[:, 1]
        r = torch.linalg.norm(vectors, dim=1).clamp(min=1e-6)
        unit = vectors / r[:, None]
        k = torch.arange(1, self.n_radial + 1, dtype=r.dtype, device=r.device)
        basis = (math.sqrt(2.0 / self.cutoff) * torch.sin(k * (math.pi / self.cutoff) * r[:, None])
                 / r[:, None] * polynomial_cutoff(r, self.cutoff)[:, None])            # [P, K]
        weights = self.radial_weights[species[j]]                                       # [P, K, C]
        g = torch.einsum("pk,pkc->pc", basis, weights) * self.centre_weights[species[i]] * self.inv_neighbours
        powers = torch.stack([unit**p for p in range(self.max_angular + 1)], dim=1)      # [P, L+1, 3]
        e = self.exponents
        monomials = powers[:, e[:, 0], 0] * powers[:, e[:, 1], 1] * powers[:, e[:, 2], 2]  # [P, n_mono]
        monomials = monomials * self.sqrt_weights.to(r.dtype)
        outer = torch.bmm(g[:, :, None], monomials[:, None, :]).reshape(len(r), -1)       # [P, C·n_mono]
        return torch.zeros(len(species), outer.shape[1], dtype=r.dtype, device=r.device).index_add(0, i, outer)

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        species = self.species_index(batch.numbers)
        x = (self.descriptors(batch, vectors) - self.descriptor_mean) / self.descriptor_std
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(x.dtype)
        features = self.backbone(torch.cat([x, onehot], dim=1))
        members = self.last_layer(features) * self.energy_scale + self.baseline[species][:, None]
        out = {"energy": members.mean(dim=1), "features": features}
        if self.n_ensemble > 1:
            out["energy_ensemble"] = members
        return out

    @torch.no_grad()
    def fit_statistics(self, batches: Sequence[Batch], energies: Sequence[float | None],
                       forces_rms: float | None = None) -> None:
        """Neighbour normalisation, input scales and composition baseline from training data.

        Parameters
        ----------
        batches
            One batch per training structure.
        energies
            Total energy of each structure in eV (``None`` where unknown).
        forces_rms
            RMS force component of the training data (eV/Å), the energy scale
            of the network output; default: residual energy std.
        """
        dtype = self.baseline.dtype
        fit_energy_baseline(self, batches, energies, forces_rms)   # inv_neighbours first: the descriptors use it
        desc = torch.cat([self.descriptors(b.to(dtype), b.to(dtype).pair_vectors()) for b in batches])
        desc = desc.view(len(desc), self.n_channels, self.n_monomials)
        mean = torch.zeros_like(desc[0])
        mean[:, 0] = desc[:, :, 0].mean(0)                                  # l = 0: centred, invariant
        centred = desc - mean
        std = torch.ones_like(desc[0])
        for degree in range(self.max_angular + 1):                          # one scale per (channel, degree)
            block = self.degree_of == degree
            rms = centred[:, :, block].pow(2).sum(2).mean(0).div(int(block.sum())).sqrt()
            std[:, block] = rms.clamp(min=1e-6)[:, None]
        self.descriptor_mean.copy_(mean.reshape(-1))
        self.descriptor_std.copy_(std.reshape(-1))
