"""Ionic transport from trajectories: unwrapping, tracer diffusion, conductivity, Arrhenius, RDF, VDOS.

Units: positions Å, time fs, D in cm²/s (1 Å²/fs = 0.1 cm²/s), conductivity in
S/m, charges in e, temperatures in K, activation energies in eV.

Error bars come from block averaging: the trajectory is cut into
``n_blocks`` consecutive blocks treated as independent runs; the estimate is
their mean and its error the standard error of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

BOLTZMANN_EV_PER_K = 8.617333262e-5
ANGSTROM2_PER_FS_IN_CM2_PER_S = 0.1
#: e²·Å²/fs / (Å³ · eV)  →  S/m
CONDUCTIVITY_UNIT_IN_S_PER_M = 1.602176634e6


@dataclass
class Trajectory:
    """Positions [n_frames, N, 3] (Å, as stored), cell [3, 3] (Å), numbers [N], frame interval dt (fs)."""

    positions: np.ndarray
    cell: np.ndarray
    numbers: np.ndarray
    dt: float
    velocities: np.ndarray | None = None

    @property
    def symbols(self) -> np.ndarray:
        from ase.data import chemical_symbols

        return np.array([chemical_symbols[z] for z in self.numbers])

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))


def read_trajectory(path: str | Path, dt: float, index: str = ":", format: str | None = None,
                    type_symbols: Sequence[str] | None = None) -> Trajectory:
    """Read an ASE trajectory, extxyz or LAMMPS dump (``format="lammps-dump-text"``).

    Parameters
    ----------
    dt
        Time between stored frames, fs.
    type_symbols
        For LAMMPS dumps without an element column: chemical symbols of
        types 1, 2, ... (ASE otherwise reads type n as atomic number n).
    """
    from ..structure_files import read_structures

    if Path(path).suffix == ".npz":
        raise ValueError(f"{path} is a numpy archive (a heat-flux file?), not a trajectory; heat-flux files go "
                         "to --flux, positions to --trajectory (ASE traj, extxyz, LAMMPS dump)")
    frames = read_structures(path, index=index, format=format)
    if len(frames) < 2:
        raise ValueError(f"{path}: need at least two frames, found {len(frames)}")
    cells = np.array([f.cell.array for f in frames])
    if np.abs(cells - cells[0]).max() > 1e-6 * np.abs(cells[0]).max():
        raise ValueError(f"{path}: the cell changes along the trajectory; only fixed-cell runs are supported")
    n = {len(f) for f in frames}
    if len(n) != 1:
        raise ValueError(f"{path}: the number of atoms changes along the trajectory")
    numbers = frames[0].numbers.copy()
    if type_symbols is not None:
        from ase.data import atomic_numbers

        if numbers.max() > len(type_symbols):
            raise ValueError(f"{path}: atom type {numbers.max()} but only {len(type_symbols)} type symbols given")
        numbers = np.array([atomic_numbers[type_symbols[t - 1]] for t in numbers])
    velocities = None
    if all(f.has("momenta") for f in frames):
        from ase import units

        velocities = np.array([f.get_velocities() for f in frames]) * units.fs
    return Trajectory(np.array([f.positions for f in frames]), cells[0], numbers, float(dt), velocities)


def unwrap(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Continuous trajectories [n_frames, N, 3] from wrapped positions.

    Each frame-to-frame step is taken as the shortest periodic image (in
    fractional coordinates, so triclinic cells work); valid as long as no
    atom moves more than half a cell between stored frames.  Atoms may cross
    the cell any number of times.
    """
    frac = positions @ np.linalg.inv(cell)
    steps = np.diff(frac, axis=0)
    steps -= np.round(steps)
    unwrapped = np.concatenate([frac[:1], frac[:1] + np.cumsum(steps, axis=0)])
    return unwrapped @ cell


def mean_squared_displacement(displacement_series: np.ndarray) -> np.ndarray:
    """Time-origin-averaged MSD(τ) for series [n_frames, K, 3] (K walkers or 1 collective), shape [n_frames, K].

    Uses the FFT identity MSD(τ) = S₁(τ) − 2 S₂(τ) with S₂ the position autocorrelation.
    """
    x = np.asarray(displacement_series, dtype=np.float64)
    n = len(x)
    squares = (x**2).sum(axis=2)
    total = 2 * squares.sum(axis=0)
    s1 = np.empty((n, x.shape[1]))
    running = total.copy()
    for lag in range(n):
        if lag:
            running -= squares[lag - 1] + squares[n - lag]
        s1[lag] = running / (n - lag)
    spectrum = np.fft.rfft(x, n=2 * n, axis=0)
    s2 = np.fft.irfft(np.abs(spectrum) ** 2, axis=0)[:n].sum(axis=2) / (n - np.arange(n))[:, None]
    return s1 - 2 * s2


def _slope(times: np.ndarray, values: np.ndarray, window: tuple[float, float]) -> float:
    lo, hi = int(window[0] * len(times)), max(int(window[1] * len(times)), int(window[0] * len(times)) + 2)
    return float(np.polyfit(times[lo:hi], values[lo:hi], 1)[0])


def _blocks(n_frames: int, n_blocks: int) -> list[slice]:
    size = n_frames // n_blocks
    if size < 4:
        raise ValueError(f"{n_frames} frames are too few for {n_blocks} blocks")
    return [slice(k * size, (k + 1) * size) for k in range(n_blocks)]


@dataclass
class Estimate:
    """A value with its standard error from ``n_blocks`` blocks (``blocks`` holds each block's value)."""

    value: float
    error: float
    blocks: np.ndarray = field(repr=False)

    def unresolved(self, factor: float = 10.0) -> str:
        """Why the value is not a result ('' when it is): not positive, or an error ≥ ``factor`` × the value."""
        if not np.isfinite(self.value) or not np.isfinite(self.error):
            return "not a number"
        if self.value <= 0:
            return "not positive: not resolved"
        if self.error >= factor * self.value:
            return f"not resolved: the error is {self.error / self.value:.0f}× the value"
        return ""


def _estimate(values: Sequence[float]) -> Estimate:
    v = np.asarray(values, dtype=float)
    return Estimate(float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))), v)


def tracer_diffusion(trajectory: Trajectory, n_blocks: int = 5, window: tuple[float, float] = (0.2, 0.6),
                     unwrapped: np.ndarray | None = None) -> dict[str, Estimate]:
    """Tracer diffusion coefficient per species (cm²/s) with block-averaged errors.

    D = slope of MSD(τ)/6 over the fraction ``window`` of each block's lag range.
    """
    pos = unwrap(trajectory.positions, trajectory.cell) if unwrapped is None else unwrapped
    symbols = trajectory.symbols
    out: dict[str, list[float]] = {s: [] for s in sorted(set(symbols))}
    for block in _blocks(len(pos), n_blocks):
        part = pos[block]
        times = np.arange(len(part)) * trajectory.dt
        msd = mean_squared_displacement(part - part[0])
        for s in out:
            out[s].append(_slope(times, msd[:, symbols == s].mean(axis=1), window) / 6 * ANGSTROM2_PER_FS_IN_CM2_PER_S)
    return {s: _estimate(v) for s, v in out.items()}


@dataclass
class IonicConductivity:
    """Collective (σ) and Nernst–Einstein (σ_NE) conductivities in S/m, and the Haven ratio σ_NE/σ.

    ``haven_ratio`` is NaN, and ``haven_note`` says why, when σ or σ_NE is not
    resolved (not above twice its error: e.g. the charged species do not
    move in this run) — a ratio of two noise values is not a Haven ratio.
    """

    collective: Estimate
    nernst_einstein: Estimate
    haven_ratio: float
    diffusion: dict[str, Estimate]
    haven_note: str = ""


def ionic_conductivity(trajectory: Trajectory, charges: dict[str, float], temperature: float, n_blocks: int = 5,
                       window: tuple[float, float] = (0.2, 0.6)) -> IonicConductivity:
    """σ = e²/(6 V k_B T) d⟨|Σ_i q_i Δr_i(τ)|²⟩/dτ, and σ_NE = e²/(V k_B T) Σ_i q_i² D_i.

    Parameters
    ----------
    charges
        Formal charge (e) per chemical symbol; species missing from it count as 0.
    temperature
        K.
    """
    symbols = trajectory.symbols
    absent = sorted(set(charges) - set(symbols))
    if absent:
        raise ValueError(f"charges given for {', '.join(absent)}, which the trajectory does not contain "
                         f"(its species: {', '.join(sorted(set(symbols)))})")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature} K")
    q = np.array([charges.get(s, 0.0) for s in symbols])
    if not np.any(q):
        raise ValueError("all charges are zero: give charges per species, e.g. {'Li': 1, 'S': -2}")
    pos = unwrap(trajectory.positions, trajectory.cell)
    prefactor = CONDUCTIVITY_UNIT_IN_S_PER_M / (trajectory.volume * BOLTZMANN_EV_PER_K * temperature)
    collective, nernst = [], []
    for block in _blocks(len(pos), n_blocks):
        part = pos[block] - pos[block][0]
        times = np.arange(len(part)) * trajectory.dt
        charge_displacement = (q[None, :, None] * part).sum(axis=1, keepdims=True)
        msd_q = mean_squared_displacement(charge_displacement)[:, 0]
        collective.append(prefactor * _slope(times, msd_q, window) / 6)
        msd = mean_squared_displacement(part)
        slopes = np.array([_slope(times, msd[:, k], window) for k in range(len(q)) if q[k]]) / 6
        nernst.append(prefactor * float((q[q != 0] ** 2 * slopes).sum()))
    sigma, sigma_ne = _estimate(collective), _estimate(nernst)
    unresolved = [name for name, est in (("collective", sigma), ("Nernst–Einstein", sigma_ne))
                  if not est.value > 2 * est.error]
    if unresolved:
        note = (f"Haven ratio not meaningful: the {' and '.join(unresolved)} conductivity is not resolved "
                f"(collective {sigma.value:.3g} ± {sigma.error:.2g} S/m, Nernst–Einstein {sigma_ne.value:.3g} "
                f"± {sigma_ne.error:.2g} S/m); do the charged species move in this run?")
        return IonicConductivity(sigma, sigma_ne, float("nan"),
                                 tracer_diffusion(trajectory, n_blocks, window, unwrapped=pos), note)
    return IonicConductivity(sigma, sigma_ne, sigma_ne.value / sigma.value,
                             tracer_diffusion(trajectory, n_blocks, window, unwrapped=pos))


@dataclass
class Arrhenius:
    """D(T) = D₀ exp(−E_a / k_B T): activation energy (eV) and prefactor with 1σ errors."""

    activation_energy: float
    activation_energy_error: float
    prefactor: float
    prefactor_error: float

    def __call__(self, temperature):
        return self.prefactor * np.exp(-self.activation_energy / (BOLTZMANN_EV_PER_K * np.asarray(temperature)))


def arrhenius_fit(temperatures: Sequence[float], values: Sequence[float], errors: Sequence[float] | None = None) -> Arrhenius:
    """Weighted least squares of ln D against 1/(k_B T); errors of D become σ(ln D) = σ_D / D."""
    t, d = np.asarray(temperatures, float), np.asarray(values, float)
    if len(t) < 2 or (d <= 0).any():
        raise ValueError("need at least two temperatures and positive values")
    x, y = 1.0 / (BOLTZMANN_EV_PER_K * t), np.log(d)
    sigma = np.ones_like(y) if errors is None else np.asarray(errors, float) / d
    design = np.stack([x, np.ones_like(x)], axis=1) / sigma[:, None]
    cov = np.linalg.inv(design.T @ design)
    slope, intercept = cov @ design.T @ (y / sigma)
    if errors is None:  # no input errors: scale by the residual variance
        residual = y - (slope * x + intercept)
        cov = cov * (residual @ residual / (len(x) - 2) if len(x) > 2 else 0.0)
    return Arrhenius(float(-slope), float(np.sqrt(cov[0, 0])), float(np.exp(intercept)),
                     float(np.exp(intercept) * np.sqrt(cov[1, 1])))


def radial_distribution(trajectory: Trajectory, r_max: float = 6.0, bins: int = 120, pair: tuple[str, str] | None = None,
                        every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """g(r) averaged over frames (optionally for one species pair); returns bin centres (Å) and g."""
    from vesin import NeighborList

    symbols = trajectory.symbols
    sel_a = np.ones(len(symbols), bool) if pair is None else symbols == pair[0]
    sel_b = np.ones(len(symbols), bool) if pair is None else symbols == pair[1]
    edges = np.linspace(0, r_max, bins + 1)
    hist = np.zeros(bins)
    frames = trajectory.positions[::every]
    nl = NeighborList(cutoff=r_max, full_list=True)
    for pos in frames:
        i, j, d = nl.compute(pos, trajectory.cell, True, quantities="ijd")
        keep = sel_a[i] & sel_b[j]
        hist += np.histogram(d[keep], edges)[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    density_b = sel_b.sum() / trajectory.volume
    g = hist / (len(frames) * sel_a.sum() * density_b * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g


def vibrational_dos(trajectory: Trajectory, masses: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mass-weighted vibrational density of states from velocities (or finite differences of positions).

    Returns frequencies (THz) and the VDOS normalised to unit area.
    """
    if trajectory.velocities is not None:
        v = trajectory.velocities
    else:
        pos = unwrap(trajectory.positions, trajectory.cell)
        v = np.gradient(pos, trajectory.dt, axis=0)
    w = np.ones(v.shape[1]) if masses is None else np.asarray(masses, float)
    spectrum = (np.abs(np.fft.rfft(v - v.mean(0), axis=0)) ** 2 * w[None, :, None]).sum(axis=(1, 2))
    freqs = np.fft.rfftfreq(len(v), trajectory.dt) * 1000.0
    area = np.trapezoid(spectrum, freqs)
    return freqs, spectrum / area if area > 0 else spectrum
