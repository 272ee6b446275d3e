"""Random-rotation augmentation of training data (``TrainConfig(augment=True)``).

Each structure of a mini-batch is turned by its own Haar-random rotation R,
and its targets with it: energy unchanged, forces (row vectors) ``F' = F Rᵀ``,
stress ``S' = R S Rᵀ``.  The neighbour pairs stay valid (see
:func:`~atomflux.symmetry.rotate.rotate_systems`), so augmentation costs no
neighbour search.  For an invariant architecture it changes nothing but
round-off; for an unconstrained one it is how invariance is learned.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..systems import Batch
from .quadrature import random_grid
from .rotate import rotate_systems


def randomly_rotated(batch: Batch, frames: Sequence, rng: np.random.Generator) -> tuple[Batch, list]:
    """The batch and its frames (:class:`~atomflux.training.Frame`), each system turned by a random rotation.

    Parameters
    ----------
    batch
        The mini-batch, one system per frame.
    frames
        Their reference data (``atoms``, ``energy``, ``forces`` [N, 3] eV/Å, ``stress`` [3, 3] eV/Å³).
    rng
        Source of the rotations.
    """
    rotations = random_grid(len(frames), rng).rotations
    rotated_batch = rotate_systems(batch, torch.as_tensor(rotations, dtype=batch.dtype, device=batch.device))
    rotated_frames = []
    for frame, rotation in zip(frames, rotations):
        atoms = frame.atoms.copy()
        atoms.positions = atoms.positions @ rotation.T
        atoms.cell = atoms.cell.array @ rotation.T
        rotated_frames.append(replace(
            frame, atoms=atoms,
            forces=None if frame.forces is None else frame.forces @ rotation.T,
            stress=None if frame.stress is None else rotation @ frame.stress @ rotation.T))
    return rotated_batch, rotated_frames
