"""Minimal (STO-3G-like) Gaussian basis: orbital layout and a differentiable overlap matrix.

Every atom gets five orbital *slots* ``[1s, 2s, 2px, 2py, 2pz]``; hydrogen and
helium fill only the first.  Matrices of a molecule with A atoms are built as
``5A × 5A`` and the empty slots are decoupled (overlap 1 on the diagonal, a
large Hamiltonian diagonal), so molecules of different sizes share one
batched eigen-solver and the empty slots' eigenvalues lie far above all
physical ones.

The overlap of contracted Cartesian Gaussians with l ≤ 1 has a closed form
(Obara–Saika for s and p); it is computed in torch so that orbital energies
can be differentiated with respect to the positions.  Basis parameters are
plain JSON (``{"O": [[l, [[exponent, coefficient], ...]], ...]}``, the
``pyscf.gto.basis.load`` layout) and travel in the model's metadata, so
inference needs no quantum-chemistry code.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: orbital slots per atom and their (angular momentum, Cartesian axis)
SLOTS = 5
SLOT_LABELS = ("1s", "2s", "2px", "2py", "2pz")
#: diagonal given to empty slots (eV): their eigenvalues sort above every physical level
EMPTY_SLOT_ENERGY = 1.0e4


def sto3g_parameters(elements: list[str]) -> dict[str, list[Any]]:
    """STO-3G shells of ``elements`` from pyscf's basis library (used when creating a model)."""
    from pyscf.gto.basis import load

    return {e: [[int(shell[0]), [[float(a), float(c)] for a, c in shell[1:]]] for shell in load("sto-3g", e)]
            for e in elements}


class MinimalBasis(torch.nn.Module):
    """Slot layout and overlap matrix of a minimal basis of s and p shells.

    Parameters
    ----------
    shells
        ``{element: [[l, [[exponent (bohr⁻²), coefficient], ...]], ...]}`` with at
        most two s shells and one p shell per element, in the order 1s, 2s, 2p.
    """

    #: Å per bohr, the value pyscf uses (basis exponents are in bohr⁻²)
    BOHR = 0.52917721092

    def __init__(self, shells: dict[str, list[Any]]) -> None:
        super().__init__()
        from ase.data import atomic_numbers

        self.shells = shells
        n_prim = max(len(prims) for element in shells.values() for _, prims in element)
        table_exp = torch.ones(119, SLOTS, n_prim, dtype=torch.float64)
        table_coef = torch.zeros(119, SLOTS, n_prim, dtype=torch.float64)
        table_used = torch.zeros(119, SLOTS, dtype=torch.bool)
        for element, element_shells in shells.items():
            z = atomic_numbers[element]
            s_slot = 0
            for l, prims in element_shells:
                if l == 0 and s_slot < 2:
                    slots, s_slot = [s_slot], s_slot + 1
                elif l == 1:
                    slots = [2, 3, 4]
                else:
                    raise ValueError(f"{element}: only up to two s shells and one p shell fit a minimal basis")
                exps = torch.tensor([a for a, _ in prims], dtype=torch.float64) / self.BOHR**2   # Å⁻²
                coefs = torch.tensor([c for _, c in prims], dtype=torch.float64) * _primitive_norm(l, exps)
                coefs = coefs / _self_overlap(l, exps, coefs).sqrt()
                for slot in slots:
                    table_exp[z, slot, : len(prims)] = exps
                    table_coef[z, slot, : len(prims)] = coefs
                    table_used[z, slot] = True
        self.register_buffer("exponents", table_exp.double(), persistent=False)
        self.register_buffer("coefficients", table_coef.double(), persistent=False)
        self.register_buffer("used", table_used, persistent=False)
        self.register_buffer("angular", torch.tensor([0, 0, 1, 1, 1]), persistent=False)
        self.register_buffer("axis", torch.tensor([0, 0, 0, 1, 2]), persistent=False)

    def slot_mask(self, numbers: torch.Tensor) -> torch.Tensor:
        """Which slots hold a basis function, Tensor [..., 5] (bool) for atomic numbers [...]."""
        return self.used[numbers]

    def n_orbitals(self, numbers: torch.Tensor) -> int:
        """Number of basis functions of one molecule."""
        return int(self.used[numbers].sum())

    def overlap(self, positions: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """Overlap matrix in the slot layout, Tensor [..., 5A, 5A] for positions [..., A, 3] (Å).

        Empty slots get 1 on the diagonal and 0 elsewhere.  Differentiable in
        the positions.
        """
        dtype = positions.dtype
        n_atoms = positions.shape[-2]
        exps = self.exponents[numbers].to(dtype).flatten(-3, -2)          # [..., 5A, K]
        coefs = self.coefficients[numbers].to(dtype).flatten(-3, -2)
        used = self.used[numbers].flatten(-2)                             # [..., 5A]
        centres = positions.repeat_interleave(SLOTS, dim=-2)               # [..., 5A, 3]
        lmom = self.angular.repeat(n_atoms)
        axis = self.axis.repeat(n_atoms)
        a = exps[..., :, None, :, None]                                    # [..., i, 1, k, 1]
        b = exps[..., None, :, None, :]                                    # [..., 1, j, 1, k']
        p = a + b
        ab = (centres[..., None, :, :] - centres[..., :, None, :])         # B - A, [..., i, j, 3]
        r2 = (ab**2).sum(-1)[..., None, None]
        base = (math.pi / p) ** 1.5 * torch.exp(-a * b / p * r2)          # ⟨s|s⟩ of primitives
        pa = (b / p)[..., None] * ab[..., None, None, :]                   # P - A, [..., i, j, k, k', 3]
        pb = -(a / p)[..., None] * ab[..., None, None, :]                  # P - B
        ax_i = axis[:, None].expand(len(axis), len(axis))
        ax_j = axis[None, :].expand(len(axis), len(axis))
        pa_i = _component(pa, ax_i)
        pb_j = _component(pb, ax_j)
        p_i = (lmom[:, None] == 1).to(dtype)[..., None, None]
        p_j = (lmom[None, :] == 1).to(dtype)[..., None, None]
        same_axis = (ax_i == ax_j).to(dtype)[..., None, None]
        factor = ((1 - p_i) * (1 - p_j) + p_i * (1 - p_j) * pa_i + (1 - p_i) * p_j * pb_j
                  + p_i * p_j * (pa_i * pb_j + same_axis / (2 * p)))
        prim = coefs[..., :, None, :, None] * coefs[..., None, :, None, :]
        overlap = (prim * factor * base).sum((-1, -2))
        both = used[..., :, None] & used[..., None, :]
        eye = torch.eye(overlap.shape[-1], dtype=dtype, device=overlap.device)
        return torch.where(both, overlap, eye.expand_as(overlap))


def _component(vectors: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """vectors [..., i, j, k, k', 3] → component axis[i, j] of each, [..., i, j, k, k']."""
    onehot = torch.nn.functional.one_hot(axis, 3).to(vectors.dtype)          # [i, j, 3]
    return (vectors * onehot[..., None, None, :]).sum(-1)


def _primitive_norm(l: int, exps: torch.Tensor) -> torch.Tensor:
    """Normalisation of x^l exp(-α r²) (l = 0, or one Cartesian p component)."""
    norm = (2 * exps / math.pi) ** 0.75
    return norm * (4 * exps) ** 0.5 if l == 1 else norm


def _self_overlap(l: int, exps: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    p = exps[:, None] + exps[None, :]
    base = (math.pi / p) ** 1.5
    if l == 1:
        base = base / (2 * p)
    return (coefs[:, None] * coefs[None, :] * base).sum()
