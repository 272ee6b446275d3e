"""The student: a PowerSpectrumPotential trained on the teacher's labels, with a calibrated shallow ensemble."""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch

from ..models import PowerSpectrumPotential
from ..training import TrainConfig, train
from ..training.dataset import Frame
from ..uncertainty.calibration import coverage
from ..uncertainty.ensemble import fit_shallow_ensemble
from ..uncertainty.novelty import attach_novelty, fit_novelty
from ..uncertainty.report import errors_and_sigmas
from .config import DistillConfig


def mean_model(ensemble: PowerSpectrumPotential) -> PowerSpectrumPotential:
    """The single-output model whose predictions are the ensemble's mean (the members' last layers averaged).

    A post-hoc shallow ensemble keeps the trained model's mean exactly, so this
    is the model the ensemble was made from: the warm start of the next round.
    """
    if ensemble.n_ensemble == 1:
        return copy.deepcopy(ensemble)
    single = PowerSpectrumPotential(**{**ensemble.config(), "n_ensemble": 1}).to(ensemble.last_layer.weight.dtype)
    state = {k: v.detach().clone() for k, v in ensemble.state_dict().items()}
    state["last_layer.weight"] = state["last_layer.weight"].mean(0, keepdim=True)
    state["last_layer.bias"] = state["last_layer.bias"].mean(0, keepdim=True)
    single.load_state_dict(state)
    return single.eval()


def train_student(train_frames: Sequence[Frame], holdout_frames: Sequence[Frame], config: DistillConfig,
                  round_index: int, previous: PowerSpectrumPotential | None = None,
                  progress: bool = False) -> tuple[PowerSpectrumPotential, dict]:
    """Train the student on ``train_frames`` and calibrate its shallow ensemble on ``holdout_frames``.

    Parameters
    ----------
    train_frames
        Teacher labels the student learns (energies eV, forces eV/Å, stress eV/Å³).
    holdout_frames
        Teacher labels never trained on: the ensemble's spread is calibrated on them.
    config
        Student architecture and training settings.
    round_index
        Seeds the training (``config.seed`` + round).
    previous
        The previous round's student (ensemble or not): training starts from its mean model.
    progress
        Show progress bars.

    Returns
    -------
    (student, training metrics)
        The calibrated ``n_members`` shallow ensemble, carrying the novelty data of ``train_frames``
        (:mod:`atomflux.uncertainty.novelty`), and the training metrics of its mean model (eV units).
    """
    cfg = TrainConfig(learning_rate=config.learning_rate, epochs=config.epochs, batch_size=config.batch_size,
                      patience=config.patience, seed=config.seed + round_index, progress=progress,
                      model={"cutoff": config.cutoff, "n_channels": config.n_channels,
                             "max_angular": config.max_angular, "hidden": list(config.hidden)})
    start = None if previous is None else mean_model(previous)
    result = train(list(train_frames), cfg, potential=start)
    # the domain of the labels it learnt, for `atomflux md --max-novelty`; the ensemble keeps its base's
    attach_novelty(result.potential, fit_novelty(result.potential, [frame.atoms for frame in train_frames]))
    student = fit_shallow_ensemble(result.potential, result.train_frames + result.validation_frames,
                                   list(holdout_frames), n_members=config.n_members,
                                   seed=config.seed + round_index, progress=progress)
    return student, result.metrics


def errors_at(student: torch.nn.Module, frames: Sequence[Frame]) -> dict[str, float]:
    """The student vs the teacher on labelled frames: force and energy errors, mean σ and 1σ coverage.

    Returns
    -------
    dict
        ``force_rmse`` (eV/Å, per component), ``force_sigma`` (mean calibrated σ per component, eV/Å),
        ``force_coverage_1sigma`` (fraction of components with |error| ≤ σ), ``energy_rmse`` and
        ``energy_sigma`` (eV/atom), ``n_frames``.
    """
    found = errors_and_sigmas(student, frames)
    out: dict[str, float] = {"n_frames": len(frames)}
    for key, quantity in (("force", "forces"), ("energy", "energy")):
        if quantity in found:
            errors, sigmas = found[quantity]
            out[f"{key}_rmse"] = float(np.sqrt(np.mean(errors**2)))
            out[f"{key}_sigma"] = float(np.mean(sigmas))
            out[f"{key}_coverage_1sigma"] = coverage(errors, sigmas, 1.0)
    return out
