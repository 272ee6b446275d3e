"""Calibration report of an uncertainty-capable model on reference frames."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..evaluate import evaluate
from ..models.base import floating_dtype
from ..systems import Batch
from ..training.dataset import Frame
from .calibration import CalibrationReport, calibration_plots


def errors_and_sigmas(potential, frames: Sequence[Frame]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Prediction errors and predicted σ for energies (per atom) and force components."""
    dtype = floating_dtype(potential)
    out: dict[str, tuple[list, list]] = {"energy": ([], []), "forces": ([], [])}
    for frame in frames:
        batch = Batch.from_atoms(frame.atoms, potential.cutoff, dtype=dtype)
        wants_forces = frame.forces is not None
        res = evaluate(potential, batch, forces=wants_forces, uncertainty=True if wants_forces else "energy")
        n = len(frame.atoms)
        if frame.energy is not None:
            out["energy"][0].append((float(res.energy[0]) - frame.energy) / n)
            out["energy"][1].append(float(res.energy_uncertainty[0]) / n)
        if wants_forces:
            out["forces"][0].append((res.forces.numpy() - frame.forces).ravel())
            out["forces"][1].append(res.forces_uncertainty.numpy().ravel())
    result = {}
    for key, (err, sig) in out.items():
        if err:
            result[key] = (np.hstack(err), np.hstack(sig))
    return result


def calibration_report(potential, frames: Sequence[Frame], plot_prefix: str | Path | None = None) -> list[CalibrationReport]:
    """Reports for energies (eV/atom) and forces (eV/Å); PNG plots when ``plot_prefix`` is given."""
    units = {"energy": "eV/atom", "forces": "eV/Å"}
    reports = []
    for key, (err, sig) in errors_and_sigmas(potential, frames).items():
        reports.append(CalibrationReport.from_errors(key, units[key], err, sig))
        if plot_prefix is not None:
            Path(plot_prefix).parent.mkdir(parents=True, exist_ok=True)
            calibration_plots(err, sig, f"{plot_prefix}-{key}", f"{key} ({len(err)} values)", units[key])
    return reports
