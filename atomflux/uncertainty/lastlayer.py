"""The last layer as a linear model: energies, forces and stress are linear in its weights.

A potential whose per-atom energy is e_i = f_i·w + b (+ terms that do not
depend on the last layer) has, for a structure S and augmented weights
w̃ = [w, b],

    E_S = φ_S·w̃,          φ_S = Σ_{i∈S} [f_i, 1]                    (eV)
    F_a = ψ_a·w̃,          ψ_a = -∂φ_S/∂x_a                          (eV/Å, one row per force component)
    σ_v = χ_v·w̃,          χ_v = (1/V) ∂φ_S/∂ε_v                     (eV/Å³, one row per Voigt component)

:func:`last_layer_design` computes these rows (the Jacobian of the features
by one batched backward pass per structure, through
:func:`~atomflux.evaluate.forces_from_pair_gradient`, the same force and
stress formulas as :func:`~atomflux.evaluate.evaluate`) together with the
model's residuals (reference − prediction).  LLPR's force-aware covariance
and the force-aware shallow-ensemble fit are built on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..evaluate import _stress, evaluate, strained_batch
from ..models.base import Potential, floating_dtype
from ..systems import Batch
from ..training.dataset import Frame

#: Voigt order of stress components (ASE): xx, yy, zz, yz, xz, xy
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
QUANTITIES = ("energy", "forces", "stress")


def feature_source(potential: Potential) -> Potential:
    """The module whose ``features`` output feeds the last layer (an LLPR's base, else the potential)."""
    from .llpr import LLPR

    return potential.base if isinstance(potential, LLPR) else potential


def atom_features(potential: Potential, batch: Batch, vectors: torch.Tensor) -> torch.Tensor:
    """Augmented per-atom features [f_i, 1], Tensor [N, F+1]."""
    out = feature_source(potential)(batch, vectors)
    if "features" not in out:
        raise ValueError(f"{type(potential).__name__} returns no 'features': the last-layer treatment needs "
                         "the input of the last linear layer")
    features = out["features"]
    return torch.cat([features, torch.ones_like(features[:, :1])], dim=1)


@dataclass
class Observations:
    """Rows of one observed quantity: ``value = rows @ w̃`` with residuals and owners.

    Attributes
    ----------
    rows : Tensor [R, F+1]
        Derivative of each observed value with respect to the augmented last-layer weights.
    residuals : Tensor [R]
        Reference minus model prediction (energy: eV per structure; forces: eV/Å; stress: eV/Å³).
    owner : Tensor [R]
        Index of the structure each row belongs to.
    """

    rows: torch.Tensor
    residuals: torch.Tensor
    owner: torch.Tensor

    def __len__(self) -> int:
        return len(self.residuals)


@dataclass
class LastLayerDesign:
    """Energy, force and stress observations of a set of structures (see module doc).

    Attributes
    ----------
    energy, forces, stress : Observations or None
        Only targets present in the frames (and asked for) are included.
    n_atoms : Tensor [S]
        Atoms per structure.
    """

    energy: Observations | None
    forces: Observations | None
    stress: Observations | None
    n_atoms: torch.Tensor

    def quantities(self) -> list[str]:
        return [q for q in QUANTITIES if getattr(self, q) is not None and len(getattr(self, q))]

    def noise_variances(self) -> dict[str, float]:
        """Mean squared residual of each quantity (eV², (eV/Å)², (eV/Å³)²)."""
        return {q: float((getattr(self, q).residuals ** 2).mean().clamp(min=1e-30)) for q in self.quantities()}

    def precision(self, weights: dict[str, float],
                  row_multipliers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Σ_q weight_q Σ_rows m_r r rᵀ, Tensor [F+1, F+1]; ``row_multipliers`` [R] per quantity (default 1: a
        heteroscedastic likelihood's per-row precision factors)."""
        obs = self.energy if self.energy is not None else next(getattr(self, q) for q in self.quantities())
        total = torch.zeros(obs.rows.shape[1], obs.rows.shape[1], dtype=obs.rows.dtype)
        for q in self.quantities():
            rows = getattr(self, q).rows
            weighted = rows if row_multipliers is None else rows * row_multipliers[q][:, None]
            total = total + float(weights.get(q, 0.0)) * weighted.T @ rows
        return total

    def noise_weights(self) -> dict[str, float]:
        """Default weight of each quantity: s²_E / s²_q (s²_q the mean squared residual), 1 for energies."""
        noise = self.noise_variances()
        reference = noise.get("energy", next(iter(noise.values())))
        return {q: reference / v for q, v in noise.items()}

    def least_squares(self, weights: dict[str, float] | None = None, regulariser: float = 1e-8) -> torch.Tensor:
        """Change δw̃ [F+1] of the augmented last-layer weights that best explains the residuals.

        Minimises Σ_q weight_q |rows_q δw̃ − residuals_q|² + ς²|δw̃|² with
        ς² = ``regulariser`` × the largest eigenvalue of the weighted precision
        (the posterior mean of Bayesian linear regression on energies, forces and
        stress).  Units: those of the rows' weights (eV per unit feature).
        """
        weights = self.noise_weights() if weights is None else weights
        precision = self.precision(weights)
        rhs = sum(float(weights.get(q, 0.0)) * getattr(self, q).rows.T @ getattr(self, q).residuals
                  for q in self.quantities())
        ridge = regulariser * float(torch.linalg.eigvalsh(precision).max().clamp(min=1e-300))
        return torch.linalg.solve(precision + ridge * torch.eye(len(precision), dtype=precision.dtype), rhs)

    def corrected(self, delta: torch.Tensor) -> "LastLayerDesign":
        """The same rows with the residuals of a model whose augmented last-layer weights moved by ``delta``."""
        moved = {q: None if getattr(self, q) is None else
                 Observations(getattr(self, q).rows, getattr(self, q).residuals - getattr(self, q).rows @ delta,
                              getattr(self, q).owner) for q in QUANTITIES}
        return LastLayerDesign(moved["energy"], moved["forces"], moved["stress"], self.n_atoms)


def _feature_pair_gradients(base: Potential, batch: Batch, vectors: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed augmented features φ_S [F+1] and ∂(Σ_i f_i)/∂r_p for every feature, Tensor [F, P, 3].

    A potential with a hand-derived gradient path gets all F feature directions
    as "members" of one batched backward pass (:meth:`~atomflux.models.Potential.gradient_chunks`
    with ``feature_directions`` = identity; member k minus the energy is feature k);
    any other potential goes through one batched autograd backward.
    """
    last_layer = getattr(base, "last_layer", None)
    if isinstance(base, Potential) and isinstance(last_layer, torch.nn.Linear):
        n_features = int(last_layer.in_features)
        eye = torch.eye(n_features, dtype=vectors.dtype, device=vectors.device)
        chunks = base.gradient_chunks(batch, vectors, gradients=True, feature_directions=eye)
        if chunks is not None:
            grads = vectors.new_zeros((n_features,) + vectors.shape)
            features = []
            for chunk in chunks:
                features.append(chunk.outputs["features"])
                grads[:, chunk.pairs] = chunk.member_gradients - chunk.energy_gradient
            phi = torch.cat(features).sum(0)
            return torch.cat([phi, phi.new_ones(1) * len(batch.numbers)]), grads
    vectors = vectors.requires_grad_(True)
    with torch.enable_grad():
        phi = atom_features(base, batch, vectors).sum(0)
        n = len(phi) - 1
        grads = None
        if phi.requires_grad:
            eye = torch.eye(n, dtype=phi.dtype, device=phi.device)
            (grads,) = torch.autograd.grad(phi[:n], vectors, grad_outputs=eye, is_grads_batched=True,
                                           allow_unused=True)
    if grads is None:  # no neighbours: the features do not depend on positions
        grads = torch.zeros((n,) + vectors.shape, dtype=vectors.dtype)
    return phi.detach(), grads


def structure_rows(potential: Potential, batch: Batch, forces: bool = True, stress: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Last-layer rows of one structure: energy φ_S [F+1], forces [3N, F+1] (atom-major, x/y/z), Voigt stress [6, F+1].

    ``batch`` holds one system; rows not asked for are ``None``.  The variance of
    any of these observables under a weight covariance Σ is ``((rows @ Σ) * rows).sum(-1)``.
    """
    if batch.n_systems != 1:
        raise ValueError(f"structure_rows takes a batch of one structure, got {batch.n_systems}")
    vectors = batch.pair_vectors().detach()
    if not (forces or stress):
        with torch.no_grad():
            return atom_features(potential, batch, vectors).sum(0), None, None
    if getattr(feature_source(potential), "long_range", False):
        return _long_range_rows(feature_source(potential), batch, forces, stress)
    phi, grads = _feature_pair_gradients(feature_source(potential), batch, vectors)
    n = len(phi) - 1
    force_rows = stress_rows = None
    i, j = batch.pairs[:, 0], batch.pairs[:, 1]
    if forces:  # as forces_from_pair_gradient, for all F features at once
        per_feature = torch.zeros((n,) + batch.positions.shape, dtype=phi.dtype)
        per_feature = per_feature.index_add(1, i, grads).index_add(1, j, -grads)             # [F, N, 3]
        force_rows = torch.cat([per_feature.reshape(n, -1).T, torch.zeros(per_feature[0].numel(), 1,
                                                                          dtype=phi.dtype)], dim=1)
    if stress:  # virial W = -Σ_p g_p ⊗ r_p, stress = -W/V
        virial = -torch.einsum("fpa,pc->fac", grads, vectors.detach())
        per_feature = _stress(virial[:, None], batch)[:, 0]                                   # [F, 3, 3]
        voigt = torch.stack([per_feature[:, a, b] for a, b in VOIGT], dim=0)                 # [6, F]
        stress_rows = torch.cat([voigt, torch.zeros(6, 1, dtype=phi.dtype)], dim=1)
    return phi.detach(), force_rows, stress_rows


def _long_range_rows(base: Potential, batch: Batch, forces: bool, stress: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`structure_rows` of a long-range model: features differentiated with respect to positions
    and strain (their k-space part depends on both directly), as :func:`~atomflux.evaluate.evaluate` does."""
    with torch.enable_grad():
        strained, positions, strain = strained_batch(batch)
        phi = atom_features(base, strained, strained.pair_vectors()).sum(0)
        n = len(phi) - 1
        eye = torch.eye(n, dtype=phi.dtype, device=phi.device)
        by_position, by_strain = torch.autograd.grad(phi[:n], [positions, strain], grad_outputs=eye,
                                                     is_grads_batched=True, allow_unused=True)
    by_position = torch.zeros((n,) + positions.shape, dtype=phi.dtype) if by_position is None else by_position
    by_strain = torch.zeros((n,) + strain.shape, dtype=phi.dtype) if by_strain is None else by_strain
    force_rows = stress_rows = None
    if forces:
        force_rows = torch.cat([-by_position.reshape(n, -1).T, phi.new_zeros(by_position[0].numel(), 1)], dim=1)
    if stress:  # σ = (1/V) ∂E/∂ε
        per_feature = _stress(-by_strain.transpose(2, 3), batch)[:, 0]                         # [F, 3, 3]
        voigt = torch.stack([per_feature[:, a, b] for a, b in VOIGT], dim=0)
        stress_rows = torch.cat([voigt, phi.new_zeros(6, 1)], dim=1)
    return phi.detach(), force_rows.detach() if forces else None, stress_rows.detach() if stress else None


def last_layer_design(potential: Potential, frames: Sequence[Frame], quantities: Sequence[str] = QUANTITIES,
                      progress: bool = False) -> LastLayerDesign:
    """Last-layer observation rows and residuals of ``potential`` on reference ``frames``.

    Parameters
    ----------
    potential
        A potential with a ``features`` output (or an LLPR wrapping one); its
        predictions give the residuals.
    frames
        Reference structures; each target enters only where the frame has it
        (stress only for 3-D periodic cells).
    quantities
        Any of ``"energy"``, ``"forces"``, ``"stress"``.
    progress
        Show a progress bar.
    """
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise ValueError(f"unknown quantities {unknown}; choose from {', '.join(QUANTITIES)}")
    if not frames:
        raise ValueError("no structures given")
    dtype = floating_dtype(potential)
    base = feature_source(potential)
    parts: dict[str, tuple[list, list, list]] = {q: ([], [], []) for q in QUANTITIES}
    counts = []
    for index, frame in enumerate(tqdm(frames, desc="last-layer rows", disable=not progress, leave=False)):
        batch = Batch.from_atoms(frame.atoms, potential.cutoff, dtype=dtype)
        want_f = "forces" in quantities and frame.forces is not None
        want_s = "stress" in quantities and frame.stress is not None and bool(np.all(frame.atoms.pbc))
        phi, force_rows, stress_rows = structure_rows(potential, batch, want_f, want_s)
        prediction = evaluate(base, batch, forces=want_f, stress=want_s)
        counts.append(len(frame.atoms))
        if "energy" in quantities and frame.energy is not None:
            _append(parts["energy"], phi[None], [frame.energy - float(prediction.energy[0])], index)
        if want_f:
            residual = (torch.as_tensor(frame.forces, dtype=dtype) - prediction.forces).reshape(-1)
            _append(parts["forces"], force_rows, residual.tolist(), index)
        if want_s:
            difference = torch.as_tensor(frame.stress, dtype=dtype) - prediction.stress[0]
            _append(parts["stress"], stress_rows, [float(difference[a, b]) for a, b in VOIGT], index)
    observed = {q: _observations(*parts[q], dtype) if parts[q][0] else None for q in QUANTITIES}
    return LastLayerDesign(observed["energy"], observed["forces"], observed["stress"],
                           torch.tensor(counts, dtype=dtype))


def _append(store: tuple[list, list, list], rows: torch.Tensor, residuals: list[float], owner: int) -> None:
    store[0].append(rows)
    store[1].extend(residuals)
    store[2].extend([owner] * len(residuals))


def _observations(rows: list, residuals: list, owners: list, dtype: torch.dtype) -> Observations:
    return Observations(torch.cat(rows), torch.tensor(residuals, dtype=dtype), torch.tensor(owners))


def as_design(potential: Potential, data: Sequence[Frame] | LastLayerDesign, quantities: Sequence[str] = QUANTITIES,
              progress: bool = False) -> LastLayerDesign:
    """``data`` itself if it is already a :class:`LastLayerDesign` (of the same base), else its design."""
    return data if isinstance(data, LastLayerDesign) else last_layer_design(potential, data, quantities, progress)
