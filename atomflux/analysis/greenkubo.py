"""Green–Kubo integrals of noisy fluxes: the spectral matrix, single-bandwidth cepstral analysis, the running integral.

The headline estimator (a scan over bandwidths with an Akaike-weighted
plateau) is :mod:`atomflux.analysis.bandwidth`; the single-bandwidth
estimator here equals SporTran's at equal F* and AIC and is kept to compare.

The transport coefficient of a stationary flux x(t) is proportional to
I = ∫₀^∞ ⟨x(0)x(t)⟩ dt = S(0)/2, half the zero-frequency power spectrum.
Cepstral analysis (Ercole, Marcolongo, Baroni, Sci. Rep. 2017) estimates
log S(0) from the log-periodogram: with ℓ independent components averaged,
each periodogram bin is S(f)·χ²_{2ℓ}/(2ℓ), so its logarithm is log S(f) plus
noise of known mean ψ(ℓ) − log ℓ and variance ψ′(ℓ).  Low-pass filtering
the log-spectrum — keeping the first P cepstral coefficients, P chosen by
Akaike's information criterion — gives log S(0) with variance
ψ′(ℓ)(4P − 2)/N (N the length of the full spectrum), i.e. an error bar from a single trajectory.

Multicomponent systems (Bertossa, Grasselli, Ercole, Baroni, PRL 2019):
when other conserved fluxes (mass, charge) are coupled to the energy flux,
the coefficient is given by the Schur complement of the Q×Q spectral matrix
at zero frequency; its periodogram is χ²_{2(ℓ−Q+1)}/(2ℓ)-distributed and
the same cepstral machinery applies with ℓ → ℓ − Q + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import digamma, polygamma


@dataclass
class CepstralResult:
    """Estimate of ∫₀^∞ ⟨x(0)x(t)⟩ dt (units of x² × time).

    Attributes
    ----------
    value, error
        The integral and its standard deviation (same units).
    cutoff : int
        Number P* of cepstral coefficients kept (chosen by AIC unless given).
    dof : int
        ℓ, the χ² degrees of freedom / 2 of the averaged periodogram.
    frequencies : ndarray [K]
        Frequencies of the (possibly truncated) spectrum, 1/time units.
    periodogram, filtered : ndarray [K]
        Averaged periodogram and its cepstrally filtered version (same
        normalisation: S(0) = 2 × value).
    aic : ndarray
        AIC(P) for P = 1 .. len(aic).
    """

    value: float
    error: float
    cutoff: int
    dof: int
    frequencies: np.ndarray = field(repr=False)
    periodogram: np.ndarray = field(repr=False)
    filtered: np.ndarray = field(repr=False)
    aic: np.ndarray = field(repr=False)

    def plot(self, path: str | Path, label: str = "flux") -> Path:
        """Periodogram with the cepstrally filtered spectrum, and AIC(P); a PNG."""
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.semilogy(self.frequencies, self.periodogram, lw=0.5, alpha=0.6, label="periodogram")
        ax1.semilogy(self.frequencies, self.filtered, "k-", lw=1.5, label=f"cepstral filter, P*={self.cutoff}")
        ax1.axhline(2 * self.value, color="C3", ls="--", lw=0.8, label="S(0) estimate")
        ax1.set(xlabel="frequency", ylabel="power spectrum", title=label)
        ax1.legend()
        ax2.plot(np.arange(1, len(self.aic) + 1), self.aic - self.aic.min())
        ax2.axvline(self.cutoff, color="C3", ls="--")
        ax2.set(xlabel="number of cepstral coefficients P", ylabel="AIC(P) − min", yscale="symlog")
        return save_figure(fig, path)


def _as_components(series: np.ndarray) -> np.ndarray:
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"series must have shape [n_steps, n_components], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("series contains NaN or inf")
    if len(x) < 16:
        raise ValueError(f"series too short for a spectral estimate: {len(x)} steps")
    return x


def spectral_matrix(fluxes: Sequence[np.ndarray], dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Periodogram matrix of Q fluxes, each [n_steps, ℓ] (ℓ the same for all).

    Returns frequencies [K] and the complex Hermitian S [K, ℓ, Q, Q] with
    S_ab(f) = (dt/n) X_a(f) X_b*(f), so that E[S_aa(0)] → 2 ∫₀^∞ ⟨x_a(0)x_a(t)⟩ dt.
    """
    arrays = [_as_components(f) for f in fluxes]
    n, ell = arrays[0].shape
    if any(a.shape != (n, ell) for a in arrays):
        raise ValueError("all fluxes must have the same shape [n_steps, n_components]")
    ft = np.stack([np.fft.rfft(a, axis=0) for a in arrays], axis=-1)        # [K, ℓ, Q]
    s = (dt / n) * np.einsum("kla,klb->klab", ft, ft.conj())
    return np.fft.rfftfreq(n, dt), s


def cepstral_from_log_spectrum(log_s: np.ndarray, dof: int, dof_reduced: int,
                               cutoff: int | None = None) -> tuple[float, float, int, np.ndarray, np.ndarray]:
    """Cepstral filter of a one-sided log-periodogram [K] (bins 0 .. N/2).

    Returns log S(0) estimate, its standard deviation, P*, the filtered log
    spectrum [K] and AIC(P) for P = 1 .. N/2.
    """
    n_full = 2 * (len(log_s) - 1)
    full = np.concatenate([log_s, log_s[-2:0:-1]])
    coeffs = np.fft.ifft(full).real                                         # Ĉ_n, n = 0..N-1
    variance = float(polygamma(1, dof_reduced))
    bias = float(digamma(dof_reduced) - np.log(dof))
    half = n_full // 2
    tail = np.cumsum((coeffs[: half + 1] ** 2)[::-1])[::-1]                  # Σ_{n≥P} Ĉ_n²
    p = np.arange(1, half + 1)
    aic = n_full * tail[1:half + 1] / variance + 2 * p
    chosen = int(p[np.argmin(aic)]) if cutoff is None else int(cutoff)
    if not 1 <= chosen <= half:
        raise ValueError(f"cepstral cutoff must be in 1..{half}, got {chosen}")
    kept = np.zeros_like(coeffs)
    kept[:chosen] = coeffs[:chosen]
    if chosen > 1:
        kept[-(chosen - 1):] = coeffs[-(chosen - 1):]
    filtered = np.fft.fft(kept).real[: len(log_s)] - bias
    log_s0 = float(filtered[0])
    sigma = float(np.sqrt(variance * (4 * chosen - 2) / n_full))
    return log_s0, sigma, chosen, filtered, aic


def cepstral_integral(series: np.ndarray, dt: float, *, coupled: Sequence[np.ndarray] = (),
                      max_frequency: float | None = None, cutoff: int | None = None) -> CepstralResult:
    """Estimate ∫₀^∞ ⟨x(0)x(t)⟩ dt of a stationary series, averaged over components.

    Parameters
    ----------
    series : array [n_steps, n_components]
        The flux (e.g. the three Cartesian components of a heat flux); the
        components are treated as independent samples of one process.
    dt : float
        Time step between samples (the result is in units of x² × dt's unit).
    coupled : sequence of arrays [n_steps, n_components]
        Other conserved fluxes to project out (multicomponent analysis).
    max_frequency : float, optional
        Analyse only frequencies below this (1/time): a low-pass filter and
        resampling that keeps the number of needed coefficients small.
    cutoff : int, optional
        Fix P* instead of choosing it by AIC.

    Returns
    -------
    CepstralResult
        ``.value`` and ``.error`` (one standard deviation).
    """
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    freqs, s = spectral_matrix([series, *coupled], dt)
    ell, q = s.shape[1], s.shape[2]
    if ell - q + 1 < 1:
        raise ValueError(f"{q - 1} coupled fluxes need at least {q} components per flux, got {ell}")
    if max_frequency is not None:
        keep = freqs <= max_frequency
        if keep.sum() < 8:
            raise ValueError("max_frequency leaves fewer than 8 frequency bins")
        freqs, s = freqs[keep], s[keep]
    if q == 1:
        spectrum = s[:, :, 0, 0].real.mean(axis=1)
    else:
        # Schur complement per component sample: sum over ℓ of the Q×Q matrices, then reduce
        total = s.sum(axis=1)                                                  # [K, Q, Q]
        spectrum = (total[:, 0, 0] - np.einsum("ka,kab,kb->k", total[:, 0, 1:],
                                              np.linalg.inv(total[:, 1:, 1:]), total[:, 1:, 0])).real / ell
    if (spectrum <= 0).any():
        raise ValueError("periodogram has non-positive bins (a constant or zero flux?)")
    log_s0, sigma, chosen, filtered, aic = cepstral_from_log_spectrum(np.log(spectrum), ell, ell - q + 1, cutoff)
    value = 0.5 * np.exp(log_s0)
    return CepstralResult(value=float(value), error=float(value * sigma), cutoff=chosen, dof=ell - q + 1,
                          frequencies=freqs, periodogram=spectrum, filtered=np.exp(filtered), aic=aic)


@dataclass
class RunningIntegral:
    """∫₀^t ⟨x(0)x(t')⟩ dt' as a function of t (direct, noisy: for comparison)."""

    times: np.ndarray
    correlation: np.ndarray
    integral: np.ndarray


def running_integral(series: np.ndarray, dt: float, max_lag: int | None = None) -> RunningIntegral:
    """Autocorrelation (FFT, unbiased, averaged over components) and its running integral (trapezoid)."""
    x = _as_components(series)
    n = len(x)
    max_lag = min(n - 1, max_lag or n // 2)
    padded = np.fft.rfft(x, n=2 * n, axis=0)
    acf = np.fft.irfft(np.abs(padded) ** 2, axis=0)[: max_lag + 1].mean(axis=1) / (n - np.arange(max_lag + 1))
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (acf[1:] + acf[:-1]) * dt)])
    return RunningIntegral(np.arange(max_lag + 1) * dt, acf, integral)


#: 1 eV/(Å·fs·K) in W/(m·K)
EV_PER_ANGSTROM_FS_KELVIN_IN_W_PER_MK = 1.602176634e6
BOLTZMANN_EV_PER_K = 8.617333262e-5


