"""Quadratures over rotations: sets of rotation matrices R_k with weights w_k, Σ w_k = 1.

A grid of *degree* L integrates exactly every function of the rotation that
is a combination of Wigner matrices D^l(R) with l ≤ L — the rotational
content of a model whose symmetry breaking is of angular degree ≤ L (the
energy of a model fed lab-frame Cartesian moments of degree ≤ L, or
``P_L(ẑ · r̂_ij)``).  The average ``Σ_k w_k E(R_k x)`` of such a model is
then exactly rotation invariant.

Rotations are written in the ZYZ Euler convention, R = R_z(α) R_y(β) R_z(γ),
and act on row vectors as ``x' = x Rᵀ``.

Grids (``order`` = the degree L asked for):

``"lebedev"``
    Directions R ẑ = (α, β) on the nodes of the Lebedev rule of degree
    ≥ max(L, 3) (:func:`scipy.integrate.lebedev_rule`), times L + 1 uniform
    in-plane angles γ.  Why L + 1 is enough: D^l_mn = e^{-imα} d^l_mn(β)
    e^{-inγ}; the γ sum removes every 0 < |n| ≤ L < L + 1 exactly (as the true
    integral does), and what is left (n = 0) is a spherical harmonic of
    (β, α) of degree l ≤ L, which the Lebedev rule integrates exactly.
    L = 3: 6 × 4 = 24 rotations.
``"legendre"``
    The product rule of i-PI's ``<ffrotations grid_mode="legendre">``: ⌈(L+1)/2⌉
    Gauss–Legendre nodes in cos β (exact for polynomials of degree ≤ L in
    cos β), L + 1 uniform angles each for α and γ: (L+1)²·⌈(L+1)/2⌉ rotations
    (18 for L = 2 and 75 for L = 4: for even L the very rotations of i-PI's
    legendre grid of order L/2 + 1).
``"random"``
    ``order`` rotations drawn uniformly (Haar measure), equal weights; a fresh
    draw each time a grid is asked for.  Degree 0 (no exactness): the
    stochastic mitigation of the paper (one random rotation per MD step).

``order = 0`` is the identity alone for the two fixed grids.  ``inversion``
adds −R_k for every R_k (improper rotations, weights halved): the average is
then invariant under all of O(3), including parity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRIDS = ("lebedev", "legendre", "random")
#: degrees of the Lebedev rules SciPy provides (odd, up to 35 with gaps above)
LEBEDEV_DEGREES = tuple(range(3, 32, 2)) + (35,)


@dataclass(frozen=True)
class RotationGrid:
    """A rotational quadrature.

    Attributes
    ----------
    rotations : ndarray [K, 3, 3]
        Orthogonal matrices (det +1, or −1 for the improper half with inversion).
    weights : ndarray [K]
        Quadrature weights, positive, summing to 1.
    degree : int
        Highest degree l of the Wigner matrices D^l integrated exactly
        (0 for random grids: only constants).
    name : str
        ``"lebedev"``, ``"legendre"`` or ``"random"``.
    order : int
        The order that was asked for (number of rotations for random grids).
    inversion : bool
        Whether the improper rotations −R_k are included.
    """

    rotations: np.ndarray
    weights: np.ndarray
    degree: int
    name: str
    order: int
    inversion: bool = False

    @property
    def size(self) -> int:
        """Number of rotations K."""
        return len(self.weights)

    def describe(self) -> str:
        """E.g. ``"lebedev order 3 (24 rotations, exact to degree 3)"``."""
        exact = "random" if self.name == "random" else f"exact to degree {self.degree}"
        parity = ", with inversion" if self.inversion else ""
        return f"{self.name} order {self.order} ({self.size} rotations, {exact}{parity})"


def euler_zyz(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Rotation matrices R_z(α) R_y(β) R_z(γ), ndarray [K, 3, 3], from angles [K] in radians."""
    alpha, beta, gamma = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (alpha, beta, gamma))
    return _rz(alpha) @ _ry(beta) @ _rz(gamma)


def _rz(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((len(angle), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = c, -s, s, c, 1.0
    return out


def _ry(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((len(angle), 3, 3))
    out[:, 0, 0], out[:, 0, 2], out[:, 2, 0], out[:, 2, 2], out[:, 1, 1] = c, s, -s, c, 1.0
    return out


def _in_plane(alpha: np.ndarray, beta: np.ndarray, weights: np.ndarray, n_gamma: int) -> tuple[np.ndarray, np.ndarray]:
    """Each direction (α, β) combined with ``n_gamma`` uniform angles γ; weights divided among them."""
    gamma = 2 * np.pi * np.arange(n_gamma) / n_gamma
    a, g = np.repeat(alpha, n_gamma), np.tile(gamma, len(alpha))
    b = np.repeat(beta, n_gamma)
    return euler_zyz(a, b, g), np.repeat(weights, n_gamma) / n_gamma


def lebedev_grid(order: int) -> RotationGrid:
    """Lebedev directions × (order + 1) in-plane angles, exact to degree ``order`` (see module doc)."""
    if order == 0:
        return RotationGrid(np.eye(3)[None], np.ones(1), 0, "lebedev", 0)
    from scipy.integrate import lebedev_rule

    degree = next((d for d in LEBEDEV_DEGREES if d >= max(order, 3)), None)
    if degree is None:
        raise ValueError(f"lebedev grids go up to order {LEBEDEV_DEGREES[-1]} (SciPy's Lebedev rules), got {order}; "
                         "use grid='legendre' for higher orders")
    nodes, weights = lebedev_rule(degree)
    x, y, z = nodes
    beta = np.arccos(np.clip(z, -1.0, 1.0))
    alpha = np.arctan2(y, x)
    rotations, w = _in_plane(alpha, beta, weights / weights.sum(), order + 1)
    return RotationGrid(rotations, w, order, "lebedev", order)


def legendre_grid(order: int) -> RotationGrid:
    """Gauss–Legendre in cos β × uniform α and γ (i-PI's product rule), exact to degree ``order``."""
    if order == 0:
        return RotationGrid(np.eye(3)[None], np.ones(1), 0, "legendre", 0)
    n_beta, n_angle = math.ceil((order + 1) / 2), order + 1
    cos_beta, beta_weights = np.polynomial.legendre.leggauss(n_beta)
    # i-PI writes R_z(w) R_x(v) R_z(θ) = R_z(w − π/2) R_y(v) R_z(θ + π/2) with w, θ on 2πk/n: the same offsets
    # make this grid, for even orders, exactly i-PI's legendre grid of L = order/2 + 1
    uniform = 2 * np.pi * np.arange(n_angle) / n_angle
    alpha, gamma = np.repeat(uniform - np.pi / 2, n_beta * n_angle), np.tile(uniform + np.pi / 2, n_beta * n_angle)
    beta = np.tile(np.repeat(np.arccos(cos_beta), n_angle), n_angle)
    weights = np.tile(np.repeat(beta_weights / 2, n_angle), n_angle) / n_angle**2
    return RotationGrid(euler_zyz(alpha, beta, gamma), weights, order, "legendre", order)


def random_grid(n: int, rng: np.random.Generator) -> RotationGrid:
    """``n`` Haar-random rotations with equal weights (degree 0)."""
    from scipy.spatial.transform import Rotation

    rotations = Rotation.random(n, random_state=rng).as_matrix().reshape(n, 3, 3)
    return RotationGrid(rotations, np.full(n, 1.0 / n), 0, "random", n)


def with_inversion(grid: RotationGrid) -> RotationGrid:
    """The grid and its improper copies −R_k, weights halved."""
    rotations = np.concatenate([grid.rotations, -grid.rotations])
    weights = np.concatenate([grid.weights, grid.weights]) / 2
    return RotationGrid(rotations, weights, grid.degree, grid.name, grid.order, True)


def rotation_grid(grid: str = "lebedev", order: int = 3, inversion: bool = False,
                  rng: np.random.Generator | None = None) -> RotationGrid:
    """A rotational quadrature by name (see the module doc).

    Parameters
    ----------
    grid
        ``"lebedev"``, ``"legendre"`` or ``"random"``.
    order
        Degree L integrated exactly (lebedev, legendre), or the number of
        rotations (random).
    inversion
        Also include the improper rotations −R_k.
    rng
        Random generator for ``"random"`` (default: a fresh, unseeded one).

    Raises
    ------
    ValueError
        Unknown grid, or an order that is not a whole number ≥ 0 (≥ 1 for random).
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown rotation grid {grid!r}: choose one of {', '.join(GRIDS)}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < (1 if grid == "random" else 0):
        least = "number of rotations ≥ 1" if grid == "random" else "whole number ≥ 0 (the degree integrated exactly)"
        raise ValueError(f"the order of a {grid} grid must be a {least}, got {order!r}")
    if grid == "lebedev":
        result = lebedev_grid(int(order))
    elif grid == "legendre":
        result = legendre_grid(int(order))
    else:
        result = random_grid(int(order), rng if rng is not None else np.random.default_rng())
    return with_inversion(result) if inversion else result


class GridSampler:
    """The grid for each evaluation: always the same one, or a fresh random draw for ``"random"``.

    Parameters
    ----------
    grid, order, inversion
        As for :func:`rotation_grid` (validated here, so a bad grid fails at construction).
    seed
        Seed of the random draws.
    """

    def __init__(self, grid: str = "lebedev", order: int = 3, inversion: bool = False, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.name, self.order, self.inversion = grid, order, inversion
        first = rotation_grid(grid, order, inversion, self.rng)
        self.fixed = None if grid == "random" else first

    def __call__(self) -> RotationGrid:
        if self.fixed is not None:
            return self.fixed
        return rotation_grid(self.name, self.order, self.inversion, self.rng)
