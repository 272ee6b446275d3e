"""Training loop: weighted energy/forces/stress loss, validation, early stopping."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..evaluate import evaluate
from ..models import ARCHITECTURES, Potential
from ..progress import progress
from ..records import deferred_interrupts, write_atomically
from ..symmetry.augment import randomly_rotated
from ..systems import Batch
from .dataset import RUN_KEY, Frame, fingerprint, species_of
from .metrics import format_metrics, predict_frames


@dataclass
class TrainConfig:
    """Settings of :func:`train`.

    Loss = w_E·MSE(E/N) [eV²/atom²] + w_F·MSE(F) [eV²/Å²] + w_S·MSE(σ) [eV²/Å⁶],
    each over the frames that have that target.  For a shallow ensemble
    (``model={"n_ensemble": M}``), ``ensemble_loss`` ("nll" or "crps") adds
    ``ensemble_weight`` × that loss of the per-atom energy residuals under the
    members' spread: mean and members are then trained jointly.

    ``architecture`` names the learnable architecture of a new model
    (``"PowerSpectrumPotential"`` or ``"UnconstrainedPotential"``).
    ``augment`` turns every training structure, with its forces and stress,
    by a fresh random rotation at every step (:mod:`atomflux.symmetry.augment`):
    how a model that is not invariant by construction learns invariance.

    ``progress`` (bar or status lines) and ``checkpoint_seconds`` (the least
    time between two checkpoints when :func:`train` is given a checkpoint
    file) do not change the result.
    """

    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 100.0
    learning_rate: float = 3e-3
    epochs: int = 300
    batch_size: int = 8
    patience: int = 40
    validation_fraction: float = 0.1
    seed: int = 0
    dtype: str = "float64"
    ensemble_loss: str | None = None
    ensemble_weight: float = 1e-3
    progress: bool = True
    checkpoint_seconds: float = 10.0
    model: dict[str, Any] = field(default_factory=dict)
    architecture: str = "PowerSpectrumPotential"
    augment: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        def positive(name: str, value: float, whole: bool = False) -> None:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0) or \
                    (whole and int(value) != value):
                raise ValueError(f"{name} must be {'a whole number ' if whole else ''}> 0, got {value}")

        for name in ("epochs", "batch_size", "patience"):
            positive(name, getattr(self, name), whole=True)
        positive("learning_rate", self.learning_rate)
        weights = {n: getattr(self, n) for n in ("energy_weight", "forces_weight", "stress_weight")}
        for name, value in weights.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be ≥ 0, got {value}")
        if not any(weights.values()):
            raise ValueError("energy, forces and stress weights are all 0: nothing to train on")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be from 0 up to (not including) 1, got "
                             f"{self.validation_fraction}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.ensemble_loss not in (None, "nll", "crps"):
            raise ValueError(f"ensemble_loss must be None, 'nll' or 'crps', got {self.ensemble_loss!r}")
        model = self.model
        if "cutoff" in model:
            positive("cutoff (Å)", model["cutoff"])
        for name in ("n_channels", "n_ensemble"):
            if name in model:
                positive(name, model[name], whole=True)
        if model.get("n_pseudo") is not None and not (int(model["n_pseudo"]) == model["n_pseudo"] >= 1):
            raise ValueError(f"n_pseudo (pseudo-elements) must be a whole number ≥ 1, got {model['n_pseudo']}")
        if "max_angular" in model and not (int(model["max_angular"]) == model["max_angular"] >= 0):
            raise ValueError(f"max_angular must be a whole number ≥ 0, got {model['max_angular']}")
        if any(not (int(w) == w and w > 0) for w in model.get("hidden", [])):
            raise ValueError(f"hidden layer widths must be whole numbers > 0, got {model['hidden']}")

    def affects_result(self) -> dict[str, Any]:
        """The settings that change the trained model (all but ``progress`` and ``checkpoint_seconds``)."""
        return {k: v for k, v in asdict(self).items() if k not in ("progress", "checkpoint_seconds")}


@dataclass
class TrainResult:
    potential: Potential
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    train_frames: list[Frame]
    validation_frames: list[Frame]


def split_frames(frames: Sequence[Frame], fraction: float, seed: int,
                 by_run: bool = False) -> tuple[list[Frame], list[Frame]]:
    """Random train/validation split (at least one validation frame if fraction > 0).

    With ``by_run`` the split draws whole groups of frames that share ``atoms.info[RUN_KEY]`` (a frame
    without it is its own group), so no MD run has snapshots on both sides; the validation part then
    holds about ``fraction`` of the frames.
    """
    if not by_run:
        order = np.random.default_rng(seed).permutation(len(frames))
        n_val = max(1, int(round(fraction * len(frames)))) if fraction > 0 and len(frames) > 1 else 0
        return [frames[i] for i in order[n_val:]], [frames[i] for i in order[:n_val]]
    groups: dict[object, list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.atoms.info.get(RUN_KEY, ("frame", i)), []).append(i)
    runs = list(groups.values())
    held: list[int] = []
    if fraction > 0 and len(runs) > 1:
        target = max(1, int(round(fraction * len(frames))))
        for g in np.random.default_rng(seed).permutation(len(runs))[:-1]:  # never every run
            if len(held) >= target:
                break
            held += runs[g]
    kept = set(held)
    return [f for i, f in enumerate(frames) if i not in kept], [frames[i] for i in sorted(held)]


def _loss(potential: Potential, batch: Batch, frames: Sequence[Frame], cfg: TrainConfig,
          create_graph: bool = True) -> torch.Tensor:
    """Weighted loss of one mini-batch; ``create_graph=False`` for evaluation only (no parameter gradients)."""
    wants_forces = any(f.forces is not None for f in frames) and cfg.forces_weight > 0
    wants_stress = any(f.stress is not None for f in frames) and cfg.stress_weight > 0
    res = evaluate(potential, batch, forces=wants_forces, stress=wants_stress, create_graph=create_graph)
    dtype = res.energy.dtype
    loss = res.energy.new_zeros(())
    e_mask = [k for k, f in enumerate(frames) if f.energy is not None]
    n = batch.n_atoms[e_mask].to(dtype)
    ref = torch.tensor([frames[k].energy for k in e_mask], dtype=dtype)
    if e_mask and cfg.energy_weight > 0:
        loss = loss + cfg.energy_weight * (((res.energy[e_mask] - ref) / n) ** 2).mean()
    if cfg.ensemble_loss and e_mask and "energy_ensemble" in res.outputs:
        from ..evaluate import sum_per_system
        from ..uncertainty.ensemble import ensemble_loss

        members = sum_per_system(res.outputs["energy_ensemble"], batch)[e_mask] / n[:, None]
        variance = members.var(dim=1, unbiased=False) + 1e-10
        residual = ref / n - members.mean(dim=1)
        loss = loss + cfg.ensemble_weight * ensemble_loss(cfg.ensemble_loss, residual, variance)
    if wants_forces:
        counts = batch.n_atoms.tolist()
        pieces = torch.split(res.forces, counts)
        pred = torch.cat([p for p, f in zip(pieces, frames) if f.forces is not None])
        ref = torch.tensor(np.concatenate([f.forces for f in frames if f.forces is not None]), dtype=dtype)
        loss = loss + cfg.forces_weight * ((pred - ref) ** 2).mean()
    if wants_stress:
        s_mask = [k for k, f in enumerate(frames) if f.stress is not None]
        ref = torch.tensor(np.stack([frames[k].stress for k in s_mask]), dtype=dtype)
        loss = loss + cfg.stress_weight * ((res.stress[s_mask] - ref) ** 2).mean()
    return loss


def train(frames: Sequence[Frame], config: TrainConfig | None = None,
          potential: Potential | None = None, checkpoint: str | Path | None = None) -> TrainResult:
    """Train a potential on reference frames.

    Parameters
    ----------
    frames
        Reference data (see :func:`~atomflux.training.read_frames`); frames
        may lack forces or stress.
    config
        Loss weights, optimiser and stopping settings, and (``config.model``)
        hyper-parameters of a new model of ``config.architecture``.
    potential
        Start from this potential instead of a new one.
    checkpoint
        File for the training state (model, optimiser, scheduler, random
        states, best model, history), written at most every
        ``config.checkpoint_seconds`` and after the last epoch.  When it exists,
        training resumes from it and ends exactly where an uninterrupted run
        would (also with more ``epochs`` than the run that wrote it: training
        then goes on); the caller makes sure it belongs to the same data and
        settings (see :func:`atomflux.records.open_run`).

    Returns
    -------
    TrainResult
        The best potential (lowest validation loss), its metrics on the
        training and validation sets (eV units), and the loss history.
    """
    cfg = config or TrainConfig()
    cfg.check()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    train_frames, val_frames = split_frames(list(frames), cfg.validation_fraction, cfg.seed)
    if not train_frames:
        raise ValueError("no training frames left after the validation split")
    if potential is None:
        cls = ARCHITECTURES.get(cfg.architecture)
        if cls is None or not hasattr(cls, "fit_statistics"):
            learnable = [name for name, c in ARCHITECTURES.items() if hasattr(c, "fit_statistics")]
            raise ValueError(f"cannot train architecture {cfg.architecture!r}: choose one of {', '.join(learnable)}")
        potential = cls(species=species_of(frames), **cfg.model)
    potential = potential.to(dtype)
    potential.check_species({int(z) for f in frames for z in f.atoms.numbers})
    with progress(len(frames), "neighbour lists", unit="structure", enabled=cfg.progress) as bar:
        batches = []
        for f in train_frames + val_frames:
            batches.append(Batch.from_atoms(f.atoms, potential.cutoff, dtype))
            bar.update(1)
    train_batches, val_batches = batches[:len(train_frames)], batches[len(train_frames):]
    if hasattr(potential, "fit_statistics"):
        forces = [f.forces for f in train_frames if f.forces is not None]
        rms = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else None
        potential.fit_statistics(train_batches, [f.energy for f in train_frames], rms)

    optimiser = torch.optim.Adam(potential.parameters(), lr=cfg.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=max(cfg.patience // 4, 2))
    rng = np.random.default_rng(cfg.seed)
    best = (math.inf, copy.deepcopy(potential.state_dict()), 0)
    history: list[dict[str, float]] = []
    if checkpoint is not None and Path(checkpoint).is_file():
        best, history = _load_checkpoint(Path(checkpoint), potential, optimiser, scheduler, rng)
        if len(history) > cfg.epochs:
            raise ValueError(f"{checkpoint} already holds {len(history)} epochs, more than the {cfg.epochs} asked for")
    stopped = bool(history) and (len(history) >= cfg.epochs or len(history) - 1 - best[2] >= cfg.patience)
    last_save = time.monotonic()
    with progress(cfg.epochs, "training", unit="epoch", initial=len(history), enabled=cfg.progress) as bar:
        for epoch in range(len(history), cfg.epochs if not stopped else len(history)):
            potential.train()
            order = rng.permutation(len(train_frames))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                batch, chunk = Batch.collate([train_batches[i] for i in idx]), [train_frames[i] for i in idx]
                if cfg.augment:  # rotations fixed by (seed, epoch, step): the same on a resumed run
                    batch, chunk = randomly_rotated(batch, chunk, np.random.default_rng([cfg.seed, epoch, start]))
                optimiser.zero_grad()
                loss = _loss(potential, batch, chunk, cfg)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            train_loss = total / len(order)
            val_loss = _validation_loss(potential, val_frames, val_batches, cfg) if val_frames else train_loss
            if not math.isfinite(train_loss):
                raise ValueError(f"the training loss became {train_loss} at epoch {epoch}: lower the learning rate "
                                 f"(--lr, now {cfg.learning_rate:g})")
            scheduler.step(val_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": val_loss,
                            "learning_rate": optimiser.param_groups[0]["lr"]})
            if val_loss < best[0]:
                best = (val_loss, copy.deepcopy(potential.state_dict()), epoch)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.3g}", valid=f"{val_loss:.3g}", best=best[2])
            stop = epoch - best[2] >= cfg.patience
            last = stop or epoch == cfg.epochs - 1
            if checkpoint is not None and (last or time.monotonic() - last_save >= cfg.checkpoint_seconds):
                _save_checkpoint(Path(checkpoint), potential, optimiser, scheduler, rng, best, history)
                last_save = time.monotonic()
            if stop:
                bar.total = bar.n  # early stopping: the work is done
                break
    potential.load_state_dict(best[1])
    potential.eval()
    metrics = {"train": predict_frames(potential, train_frames, batches=train_batches).metrics()}
    if val_frames:
        metrics["validation"] = predict_frames(potential, val_frames, batches=val_batches).metrics()
    potential.metadata = {
        "training": {
            "fingerprint": fingerprint(frames), "n_frames": len(frames), "n_train": len(train_frames),
            "n_validation": len(val_frames), "best_epoch": best[2], "epochs_run": len(history),
            "metrics": metrics, "config": cfg.affects_result(),
        }
    }
    return TrainResult(potential, metrics, history, train_frames, val_frames)


CHECKPOINT_FORMAT = "atomflux-training-checkpoint"


def _save_checkpoint(path: Path, potential: Potential, optimiser, scheduler, rng: np.random.Generator,
                     best: tuple, history: list[dict[str, float]]) -> None:
    """Everything :func:`train` needs to go on exactly where it stopped (tensors and JSON only)."""
    state = {"format": CHECKPOINT_FORMAT, "model": potential.state_dict(), "optimiser": optimiser.state_dict(),
             "scheduler": json.dumps(scheduler.state_dict()), "best_loss": float(best[0]), "best_state": best[1],
             "best_epoch": int(best[2]), "history": json.dumps(history),
             "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
    with deferred_interrupts():
        write_atomically(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path, potential: Potential, optimiser, scheduler,
                     rng: np.random.Generator) -> tuple[tuple, list[dict[str, float]]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a training checkpoint")
        potential.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(json.loads(state["scheduler"]))
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        history = json.loads(state["history"])
    except Exception as err:  # a damaged or foreign file: say so rather than train on garbage
        raise ValueError(f"cannot resume from {path} ({type(err).__name__}: {err}); pass --restart to train "
                         "from the start") from None
    return (state["best_loss"], state["best_state"], state["best_epoch"]), history


def _validation_loss(potential: Potential, frames: Sequence[Frame], batches: Sequence[Batch],
                     cfg: TrainConfig) -> float:
    potential.eval()
    total = 0.0
    for start in range(0, len(frames), cfg.batch_size):
        chunk = frames[start:start + cfg.batch_size]
        batch = Batch.collate(list(batches[start:start + cfg.batch_size]))
        total += float(_loss(potential, batch, chunk, cfg, create_graph=False)) * len(chunk)
    return total / len(frames)


def report(result: TrainResult) -> str:
    """Text summary of a training run (meV units)."""
    lines = []
    for name, m in result.metrics.items():
        lines.append(f"{name} ({result.potential.metadata['training']['n_' + ('train' if name == 'train' else 'validation')]} frames):")
        lines.append(format_metrics(m))
    return "\n".join(lines)
