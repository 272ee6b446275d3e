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

Many elements (alchemical compression, arXiv:2310.07604): with ``n_pseudo``
= P, every element s is a learned point u_s ∈ R^P (the element →
pseudo-element matrix U [S, P]) and all species dependence goes through it:

    W[s, k, c] = Σ_p U[s, p] W̃[p, k, c]      (neighbour species)
    E[s, c]    = 1 + Σ_p U[s, p] Ẽ[p, c]      (centre weights)

and u_s replaces the one-hot of the centre species in the MLP input.  The
descriptor size depends on C and L only; the parameters grow by P per
element, and the per-slot cost and memory go with P instead of S.  With
P = S and U the identity this is the uncompressed model (W̃ = W,
Ẽ = E - 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from ..systems import Batch
from .base import GradientChunk, Potential, fit_energy_baseline, no_uncertainty_message
from .centre_table import CentreTable
from .power_spectrum_kernel import (DescriptorSpec, PowerSpectrumDescriptor, density, distances, mix_species,
                                    monomial_tables, monomials, pair_terms, pair_vjp, padded_vectors, power_spectrum,
                                    radial_basis, symmetric_rows_vjp)


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
    n_pseudo : int or None
        Pseudo-elements P of the alchemical compression (see module doc);
        ``None``: each element has its own radial weights and centre one-hot.
    """

    architecture = "PowerSpectrumPotential"
    strictly_local = True

    def __init__(self, species: Sequence[str], cutoff: float = 4.5, n_radial: int = 8,
                 n_channels: int = 8, max_angular: int = 3, hidden: Sequence[int] = (64, 64),
                 n_ensemble: int = 1, n_pseudo: int | None = None) -> None:
        super().__init__(species, cutoff)
        if not species:
            raise ValueError("PowerSpectrumPotential needs at least one species")
        if n_pseudo is not None and not (int(n_pseudo) == n_pseudo and n_pseudo >= 1):
            raise ValueError(f"n_pseudo (pseudo-elements) must be a whole number ≥ 1 or None, got {n_pseudo}")
        self.n_radial, self.n_channels, self.max_angular = int(n_radial), int(n_channels), int(max_angular)
        self.hidden = [int(h) for h in hidden]
        self.n_ensemble = int(n_ensemble)
        self.n_pseudo = None if n_pseudo is None else int(n_pseudo)
        S, K, C = self.n_species, self.n_radial, self.n_channels
        rows = S if self.n_pseudo is None else self.n_pseudo     # rows of the species-dependent weights
        if self.n_pseudo is not None:
            self.species_mixing = torch.nn.Parameter(torch.randn(S, rows) / math.sqrt(rows))
            self.centre_weights = torch.nn.Parameter(torch.zeros(rows, C))
        else:
            self.species_mixing = None
            self.centre_weights = torch.nn.Parameter(torch.ones(S, C))
        self.radial_weights = torch.nn.Parameter(torch.randn(rows, K, C) / math.sqrt(K))
        _, _, weights = monomial_tables(self.max_angular)
        for l, w in enumerate(weights):  # kept in model files (constants: the multinomial weights of degree l)
            self.register_buffer(f"moment_weights_{l}", w.to(torch.get_default_dtype()))
        n_desc = C + (self.max_angular + 1) * (C * (C + 1) // 2)
        self.n_descriptors = n_desc
        # statistics of the training data (set by fit_statistics)
        self.register_buffer("inv_neighbours", torch.tensor(1.0))
        self.register_buffer("descriptor_mean", torch.zeros(n_desc))
        self.register_buffer("descriptor_std", torch.ones(n_desc))
        self.register_buffer("baseline", torch.zeros(S))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        layers: list[torch.nn.Module] = []
        width = n_desc + rows
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
            width = h
        self.backbone = torch.nn.Sequential(*layers)
        self.last_layer = torch.nn.Linear(width, self.n_ensemble)
        self._spec_cache: dict[tuple[torch.dtype, torch.device], DescriptorSpec] = {}

    @property
    def n_features(self) -> int:
        return self.hidden[-1] if self.hidden else self.n_descriptors + self.radial_weights.shape[0]

    def config(self) -> dict[str, Any]:
        config = {"species": self.species, "cutoff": self.cutoff, "n_radial": self.n_radial,
                  "n_channels": self.n_channels, "max_angular": self.max_angular,
                  "hidden": self.hidden, "n_ensemble": self.n_ensemble}
        if self.n_pseudo is not None:  # absent from uncompressed models (and from their older files)
            config["n_pseudo"] = self.n_pseudo
        return config

    # -- species: one-hot, or pseudo-elements --------------------------------
    def centre_weights_of(self, species: torch.Tensor) -> torch.Tensor:
        """Centre weights E[s_i] of each atom, Tensor [N, C] (before the neighbour normalisation)."""
        if self.species_mixing is None:
            return self.centre_weights[species]
        return 1.0 + self.species_mixing[species] @ self.centre_weights

    def centre_embedding(self, species: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The centre species as MLP input, Tensor [N, S] (one-hot) or [N, P] (pseudo-element coordinates)."""
        if self.species_mixing is None:
            return torch.nn.functional.one_hot(species, self.n_species).to(dtype)
        return self.species_mixing[species].to(dtype)

    # -- descriptor -------------------------------------------------------
    def descriptor_spec(self, dtype: torch.dtype, device: torch.device) -> DescriptorSpec:
        """Constant tables of the descriptor in ``dtype`` on ``device`` (cached)."""
        key = (dtype, torch.device(device))
        if key not in self._spec_cache:
            self._spec_cache[key] = DescriptorSpec.build(self.cutoff, self.n_radial, self.n_channels,
                                                         self.max_angular, dtype, device)
        return self._spec_cache[key]

    def _apply(self, fn, recurse=True):  # dtype/device changes invalidate the cached tables
        self._spec_cache = {}
        return super()._apply(fn, recurse)

    def descriptors(self, batch: Batch, vectors: torch.Tensor) -> torch.Tensor:
        """Raw (unstandardised) invariant descriptors, Tensor [N, D] (hand-derived backward)."""
        species = self.species_index(batch.numbers)
        table = CentreTable.from_centres(batch.pairs[:, 0], len(species))
        radial_weights, neighbours = self._neighbour_weights(species, batch.pairs[:, 1], table, slice(None),
                                                             table.slots, table.n_atoms * table.width)
        centre = self.centre_scales(species)
        return PowerSpectrumDescriptor.apply(vectors, radial_weights, centre,
                                             self.descriptor_spec(vectors.dtype, vectors.device), table, neighbours,
                                             None if neighbours is None else self.species_mixing)

    def _neighbour_weights(self, species: torch.Tensor, neighbours: torch.Tensor, table: CentreTable,
                           pairs: slice | torch.Tensor, slots: torch.Tensor,
                           n_slots: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Radial weights and the neighbour species of each slot [n_slots] (0 in empty slots);
        with one species in the system, only that species' weights [1, K, C] and no slot species."""
        if self.n_species == 1 or bool((species == species[0]).all()):
            first = int(species[0]) if len(species) else 0
            if self.species_mixing is None:
                return self.radial_weights[first:first + 1], None
            return torch.einsum("p,pkc->kc", self.species_mixing[first], self.radial_weights)[None], None
        if table.order is not None and isinstance(pairs, slice):
            pairs = table.order[pairs]
        of_pairs = species[neighbours[pairs]]
        slot_species = torch.zeros(n_slots, dtype=torch.long, device=species.device).index_copy(0, slots, of_pairs)
        return self.radial_weights, slot_species

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        species = self.species_index(batch.numbers)
        x = (self.descriptors(batch, vectors) - self.descriptor_mean) / self.descriptor_std
        features = self.backbone(torch.cat([x, self.centre_embedding(species, x.dtype)], dim=1))
        members = self.last_layer(features) * self.energy_scale + self.baseline[species][:, None]
        out = {"energy": members.mean(dim=1), "features": features}
        if self.n_ensemble > 1:
            out["energy_ensemble"] = members
        return out

    # -- hand-derived gradients, chunked over centre atoms ------------------
    @torch.no_grad()
    def gradient_chunks(self, batch: Batch, vectors: torch.Tensor, *, gradients: bool = True, members: bool = False,
                        max_bytes: int = 2**27, feature_directions: torch.Tensor | None = None,
                        centred_directions: bool = False) -> Iterator[GradientChunk] | None:
        """Outputs and hand-derived pair gradients, a range of centre atoms at a time.

        See :meth:`Potential.gradient_chunks`.  ``feature_directions`` [M, F]:
        members whose atomic energies are ``e_i + f_i · d_m`` (LLPR samples)
        instead of this model's own ensemble members.  The energy and all
        members share the pair terms and go through one batched backward pass.
        Where the energy is the members' mean (the model's own ensemble, or
        ``centred_directions``: Σ_m d_m = 0), its gradient is theirs averaged:
        M cotangents, not M + 1.
        """
        if len(batch.numbers) == 0:
            return None
        weight = self.last_layer.weight * self.energy_scale                                    # [M_own, F]
        if feature_directions is not None and centred_directions:
            cotangents, plan = weight.mean(0, keepdim=True) + feature_directions.to(vectors.dtype), "members"
        elif feature_directions is not None:
            cotangents, plan = torch.cat([weight.mean(0, keepdim=True), feature_directions.to(vectors.dtype)]), "offsets"
        elif members:
            if self.n_ensemble < 2:
                raise ValueError(no_uncertainty_message(self))
            cotangents, plan = weight, "members"
        else:
            cotangents, plan = weight.mean(0, keepdim=True), "energy"
        species = self.species_index(batch.numbers)
        table = CentreTable.from_centres(batch.pairs[:, 0], len(species))
        spec = self.descriptor_spec(vectors.dtype, vectors.device)
        centre = self.centre_scales(species)
        rows = chunk_rows(table.width, len(cotangents) if gradients else 0, vectors.element_size(), max_bytes)
        # atoms after the last one with pairs (ghost atoms of the LAMMPS bridge) skip the pair stage
        with_pairs = table.last_centre() + 1
        ranges = [(first, min(first + rows, with_pairs)) for first in range(0, with_pairs, rows)]
        ranges += [(first, min(first + 4 * rows, table.n_atoms)) for first in range(with_pairs, table.n_atoms, 4 * rows)]
        return (self._chunk(batch, vectors, species, table, spec, centre, first, last,
                            (cotangents, plan) if gradients else None) for first, last in ranges)

    @torch.no_grad()
    def _chunk(self, batch: Batch, vectors: torch.Tensor, species: torch.Tensor, table: CentreTable,
               spec: DescriptorSpec, centre: torch.Tensor, first: int, last: int,
               backward: tuple[torch.Tensor, str] | None) -> GradientChunk:
        """Outputs of atoms first..last-1 and, with ``backward`` = (cotangents [B, F] of the
        features, plan), the gradients of their pairs: ``plan`` "energy" (one row: the energy),
        "members" (rows: the members; energy = their mean) or "offsets" (row 0: the energy;
        members = energy + each further row)."""
        pairs, slots = table.pair_range(first, last)
        terms = None
        if len(slots):
            n_slots = table.max_pairs(first, last)
            slot_vectors = padded_vectors(vectors[pairs], slots, n_slots, self.cutoff)
            radial_weights, neighbours = self._neighbour_weights(species, batch.pairs[:, 1], table, pairs, slots,
                                                                 n_slots)
            terms = pair_terms(spec, slot_vectors, neighbours, radial_weights, centre[first:last],
                               None if neighbours is None else self.species_mixing, derivatives=backward is not None)
            a = density(terms)
        own = species[first:last]
        if terms is None:  # atoms without neighbours: zero density, the same outputs for all atoms of a species
            kinds, of_kind = torch.unique(own, return_inverse=True)
            a = torch.zeros((len(kinds), spec.n_channels, spec.n_moments), dtype=vectors.dtype, device=vectors.device)
        else:
            kinds, of_kind = own, None
        features, pre_activations = self._network(spec, a, kinds)
        if of_kind is not None:
            features = features[of_kind]
        member_energies = self._member_energies(features, own)
        outputs = {"energy": member_energies.mean(dim=1), "features": features}
        if self.n_ensemble > 1:
            outputs["energy_ensemble"] = member_energies
        chunk = GradientChunk(atoms=slice(first, last), pairs=pairs, outputs=outputs)
        if backward is None:
            return chunk
        cotangents, plan = backward
        if terms is None:
            pair_grad = vectors.new_zeros((0, 3, len(cotangents)))
        else:
            feature_cot = cotangents.expand(last - first, -1, -1)                               # [n, B, F]
            rows = self._descriptor_rows_vjp(spec, pre_activations, feature_cot)                 # [n, R, B]
            slot_grad, _ = pair_vjp(spec, terms, symmetric_rows_vjp(spec, a, rows))
            pair_grad = slot_grad.index_select(0, slots)                                        # [p, 3, B]
        if plan == "members":
            chunk.energy_gradient = pair_grad.mean(2)
            chunk.member_gradients = pair_grad.permute(2, 0, 1)
            chunk.energy_is_member_mean = True
        else:
            chunk.energy_gradient = pair_grad[:, :, 0]
            if plan == "offsets":
                chunk.member_gradients = (pair_grad[:, :, 1:] + pair_grad[:, :, :1]).permute(2, 0, 1)
        return chunk

    def _network(self, spec: DescriptorSpec, a: torch.Tensor,
                 species: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features [n, F] (and the SiLU inputs) of atoms with densities ``a`` [n, C, A] and species indices [n]."""
        x = (power_spectrum(spec, a) - self.descriptor_mean) / self.descriptor_std
        return self._backbone_with_pre_activations(torch.cat([x, self.centre_embedding(species, x.dtype)], dim=1))

    def _member_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energy of every ensemble member [n, M], eV."""
        return self.last_layer(features) * self.energy_scale + self.baseline[species][:, None]

    # -- densities pair by pair (swap Monte Carlo updates them when species change) ----
    # The density of atom i is A_i = centre_scales(s_i)[:, None] ⊙ Σ_j radial_channels(b_ij, s_j)[:, None] m_ij,
    # with (b_ij, m_ij) = pair_factors(r_ij): positions enter only through the pair factors, species only
    # through the centre scales and the radial weights (linearly: radial_channels(b, s) = b @ W[s]).
    @torch.no_grad()
    def pair_factors(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Species-independent factors of the pairs' density terms: radial basis b_k(r) [Q, K] and
        monomials m_α(r̂) [Q, A] of pair vectors ``vectors`` [Q, 3] (r_j − r_i with the periodic shift, Å)."""
        spec = self.descriptor_spec(vectors.dtype, vectors.device)
        r, unit = distances(vectors)
        return radial_basis(spec, r)[0], monomials(spec, unit)

    @torch.no_grad()
    def radial_channels(self, basis: torch.Tensor, neighbour_species: torch.Tensor) -> torch.Tensor:
        """Σ_k b_k W[s_j, k, c] of pairs with radial basis ``basis`` [Q, K] and neighbour species
        indices ``neighbour_species`` [Q] (long), Tensor [Q, C]."""
        return mix_species(basis, self.radial_weights, neighbour_species, self.species_mixing)

    @torch.no_grad()
    def species_radial_weights(self) -> torch.Tensor:
        """The radial weights of every element, W[s, k, c], Tensor [S, K, C] (with alchemical
        compression Σ_p U[s, p] W̃[p, k, c]): :meth:`radial_channels` of a pair is Σ_k b_k W[s_j, k, c]."""
        if self.species_mixing is None:
            return self.radial_weights.detach()
        return torch.einsum("sp,pkc->skc", self.species_mixing, self.radial_weights)

    def centre_scales(self, species: torch.Tensor) -> torch.Tensor:
        """Factor E[s_i, c] / n̄ of every term of atom i's density, Tensor [N, C], for species indices [N]."""
        return self.centre_weights_of(species) * self.inv_neighbours

    @torch.no_grad()
    def energy_readout(self, dtype: torch.dtype, device: torch.device) -> "EnergyReadout":
        """Atomic energies from densities, a frozen copy of the network (see :class:`EnergyReadout`);
        it does not follow later changes of the parameters."""
        linears = [layer for layer in self.backbone if isinstance(layer, torch.nn.Linear)]
        weights = [(layer.weight, layer.bias) for layer in linears]
        weights.append((self.last_layer.weight.mean(0, keepdim=True) * self.energy_scale,   # the members' mean
                        self.last_layer.bias.mean(0, keepdim=True) * self.energy_scale))
        (first_weight, first_bias), rest = weights[0], weights[1:]
        n_desc = self.n_descriptors
        embedding = self.centre_embedding(torch.arange(self.n_species, device=first_weight.device), first_weight.dtype)
        convert = dict(dtype=dtype, device=device)
        return EnergyReadout(
            spec=self.descriptor_spec(dtype, torch.device(device)),
            descriptor_mean=self.descriptor_mean.to(**convert),
            first_weight=(first_weight[:, :n_desc] / self.descriptor_std).T.contiguous().to(**convert),
            first_bias=(embedding @ first_weight[:, n_desc:].T + first_bias).to(**convert),
            layers=[(w.T.contiguous().to(**convert), b.to(**convert)) for w, b in rest],
            baseline=self.baseline.to(**convert))

    def _backbone_with_pre_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Backbone output and the input of each SiLU."""
        pre = []
        for layer in self.backbone:
            if isinstance(layer, torch.nn.Linear):
                x = layer(x)
                pre.append(x)
            else:
                x = torch.nn.functional.silu(x)
        return x, pre

    def _descriptor_rows_vjp(self, spec: DescriptorSpec, pre_activations: list[torch.Tensor],
                             cotangent: torch.Tensor) -> torch.Tensor:
        """Cotangents [n, B, F] of the backbone output → of the descriptors, as
        :func:`symmetric_rows_vjp` takes them, [n, C + (L+1)·C², B]: the standardisation
        (1/std) and the descriptor factor are folded into the first layer's matrix, so the
        last product gives the scaled cotangents and one gather the rows."""
        scale = spec.descriptor_factor / self.descriptor_std                                 # [D]
        weights = [layer.weight for layer in self.backbone if isinstance(layer, torch.nn.Linear)]
        if not weights:  # no hidden layers: the features are the descriptors (and the species embedding)
            return (cotangent[:, :, :self.n_descriptors] * scale).transpose(1, 2).index_select(1, spec.symmetric_rows)
        weights[0] = weights[0][:, :self.n_descriptors] * scale
        for weight, z in zip(reversed(weights), reversed(pre_activations)):
            sig = torch.sigmoid(z)
            cotangent = (cotangent * (sig * (1.0 + z * (1.0 - sig)))[:, None, :]) @ weight
        return cotangent.transpose(1, 2).index_select(1, spec.symmetric_rows)

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
        fit_energy_baseline(self, batches, energies, forces_rms)   # inv_neighbours first: the descriptors use it
        desc = torch.cat([self.descriptors(b.to(self.baseline.dtype), b.to(self.baseline.dtype).pair_vectors())
                          for b in batches])
        self.descriptor_mean.copy_(desc.mean(0))
        self.descriptor_std.copy_(desc.std(0).clamp(min=1e-6) if len(desc) > 1 else torch.ones_like(desc[0]))


#: numbers per slot of the centre table in one chunk: fixed (pair terms) and per cotangent row
SLOT_NUMBERS, SLOT_NUMBERS_PER_COTANGENT = 100, 60
#: numbers per atom in one chunk: fixed and per cotangent row (density, descriptors, network)
ATOM_NUMBERS, ATOM_NUMBERS_PER_COTANGENT = 600, 800
#: bytes of the cotangent-dependent arrays of one chunk that keep the batched backward pass in cache
CACHE_BYTES = 2**25


def chunk_rows(width: int, n_cotangents: int, itemsize: int, max_bytes: int) -> int:
    """Centre atoms per chunk: one chunk's working memory stays below ``max_bytes``, and its
    cotangent-dependent part near the cache size (measured: ~1.2 kB per slot for the energy
    alone, ~5 kB with 8 members, float64; ``tests/test_memory.py``)."""
    per_cotangent = itemsize * (width * SLOT_NUMBERS_PER_COTANGENT + ATOM_NUMBERS_PER_COTANGENT) * n_cotangents
    per_atom = itemsize * (width * SLOT_NUMBERS + ATOM_NUMBERS) + per_cotangent
    rows = max_bytes // per_atom
    if n_cotangents:
        rows = min(rows, max(CACHE_BYTES // per_cotangent, 32))
    return max(1, int(rows))


@dataclass(frozen=True)
class EnergyReadout:
    """The network of a :class:`PowerSpectrumPotential` for atomic energies only (the members' mean),
    with the descriptor standardisation and the centre-species input folded into the first layer:
    the same function as :meth:`PowerSpectrumPotential.forward` after the densities, in a few
    matrix products (swap Monte Carlo evaluates it on ~100 atoms at a time, where each
    operation's fixed cost counts).

    Attributes
    ----------
    spec : DescriptorSpec
        Constant tables of the power spectrum.
    descriptor_mean : Tensor [D]
        Subtracted from the descriptors.
    first_weight : Tensor [D, H]
        First layer's weights of the descriptors over the descriptor std, transposed.
    first_bias : Tensor [S, H]
        First layer's bias plus its weights of each species' centre input.
    layers : list of (Tensor [H, H'], Tensor [H'])
        Further layers (transposed weights, bias), each after a SiLU; the last gives the
        members' mean times the energy scale, [H, 1].
    baseline : Tensor [S]
        Energy baseline of each species, eV.
    """

    spec: DescriptorSpec
    descriptor_mean: torch.Tensor
    first_weight: torch.Tensor
    first_bias: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    baseline: torch.Tensor

    @torch.no_grad()
    def __call__(self, densities: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energies [n] (eV) of atoms with densities [n, C, A] and species indices [n] (long)."""
        x = power_spectrum(self.spec, densities) - self.descriptor_mean
        h = torch.addmm(self.first_bias.index_select(0, species), x, self.first_weight)
        for weight, bias in self.layers:
            h = torch.addmm(bias, torch.nn.functional.silu(h), weight)
        return h[:, 0] + self.baseline.index_select(0, species)
