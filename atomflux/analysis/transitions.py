"""Order parameters of phase transitions from time series: moments, χ, Binder cumulants, T_c, hysteresis, phases.

Works on any vector order parameter P [frames, n] per frame (the mean local
dipole of a ferroelectric, the magnetisation of a spin model ...), each
frame from a system of N units (cells, spins) at temperature T:

- susceptibility χ = N (⟨|P|²⟩ − ⟨|P|⟩²) / T  (units of P² per K; k_B = 1 in
  a lattice model's units), the finite-size form that stays finite in the
  ordered phase;
- Binder cumulant, vector form: U₄ = 1 − ⟨|P|⁴⟩ / (3 ⟨|P|²⟩²).  Ordered limit
  2/3; disordered limit 1 − (n + 2)/(3n): 0 for n = 1, 4/9 for n = 3.  Curves
  of several sizes cross at T_c; NaN when P is identically zero;
- errors from the jackknife over ``blocks`` contiguous blocks of the series
  (block averaging: blocks longer than the correlation time give honest errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


def _series(order_parameter: np.ndarray) -> np.ndarray:
    p = np.asarray(order_parameter, dtype=float)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2 or len(p) < 2 or not np.all(np.isfinite(p)):
        raise ValueError(f"the order parameter must be a finite series [frames, components] of ≥ 2 frames, got "
                         f"shape {np.shape(order_parameter)}")
    return p


def _jackknife(values: np.ndarray, statistic, blocks: int) -> tuple[float, float]:
    """Statistic of the whole series and its jackknife error over ``blocks`` contiguous blocks."""
    n = len(values) // blocks * blocks
    if n < blocks or blocks < 2:
        raise ValueError(f"{len(values)} frames cannot be split into {blocks} blocks; give more frames or fewer "
                         "blocks (≥ 2)")
    parts = np.array_split(values[:n], blocks)
    full = statistic(values)
    leave_out = np.array([statistic(np.concatenate(parts[:k] + parts[k + 1:])) for k in range(blocks)])
    return float(full), float(np.sqrt((blocks - 1) * np.mean((leave_out - leave_out.mean()) ** 2)))


@dataclass(frozen=True)
class OrderStatistics:
    """Moments of one series at one temperature and size, each with its block-jackknife error."""

    temperature: float
    n_units: int
    mean: np.ndarray  # ⟨P⟩ [n]
    mean_abs: tuple[float, float]  # ⟨|P|⟩, error
    susceptibility: tuple[float, float]  # χ, error
    binder: tuple[float, float]  # U₄, error

    def row(self) -> dict[str, float]:
        return {"temperature": self.temperature, "n_units": self.n_units, "mean_abs": self.mean_abs[0],
                "mean_abs_err": self.mean_abs[1], "susceptibility": self.susceptibility[0],
                "susceptibility_err": self.susceptibility[1], "binder": self.binder[0],
                "binder_err": self.binder[1], **{f"mean_{k}": float(v) for k, v in enumerate(self.mean)}}


def order_statistics(order_parameter: np.ndarray, temperature: float, n_units: int,
                     blocks: int = 10) -> OrderStatistics:
    """⟨P⟩, ⟨|P|⟩, χ and U₄ of a series (see the module text) with block-jackknife errors.

    Parameters
    ----------
    order_parameter : ndarray [frames] or [frames, n]
        The order parameter per frame (intensive: a mean over the N units).
    temperature : float
        K (or J/k_B for lattice models), > 0.
    n_units : int
        N, the number of units the order parameter averages over.
    """
    p = _series(order_parameter)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    size = np.linalg.norm(p, axis=1)

    def chi(x):
        return n_units * (np.mean(x**2) - np.mean(x) ** 2) / temperature

    def binder(x):  # NaN when P is identically zero (undefined)
        second = np.mean(x**2)
        return 1.0 - np.mean(x**4) / (3.0 * second**2) if second > 0 else float("nan")

    return OrderStatistics(float(temperature), int(n_units), p.mean(0), _jackknife(size, np.mean, blocks),
                           _jackknife(size, chi, blocks), _jackknife(size, binder, blocks))


def histogram(values: np.ndarray, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Normalised histogram (density, bin centres) of a series of P components or |P|."""
    density, edges = np.histogram(np.asarray(values, dtype=float).ravel(), bins=bins, density=True)
    return density, 0.5 * (edges[1:] + edges[:-1])


PHASES = {0: "cubic", 1: "tetragonal", 2: "orthorhombic", 3: "rhombohedral"}


def assign_phase(polarization: np.ndarray, threshold: float, ratio: float = 0.5) -> tuple[str, np.ndarray]:
    """Perovskite phase from the polarization components along the pseudo-cubic axes.

    Each frame's |P_x|, |P_y|, |P_z| are sorted (largest first) and averaged
    over frames (so domain flips and axis exchanges do not cancel).  A
    component is polar when its mean exceeds ``threshold`` (same units as P)
    and ``ratio`` × the largest; 0, 1, 2, 3 polar components: cubic,
    tetragonal (P ∥ ⟨100⟩), orthorhombic (⟨110⟩), rhombohedral (⟨111⟩).

    Returns the phase name and the three sorted mean components.
    """
    p = _series(polarization)
    if p.shape[1] != 3:
        raise ValueError(f"phase assignment needs 3 polarization components, got {p.shape[1]}")
    if not threshold > 0 or not 0 < ratio <= 1:
        raise ValueError(f"threshold must be > 0 and ratio in (0, 1], got {threshold} and {ratio}")
    sorted_mean = np.sort(np.abs(p), axis=1)[:, ::-1].mean(0)
    polar = int(np.sum((sorted_mean > threshold) & (sorted_mean >= ratio * sorted_mean[0])))
    return PHASES[polar], sorted_mean


def peak(temperatures: np.ndarray, values: np.ndarray) -> float:
    """Temperature of the maximum of ``values``: the vertex of a parabola through the largest point and its neighbours."""
    t, v = np.asarray(temperatures, float), np.asarray(values, float)
    order = np.argsort(t)
    t, v = t[order], v[order]
    k = int(np.argmax(v))
    if k == 0 or k == len(t) - 1:
        return float(t[k])  # at the edge of the scan: no vertex to fit
    a, b, _ = np.polyfit(t[k - 1:k + 2], v[k - 1:k + 2], 2)
    return float(-b / (2 * a)) if a < 0 else float(t[k])


def crossings(temperatures: np.ndarray, first: np.ndarray, second: np.ndarray,
              first_error: np.ndarray | None = None, second_error: np.ndarray | None = None,
              significance: float = 2.0) -> list[float]:
    """Temperatures where two curves on the same grid cross (linear interpolation).

    Without errors: every sign change of ``first − second`` between grid points.  With errors
    (one standard error per point): only resolved crossings, between two grid points where the
    difference is larger than ``significance`` combined standard errors with opposite signs
    (adjacent such points; the crossing is the sign change between them, the mean if noise gives
    several).  Curves that touch within their errors — e.g. two Binder cumulants both saturated
    at 2/3 in the ordered phase, or equal within noise at the end of a scan — have no resolved
    crossing.
    """
    t = np.asarray(temperatures, float)
    diff = np.asarray(first, float) - np.asarray(second, float)
    found = []
    for k in range(len(t) - 1):
        if diff[k] == 0:
            found.append(float(t[k]))
        elif diff[k] * diff[k + 1] < 0:
            found.append(float(t[k] - diff[k] * (t[k + 1] - t[k]) / (diff[k + 1] - diff[k])))
    if first_error is None or second_error is None:
        return found
    error = np.hypot(np.asarray(first_error, float), np.asarray(second_error, float))
    resolved = np.flatnonzero(np.abs(diff) > significance * error)
    brackets = [(t[i], t[j]) for i, j in zip(resolved, resolved[1:]) if diff[i] * diff[j] < 0]
    # one crossing per bracket: the mean of the sign changes inside it (several only through noise)
    return [float(np.mean([c for c in found if low <= c <= high])) for low, high in brackets]


@dataclass
class CriticalTemperature:
    """T_c estimates from a finite-size scan.

    Attributes
    ----------
    susceptibility_peaks : dict
        Size label → temperature of the χ maximum (shifted at small sizes, ∝ L^(−1/ν)).
    binder_crossings : dict
        "L1/L2" → temperature(s) where U₄ of the two sizes cross, resolved beyond two standard errors
        on both sides (see :func:`crossings`); empty when the cumulants only touch within their errors.
    """

    susceptibility_peaks: dict[str, float] = field(default_factory=dict)
    binder_crossings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def binder_estimate(self) -> float:
        """Mean of the crossings of consecutive sizes (one crossing each: the one nearest the χ peaks)."""
        values = [c for c in self.binder_crossings.values() if c]
        if not values:
            raise ValueError("the Binder cumulants of the sizes do not cross beyond their errors in the scanned "
                             "range; widen the temperature range around the susceptibility peaks, or run longer")
        centre = np.mean(list(self.susceptibility_peaks.values()))
        return float(np.mean([min(c, key=lambda x: abs(x - centre)) for c in values]))


def critical_temperature(scans: Mapping[str, Sequence[OrderStatistics]]) -> CriticalTemperature:
    """T_c from the χ peak of each size and the Binder crossings of consecutive sizes.

    ``scans`` maps a size label (in increasing size) to its statistics; the
    Binder cumulants of consecutive sizes are compared at the temperatures both
    were run at.
    """
    if len(scans) < 1:
        raise ValueError("no sizes to analyse")
    result = CriticalTemperature()
    grids = {}
    for label, stats in scans.items():
        stats = sorted(stats, key=lambda s: s.temperature)
        t = np.array([s.temperature for s in stats])
        grids[label] = (t, np.array([s.binder[0] for s in stats]), np.array([s.binder[1] for s in stats]))
        result.susceptibility_peaks[label] = peak(t, [s.susceptibility[0] for s in stats])
    labels = list(scans)
    for small, large in zip(labels, labels[1:]):
        (t1, u1, e1), (t2, u2, e2) = grids[small], grids[large]
        shared, k1, k2 = np.intersect1d(np.round(t1, 6), np.round(t2, 6), return_indices=True)
        if len(shared) < 2:
            raise ValueError(f"sizes {small} and {large} share fewer than two temperatures; the Binder crossing "
                             "compares the sizes at the same temperatures: run them on a common grid")
        result.binder_crossings[f"{small}/{large}"] = crossings(shared, u1[k1], u2[k2], e1[k1], e2[k2])
    return result


def steepest_drop(temperatures: np.ndarray, mean_abs: np.ndarray) -> float:
    """Temperature where ⟨|P|⟩(T) falls fastest (midpoint of the steepest grid interval)."""
    t, m = np.asarray(temperatures, float), np.asarray(mean_abs, float)
    order = np.argsort(t)
    t, m = t[order], m[order]
    slope = np.diff(m) / np.diff(t)
    k = int(np.argmin(slope))
    return float(0.5 * (t[k] + t[k + 1]))


def hysteresis(heating: tuple[np.ndarray, np.ndarray], cooling: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Transition temperatures on heating and cooling (steepest fall of ⟨|P|⟩) and their difference.

    ``heating`` and ``cooling`` are (temperatures, ⟨|P|⟩) of the two ramps.
    Returns ``T_heating``, ``T_cooling``, ``width`` (T_heating − T_cooling; > 0
    for a first-order transition with superheating/supercooling) and
    ``loop_area`` (∫ (⟨|P|⟩_heating − ⟨|P|⟩_cooling) dT over the common range).
    """
    t_h, t_c = steepest_drop(*heating), steepest_drop(*cooling)
    grid = np.linspace(max(np.min(heating[0]), np.min(cooling[0])), min(np.max(heating[0]), np.max(cooling[0])), 200)
    h = np.interp(grid, *[np.asarray(x)[np.argsort(heating[0])] for x in heating])
    c = np.interp(grid, *[np.asarray(x)[np.argsort(cooling[0])] for x in cooling])
    return {"T_heating": t_h, "T_cooling": t_c, "width": t_h - t_c, "loop_area": float(np.trapezoid(h - c, grid))}
