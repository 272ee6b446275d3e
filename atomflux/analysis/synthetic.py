"""Stationary processes with known Green–Kubo integrals, to test and benchmark estimators.

An autoregressive process x_t = Σ_i a_i x_{t−i} + e_t (white noise e of
variance σ²) sampled every dt has the power spectrum
S(f) = σ² dt / |1 − Σ_i a_i e^{−2πi f i dt}|², so its Green–Kubo integral
∫₀^∞ ⟨x(0)x(t)⟩ dt (the discrete sum dt·(C₀/2 + Σ_{k≥1} C_k), i.e. S(0)/2)
is σ² dt / (2 (1 − Σ_i a_i)²) exactly.  Sums of independent processes add
their integrals.

- :func:`ornstein_uhlenbeck`: AR(1), exponential correlation exp(−t/τ) —
  the spectrum of a liquid-like flux (one Lorentzian).
- :func:`crystal_like`: a slow AR(1) (long phonon lifetime: a narrow
  zero-frequency peak carrying most of the integral) plus a damped
  oscillator (an AR(2) with complex poles: the broad optical-like
  background carrying most of the variance) — the spectrum that defeats a
  single-bandwidth cepstral estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter


@dataclass
class SyntheticFlux:
    """Samples [n_steps, n_components] and their exact ∫₀^∞⟨x(0)x(t)⟩dt (x² × time units)."""

    series: np.ndarray
    dt: float
    integral: float


def autoregressive(coefficients: np.ndarray, noise_variance: float, n_steps: int, n_components: int = 3,
                   dt: float = 1.0, seed: int = 0, burn_in: int | None = None) -> SyntheticFlux:
    """Stationary AR(p) samples x_t = Σ_i a_i x_{t−i} + e_t and their exact Green–Kubo integral.

    Parameters
    ----------
    coefficients : array [p]
        a_1 .. a_p (the process must be stationary: all roots of
        1 − Σ a_i z^i outside the unit circle).
    noise_variance : float
        σ² of the white noise e_t.
    n_steps, n_components : int
        Shape of the returned samples (components are independent).
    dt : float
        Sampling interval (sets the time unit of the integral).
    burn_in : int, optional
        Steps discarded at the start (default: 20 × the slowest decay time).
    """
    a = np.atleast_1d(np.asarray(coefficients, dtype=float))
    poles = np.roots(np.concatenate([[1.0], -a]))
    if np.abs(poles).max() >= 1:
        raise ValueError("autoregressive coefficients give a non-stationary process (a pole on or outside |z| = 1)")
    if burn_in is None:
        burn_in = int(20 / max(-np.log(np.abs(poles).max()), 1e-9)) + 10
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(noise_variance), (n_steps + burn_in, n_components))
    series = lfilter([1.0], np.concatenate([[1.0], -a]), noise, axis=0)[burn_in:]
    return SyntheticFlux(series, float(dt), float(noise_variance * dt / (2 * (1 - a.sum()) ** 2)))


def ornstein_uhlenbeck(n_steps: int, correlation_time: float, variance: float = 1.0, n_components: int = 3,
                       dt: float = 1.0, seed: int = 0) -> SyntheticFlux:
    """Sampled Ornstein–Uhlenbeck process: ⟨x(0)x(t)⟩ = variance·exp(−t/τ) (τ = ``correlation_time``, time units of dt).

    Its integral is variance·dt·(1 + a)/(2(1 − a)) with a = exp(−dt/τ) (→ variance·τ for τ ≫ dt).
    """
    a = np.exp(-dt / correlation_time)
    return autoregressive([a], variance * (1 - a * a), n_steps, n_components, dt, seed)


def crystal_like(n_steps: int, lifetime: float, period: float = 10.0, damping_time: float = 20.0,
                 peak_fraction: float = 0.7, n_components: int = 3, dt: float = 1.0, seed: int = 0) -> SyntheticFlux:
    """A narrow zero-frequency peak on a broad oscillatory background.

    Parameters
    ----------
    lifetime : float
        Correlation time of the slow (peak) component, time units of dt.
    period, damping_time : float
        Oscillation period and amplitude decay time of the fast component.
    peak_fraction : float
        Share of the total integral carried by the slow component (0–1).
    """
    if not 0 < peak_fraction < 1:
        raise ValueError(f"peak_fraction must be between 0 and 1, got {peak_fraction}")
    r, theta = np.exp(-dt / damping_time), 2 * np.pi * dt / period
    fast = autoregressive([2 * r * np.cos(theta), -r * r], 1.0, n_steps, n_components, dt, seed)
    a = np.exp(-dt / lifetime)
    slow_noise = 2 * (1 - a) ** 2 * fast.integral / dt * peak_fraction / (1 - peak_fraction)
    slow = autoregressive([a], slow_noise, n_steps, n_components, dt, seed + 7_919_993)
    return SyntheticFlux(fast.series + slow.series, float(dt), fast.integral + slow.integral)
