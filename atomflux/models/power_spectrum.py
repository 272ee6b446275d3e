"""The learnable reference architecture: a power-spectrum network.

Per atom i, a smooth neighbour density is expanded in radial channels and
Cartesian angular moments up to degree ``max_angular``::

    b_k(r)      = sqrt(2/r_c) sin(kπr/r_c)/r · f_c(r)              (k = 1..n_radial)
    g_c(r_ij)   = Σ_k b_k(r_ij) W[s_j, k, c] · E[s_i, c]             (c = 1..n_channels)
    A_i,c,l,α   = (1/n̄) Σ_j g_c(r_ij) m_α(r̂_ij)                     (m_α: monomials of degree l)

with f_c the C² quintic switch (so energies, forces and their first
derivatives are continuous at the cutoff), s_i the species of atom i and n̄
the mean number of neighbours in the training data.  Rotation-invariant
three-body features are

    p_i,l,c,c' = Σ_α w_α A_i,c,l,α A_i,c',l,α = (1/n̄²) Σ_jk g_c(r_ij) g_c'(r_ik) cos^l θ_jik

(w_α the multinomial weights), i.e. the SOAP power spectrum written with
Cartesian moments.  Together with the two-body A_i,c,0 and a one-hot of the
centre species they are standardised and passed through an MLP; its last
hidden layer is the ``features`` output (for LLPR), and a last linear layer
with ``n_ensemble`` outputs (a shallow ensemble when > 1) gives the atomic
energy, plus a per-species composition baseline fitted by least squares.
The nonlinear MLP of three-body features makes the model many-body.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..systems import Batch
from .base import Potential
from .cutoffs import polynomial_cutoff


def _monomial_tables(max_angular: int) -> tuple[list[list[tuple[int, int]]], list[torch.Tensor]]:
    """Recipes to build monomials of degree 1..L from degree l-1, and their weights.

    Returns, per degree l, a list of ``(parent_index, axis)`` for each monomial
    (parent in degree l-1) and a tensor of multinomial weights l!/(a!b!c!) such
    that ``Σ_α w_α m_α(u) m_α(v) = (u·v)^l``.
    """
    exps: list[list[tuple[int, int, int]]] = [[(0, 0, 0)]]
    recipes: list[list[tuple[int, int]]] = [[]]
    weights = [torch.ones(1, dtype=torch.float64)]
    for degree in range(1, max_angular + 1):
        seen: dict[tuple[int, int, int], tuple[int, int]] = {}
        for parent, e in enumerate(exps[-1]):
            for axis in range(3):
                child = tuple(e[k] + (k == axis) for k in range(3))
                seen.setdefault(child, (parent, axis))
        keys = sorted(seen, reverse=True)
        exps.append(keys)
        recipes.append([seen[k] for k in keys])
        weights.append(torch.tensor(
            [math.factorial(degree) / math.prod(math.factorial(x) for x in k) for k in keys],
            dtype=torch.float64))
    return recipes, weights


class PowerSpectrumPotential(Potential):
    """Invariant many-body potential for any number of elements (see module doc).

    Parameters
    ----------
    species : list of str
        Elements the model knows.
    cutoff : float
        Cutoff radius in Å.
    n_radial : int
        Number of radial basis functions.
    n_channels : int
        Species-mixed radial channels.
    max_angular : int
        Highest angular degree l of the moments (resolution in cos θ).
    hidden : sequence of int
        Widths of the MLP hidden layers; the last is the feature size F.
    n_ensemble : int
        Outputs of the last layer; > 1 makes it a shallow ensemble.
    """

    architecture = "PowerSpectrumPotential"
    strictly_local = True

    def __init__(self, species: Sequence[str], cutoff: float = 4.5, n_radial: int = 8,
                 n_channels: int = 8, max_angular: int = 3, hidden: Sequence[int] = (64, 64),
                 n_ensemble: int = 1) -> None:
        super().__init__(species, cutoff)
        if not species:
            raise ValueError("PowerSpectrumPotential needs at least one species")
        self.n_radial, self.n_channels, self.max_angular = int(n_radial), int(n_channels), int(max_angular)
        self.hidden = [int(h) for h in hidden]
        self.n_ensemble = int(n_ensemble)
        S, K, C = self.n_species, self.n_radial, self.n_channels
        self.radial_weights = torch.nn.Parameter(torch.randn(S, K, C) / math.sqrt(K))
        self.centre_weights = torch.nn.Parameter(torch.ones(S, C))
        recipes, weights = _monomial_tables(self.max_angular)
        for l, rec in enumerate(recipes[1:], start=1):  # how to build degree-l monomials from degree l-1
            self.register_buffer(f"parents_{l}", torch.tensor([p for p, _ in rec], dtype=torch.long), persistent=False)
            self.register_buffer(f"axes_{l}", torch.tensor([a for _, a in rec], dtype=torch.long), persistent=False)
        for l, w in enumerate(weights):
            self.register_buffer(f"moment_weights_{l}", w.to(torch.get_default_dtype()))
        triu = torch.triu_indices(C, C)
        self.register_buffer("triu", triu, persistent=False)
        n_desc = C + (self.max_angular + 1) * triu.shape[1]
        self.n_descriptors = n_desc
        # statistics of the training data (set by fit_statistics)
        self.register_buffer("inv_neighbours", torch.tensor(1.0))
        self.register_buffer("descriptor_mean", torch.zeros(n_desc))
        self.register_buffer("descriptor_std", torch.ones(n_desc))
        self.register_buffer("baseline", torch.zeros(S))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        layers: list[torch.nn.Module] = []
        width = n_desc + S
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

    # -- descriptor -------------------------------------------------------
    def descriptors(self, batch: Batch, vectors: torch.Tensor) -> torch.Tensor:
        """Raw (unstandardised) invariant descriptors, Tensor [N, D]."""
        species = self.species_index(batch.numbers)
        n_atoms = len(species)
        i, j = batch.pairs[:, 0], batch.pairs[:, 1]
        r = torch.linalg.norm(vectors, dim=1).clamp(min=1e-6)
        unit = vectors / r[:, None]
        k = torch.arange(1, self.n_radial + 1, dtype=r.dtype, device=r.device)
        basis = (math.sqrt(2.0 / self.cutoff) * torch.sin(k * (math.pi / self.cutoff) * r[:, None])
                 / r[:, None] * polynomial_cutoff(r, self.cutoff)[:, None])          # [P, K]
        mixed = torch.einsum("pk,skc->psc", basis, self.radial_weights)               # [P, S, C]
        g = mixed.gather(1, species[j].view(-1, 1, 1).expand(-1, 1, self.n_channels)).squeeze(1)
        g = g * self.centre_weights[species[i]] * self.inv_neighbours                 # [P, C]
        blocks = [torch.zeros(n_atoms, self.n_channels, dtype=r.dtype, device=r.device).index_add(0, i, g)]
        a0 = blocks[0]
        power = [(a0[:, :, None] * a0[:, None, :])[:, self.triu[0], self.triu[1]]]
        moments, degree_moments = torch.ones_like(r)[:, None], []
        for l in range(1, self.max_angular + 1):
            moments = moments[:, getattr(self, f"parents_{l}")] * unit[:, getattr(self, f"axes_{l}")]  # [P, n_l]
            degree_moments.append(moments)
        if degree_moments:
            all_moments = torch.cat(degree_moments, dim=1)                                  # [P, Σ n_l]
            # outer products as a batched matmul: its backward is a bmm too (fast), unlike broadcasting
            outer = torch.bmm(g[:, :, None], all_moments[:, None, :]).reshape(len(r), g.shape[1] * all_moments.shape[1])
            density = torch.zeros(n_atoms, outer.shape[1], dtype=r.dtype, device=r.device).index_add(0, i, outer)
            density = density.view(n_atoms, self.n_channels, -1)
            start = 0
            for l, m in enumerate(degree_moments, start=1):
                block = density[:, :, start:start + m.shape[1]]
                start += m.shape[1]
                w = getattr(self, f"moment_weights_{l}").to(r.dtype)
                p = torch.bmm(block * w, block.transpose(1, 2))                              # [N, C, C]
                power.append(p[:, self.triu[0], self.triu[1]])
        return torch.cat(blocks + power, dim=1)

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

    # -- statistics from data ---------------------------------------------
    @torch.no_grad()
    def fit_statistics(self, batches: Sequence[Batch], energies: Sequence[float | None],
                       forces_rms: float | None = None) -> None:
        """Set neighbour normalisation, descriptor standardisation and baseline.

        Parameters
        ----------
        batches
            One batch per training structure.
        energies
            Total energy of each structure in eV (``None`` where unknown).
        forces_rms
            RMS force component of the training data (eV/Å), used as the
            energy scale of the network output; default: residual energy std.
        """
        n_pairs = sum(b.pairs.shape[0] for b in batches)
        n_atoms = sum(len(b.numbers) for b in batches)
        self.inv_neighbours.fill_(n_atoms / max(n_pairs, 1))
        desc = torch.cat([self.descriptors(b.to(self.baseline.dtype), b.to(self.baseline.dtype).pair_vectors())
                          for b in batches])
        self.descriptor_mean.copy_(desc.mean(0))
        self.descriptor_std.copy_(desc.std(0).clamp(min=1e-6) if len(desc) > 1 else torch.ones_like(desc[0]))
        rows, targets = [], []
        for b, e in zip(batches, energies):
            if e is None:
                continue
            rows.append(torch.bincount(self.species_index(b.numbers), minlength=self.n_species).to(torch.float64))
            targets.append(float(e))
        if rows:
            a, y = torch.stack(rows), torch.tensor(targets, dtype=torch.float64)
            ridge = 1e-8 * torch.eye(a.shape[1], dtype=torch.float64)
            coef = torch.linalg.solve(a.T @ a + ridge, a.T @ y)
            self.baseline.copy_(coef.to(self.baseline.dtype))
            residual = (y - a @ coef) / a.sum(1)
            scale = forces_rms if forces_rms else float(residual.std()) if len(y) > 1 else 1.0
            self.energy_scale.fill_(max(scale, 1e-3))
        elif forces_rms:
            self.energy_scale.fill_(forces_rms)
