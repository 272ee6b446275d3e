"""Prediction on frames and error metrics against their reference targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..evaluate import evaluate
from ..models import Potential
from ..models.base import floating_dtype
from ..systems import Batch
from .dataset import Frame


@dataclass
class Predictions:
    """Reference and predicted values gathered over frames (only where a reference exists).

    ``energy_*`` are per atom (eV/atom), ``forces_*`` per component (eV/Å),
    ``stress_*`` per component (eV/Å³).
    """

    reference: dict[str, np.ndarray] = field(default_factory=dict)
    predicted: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """MAE and RMSE per property, in eV, eV/Å, eV/Å³ (keys like ``forces_mae``)."""
        out: dict[str, float] = {}
        for key, ref in self.reference.items():
            if len(ref) == 0:
                continue
            err = self.predicted[key] - ref
            out[f"{key}_mae"] = float(np.abs(err).mean())
            out[f"{key}_rmse"] = float(np.sqrt((err**2).mean()))
            out[f"{key}_count"] = int(err.size)
        return out


def predict_frames(potential: Potential, frames: Sequence[Frame], batch_size: int = 16,
                   batches: Sequence[Batch] | None = None) -> Predictions:
    """Evaluate ``potential`` on frames and collect reference/predicted pairs."""
    dtype = floating_dtype(potential)
    store: dict[str, tuple[list, list]] = {"energy": ([], []), "forces": ([], []), "stress": ([], [])}
    if batches is None:
        batches = [Batch.from_atoms(f.atoms, potential.cutoff, dtype) for f in frames]
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        batch = Batch.collate(list(batches[start:start + batch_size]))
        wants_stress = any(f.stress is not None for f in chunk)
        res = evaluate(potential, batch, forces=True, stress=wants_stress)
        atom_offset = 0
        for k, f in enumerate(chunk):
            n = len(f.atoms)
            if f.energy is not None:
                store["energy"][0].append(f.energy / n)
                store["energy"][1].append(float(res.energy[k]) / n)
            if f.forces is not None:
                store["forces"][0].append(f.forces.ravel())
                store["forces"][1].append(res.forces[atom_offset:atom_offset + n].cpu().numpy().ravel())
            if f.stress is not None:
                store["stress"][0].append(f.stress.ravel())
                store["stress"][1].append(res.stress[k].cpu().numpy().ravel())
            atom_offset += n
    pred = Predictions()
    for key, (ref, got) in store.items():
        if key == "energy":
            pred.reference[key], pred.predicted[key] = np.array(ref), np.array(got)
        else:
            pred.reference[key] = np.concatenate(ref) if ref else np.zeros(0)
            pred.predicted[key] = np.concatenate(got) if got else np.zeros(0)
    return pred


def format_metrics(metrics: dict[str, float]) -> str:
    """Human-readable metric table in meV units."""
    units = {"energy": "meV/atom", "forces": "meV/Å", "stress": "meV/Å³"}
    lines = []
    for key, unit in units.items():
        if f"{key}_mae" in metrics:
            lines.append(f"  {key:7s} MAE {1000 * metrics[key + '_mae']:9.3f}  RMSE {1000 * metrics[key + '_rmse']:9.3f}  {unit}")
    return "\n".join(lines)
