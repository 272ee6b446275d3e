"""Which candidate frames the teacher labels: the most uncertain, and a random subset of the rest."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def select_frames(sigmas: Sequence[float], n_uncertain: int, n_random: int,
                  rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Indices of the ``n_uncertain`` largest ``sigmas`` and of ``n_random`` other frames drawn at random.

    The uncertain frames are where the student is least sure of itself; the
    random ones keep the training set representative of the whole MD
    distribution (and give an unbiased sample of the student's errors).  Ties
    in σ go to the earlier frame.  With fewer candidates than asked for, all
    are taken.

    Parameters
    ----------
    sigmas
        The student's uncertainty of each candidate (any unit).
    n_uncertain, n_random
        How many of each kind to pick (≥ 0).
    rng
        Draws the random subset.

    Returns
    -------
    (uncertain, random)
        Candidate indices, the uncertain ones by decreasing σ, the random ones in increasing order.
    """
    values = np.asarray(sigmas, dtype=float)
    if np.isnan(values).any():
        raise ValueError("a candidate's uncertainty is NaN: the student's MD went wrong (lower the temperature or "
                         "the timestep, or train the first student longer)")
    order = np.argsort(-values, kind="stable")
    uncertain = [int(i) for i in order[:n_uncertain]]
    rest = order[n_uncertain:]
    picked = rng.choice(len(rest), size=min(n_random, len(rest)), replace=False) if len(rest) else []
    return uncertain, sorted(int(rest[i]) for i in picked)
