"""Shallow ensembles: the last layer becomes M members that share the backbone.

:func:`fit_shallow_ensemble` turns a trained :class:`PowerSpectrumPotential`
into an M-member shallow ensemble after training: the backbone is frozen and
the members' last-layer weights are w_m = w + δ_m - mean(δ), so the mean
prediction (energies, forces, stress) is exactly the trained model's.  The
deviations start as draws from the model's force-aware LLPR posterior (so
members disagree where the training data say nothing, and the spread grows
out of distribution), are then fitted with a Gaussian negative
log-likelihood (or CRPS) to the training residuals of energies, forces and
stress — each member's forces and stress are linear in δ_m through the
gradients of the last-layer features — and the spread is finally calibrated
per quantity on validation data (Kellner & Ceriotti, arXiv:2402.16621): one
factor for energies, a factor and a noise floor (σ' = √(α²σ² + τ²)) for
forces and stress; :func:`recalibrate_ensemble` redoes this step alone.  Joint training of mean and members is
:class:`~atomflux.training.TrainConfig`'s ``ensemble_loss`` with
``model={"n_ensemble": M}``.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..models import PowerSpectrumPotential
from ..training.dataset import Frame
from .calibration import optimal_scale, scale_and_floor, warn_if_imprecise
from .lastlayer import QUANTITIES, LastLayerDesign, as_design
from .llpr import LLPR
from .novelty import attach_novelty, carried_novelty

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


def _normalised(design: LastLayerDesign, quantities: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per quantity: rows and residuals divided by the quantity's RMS training residual (energies per atom)."""
    out = {}
    for q in quantities:
        obs = getattr(design, q)
        rows, residuals = obs.rows, obs.residuals
        if q == "energy":
            atoms = design.n_atoms[obs.owner][:, None]
            rows, residuals = rows / atoms, residuals / atoms[:, 0]
        unit = float(residuals.pow(2).mean().sqrt().clamp(min=1e-12))
        out[q] = (rows / unit, residuals / unit)
    return out


def _spreads(rows: torch.Tensor, deviations: torch.Tensor) -> torch.Tensor:
    """Members' deviations of each observation, Tensor [R, M]."""
    return rows @ (deviations - deviations.mean(0)).T


def fit_shallow_ensemble(model: PowerSpectrumPotential, train_frames: Sequence[Frame] | LastLayerDesign,
                         validation_frames: Sequence[Frame] | LastLayerDesign, n_members: int = 8, loss: str = "nll",
                         quantities: Sequence[str] = QUANTITIES, steps: int = 1000, seed: int = 0,
                         progress: bool = False) -> PowerSpectrumPotential:
    """A copy of ``model`` whose last layer is a calibrated M-member shallow ensemble.

    With the backbone frozen every member's energy, forces and stress are
    linear in its last-layer weights (:mod:`~atomflux.uncertainty.lastlayer`),
    so the fit runs on precomputed rows: the members start as draws from the
    model's force-aware LLPR posterior and their deviations are fitted by
    ``loss`` on the training residuals of all ``quantities`` (each normalised
    by its RMS residual, the per-quantity losses summed).  Calibrated on the
    validation frames: the energy factor (α² = mean z², the NLL-optimal
    scale) is stored as ``uncertainty_scale``; forces and stress get a factor
    and a noise floor of their predictive σ' = √(α²σ² + τ²), fitted together by
    the NLL, as ``uncertainty_scale_forces`` / ``uncertainty_floor_forces``
    (and ``_stress``).

    Parameters
    ----------
    model
        Trained single-output :class:`PowerSpectrumPotential`.
    train_frames
        Structures with reference energies (eV), forces (eV/Å) and stress (eV/Å³), any may be missing;
        or their precomputed :func:`~atomflux.uncertainty.lastlayer.last_layer_design` (also for
        ``validation_frames``).
    validation_frames
        Held-out structures to calibrate the per-quantity scales.
    n_members
        M ≥ 2.
    loss
        ``"nll"`` (Gaussian negative log-likelihood) or ``"crps"``.
    quantities
        Targets the spread is fitted and calibrated on.
    steps
        Adam steps of the spread fit.
    progress
        Show progress bars.
    """
    if n_members < 2:
        raise ValueError("a shallow ensemble needs at least 2 members")
    if model.n_ensemble != 1:
        raise ValueError("model is already an ensemble")
    if getattr(model, "long_range", False):
        raise ValueError(f"a post-hoc shallow ensemble varies the last layer of a PowerSpectrumPotential; for the "
                         f"{type(model).__name__} use LLPR (atomflux llpr), which covers its charge head too")
    if loss not in LOSSES:
        raise ValueError(f"ensemble loss must be one of {LOSSES}, got {loss!r}")
    torch.manual_seed(seed)
    prior = LLPR(model)
    train = as_design(prior, train_frames, quantities, progress)
    prior.fit_observations(train)
    validation = as_design(prior, validation_frames, quantities, progress)
    prior.calibrate_observations(validation)
    _, chol = prior.posterior()
    scale = float(model.energy_scale)
    fitted = train.quantities()
    targets = _normalised(train, fitted)
    deviations = torch.nn.Parameter((chol @ torch.randn(chol.shape[0], n_members, dtype=chol.dtype)).T / scale)
    optimiser = torch.optim.Adam([deviations], lr=1e-3)
    for _ in tqdm(range(steps), desc="ensemble spread", disable=not progress, leave=False):
        optimiser.zero_grad()
        value = sum(ensemble_loss(loss, residual, (scale * _spreads(rows, deviations)).pow(2).mean(1) + 1e-12)
                    for rows, residual in targets.values())
        value.backward()
        optimiser.step()
    centred = (deviations - deviations.mean(0)).detach()
    ensemble = PowerSpectrumPotential(**{**model.config(), "n_ensemble": n_members}).to(chol.dtype)
    state = copy.deepcopy(model.state_dict())
    state["last_layer.weight"] = model.last_layer.weight.detach() + centred[:, :-1]
    state["last_layer.bias"] = model.last_layer.bias.detach() + centred[:, -1]
    ensemble.load_state_dict(state)
    ensemble.eval()
    calibration = _calibrate(ensemble, validation, centred, scale)
    ensemble.metadata = dict(getattr(model, "metadata", {}) or {})
    ensemble.metadata["uncertainty"] = {"method": "shallow_ensemble", "n_members": n_members, "loss": loss,
                                        "fit": {"kind": "post-hoc, frozen backbone, mean preserved",
                                                "quantities": fitted, "steps": steps,
                                                "n_training_structures": len(train.n_atoms)},
                                        "n_validation_structures": len(validation.n_atoms),
                                        "calibration": calibration}
    novelty = carried_novelty(model)
    if novelty is not None:  # same descriptor: the training domain's statistics still hold
        attach_novelty(ensemble, novelty)
    return ensemble


def _calibrate(ensemble: PowerSpectrumPotential, validation: LastLayerDesign, centred: torch.Tensor,
               scale: float) -> dict:
    """Per-quantity calibration of the members' spread on validation rows; sets the model's attributes.

    Energies: the NLL-optimal factor (α² = mean z²), with ``energy_factor_interval``, the range
    (as factors) that α's 90 % confidence interval spans on this many validation energies
    (:func:`~atomflux.uncertainty.calibration.factor_interval`; a warning when it is wide).  Forces and stress: factor
    and noise floor of the predictive σ' = √(α²σ² + τ²), both by the NLL
    (:func:`~atomflux.uncertainty.calibration.scale_and_floor`).
    """
    for q in QUANTITIES:
        ensemble.__dict__.pop(f"uncertainty_floor_{q}", None)
    ensemble.__dict__.pop("uncertainty_locality_forces", None)  # fitted on top of these factors: refit it after
    calibration = {}
    for q in validation.quantities():
        obs = getattr(validation, q)
        sigma = (scale * _spreads(obs.rows, centred)).pow(2).mean(1).sqrt().numpy()
        if q == "energy":
            calibration["scale"] = optimal_scale(obs.residuals.numpy(), sigma)
        else:
            calibration[f"scale_{q}"], calibration[f"floor_{q}"] = scale_and_floor(obs.residuals.numpy(), sigma)
    for key, value in calibration.items():
        setattr(ensemble, "uncertainty_" + key, value)
    if validation.energy is not None and len(validation.energy):
        calibration["energy_factor_interval"] = list(warn_if_imprecise("energy", len(validation.energy)))
    return calibration


def recalibrate_ensemble(ensemble: PowerSpectrumPotential, validation_frames: Sequence[Frame] | LastLayerDesign,
                         progress: bool = False) -> dict[str, float]:
    """Calibrate the spread of an existing shallow ensemble anew on held-out data (members unchanged).

    Parameters
    ----------
    ensemble
        A :class:`PowerSpectrumPotential` with ``n_ensemble`` ≥ 2 whose members share the backbone.
    validation_frames
        Held-out structures, or their last-layer design (of the ensemble's mean model).
    progress
        Show a progress bar.

    Returns
    -------
    dict
        The new calibration (``scale``, ``scale_forces``, ``floor_forces`` ...), also stored in
        ``ensemble.metadata["uncertainty"]["calibration"]``.
    """
    if ensemble.n_ensemble < 2:
        raise ValueError("recalibrate_ensemble needs a shallow ensemble (n_ensemble ≥ 2)")
    weights = torch.cat([ensemble.last_layer.weight, ensemble.last_layer.bias[:, None]], dim=1).detach()
    centred = weights - weights.mean(0)
    validation = as_design(ensemble, validation_frames, QUANTITIES, progress)
    calibration = _calibrate(ensemble, validation, centred.to(validation.n_atoms.dtype), float(ensemble.energy_scale))
    ensemble.metadata.setdefault("uncertainty", {})["calibration"] = calibration
    ensemble.metadata["uncertainty"]["n_validation_structures"] = len(validation.n_atoms)
    return calibration
