"""The power-spectrum descriptor with hand-derived derivatives.

The descriptor of :mod:`atomflux.models.power_spectrum` in three stages, each
with its vector-Jacobian product (VJP) written out, on the padded centre
table of :class:`~atomflux.models.centre_table.CentreTable` (``n`` atoms ×
``w`` slots, ``Q = n·w``; empty slots hold a vector outside the cutoff, so
they contribute exactly zero):

1. pair terms per slot: the species-mixed radial channels ``g_c(r)``, their
   r-derivatives ``g'_c`` and the monomials ``m_α(r̂)`` (degree 0..L);
2. the density ``A_i,cα = Σ_slots g_c m_α``: one batched matrix product;
3. the power spectrum ``p_i,l,cc' = Σ_{α∈l} w_α A_i,cα A_i,c'α`` (upper
   triangle c ≤ c'), after the two-body ``A_i,c0``.

Backward, with cotangents ``Ā`` of the density, the gradient with respect
to a slot's vector r = r r̂ is

    ∂/∂r = r̂ Σ_c g'_c Σ_α m_α Ā_cα + (1 − r̂r̂ᵀ)/r · Σ_c g_c Σ_β m_β Ē_cβ,

where ``Ē_k,cβ = (β_k + 1) Ā_c,β+e_k`` (the u-gradient of a monomial is a
lower-degree monomial) is built per atom, so no per-slot Jacobian of the
monomials is ever formed.  The VJPs take ``B`` cotangents at once: the
energy and the M members of an ensemble share every per-slot term and go
through the same matrix products.  :class:`PowerSpectrumDescriptor` wraps the
stages as a ``torch.autograd.Function`` whose backward is itself made of
differentiable torch operations, so forces can be differentiated again
(training on forces, ``create_graph=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .centre_table import CentreTable


def monomial_tables(max_angular: int) -> tuple[list[list[tuple[int, int, int]]], list[list[tuple[int, int]]],
                                               list[torch.Tensor]]:
    """Exponents, build recipes and weights of the monomials of degree 0..L.

    Returns, per degree l, the exponent triples (a, b, c) of its monomials,
    the ``(parent_index, axis)`` that builds each from degree l-1, and the
    multinomial weights l!/(a!b!c!) such that ``Σ_α w_α m_α(u) m_α(v) = (u·v)^l``.
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
    return exps, recipes, weights


@dataclass(frozen=True)
class DescriptorSpec:
    """Hyper-parameters and constant tables of the descriptor (one dtype and device).

    Attributes
    ----------
    cutoff : float
        Cutoff radius, Å.
    n_radial, n_channels, max_angular : int
        K, C and L.
    recipe : list of (int, int)
        For every monomial after the constant one, its parent monomial (one degree
        lower) and the axis it is multiplied by.
    weights : Tensor [A]
        Multinomial weight of every monomial, degree 0 first (A = Σ_l n_l).
    blocks : list of (int, int)
        Range of each degree along the moment axis.
    raise_index : Tensor [3 A'] (long)
        For each axis k and monomial β of degree < L (A' of them; axis-major order), the index of β + e_k.
    raise_factor : Tensor [3 A']
        β_k + 1.
    raise_index_by_moment, raise_factor_by_moment : Tensor [3 A']
        The same, monomial-major (β, then k).
    triu : Tensor [2, T]
        Upper triangle (c ≤ c') of the channel pairs.
    triu_flat : Tensor [T] (long)
        The same as positions c·C + c' in a flattened C×C matrix.
    descriptor_factor : Tensor [D]
        2 at the diagonal entries (c = c') of every power-spectrum block, 1 elsewhere.
    symmetric_rows : Tensor [C + (L+1)·C·C] (long)
        Descriptor index of the two-body entries, then of every entry (l, c, c') of the
        full C×C matrices: with G_l the cotangent of p_l (upper triangle),
        (G_l + G_lᵀ)[c, c'] = (G · descriptor_factor)[symmetric_rows[C + l·C² + c·C + c']].
    """

    cutoff: float
    n_radial: int
    n_channels: int
    max_angular: int
    recipe: list[tuple[int, int]]
    weights: torch.Tensor
    blocks: list[tuple[int, int]]
    raise_index: torch.Tensor
    raise_factor: torch.Tensor
    raise_index_by_moment: torch.Tensor
    raise_factor_by_moment: torch.Tensor
    triu: torch.Tensor
    triu_flat: torch.Tensor
    descriptor_factor: torch.Tensor
    symmetric_rows: torch.Tensor

    @classmethod
    def build(cls, cutoff: float, n_radial: int, n_channels: int, max_angular: int, dtype: torch.dtype,
              device: torch.device | str) -> "DescriptorSpec":
        exps, recipes, weights = monomial_tables(max_angular)
        flat = [e for level in exps for e in level]
        position = {e: k for k, e in enumerate(flat)}
        lower = flat[:len(flat) - len(exps[-1])]
        raise_index, raise_factor = [], []
        for axis in range(3):
            for e in lower:
                raised = tuple(e[k] + (k == axis) for k in range(3))
                raise_index.append(position[raised])
                raise_factor.append(e[axis] + 1.0)
        ends = [0]
        for level in exps:
            ends.append(ends[-1] + len(level))
        triu = torch.triu_indices(n_channels, n_channels, device=device)
        position = torch.zeros(n_channels, n_channels, dtype=torch.long, device=device)
        position[triu[0], triu[1]] = torch.arange(triu.shape[1], device=device)
        position[triu[1], triu[0]] = torch.arange(triu.shape[1], device=device)
        n_pairs, n_degrees = triu.shape[1], len(exps)
        diagonal = (triu[0] == triu[1]).to(dtype)
        descriptor_factor = torch.cat([torch.ones(n_channels, dtype=dtype, device=device),
                                       (1.0 + diagonal).repeat(n_degrees)])
        symmetric_rows = torch.cat([torch.arange(n_channels, device=device)] +
                                   [n_channels + degree * n_pairs + position.reshape(-1) for degree in range(n_degrees)])
        long = dict(dtype=torch.long, device=device)
        by_moment = [axis * len(lower) + moment for moment in range(len(lower)) for axis in range(3)]
        recipe = [(ends[degree - 1] + parent, axis) for degree in range(1, len(recipes))
                  for parent, axis in recipes[degree]]
        return cls(
            cutoff=float(cutoff), n_radial=int(n_radial), n_channels=int(n_channels), max_angular=int(max_angular),
            recipe=recipe,
            weights=torch.cat(weights).to(dtype=dtype, device=device),
            blocks=list(zip(ends[:-1], ends[1:])),
            raise_index=torch.tensor(raise_index, **long),
            raise_factor=torch.tensor(raise_factor, dtype=dtype, device=device),
            raise_index_by_moment=torch.tensor([raise_index[k] for k in by_moment], **long),
            raise_factor_by_moment=torch.tensor([raise_factor[k] for k in by_moment], dtype=dtype, device=device),
            triu=triu, triu_flat=triu[0] * n_channels + triu[1], descriptor_factor=descriptor_factor,
            symmetric_rows=symmetric_rows)

    @property
    def n_moments(self) -> int:
        """A: monomials of degree 0..L."""
        return int(self.weights.shape[0])

    @property
    def n_lower_moments(self) -> int:
        """A': monomials of degree 0..L-1."""
        return int(self.raise_index.shape[0]) // 3


@dataclass
class PairTerms:
    """Per-slot quantities of ``n`` rows × ``width`` slots of the centre table (Q = n·w).

    Attributes
    ----------
    distance : Tensor [Q]
        r, Å.
    unit : Tensor [Q, 3]
        r̂.
    channels, channel_derivatives : Tensor [n, w, C]
        g_c(r) (eV-free mixing of the radial basis, with centre weights) and dg_c/dr (``None`` when
        only outputs are wanted).
    moments : Tensor [Q, A]
        Monomials m_α(r̂), degree 0 first (a transposed view: the Q slots are contiguous).
    basis : Tensor [Q, K]
        Radial basis b_k(r) (for the weight gradients).
    mixed : Tensor [Q, C]
        Σ_k b_k W[s_j, k, c], before the centre weights (for the weight gradients).
    centre : Tensor [n, C]
        Centre weights of each row's atom.
    neighbour_species : Tensor [Q] (long) or None
        Species of each slot's neighbour (None: a single species everywhere).
    mixing : Tensor [S, P] or None
        Element → pseudo-element matrix of a compressed model (None: each element its own row of
        the radial weights).
    """

    distance: torch.Tensor
    unit: torch.Tensor
    channels: torch.Tensor
    channel_derivatives: torch.Tensor | None
    moments: torch.Tensor
    basis: torch.Tensor
    mixed: torch.Tensor
    centre: torch.Tensor
    neighbour_species: torch.Tensor | None
    mixing: torch.Tensor | None = None

    @property
    def width(self) -> int:
        return int(self.channels.shape[1])

    def moment_table(self, count: int | None = None) -> torch.Tensor:
        """The first ``count`` monomials of each slot, a [n, w, count] view."""
        n, w, _ = self.channels.shape
        table = self.moments.view(n, w, -1)
        return table if count is None else table[:, :, :count]


def padded_vectors(vectors: torch.Tensor, slots: torch.Tensor, n_slots: int, cutoff: float) -> torch.Tensor:
    """Pair vectors [P, 3] placed in their slots of a table of ``n_slots`` [n_slots, 3];
    empty slots hold a vector of length 2 × cutoff (outside the cutoff)."""
    table = torch.zeros((n_slots, 3), dtype=vectors.dtype, device=vectors.device)
    table[:, 0] = 2.0 * cutoff
    return table.index_copy(0, slots, vectors)


def pair_terms(spec: DescriptorSpec, vectors: torch.Tensor, neighbour_species: torch.Tensor | None,
               radial_weights: torch.Tensor, centre: torch.Tensor, mixing: torch.Tensor | None = None,
               derivatives: bool = True) -> PairTerms:
    """Stage 1 on the slots of ``n = len(centre)`` rows: ``vectors`` [n·w, 3] in Å.

    Radial basis ``b_k = √(2/r_c) sin(kπr/r_c)/r · f_c(r)`` (f_c the quintic
    switch); ``radial_weights`` [S, K, C] (or [P, K, C] per pseudo-element
    with ``mixing`` [S, P]: the weights of element s are Σ_p mixing[s, p] W[p]);
    ``centre`` [n, C] the centre weights of each row's atom;
    ``neighbour_species`` [Q] (``None`` when all slots have the neighbour
    species 0 of a one-species ``radial_weights``, or the caller passes that
    species' weights [1, K, C]).  ``derivatives=False`` (outputs without gradients) leaves
    ``channel_derivatives`` ``None``.
    """
    n = centre.shape[0]
    r, unit = distances(vectors)
    basis, basis_derivative = radial_basis(spec, r, derivatives)
    scale = centre[:, None, :]
    if derivatives:
        mixed, mixed_derivative = mix_species(torch.cat([basis, basis_derivative]), radial_weights,
                                              neighbour_species, mixing).chunk(2)
        channel_derivatives = mixed_derivative.view(n, -1, spec.n_channels) * scale
    else:
        mixed, channel_derivatives = mix_species(basis, radial_weights, neighbour_species, mixing), None
    channels = mixed.view(n, -1, spec.n_channels) * scale
    return PairTerms(r, unit, channels, channel_derivatives, monomials(spec, unit), basis, mixed, centre,
                     neighbour_species, mixing)


def distances(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths r [Q] (Å, at least 1e-6) and unit vectors [Q, 3] of pair vectors [Q, 3]."""
    r = torch.linalg.norm(vectors, dim=1).clamp(min=1e-6)
    return r, vectors / r[:, None]


def radial_basis(spec: DescriptorSpec, r: torch.Tensor,
                 derivatives: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Radial basis ``b_k(r) = √(2/r_c) sin(kπr/r_c)/r · f_c(r)`` [Q, K] of distances ``r`` [Q] (Å),
    and with ``derivatives`` its derivative db_k/dr [Q, K] (else ``None``)."""
    rc = spec.cutoff
    x = torch.clamp(r / rc, max=1.0)
    x2 = x * x
    switch = 1.0 - x2 * x * (10.0 - 15.0 * x + 6.0 * x2)
    k = torch.arange(1, spec.n_radial + 1, dtype=r.dtype, device=r.device) * (math.pi / rc)
    phase = k * r[:, None]
    sin = torch.sin(phase)
    inv_r = 1.0 / r
    scaled = (math.sqrt(2.0 / rc) * inv_r)[:, None]
    basis = scaled * sin * switch[:, None]
    if not derivatives:
        return basis, None
    bump = x - x2
    switch_derivative = (-30.0 / rc) * bump * bump
    return basis, scaled * ((k * torch.cos(phase) - sin * inv_r[:, None]) * switch[:, None]
                            + sin * switch_derivative[:, None])


def _species_rows(species: torch.Tensor, n_rows: int, mixing: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Weight of each radial-weight row for each slot [Q, S or P]: a one-hot of the species, or
    its row of the element → pseudo-element ``mixing``."""
    if mixing is None:
        return torch.nn.functional.one_hot(species, n_rows).to(dtype)
    return mixing.to(dtype)[species]


def mix_species(basis: torch.Tensor, radial_weights: torch.Tensor, species: torch.Tensor | None,
                mixing: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_k b_k W[s, k, c] (or Σ_p mixing[s, p] Σ_k b_k W[p, k, c]) for rows of ``basis`` [R, K]
    whose neighbour species ``species`` repeat with period R/len(species) (``None``: row 0)."""
    n_rows, n_radial, n_channels = radial_weights.shape
    if species is None:
        return basis @ radial_weights[0]
    if mixing is None:  # every species' mixing of each row, then the row's own: no one-hot expansion
        every = basis @ radial_weights.permute(1, 0, 2).reshape(n_radial, n_rows * n_channels)   # [R, S·C]
        own = species.repeat(len(basis) // len(species))
        row_starts = torch.arange(0, len(basis) * n_rows, n_rows, device=basis.device)
        return every.view(len(basis) * n_rows, n_channels).index_select(0, row_starts + own)
    rows = _species_rows(species, n_rows, mixing, basis.dtype).repeat(len(basis) // len(species), 1)
    expanded = (rows[:, :, None] * basis[:, None, :]).reshape(len(basis), n_rows * n_radial)
    return expanded @ radial_weights.reshape(n_rows * n_radial, n_channels)


def monomials(spec: DescriptorSpec, unit: torch.Tensor) -> torch.Tensor:
    """Monomials m_α(u) of degree 0..L, [Q, A] (one product of contiguous columns each), stored
    monomial-major (a transposed view of [A, Q]: stacking whole columns is a plain copy, interleaving
    them was the costliest step of the pair terms; batched products take either layout)."""
    axes = unit.T.contiguous()
    columns = [torch.ones_like(axes[0])]
    for parent, axis in spec.recipe:
        columns.append(columns[parent] * axes[axis])
    return torch.stack(columns, 0).T


def density(terms: PairTerms) -> torch.Tensor:
    """Stage 2: A [n, C, A] = Σ_slots g_c m_α."""
    return torch.bmm(terms.channels.transpose(1, 2), terms.moment_table())


def power_spectrum(spec: DescriptorSpec, a: torch.Tensor) -> torch.Tensor:
    """Stage 3: descriptors [n, D] = [A_c0, p_0, p_1, ..., p_L] from the density [n, C, A]."""
    n, c, _ = a.shape
    parts = [a[:, :, 0]]
    for start, end in spec.blocks:
        block = a[:, :, start:end]
        square = torch.bmm(block * spec.weights[start:end], block.transpose(1, 2))
        parts.append(square.view(n, c * c).index_select(1, spec.triu_flat))
    return torch.cat(parts, 1)


def power_spectrum_vjp(spec: DescriptorSpec, a: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
    """VJP of stage 3: cotangents [n, D, B] of the descriptors → of the density, [n, A, C·B]
    (the B cotangents innermost everywhere, so that whole rows of them are gathered and multiplied).

    With P_l = A_l W_l A_lᵀ and G the cotangent of P_l: ∂/∂A_l = (G + Gᵀ) A_l W_l.
    """
    rows = (cotangent * spec.descriptor_factor[:, None]).index_select(1, spec.symmetric_rows)
    return symmetric_rows_vjp(spec, a, rows)


def symmetric_rows_vjp(spec: DescriptorSpec, a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """:func:`power_spectrum_vjp` from the descriptor cotangents already scaled by
    ``spec.descriptor_factor`` and gathered by ``spec.symmetric_rows``, ``rows`` [n, C + (L+1)·C², B]:
    the two-body rows, then (G_l + G_lᵀ) of every degree (symmetric: its rows serve as columns).
    A caller whose cotangents come out of a matrix product folds the scaling and the
    gather into that product's matrix."""
    n, _, n_cot = rows.shape
    c = spec.n_channels
    symmetric = rows[:, c:].view(n, len(spec.blocks), c, c * n_cot)
    parts = [torch.bmm((a[:, :, start:end] * spec.weights[start:end]).transpose(1, 2), symmetric[:, l])
             for l, (start, end) in enumerate(spec.blocks)]                                  # [n, A_l, C·B]
    parts[0] = parts[0] + rows[:, :c].reshape(n, 1, c * n_cot)
    return torch.cat(parts, 1)


#: from this many cotangents on, the angular VJP goes through per-slot outer products m ⊗ g
OUTER_PRODUCT_COTANGENTS = 8


def pair_vjp(spec: DescriptorSpec, terms: PairTerms,
             density_cot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VJP of stages 1–2: density cotangents [n, A, C·B] (cotangents innermost) → slot vectors
    [Q, 3, B], and the cotangents of the channels g [n, w, C, B] (for the weight gradients).

    From :data:`OUTER_PRODUCT_COTANGENTS` cotangents on it writes into preallocated tensors
    (``out=``), which autograd does not record: call it so under ``torch.no_grad`` (as
    ``gradient_chunks`` does); the descriptor's own backward takes one cotangent."""
    n, w, c = terms.channels.shape
    n_cot = density_cot.shape[2] // c
    q = n * w
    lower = spec.n_lower_moments
    inv_r = 1.0 / terms.distance
    channel_cot = torch.bmm(terms.moment_table(), density_cot).view(n, w, c, n_cot)       # Σ_α m_α Ā_cα
    radial = (channel_cot.view(q, c, n_cot) * terms.channel_derivatives.reshape(q, c, 1)).sum(1)  # [Q, B]
    if n_cot < OUTER_PRODUCT_COTANGENTS:  # contract the monomials, then the channels of each slot
        raised = density_cot.index_select(1, spec.raise_index) * spec.raise_factor[:, None]  # [n, 3A', C·B]
        raised = raised.view(n, 3, lower, c * n_cot).transpose(1, 2).reshape(n, lower, 3 * c * n_cot)
        raised = torch.bmm(terms.moment_table(lower), raised).view(q, 3, c, n_cot)      # [Q, 3, C, B]
        channels = (terms.channels.reshape(q, c) * inv_r[:, None]).view(q, c, 1)
        tangent = torch.bmm(raised.transpose(2, 3).reshape(q, 3 * n_cot, c), channels).view(q, 3, n_cot)
    else:  # many cotangents: one product with the slots' g/r ⊗ m, shared by all of them; rows (c, β) on
        # both sides, so the raised cotangents are one gather of whole B-rows from the density cotangents
        scaled = (terms.moment_table(lower) * inv_r.view(n, w, 1)).contiguous()  # the table is monomial-major
        outer = (terms.channels[:, :, :, None] * scaled[:, :, None, :]).view(n, w, c * lower)
        gathered = density_cot.index_select(1, spec.raise_index_by_moment).view(n, 3 * lower, c, n_cot)
        raised = torch.empty((n, c, 3 * lower, n_cot), dtype=gathered.dtype, device=gathered.device)
        torch.mul(gathered.transpose(1, 2), spec.raise_factor_by_moment[:, None], out=raised)  # scaled, transposed
        tangent = torch.bmm(outer, raised.view(n, c * lower, 3 * n_cot)).view(q, 3, n_cot)
    # ∂/∂r = r̂ radial + (∇_u − (r̂·∇_u) r̂)/r, with tangent = ∇_u / r (radial − r̂·tangent one axis at a time)
    unit = terms.unit
    normal = radial.addcmul(unit[:, 0:1], tangent[:, 0], value=-1.0)                    # [Q, B]
    for axis in (1, 2):
        normal = normal.addcmul(unit[:, axis:axis + 1], tangent[:, axis], value=-1.0)
    return torch.addcmul(tangent, unit[:, :, None], normal[:, None, :]), channel_cot


def weight_vjp(terms: PairTerms, channel_cot: torch.Tensor, radial_weights: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Cotangents of the radial weights [S or P, K, C] (S = 1 without neighbour species), of
    the per-row centre weights [n, C] and of the element → pseudo-element mixing [S, P] (None
    without one) from one cotangent of the channels [n, w, C, 1]."""
    n, w, c, _ = channel_cot.shape
    channel_cot = channel_cot[:, :, :, 0]
    mixed = terms.mixed.view(n, w, c)
    centre_cot = (channel_cot * mixed).sum(1)
    mixed_cot = (channel_cot * terms.centre[:, None, :]).reshape(n * w, c)
    basis = terms.basis
    if terms.neighbour_species is None:
        return (basis.T @ mixed_cot)[None], centre_cot, None
    n_rows, n_radial, _ = radial_weights.shape
    rows = _species_rows(terms.neighbour_species, n_rows, terms.mixing, basis.dtype)
    expanded = (rows[:, :, None] * basis[:, None, :]).reshape(n * w, -1)
    radial_cot = (expanded.T @ mixed_cot).view(n_rows, n_radial, c)
    if terms.mixing is None:
        return radial_cot, centre_cot, None
    # ∂/∂mixing[s, p] = Σ over slots of species s of Σ_c (Σ_k b_k W[p, k, c]) · cotangent_c
    per_pseudo = (basis @ radial_weights.permute(1, 0, 2).reshape(n_radial, n_rows * c)).view(n * w, n_rows, c)
    row_cot = (per_pseudo * mixed_cot[:, None, :]).sum(2)
    mixing_cot = torch.zeros_like(terms.mixing).index_add(0, terms.neighbour_species, row_cot.to(terms.mixing.dtype))
    return radial_cot, centre_cot, mixing_cot


class PowerSpectrumDescriptor(torch.autograd.Function):
    """Descriptors [N, D] from pair vectors, with the hand-derived backward.

    ``apply(vectors, radial_weights, centre_weights, spec, table, neighbour_species, mixing)``:
    ``vectors`` [P, 3] in the batch's pair order, ``radial_weights`` [S, K, C]
    (or [P, K, C] with ``mixing`` [S, P], the element → pseudo-element matrix
    of a compressed model; else ``None``), ``centre_weights`` [N, C] per atom,
    ``neighbour_species`` [N·w] per slot (or ``None``: one species).  When a graph of the gradient is requested
    (``create_graph=True``) the backward rebuilds the pair terms with autograd
    on, so double backward is exact.
    """

    @staticmethod
    def forward(ctx, vectors, radial_weights, centre_weights, spec, table, neighbour_species, mixing):
        terms = _table_terms(spec, table, vectors, radial_weights, centre_weights, neighbour_species, mixing)
        a = density(terms)
        ctx.save_for_backward(vectors, radial_weights, centre_weights, mixing)
        ctx.spec, ctx.table, ctx.neighbour_species = spec, table, neighbour_species
        ctx.terms, ctx.density = terms, a
        return power_spectrum(spec, a)

    @staticmethod
    def backward(ctx, cotangent):
        vectors, radial_weights, centre_weights, mixing = ctx.saved_tensors
        spec, table = ctx.spec, ctx.table
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: rebuild the terms differentiably
            terms = _table_terms(spec, table, vectors, radial_weights, centre_weights, ctx.neighbour_species, mixing)
            a = density(terms)
        else:
            terms, a = ctx.terms, ctx.density
        slot_grad, channel_cot = pair_vjp(spec, terms, power_spectrum_vjp(spec, a, cotangent[:, :, None]))
        grad_vectors = slot_grad[:, :, 0].index_select(0, table.slots)
        if table.order is not None:
            grad_vectors = torch.zeros_like(grad_vectors).index_copy(0, table.order, grad_vectors)
        radial_cot = centre_cot = mixing_cot = None
        if any(ctx.needs_input_grad[k] for k in (1, 2, 6)):
            radial_cot, centre_cot, mixing_cot = weight_vjp(terms, channel_cot, radial_weights)
        return grad_vectors, radial_cot, centre_cot, None, None, None, mixing_cot


def _table_terms(spec: DescriptorSpec, table: CentreTable, vectors: torch.Tensor, radial_weights: torch.Tensor,
                 centre_weights: torch.Tensor, neighbour_species: torch.Tensor | None,
                 mixing: torch.Tensor | None) -> PairTerms:
    sorted_vectors = vectors if table.order is None else vectors[table.order]
    slot_vectors = padded_vectors(sorted_vectors, table.slots, table.n_atoms * table.width, spec.cutoff)
    return pair_terms(spec, slot_vectors, neighbour_species, radial_weights, centre_weights, mixing)
