"""Training the Hamiltonian head on large-basis orbital energies, and its error report.

Alignment scheme (stored in the model's ``reference["levels"]``): the k-th
lowest eigenvalue of the effective minimal-basis Hamiltonian is fitted to the
k-th lowest reference MO energy, for every doubly occupied orbital and the
lowest ``n_virtual`` virtual ones (all energies in eV, no shift).  The loss is
the mean squared error over those levels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols

from ..systems import Batch
from .basis import sto3g_parameters
from .data import OrbitalFrame
from .model import HamiltonianModel


def alignment_text(n_virtual: int) -> str:
    return (f"k-th lowest eigenvalue = k-th lowest reference MO energy (eV, no shift) for all doubly "
            f"occupied orbitals and the lowest {n_virtual} virtual one(s)")


def frames_batch(frames: Sequence[OrbitalFrame], model: HamiltonianModel
                 ) -> tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of all frames, their overlap matrices, the padded target levels [S, L] (eV) and their mask [S, L]."""
    batch = Batch.from_atoms([f.atoms for f in frames], model.cutoff)
    with torch.no_grad():
        overlap = model(batch)["overlap"]
    width = max(len(f.levels) for f in frames)
    targets = torch.zeros(len(frames), width, dtype=torch.float64)
    mask = torch.zeros(len(frames), width, dtype=torch.bool)
    for k, f in enumerate(frames):
        targets[k, : len(f.levels)] = torch.as_tensor(f.levels)
        mask[k, : len(f.levels)] = True
    return batch, overlap, targets, mask


@dataclass
class HamiltonianTraining:
    """Result of :func:`train_hamiltonian`: the model (best validation loss) and the loss curves (eV²)."""

    model: HamiltonianModel
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)


def train_hamiltonian(train: Sequence[OrbitalFrame], validation: Sequence[OrbitalFrame], *, epochs: int = 1500,
                      learning_rate: float = 3e-3, seed: int = 0, model_options: dict | None = None,
                      progress: bool = True) -> HamiltonianTraining:
    """Fit a :class:`HamiltonianModel` (full-batch Adam, learning rate decayed ×0.1 over the run).

    Parameters
    ----------
    train, validation
        Frames from :func:`.data.generate`.
    epochs
        Optimisation steps.
    model_options
        Extra keyword arguments of :class:`HamiltonianModel`.
    """
    from ..progress import progress as progress_bar

    torch.manual_seed(seed)
    species = [chemical_symbols[z] for z in sorted({int(z) for f in train for z in f.atoms.numbers})]
    model = HamiltonianModel(species, sto3g_parameters(species), **(model_options or {})).double()
    data = frames_batch(train, model)
    model.fit_statistics([Batch.from_atoms(f.atoms, model.cutoff) for f in train],
                         [f.minimal_fock_diagonal for f in train])
    val = frames_batch(validation, model) if validation else None
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=0.1 ** (1.0 / epochs))
    result = HamiltonianTraining(model)
    best, best_state = float("inf"), None
    bar = progress_bar(epochs, "Hamiltonian head", unit="epoch", enabled=progress)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = _loss(model, *data)
        loss.backward()
        optimiser.step()
        schedule.step()
        result.train_loss.append(loss.item())
        if val is not None:
            with torch.no_grad():
                result.validation_loss.append(float(_loss(model, *val)))
        current = result.validation_loss[-1] if val is not None else result.train_loss[-1]
        if current < best:
            best, best_state = current, copy.deepcopy(model.state_dict())
        bar.set_postfix(rmse_eV=f"{current ** 0.5:.3f}")
        bar.update(1)
    bar.close()
    model.load_state_dict(best_state)
    return result


def _loss(model: HamiltonianModel, batch: Batch, overlap: torch.Tensor, targets: torch.Tensor,
          mask: torch.Tensor) -> torch.Tensor:
    levels = model.orbital_energies(batch, overlap=overlap)[:, : targets.shape[1]]
    return ((levels - targets)[mask] ** 2).mean()


def level_errors(model: HamiltonianModel, frames: Sequence[OrbitalFrame]) -> dict:
    """Mean absolute errors (eV) of the predicted levels against the reference.

    Returns a dict with, overall and per molecule: ``occupied_mae_eV``,
    ``lumo_mae_eV`` (first virtual level, if targeted), ``homo_mae_eV``, and the
    same for the plain minimal-basis (STO-3G RHF) calculation
    (``minimal_basis_occupied_mae_eV`` ...), plus the predicted and reference
    levels for plots.
    """
    batch, overlap, targets, _ = frames_batch(frames, model)
    with torch.no_grad():
        predicted = model.orbital_energies(batch, overlap=overlap)[:, : targets.shape[1]].numpy()
    rows = []
    for k, f in enumerate(frames):
        n_occ, n = f.n_occupied, len(f.levels)
        rows.append({"name": f.name, "occupied": np.abs(predicted[k, :n_occ] - f.levels[:n_occ]),
                     "minimal_occupied": np.abs(f.minimal_levels[:n_occ] - f.levels[:n_occ]),
                     "homo": abs(predicted[k, n_occ - 1] - f.levels[n_occ - 1]),
                     "minimal_homo": abs(f.minimal_levels[n_occ - 1] - f.levels[n_occ - 1]),
                     "lumo": abs(predicted[k, n_occ] - f.levels[n_occ]) if n > n_occ else np.nan,
                     "minimal_lumo": abs(f.minimal_levels[n_occ] - f.levels[n_occ]) if n > n_occ else np.nan,
                     "predicted": predicted[k, :n].tolist(), "reference": f.levels.tolist()})

    def summary(selected: list[dict]) -> dict:
        return {"frames": len(selected),
                "occupied_mae_eV": float(np.mean(np.concatenate([r["occupied"] for r in selected]))),
                "homo_mae_eV": float(np.mean([r["homo"] for r in selected])),
                "lumo_mae_eV": float(np.nanmean([r["lumo"] for r in selected])),
                "minimal_basis_occupied_mae_eV": float(np.mean(np.concatenate([r["minimal_occupied"]
                                                                               for r in selected]))),
                "minimal_basis_homo_mae_eV": float(np.mean([r["minimal_homo"] for r in selected])),
                "minimal_basis_lumo_mae_eV": float(np.nanmean([r["minimal_lumo"] for r in selected]))}

    names = sorted({r["name"] for r in rows})
    return {**summary(rows), "per_molecule": {n: summary([r for r in rows if r["name"] == n]) for n in names},
            "levels": [{"name": r["name"], "predicted": r["predicted"], "reference": r["reference"]} for r in rows]}
