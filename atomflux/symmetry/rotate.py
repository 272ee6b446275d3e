"""Rotating batches and results: the one place where the rotation convention lives.

A rotation R (orthogonal [3, 3], proper or improper) acts on row vectors:
positions ``q' = q Rᵀ``, cell rows ``h' = h Rᵀ``, pair vectors ``r' = r Rᵀ``.
Rotating positions and cell together leaves the neighbour pairs and their
integer cell shifts unchanged, so a rotated batch needs no new neighbour
search.  A model evaluated on the rotated structure returns E' (a scalar),
forces F' and stress S'; in the frame of the original structure they are

    E = E',     F = F' R   (row vectors),     S = Rᵀ S' R.

The average over a quadrature {R_k, w_k} is Σ_k w_k of these; for forces
this is exactly −∂/∂q of Σ_k w_k E(q R_kᵀ).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..systems import Batch


def rotate_systems(batch: Batch, rotations: torch.Tensor) -> Batch:
    """The batch with system s rotated by ``rotations[s]`` ([S, 3, 3]); same pairs and shifts."""
    per_atom = rotations[batch.system]
    positions = torch.einsum("nab,nb->na", per_atom, batch.positions)
    cell = torch.einsum("sab,sib->sia", rotations, batch.cell)
    return replace(batch, positions=positions, cell=cell)


def rotated_copies(batch: Batch, rotations: torch.Tensor) -> Batch:
    """K copies of the whole batch, copy k rotated by ``rotations[k]`` ([K, 3, 3]), copy-major.

    Atom n of copy k is atom ``k·N + n``, system s of copy k is system
    ``k·S + s``; pairs and shifts are repeated, so the pair vectors of copy k
    are those of the batch times R_kᵀ.
    """
    k, n, s = len(rotations), len(batch.numbers), batch.n_systems
    copy = torch.arange(k, device=batch.pairs.device)
    return Batch(
        positions=torch.einsum("kab,nb->kna", rotations, batch.positions).reshape(k * n, 3),
        numbers=batch.numbers.repeat(k),
        cell=torch.einsum("kab,sib->ksia", rotations, batch.cell).reshape(k * s, 3, 3),
        pbc=batch.pbc.repeat(k, 1),
        system=(batch.system[None, :] + s * copy[:, None]).reshape(-1),
        pairs=(batch.pairs[None, :, :] + n * copy[:, None, None]).reshape(-1, 2),
        shifts=batch.shifts.repeat(k, 1),
        cutoff=batch.cutoff,
    )


def rotate_vectors(vectors: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Row vectors [P, 3] rotated by each R_k: ``r Rᵀ`` for every k, Tensor [K·P, 3] (copy-major)."""
    return torch.einsum("kab,pb->kpa", rotations, vectors).reshape(-1, 3)


def back_rotate_vectors(values: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``v R_k`` for values [K, ..., 3] computed on the copies rotated by R_k (forces, pair gradients)."""
    k = len(rotations)
    flat = values.reshape(k, -1, 3)
    return torch.einsum("kpa,kab->kpb", flat, rotations).reshape(values.shape)


def back_rotate_tensors(values: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``R_kᵀ T R_k`` for values [K, ..., 3, 3] computed on the copies rotated by R_k (stress, virials)."""
    k = len(rotations)
    flat = values.reshape(k, -1, 3, 3)
    return torch.einsum("kca,kpcd,kdb->kpab", rotations, flat, rotations).reshape(values.shape)
