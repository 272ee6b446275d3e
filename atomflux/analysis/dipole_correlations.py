"""Spatial correlations of local dipoles along and across the polarization direction, with correlation lengths.

On the n1 × n2 × n3 grid of B-centred cells (:class:`~atomflux.analysis.ferroelectric.PerovskiteCells`),
with q_a = p · ê_a the dipole component along cell vector a (ê_a its unit
vector) and δq_a its deviation from the frame's mean (connected correlation:
long-range order and domain flips drop out)::

    C_ab(n) = ⟨δq_a(r) δq_a(r + n e_b)⟩ / ⟨δq_a(r)²⟩      (frames and cells averaged)

*Along* the polarization: b = a (the chains of parallel displacements of
perovskites); *across*: b ≠ a (mean over the two other axes).  With a polar
axis (``axis=a``) only that component is used; without one (cubic phase) the
three components are averaged.  Correlation length ξ: least-squares fit of
C(n) = A (e^(−n/ξ) + e^(−(L−n)/ξ)) + B (the periodic image term included;
B absorbs the −O(1/N) offset that subtracting each frame's mean gives a
connected correlation) over n = 1 … L/2, ξ reported in Å (lattice spacing
|a|/L times ξ in cells); ξ is reported as NaN, never as a number, when the box
cannot determine it: fewer than three points (L < 6 cells) or ξ longer than L/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ferroelectric import PerovskiteCells


@dataclass(frozen=True)
class DipoleCorrelation:
    """Normalised correlation functions and correlation lengths.

    Attributes
    ----------
    distance_along, distance_across : ndarray
        Separations (Å) of the points n = 0 … L/2.
    along, across : ndarray
        C(n) along and across the polarization axis (C(0) = 1).
    length_along, length_across : float
        Fitted correlation lengths ξ (Å); NaN when the fit fails (no decay), when the supercell has
        fewer than 6 cells along that direction (fewer than three points for three parameters), or when
        ξ exceeds half the supercell (the box cannot resolve it): run a larger one.
    """

    distance_along: np.ndarray
    along: np.ndarray
    distance_across: np.ndarray
    across: np.ndarray
    length_along: float
    length_across: float


def _correlation_length(c: np.ndarray, n_cells: int, spacing: float) -> float:
    from scipy.optimize import curve_fit

    n = np.arange(1, len(c))
    if len(n) < 3:  # three parameters: fewer points (a box under 6 cells) leave ξ undetermined
        return float("nan")

    def model(x, amplitude, xi, offset):
        return amplitude * (np.exp(-x / xi) + np.exp(-(n_cells - x) / xi)) + offset

    try:
        (_, xi, _), _ = curve_fit(model, n, c[1:], p0=(1.0, 1.0, 0.0), bounds=([0, 1e-3, -1], [np.inf, 1e3, 1]))
    except RuntimeError:
        return float("nan")
    if xi > n_cells / 2:  # C(n) barely decays over the half box it is fitted on: ξ is not resolved
        return float("nan")
    return float(xi * spacing)


def dipole_correlations(cells: PerovskiteCells, p: np.ndarray, cell: np.ndarray, axis: int | None = None
                        ) -> DipoleCorrelation:
    """Correlations of local dipoles ``p`` [T, M, 3] on the cell grid (see the module text).

    Parameters
    ----------
    cells : PerovskiteCells
        Must have a grid (a supercell of n1 × n2 × n3 perovskite cells along its own vectors).
    p : ndarray [T, M, 3]
        Local dipoles (any units: the functions are normalised).
    cell : ndarray [3, 3]
        Supercell vectors (rows), Å: the projection directions and the lattice spacing.
    axis : int, optional
        The polar axis (0, 1, 2: cell vector parallel to P).  None: average over the three.
    """
    if cells.grid is None:
        raise ValueError("dipole correlations need a supercell of n1 × n2 × n3 perovskite cells along its own "
                         "cell vectors (e.g. atoms * (L, L, L) of the 5-atom cell)")
    p = np.asarray(p, dtype=float)
    if p.ndim != 3 or p.shape[1:] != (cells.n_cells, 3):
        raise ValueError(f"p must be [frames, {cells.n_cells}, 3], got shape {p.shape}")
    if axis is not None and axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (a cell vector), got {axis}")
    shape = cells.shape
    if min(shape) < 4:
        raise ValueError(f"the supercell is {shape[0]}×{shape[1]}×{shape[2]} cells; correlation lengths need ≥ 4 "
                         "cells along every vector")
    cell = np.asarray(cell, dtype=float)
    unit = cell / np.linalg.norm(cell, axis=1, keepdims=True)
    spacing = np.linalg.norm(cell, axis=1) / np.array(shape)
    components = [axis] if axis is not None else [0, 1, 2]
    along, across_by_axis = [], {b: [] for b in range(3)}
    for a in components:
        q = np.zeros((len(p),) + shape)
        q[(slice(None),) + tuple(cells.grid.T)] = p @ unit[a]
        q -= q.mean(axis=(1, 2, 3), keepdims=True)
        spectrum = np.fft.fftn(q, axes=(1, 2, 3))
        auto = np.fft.ifftn(np.abs(spectrum) ** 2, axes=(1, 2, 3)).real.mean(0)
        if auto[0, 0, 0] <= 0:
            raise ValueError("the local dipoles do not fluctuate (all frames uniform): no correlation to measure")
        auto /= auto[0, 0, 0]
        lines = [auto[:, 0, 0], auto[0, :, 0], auto[0, 0, :]]
        along.append((a, lines[a][: shape[a] // 2 + 1]))
        for b in range(3):
            if b != a:
                across_by_axis[b].append(lines[b][: shape[b] // 2 + 1])
    # along: one line per component (same length when the polar axes have equal lengths)
    a0 = along[0][0]
    along_curve = np.mean([c[: shape[a0] // 2 + 1] for _, c in along if len(c) >= shape[a0] // 2 + 1], axis=0)
    b0 = next(b for b in range(3) if across_by_axis[b])
    across_curve = np.mean([c[: shape[b0] // 2 + 1] for b in range(3) for c in across_by_axis[b]
                            if len(c) >= shape[b0] // 2 + 1], axis=0)
    return DipoleCorrelation(np.arange(len(along_curve)) * spacing[a0], along_curve,
                             np.arange(len(across_curve)) * spacing[b0], across_curve,
                             _correlation_length(along_curve, shape[a0], spacing[a0]),
                             _correlation_length(across_curve, shape[b0], spacing[b0]))
