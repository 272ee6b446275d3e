"""Settings of a distillation run and the conditions it samples."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Condition:
    """One thermodynamic condition of the student's MD: temperature (K) and isotropic linear strain."""

    temperature: float
    strain: float = 0.0

    @property
    def name(self) -> str:
        """``"300K"``, or ``"300K_strain+0.020"`` for a strained cell (file- and label-safe)."""
        text = f"{self.temperature:g}K"
        return text if self.strain == 0 else f"{text}_strain{self.strain:+.3f}"


@dataclass
class DistillConfig:
    """Settings of :func:`atomflux.distill.distill`.

    Conditions are every temperature × every strain.  Each active-learning
    round runs ``md_steps`` Langevin steps with the current student per
    starting structure and condition, keeps a candidate frame every
    ``sample_interval`` steps, selects per condition the ``n_uncertain``
    candidates with the largest force uncertainty and ``n_random`` others at
    random, and has the teacher label them.

    Attributes
    ----------
    temperatures : list of float
        K.
    strains : list of float
        Isotropic linear strains of the starting cells (0.01 = cell edges 1 % longer).
    max_rounds : int
        Active-learning rounds after round 0 (more extend a finished, unconverged run).
    max_force_rmse : float
        Bound on the force-component RMSE of the student vs the teacher, eV/Å, at every condition.
    max_force_sigma : float
        Bound on the student's mean calibrated force-component σ, eV/Å, at every condition.
    initial_frames : int
        Round 0: rattled frames per starting structure and condition.
    rattle : float
        Round 0: RMS displacement per Cartesian component at 300 K, Å (grows as √(T/300 K)).
    initial_md_steps : int
        Round 0: also this many Langevin steps with the teacher per structure and condition
        (a frame every ``sample_interval``); 0 for rattled frames only.
    md_steps, sample_interval : int
        Student MD steps per structure and condition, and steps between candidate frames.
    timestep : float
        fs.
    friction : float
        Langevin friction, 1/fs.
    stop_uncertainty : float
        The student's MD stops (the frame kept as a candidate) when the largest per-atom
        force σ exceeds this, eV/Å: the extrapolation guard.
    n_uncertain, n_random : int
        Frames labelled per condition and round: the most uncertain, and a random subset of the rest.
    holdout_fraction : float
        Fraction of each round's labels held out to calibrate the uncertainty (never trained on).
    n_members : int
        Members of the student's shallow ensemble.
    cutoff, n_channels, max_angular, hidden :
        The student (:class:`~atomflux.models.PowerSpectrumPotential`): Å, channels, highest l, MLP widths.
    epochs, learning_rate, batch_size, patience :
        Training per round (warm start from the previous round's student).
    seed : int
        Seeds every random choice (MD, rattling, selection, splits, training).
    """

    temperatures: list[float] = field(default_factory=lambda: [300.0])
    strains: list[float] = field(default_factory=lambda: [0.0])
    max_rounds: int = 5
    max_force_rmse: float = 0.05
    max_force_sigma: float = 0.05
    initial_frames: int = 8
    rattle: float = 0.05
    initial_md_steps: int = 0
    md_steps: int = 200
    sample_interval: int = 10
    timestep: float = 2.0
    friction: float = 0.02
    stop_uncertainty: float = 0.5
    n_uncertain: int = 4
    n_random: int = 2
    holdout_fraction: float = 0.25
    n_members: int = 8
    cutoff: float = 4.5
    n_channels: int = 8
    max_angular: int = 3
    hidden: list[int] = field(default_factory=lambda: [32, 32])
    epochs: int = 150
    learning_rate: float = 3e-3
    batch_size: int = 8
    patience: int = 30
    seed: int = 0

    def conditions(self) -> list[Condition]:
        """Every temperature × every strain, in that order."""
        return [Condition(float(t), float(s)) for t in self.temperatures for s in self.strains]

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting and its fix."""
        def finite(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not self.temperatures:
            raise ValueError("no temperatures given: name at least one (K), e.g. --temperatures 300 600")
        for t in self.temperatures:
            if not (finite(t) and t > 0):
                raise ValueError(f"temperatures must be > 0 K, got {t}")
        if len(set(self.temperatures)) < len(self.temperatures):
            raise ValueError(f"temperatures repeat ({self.temperatures}); give each once")
        if not self.strains:
            raise ValueError("no strains given: use 0 for the unstrained cell")
        for s in self.strains:
            if not (finite(s) and -0.2 < s < 0.2):
                raise ValueError(f"strains must be fractions between -0.2 and 0.2 (0.01 = 1 %), got {s}")
        if len(set(self.strains)) < len(self.strains):
            raise ValueError(f"strains repeat ({self.strains}); give each once")
        whole = {"max_rounds": 1, "initial_frames": 1, "md_steps": 1, "sample_interval": 1, "n_uncertain": 1,
                 "n_random": 0, "n_members": 2, "n_channels": 1, "max_angular": 0, "epochs": 1, "batch_size": 1,
                 "patience": 1, "initial_md_steps": 0}
        for name, least in whole.items():
            value = getattr(self, name)
            if not (finite(value) and int(value) == value and value >= least):
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number ≥ {least}, got {value}")
        if self.sample_interval > self.md_steps:
            raise ValueError(f"sample interval ({self.sample_interval} steps) is longer than the student's MD "
                             f"({self.md_steps} steps): no candidate frame would be kept; lower it")
        for name in ("max_force_rmse", "max_force_sigma", "timestep", "friction", "stop_uncertainty", "cutoff",
                     "learning_rate"):
            value = getattr(self, name)
            if not (finite(value) and value > 0):
                raise ValueError(f"{name.replace('_', ' ')} must be > 0, got {value}")
        if not (finite(self.rattle) and self.rattle >= 0):
            raise ValueError(f"rattle must be ≥ 0 Å, got {self.rattle}")
        if not (finite(self.holdout_fraction) and 0 < self.holdout_fraction < 1):
            raise ValueError(f"holdout fraction must be between 0 and 1 (exclusive), got {self.holdout_fraction}: "
                             "the uncertainty is calibrated on held-out labels")
        if not self.hidden or any(not (int(w) == w and w > 0) for w in self.hidden):
            raise ValueError(f"hidden layer widths must be whole numbers > 0, got {self.hidden}")

    def parameters(self) -> dict[str, Any]:
        """The settings that change the result (all but ``max_rounds``: more rounds extend a run)."""
        return {k: v for k, v in asdict(self).items() if k != "max_rounds"}
