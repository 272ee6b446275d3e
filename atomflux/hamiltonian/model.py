"""The Hamiltonian head: an effective minimal-basis Hamiltonian from atomic environments.

Architecture (documented choice: Slater–Koster assembly with environment-
dependent integrals).  A :class:`~atomflux.models.PowerSpectrumPotential`
backbone gives invariant features h_i of every atom.  In the minimal basis
(slots ``1s, 2s, 2p``, see :mod:`.basis`):

- on-site block of atom i: learned scalars (1s, 2s, 1s–2s, isotropic 2p) from
  h_i, plus environment terms that rotate with the molecule — s–p couplings
  Σ_j w(r_ij, h_i, h_j) d̂_ij and a p–p tensor Σ_j u(...) d̂_ij d̂_ijᵀ;
- off-site block of a pair: two-centre Slater–Koster form with learned
  integrals V(r_ij, h_i, h_j) — ssσ (four s–s combinations), spσ, psσ, ppσ,
  ppπ — times the direction cosines d̂_ij, with a smooth cutoff;
- both are corrections to an extended-Hückel baseline, H⁰_μν = K S_μν (ε_μ + ε_ν)/2
  off the diagonal and ε_μ on it (ε_μ: per-element STO-3G Fock diagonals, K
  learned from 1.75), which transfers between molecules and makes the learned
  part small (on held-out molecules it cut the error by 3–4×);
- H is symmetrised, the overlap S is the exact minimal-basis (STO-3G)
  overlap, and the orbital energies solve H C = S C ε through a Cholesky
  factor of S (differentiable, also in the positions).

Every block is built from invariants times d̂ and d̂d̂ᵀ, so rotating the
molecule rotates H exactly like the p orbitals (H' = D H Dᵀ) and leaves ε
unchanged; positions enter only through pair vectors and the overlap, so
translations change nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..models.base import Potential
from ..models.cutoffs import polynomial_cutoff
from ..models.power_spectrum import PowerSpectrumPotential
from ..systems import Batch
from .basis import EMPTY_SLOT_ENERGY, SLOTS, MinimalBasis

#: number of learned values per pair: 4 ssσ, 2 spσ, 2 psσ, ppσ, ppπ (off-site), 2 s–p vectors, 1 p–p tensor (on-site)
N_PAIR_OUTPUTS = 13
#: on-site scalars per atom: 1s, 2s, 1s–2s, isotropic 2p
N_SITE_OUTPUTS = 4


class HamiltonianModel(Potential):
    """Minimal-basis effective Hamiltonian whose eigenvalues target large-basis MO energies.

    Parameters
    ----------
    species
        Elements (H to Ne).
    basis
        Minimal-basis shells ``{element: [[l, [[exponent, coefficient], ...]], ...]}``
        (see :func:`.basis.sto3g_parameters`).
    cutoff
        Range (Å) of the environment features and of the off-site blocks.
    n_radial, n_channels, max_angular, hidden
        Backbone (power spectrum) hyper-parameters; ``hidden[-1]`` is the
        feature size.
    pair_hidden
        Width of the pair network.
    energy_unit
        Scale (eV) of the networks' outputs.
    """

    architecture = "HamiltonianModel"
    predicts_energy = False

    def __init__(self, species: Sequence[str], basis: dict[str, Any], cutoff: float = 5.0, n_radial: int = 6,
                 n_channels: int = 6, max_angular: int = 2, hidden: Sequence[int] = (32, 32),
                 pair_hidden: int = 64, energy_unit: float = 10.0) -> None:
        super().__init__(species, cutoff)
        missing = [s for s in self.species if s not in basis]
        if missing:
            raise ValueError(f"no minimal basis given for {missing}")
        self.basis = MinimalBasis({s: basis[s] for s in self.species})
        self.backbone = PowerSpectrumPotential(species, cutoff, n_radial, n_channels, max_angular, hidden)
        self.pair_hidden, self.energy_unit = int(pair_hidden), float(energy_unit)
        n_feat, n_s = self.backbone.n_features, self.n_species
        self.n_rbf = 8
        self.site_head = torch.nn.Linear(n_feat, N_SITE_OUTPUTS)
        self.pair_net = torch.nn.Sequential(
            torch.nn.Linear(self.n_rbf + 2 * (n_feat + n_s), self.pair_hidden), torch.nn.SiLU(),
            torch.nn.Linear(self.pair_hidden, self.pair_hidden), torch.nn.SiLU(),
            torch.nn.Linear(self.pair_hidden, N_PAIR_OUTPUTS))
        # per-species on-site reference energies (eV), set from minimal-basis Fock diagonals
        self.register_buffer("site_baseline", torch.zeros(n_s, N_SITE_OUTPUTS))
        # Wolfsberg–Helmholz constant of the extended-Hückel baseline H_μν = K S_μν (ε_μ + ε_ν)/2
        self.huckel_constant = torch.nn.Parameter(torch.tensor(1.75))
        with torch.no_grad():
            self.site_head.weight.mul_(0.1)
            self.pair_net[-1].weight.mul_(0.1)

    def config(self) -> dict[str, Any]:
        b = self.backbone
        return {"species": self.species, "basis": self.basis.shells, "cutoff": self.cutoff,
                "n_radial": b.n_radial, "n_channels": b.n_channels, "max_angular": b.max_angular,
                "hidden": b.hidden, "pair_hidden": self.pair_hidden, "energy_unit": self.energy_unit}

    # -- building H and S --------------------------------------------------
    def _radial(self, r: torch.Tensor) -> torch.Tensor:
        centres = torch.linspace(0.5, self.cutoff, self.n_rbf, dtype=r.dtype, device=r.device)
        width = (self.cutoff - 0.5) / (self.n_rbf - 1)
        return torch.exp(-((r[:, None] - centres) / width) ** 2)

    def forward(self, batch: Batch, vectors: torch.Tensor | None = None,
                overlap: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Hamiltonian and overlap of every molecule of the batch in the padded slot layout.

        ``overlap`` (from an earlier call on the same geometries) is reused
        instead of recomputed: it has no parameters (training reuses it).

        Returns
        -------
        dict
            ``hamiltonian`` and ``overlap``: Tensor [S, 5A, 5A] (eV; A = most atoms
            in one molecule); ``slots``: Tensor [S, 5A] (bool, slot holds a basis
            function).
        """
        if bool(batch.pbc.any()):
            raise ValueError("the Hamiltonian head handles molecules only (no periodic boundary conditions)")
        vectors = batch.pair_vectors() if vectors is None else vectors
        species = self.species_index(batch.numbers)
        dtype, device = vectors.dtype, vectors.device
        features = self.backbone(batch, vectors)["features"]                       # [N, F]
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(dtype)
        site = self.site_baseline[species] + self.energy_unit * self.site_head(features)   # [N, 4]

        i, j = batch.pairs[:, 0], batch.pairs[:, 1]
        r = torch.linalg.norm(vectors, dim=1)
        d = vectors / r[:, None]
        pair_in = torch.cat([self._radial(r), features[i], onehot[i], features[j], onehot[j]], dim=1)
        v = self.energy_unit * self.pair_net(pair_in) * polynomial_cutoff(r, self.cutoff)[:, None]   # [P, 13]

        n_atoms = len(species)
        eye3 = torch.eye(3, dtype=dtype, device=device)
        dd = d[:, :, None] * d[:, None, :]
        onsite = torch.zeros(n_atoms, SLOTS, SLOTS, dtype=dtype, device=device)
        onsite[:, 0, 0], onsite[:, 1, 1] = site[:, 0], site[:, 1]
        onsite[:, 0, 1] = onsite[:, 1, 0] = site[:, 2]
        onsite[:, 2:, 2:] = site[:, 3, None, None] * eye3
        env = torch.zeros(len(r), SLOTS, SLOTS, dtype=dtype, device=device)
        env[:, 0, 2:] = env[:, 2:, 0] = v[:, 10, None] * d
        env[:, 1, 2:] = env[:, 2:, 1] = v[:, 11, None] * d
        env[:, 2:, 2:] = v[:, 12, None, None] * dd
        onsite = onsite.index_add(0, i, env)

        off = torch.zeros(len(r), SLOTS, SLOTS, dtype=dtype, device=device)
        off[:, :2, :2] = v[:, :4].reshape(-1, 2, 2)
        off[:, :2, 2:] = v[:, 4:6, None] * d[:, None, :]
        off[:, 2:, :2] = -d[:, :, None] * v[:, None, 6:8]
        off[:, 2:, 2:] = v[:, 9, None, None] * eye3 + (v[:, 8] - v[:, 9])[:, None, None] * dd

        first = torch.cumsum(batch.n_atoms, 0) - batch.n_atoms                     # first atom of each system
        local = torch.arange(n_atoms, device=device) - first[batch.system]
        width = int(batch.n_atoms.max())
        blocks = torch.zeros(batch.n_systems, width, width, SLOTS, SLOTS, dtype=dtype, device=device)
        blocks = blocks.index_put((batch.system, local, local), onsite, accumulate=True)
        blocks = blocks.index_put((batch.system[i], local[i], local[j]), off, accumulate=True)
        n = width * SLOTS
        h = blocks.permute(0, 1, 3, 2, 4).reshape(batch.n_systems, n, n)
        h = 0.5 * (h + h.transpose(1, 2))

        numbers = torch.zeros(batch.n_systems, width, dtype=torch.long, device=device)
        numbers[batch.system, local] = batch.numbers
        positions = torch.zeros(batch.n_systems, width, 3, dtype=dtype, device=device)
        positions = positions.index_put((batch.system, local), batch.positions.to(dtype))
        slots = self.basis.slot_mask(numbers).reshape(batch.n_systems, n)
        both = slots[:, :, None] & slots[:, None, :]
        empty = EMPTY_SLOT_ENERGY * torch.eye(n, dtype=dtype, device=device)
        h = torch.where(both, h, empty.expand_as(h))
        if overlap is None:
            overlap = self.basis.overlap(positions, numbers)
        h = h + self._huckel(overlap, numbers, slots)
        return {"hamiltonian": h, "overlap": overlap, "slots": slots}

    def _huckel(self, overlap: torch.Tensor, numbers: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Extended-Hückel off-diagonal baseline K S_μν (ε_μ + ε_ν)/2 (eV), zero on the diagonal and for empty slots.

        ε_μ are the per-species reference orbital energies (:attr:`site_baseline`); the
        learned blocks are corrections to this transferable baseline.
        """
        reference = self.site_baseline[:, [0, 1, 3, 3, 3]]                           # [species, 5]
        index = self.species_table[numbers].clamp(min=0)
        energies = reference[index].flatten(-2) * slots                               # [S, 5A]
        mean = 0.5 * (energies[:, :, None] + energies[:, None, :])
        off_diagonal = 1.0 - torch.eye(overlap.shape[-1], dtype=overlap.dtype, device=overlap.device)
        both = (slots[:, :, None] & slots[:, None, :]).to(overlap.dtype)
        return self.huckel_constant * overlap * mean * off_diagonal * both

    def orbital_energies(self, batch: Batch, positions: torch.Tensor | None = None,
                         overlap: torch.Tensor | None = None) -> torch.Tensor:
        """Eigenvalues of H C = S C ε, eV, Tensor [S, 5A], ascending; the first
        ``n_orbitals`` of each molecule are physical, the rest are empty slots.

        ``positions`` [N, 3] (Å) may be a tensor requiring grad, to differentiate ε.
        """
        if positions is not None:
            from dataclasses import replace

            batch = replace(batch, positions=positions)
        out = self(batch, batch.pair_vectors(), overlap)
        return generalized_eigenvalues(out["hamiltonian"], out["overlap"])

    @torch.no_grad()
    def fit_statistics(self, batches: Sequence[Batch], fock_diagonals: Sequence[np.ndarray]) -> None:
        """Backbone descriptor standardisation, and on-site baselines from minimal-basis Fock diagonals.

        ``fock_diagonals[k]`` lists the STO-3G Fock diagonal (eV) of molecule k in
        AO order (per atom: 1s[, 2s, 2px, 2py, 2pz]).
        """
        self.backbone.fit_statistics(batches, [None] * len(batches))
        sums = torch.zeros(self.n_species, N_SITE_OUTPUTS, dtype=torch.float64)
        counts = torch.zeros(self.n_species, 1, dtype=torch.float64)
        for batch, diagonal in zip(batches, fock_diagonals):
            sizes = self.basis.slot_mask(batch.numbers).sum(1).tolist()             # basis functions per atom
            starts = [0] + list(np.cumsum(sizes)[:-1])
            for s, start, n in zip(self.species_index(batch.numbers).tolist(), starts, sizes):
                values = torch.as_tensor(diagonal[start:start + n], dtype=torch.float64)
                row = torch.zeros(N_SITE_OUTPUTS, dtype=torch.float64)
                row[0] = values[0]
                if n == SLOTS:
                    row[1], row[3] = values[1], values[2:].mean()
                sums[s] += row
                counts[s] += 1
        self.site_baseline.copy_((sums / counts.clamp(min=1)).to(self.site_baseline.dtype))


def generalized_eigenvalues(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eigenvalues [..., n] of H C = S C ε for symmetric H and positive-definite S [..., n, n]."""
    cholesky = torch.linalg.cholesky(s)
    left = torch.linalg.solve_triangular(cholesky, h, upper=False)
    reduced = torch.linalg.solve_triangular(cholesky, left.transpose(-1, -2), upper=False)
    return torch.linalg.eigvalsh(0.5 * (reduced + reduced.transpose(-1, -2)))

