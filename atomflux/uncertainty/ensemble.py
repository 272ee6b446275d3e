"""Shallow ensembles: the last layer becomes M members that share the backbone.

:func:`fit_shallow_ensemble` turns a trained :class:`PowerSpectrumPotential`
into an M-member shallow ensemble after training: the backbone is frozen and
the members' last-layer weights are w_m = w + δ_m - mean(δ), so the mean
prediction (energies, forces, stress) is exactly the trained model's.  The
deviations start as draws from the model's LLPR posterior (so members
disagree where the training data say nothing, and the spread grows out of
distribution), are then fitted to the training energies with a Gaussian
negative log-likelihood (or CRPS), and the spread is finally scaled by one
factor α calibrated on validation data (Kellner & Ceriotti,
arXiv:2402.16621).  Joint
training of mean and members is :class:`~atomflux.training.TrainConfig`'s
``ensemble_loss`` with ``model={"n_ensemble": M}``.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch

from ..evaluate import sum_per_system
from ..models import PowerSpectrumPotential
from ..systems import Batch
from .calibration import optimal_scale
from .llpr import LLPR

LOSSES = ("nll", "crps")


def gaussian_nll_loss(residual: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Mean ½[log σ² + r²/σ²] (constant dropped)."""
    return 0.5 * (torch.log(variance) + residual**2 / variance).mean()


def gaussian_crps_loss(residual: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Mean continuous ranked probability score of N(0, σ²) at r (units of r)."""
    sigma = variance.sqrt()
    z = residual / sigma
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return (sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))).mean()


def ensemble_loss(kind: str, residual: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    if kind == "nll":
        return gaussian_nll_loss(residual, variance)
    if kind == "crps":
        return gaussian_crps_loss(residual, variance)
    raise ValueError(f"ensemble loss must be one of {LOSSES}, got {kind!r}")


@torch.no_grad()
def _structure_features(model: PowerSpectrumPotential, batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per structure: Σ_i f_i [S, F], atom counts [S] and model energies [S]."""
    phis, counts, energies = [], [], []
    for batch in batches:
        batch = batch.to(model.baseline.dtype)
        out = model(batch, batch.pair_vectors())
        phis.append(sum_per_system(out["features"], batch))
        counts.append(batch.n_atoms.to(phis[-1].dtype))
        energies.append(sum_per_system(out["energy"], batch))
    return torch.cat(phis), torch.cat(counts), torch.cat(energies)


def fit_shallow_ensemble(model: PowerSpectrumPotential, train_batches: Sequence[Batch], train_energies: Sequence[float],
                         validation_batches: Sequence[Batch], validation_energies: Sequence[float],
                         n_members: int = 8, loss: str = "nll", steps: int = 500, seed: int = 0) -> PowerSpectrumPotential:
    """A copy of ``model`` whose last layer is a calibrated M-member shallow ensemble.

    Parameters
    ----------
    model
        Trained single-output :class:`PowerSpectrumPotential`.
    train_batches, train_energies
        Structures and their reference total energies (eV) to fit the spread.
    validation_batches, validation_energies
        Held-out structures to calibrate the spread scale α.
    n_members
        M ≥ 2.
    loss
        ``"nll"`` (Gaussian negative log-likelihood) or ``"crps"``.
    """
    if n_members < 2:
        raise ValueError("a shallow ensemble needs at least 2 members")
    if model.n_ensemble != 1:
        raise ValueError("model is already an ensemble")
    torch.manual_seed(seed)
    phi_all, n_all, e0_all = _structure_features(model, train_batches)
    keep = [k for k, e in enumerate(train_energies) if e is not None]
    phi, n, e0 = phi_all[keep], n_all[keep], e0_all[keep]
    reference = torch.tensor([train_energies[k] for k in keep], dtype=phi.dtype)
    residual = (reference - e0) / n                                     # eV/atom
    scale = float(model.energy_scale)
    prior = LLPR(model).fit_features(torch.cat([phi_all, n_all[:, None]], dim=1))  # same φ: no second pass
    prior.calibrate(validation_batches, validation_energies)
    _, chol = prior.posterior()
    draws = (chol @ torch.randn(chol.shape[0], n_members, dtype=chol.dtype)).T / scale   # [M, F+1]
    delta_w = torch.nn.Parameter(draws[:, :-1].clone())
    delta_b = torch.nn.Parameter(draws[:, -1].clone())
    optimiser = torch.optim.Adam([delta_w, delta_b], lr=1e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        dw, db = delta_w - delta_w.mean(0), delta_b - delta_b.mean(0)
        spread = scale * (phi @ dw.T + n[:, None] * db) / n[:, None]    # [S, M] eV/atom
        variance = (spread**2).mean(1) + 1e-12
        value = ensemble_loss(loss, residual, variance)
        value.backward()
        optimiser.step()
    ensemble = PowerSpectrumPotential(**{**model.config(), "n_ensemble": n_members}).to(phi.dtype)
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        dw, db = delta_w - delta_w.mean(0), delta_b - delta_b.mean(0)
        state["last_layer.weight"] = model.last_layer.weight + dw
        state["last_layer.bias"] = model.last_layer.bias + db
    ensemble.load_state_dict(state)
    ensemble.eval()
    alpha = calibrate_ensemble(ensemble, validation_batches, validation_energies)
    ensemble.uncertainty_scale = alpha
    ensemble.metadata = dict(getattr(model, "metadata", {}) or {})
    ensemble.metadata["uncertainty"] = {"method": "shallow_ensemble", "n_members": n_members, "loss": loss,
                                        "fit": "post-hoc, frozen backbone, mean preserved",
                                        "calibration": {"scale": alpha}}
    return ensemble


@torch.no_grad()
def calibrate_ensemble(model: PowerSpectrumPotential, batches: Sequence[Batch], energies: Sequence[float]) -> float:
    """Scale α of the members' spread that makes validation energy z-scores unit-variance."""
    keep = [k for k, e in enumerate(energies) if e is not None]
    if len(keep) < 2:
        raise ValueError("calibration needs at least two validation structures with energies")
    errors, sigmas = [], []
    for k in keep:
        batch = batches[k].to(model.baseline.dtype)
        members = model(batch, batch.pair_vectors())["energy_ensemble"].sum(0)
        errors.append(float(members.mean()) - float(energies[k]))
        sigmas.append(float(members.std(unbiased=False)))
    return optimal_scale(np.array(errors), np.array(sigmas))
