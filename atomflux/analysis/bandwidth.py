"""The Green–Kubo integral over a scan of bandwidths F*, averaged over where the plateau starts.

The integral ∫₀^∞⟨x(0)x(t)⟩dt is half the power spectrum at zero frequency,
S(0)/2.  Each bin k of the periodogram averaged over ℓ independent
components is S(f_k)·χ²_d/(norm) with d = 2ℓ (d = ℓ at f = 0 and at the
Nyquist frequency), so its logarithm is log S(f_k) plus noise of exactly
known mean and variance ψ′(d/2), independent from bin to bin.

**One bandwidth.** A least-squares fit of the first P cepstral basis
functions cos(πnf/F*) to the bins 0 < f ≤ F*, evaluated at f = 0, estimates
log S(0) as a fixed linear combination Σ_k a_k log S_k with resolution
~F*/P (with the f = 0 bin, weighted by ½ like the band edge, the same fit is
the cepstral filter of Ercole, Marcolongo & Baroni; see
:func:`band_weights` for why that bin is left out).  The estimate is biased
low when the zero-frequency peak is narrower than that (crystals: long
phonon lifetimes), and its variance Σ_k a_k² ψ′ grows as F* shrinks.

**The scan.** F* runs over a geometric grid from ``max_frequency`` (default:
the whole spectrum) down to 9P frequency bins of the run, i.e. down to a
resolution set by the run length.  All estimates are linear in the same
log-periodogram, so their joint covariance C is known exactly.  P is
fixed: at fixed P the resolution is F*/P, so the scan over F* is also the
scan over resolutions that a choice of P would make.

**The plateau.** Model M_j says: the estimates at F* ≤ F*_j share one value
θ (the plateau), the larger bandwidths are biased (each its own free
mean).  Its maximum likelihood is a generalised least-squares fit of θ to
the plateau estimates with their covariance; its Akaike information
AIC_j = χ²_j + 2(j + 1) compares all M_j on the same data.  κ is the
Akaike-weighted average of the models' θ (each estimated from its plateau
less the first bandwidth, where a still undetectable bias is largest); its
variance is that of the averaged linear estimator plus the disagreement
between the models beyond their sampling noise: the error bar includes
the choice of F*.

**Unconverged.** When most weight sits on plateaus starting among the
finest bandwidths (a factor 4 in F*), or the estimate there, or the mean of
the 8 lowest frequency bins, lies more than 2σ above the average (the
spectrum still rises where the run's resolution ends), the run is too
short for the zero-frequency peak: only a lower bound is reported.  A peak narrower than the resolution 1/T leaves no trace
in the data, so no estimator can flag it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import digamma, polygamma

from .greenkubo import spectral_matrix

#: number of cepstral coefficients P fitted at every bandwidth
DEFAULT_CUTOFF = 7
#: the finest bandwidth keeps this many frequency bins per coefficient (sets the finest resolution)
BINS_PER_COEFFICIENT = 9
#: ratio of successive bandwidths of the scan
BANDWIDTH_RATIO = 2 ** 0.5
#: the finest bandwidths (a factor 4 in F*), on which a plateau is not yet confirmed
FINEST_BANDS = 5
#: Akaike weight on plateaus starting among the FINEST_BANDS above which the estimate is unconverged
UNCONVERGED_WEIGHT = 0.5
#: bandwidths at the start of a plateau left out of its estimate
PLATEAU_MARGIN = 1
#: lowest frequency bins (above f = 0) compared with the plateau: the finest resolution of a run
LOWEST_BINS = 8
#: σ above the plateau average at which the finest resolutions say "still rising"
RISING_THRESHOLD = 2.0


@dataclass
class LogSpectrum:
    """Debiased log-periodogram of one group of samples, with per-bin variances.

    ``log_power`` [K] estimates log S(f) without bias; ``variance`` [K] is its
    exact per-bin variance ψ′(d/2); ``frequencies`` [K] in 1/time units;
    ``duration`` = n·dt (1/duration is the frequency resolution).
    """

    frequencies: np.ndarray
    log_power: np.ndarray
    variance: np.ndarray
    duration: float
    dof: int

    def bins_below(self, bandwidth: float) -> int:
        """Number of bins with f ≤ ``bandwidth`` (including f = 0)."""
        return int(min(np.floor(bandwidth * self.duration * (1 + 1e-12)) + 1, len(self.frequencies)))


def log_spectrum(series: np.ndarray, dt: float, coupled: Sequence[np.ndarray] = ()) -> LogSpectrum:
    """Log-periodogram of ``series`` [n, ℓ] averaged over its ℓ components (independent samples).

    With ``coupled`` fluxes (each [n, ℓ], column-aligned with ``series``) the
    periodogram is the Schur complement of the Q×Q spectral matrix
    (multicomponent Green–Kubo: the coupled fluxes are projected out); it is
    χ²-distributed with ℓ − Q + 1 instead of ℓ complex degrees of freedom.
    """
    freqs, s = spectral_matrix([series, *coupled], dt)
    n_steps, ell, q = len(np.asarray(series)), s.shape[1], s.shape[2]
    dof = ell - q + 1
    if dof < 1:
        raise ValueError(f"{q - 1} coupled fluxes need at least {q} samples per flux, got {ell}")
    if q == 1:
        power = s[:, :, 0, 0].real.mean(axis=1)
    else:
        total = s.sum(axis=1)
        power = (total[:, 0, 0] - np.einsum("ka,kab,kb->k", total[:, 0, 1:], np.linalg.inv(total[:, 1:, 1:]),
                                            total[:, 1:, 0])).real / ell
    if not (power > 0).all():
        raise ValueError("the flux periodogram has zero bins (a constant flux, or fluxes that are linear "
                         "combinations of each other?)")
    chi2_dof = np.full(len(freqs), 2.0 * dof)
    norm = np.full(len(freqs), 2.0 * ell)
    real_bins = [0, len(freqs) - 1] if n_steps % 2 == 0 else [0]   # f = 0 and Nyquist: real Fourier coefficients
    chi2_dof[real_bins], norm[real_bins] = dof, ell
    mean_log_noise = digamma(chi2_dof / 2) + np.log(2.0) - np.log(norm)
    return LogSpectrum(freqs, np.log(power) - mean_log_noise, polygamma(1, chi2_dof / 2), n_steps * dt, dof)


def band_weights(n_bins: int, cutoff: int, first_bin: int = 1) -> np.ndarray:
    """Weights a [K] with log Ŝ(0) = Σ_k a_k log S_k for the K one-sided bins 0 .. K−1 of a band.

    Least-squares fit of the P cosines cos(π n k/(K − 1)), n < P (the
    cepstral basis of the band), to bins ``first_bin`` .. K−1, evaluated at
    f = 0.  With ``first_bin = 0`` and half weights at both ends it is the
    cepstral filter of the first P coefficients; the default leaves out the
    f = 0 bin: it has half the degrees of freedom (a heavy lower tail of
    log χ²) and absorbs any constant offset of the flux, which is not part
    of its fluctuations.
    """
    k = np.arange(first_bin, n_bins)
    design = np.cos(np.pi * np.outer(k, np.arange(cutoff)) / (n_bins - 1))
    weights = np.zeros(n_bins)
    weights[first_bin:] = design @ np.linalg.solve(design.T @ design, np.ones(cutoff))
    return weights


def bandwidth_grid(spectra: Sequence[LogSpectrum], max_frequency: float | None = None,
                   min_bins: int = BINS_PER_COEFFICIENT * DEFAULT_CUTOFF, ratio: float = BANDWIDTH_RATIO) -> np.ndarray:
    """Bandwidths F* (decreasing) from ``max_frequency`` (default Nyquist) to ``min_bins`` bins of the longest run."""
    top = min(s.frequencies[-1] for s in spectra) if max_frequency is None else float(max_frequency)
    finest = min_bins / max(s.duration for s in spectra)
    if top <= finest:
        raise ValueError(f"max_frequency {top:g} leaves fewer than {min_bins} frequency bins; "
                         f"raise it above {finest:g} (1/time units) or run longer")
    count = int(np.floor(np.log(top / finest) / np.log(ratio) + 1e-9)) + 1
    return top / ratio ** np.arange(count)


def band_estimates(spectra: Sequence[LogSpectrum], bandwidths: np.ndarray, cutoff: int = DEFAULT_CUTOFF,
                   min_bins: int | None = None, lowest_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """log S(0) at each bandwidth [J] and their joint covariance [J, J].

    Spectra of several runs are combined at each bandwidth with inverse-variance
    weights; a run with fewer than ``min_bins`` bins below a bandwidth does not
    take part there.  With ``lowest_bins`` = m, one more estimate is appended
    (row J): the mean log-periodogram of bins 1 .. m, the finest resolution
    the runs offer.
    """
    min_bins = BINS_PER_COEFFICIENT * cutoff if min_bins is None else min_bins
    rows = []
    for spectrum in spectra:
        bins = [spectrum.bins_below(f) for f in bandwidths]
        runs_rows = [band_weights(k, cutoff) if k >= max(min_bins, cutoff + 2) else None for k in bins]
        if lowest_bins is not None:
            runs_rows.append(np.concatenate([[0.0], np.full(lowest_bins, 1.0 / lowest_bins)]))
        rows.append(runs_rows)
    estimate, covariance = _combined(spectra, rows)
    if not np.isfinite(estimate).all():
        raise ValueError(f"a bandwidth keeps fewer than {max(min_bins, cutoff + 2)} frequency bins in every run")
    return estimate, covariance


def _combined(spectra: Sequence[LogSpectrum], rows: list[list[np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Linear estimates Σ_k a_k log S_k (``rows[run][r]``: weights a, or None where the run takes no part),
    combined over runs with inverse-variance weights; their values [R] and joint covariance [R, R]."""
    n_rows = len(rows[0])
    variances = np.array([[np.inf if a is None else float(a * a @ s.variance[:len(a)]) for a in run]
                          for s, run in zip(spectra, rows)])                        # [runs, R]
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = (1.0 / variances) / (1.0 / variances).sum(axis=0)
    estimate = np.zeros(n_rows)
    covariance = np.zeros((n_rows, n_rows))
    for s, run, share in zip(spectra, rows, shares):
        for i, a in enumerate(run):
            if a is None:
                continue
            estimate[i] += share[i] * float(a @ s.log_power[:len(a)])
            scaled = a * s.variance[:len(a)]
            for j in range(i, n_rows):
                if run[j] is not None:
                    m = min(len(a), len(run[j]))
                    covariance[i, j] += share[i] * share[j] * float(scaled[:m] @ run[j][:m])
    return estimate, covariance + np.triu(covariance, 1).T


def _gls_constant(estimates: np.ndarray, covariance: np.ndarray, first: int) -> tuple[np.ndarray, float]:
    """Weights g [J] (zero before ``first``) of the generalised least-squares constant through estimates[first:],
    and its variance."""
    inverse_ones = np.linalg.solve(covariance[first:, first:], np.ones(len(estimates) - first))
    variance = 1.0 / inverse_ones.sum()
    weights = np.zeros(len(estimates))
    weights[first:] = variance * inverse_ones
    return weights, float(variance)


@dataclass
class PlateauAverage:
    """Akaike-weighted average over where the plateau starts (log domain).

    ``weights`` [J]: Akaike weight of "the plateau starts at bandwidth j";
    ``theta``, ``variance``: the average of log S(0) and its variance (the
    disagreement between the models included); ``linear`` [J]: θ as a
    linear combination of the estimates.
    """

    theta: float
    variance: float
    weights: np.ndarray
    linear: np.ndarray


def plateau_average(estimates: np.ndarray, covariance: np.ndarray, margin: int = PLATEAU_MARGIN) -> PlateauAverage:
    """Model j: estimates j, j+1, ... equal θ, the others are free; AIC_j = χ²_j + 2(j + 1).

    Each model's θ_j is estimated from its plateau less its first ``margin``
    bandwidths: the bias that grows continuously toward larger F* is largest
    at the plateau's edge, where the data cannot yet detect it.  The average
    θ = Σ w_j θ_j is a linear combination ḡ of the estimates; its variance is
    ḡᵀCḡ plus the spread of the θ_j beyond what their sampling noise explains
    (Σ w_j [(θ_j − θ)² − (g_j − ḡ)ᵀC(g_j − ḡ)], when positive): the
    disagreement between the plateau choices.
    """
    n_bands = len(estimates)
    aic, theta = np.empty(n_bands), np.empty(n_bands)
    linear = np.zeros((n_bands, n_bands))
    for j in range(n_bands):
        fit, _ = _gls_constant(estimates, covariance, j)
        residual = estimates[j:] - fit @ estimates
        aic[j] = float(residual @ np.linalg.solve(covariance[j:, j:], residual)) + 2.0 * (j + 1)
        linear[j] = _gls_constant(estimates, covariance, min(j + margin, n_bands - 1))[0]
        theta[j] = linear[j] @ estimates
    weights = np.exp(-0.5 * (aic - aic.min()))
    weights /= weights.sum()
    average = weights @ linear
    mean = float(average @ estimates)
    deviation = linear - average
    noise = np.einsum("ji,ik,jk->j", deviation, covariance, deviation)
    excess = max(0.0, float(weights @ ((theta - mean) ** 2 - noise)))
    return PlateauAverage(mean, float(average @ covariance @ average) + excess, weights, average)


def still_rising(estimates: np.ndarray, covariance: np.ndarray, plateau: PlateauAverage,
                 threshold: float = RISING_THRESHOLD) -> bool:
    """Do the finest resolutions lie above the plateau average by more than ``threshold`` σ?

    ``estimates`` [J + 1] are the bandwidth estimates followed by the mean of
    the lowest bins; checked: the generalised least-squares value over the
    FINEST_BANDS smallest bandwidths, and the lowest bins themselves (which
    see a peak only a few bins wide, below the finest bandwidth).
    """
    n_bands = len(estimates) - 1
    bands, band_covariance = estimates[:n_bands], covariance[:n_bands, :n_bands]
    average = np.concatenate([plateau.linear, [0.0]])
    fine = np.concatenate([_gls_constant(bands, band_covariance, max(n_bands - FINEST_BANDS, 0))[0], [0.0]])
    lowest = np.zeros(n_bands + 1)
    lowest[-1] = 1.0
    for probe in (fine, lowest):
        difference = probe - average
        sigma = float(np.sqrt(max(difference @ covariance @ difference, 1e-300)))
        if float(difference @ estimates) > threshold * sigma:
            return True
    return False


@dataclass
class BandwidthScan:
    """∫₀^∞⟨x(0)x(t)⟩dt from the bandwidth scan (units of x² × time, or κ when the flux was scaled).

    Attributes
    ----------
    value, error : float
        The plateau average and its standard deviation (the choice of F* included).
    converged : bool
        False when the weight sits on the smallest bandwidths (no plateau
        within the run's resolution): then only ``lower_bound`` is meaningful.
    lower_bound : float
        The larger of the 1σ lower ends of the average and of the
        finest-bandwidths estimate (for unconverged runs).
    bandwidths : ndarray [J]
        F*, 1/time units, decreasing.
    estimates, errors : ndarray [J]
        The integral at each bandwidth and its standard deviation.
    weights : ndarray [J]
        Akaike weight that the plateau starts at each bandwidth.
    cutoff : int
        P, cepstral coefficients kept at every bandwidth.
    resolution : float
        1/(longest run), 1/time units.
    spectra : list of LogSpectrum
        The debiased log-periodograms (for plots).
    """

    value: float
    error: float
    converged: bool
    lower_bound: float
    bandwidths: np.ndarray = field(repr=False)
    estimates: np.ndarray = field(repr=False)
    errors: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    log_estimates: np.ndarray = field(repr=False)
    covariance: np.ndarray = field(repr=False)
    cutoff: int = DEFAULT_CUTOFF
    resolution: float = 0.0
    spectra: list = field(default_factory=list, repr=False)

    @property
    def plateau_bandwidth(self) -> float:
        """The Akaike-weighted geometric mean of where the plateau starts (1/time units)."""
        return float(np.exp(self.weights @ np.log(self.bandwidths)))

    def summary(self, unit: str = "", frequency_scale: float = 1.0, frequency_unit: str = "") -> str:
        """One line: the estimate, or the unconverged lower bound with the advice to run longer."""
        f_star = f"{self.plateau_bandwidth * frequency_scale:.3g} {frequency_unit}".strip()
        if not self.converged:
            return (f"unconverged: κ ≥ {self.lower_bound:.4g} {unit} (no plateau down to the finest bandwidth "
                    f"F* = {self.bandwidths[-1] * frequency_scale:.3g} {frequency_unit} this run length resolves; "
                    "run longer, or add independent runs)").replace("  ", " ")
        return f"{self.value:.4g} ± {self.error:.2g} {unit} (plateau from F* ≈ {f_star}, P = {self.cutoff})"

    def plot_scan(self, ax, scale: float = 1.0, frequency_scale: float = 1.0, frequency_unit: str = "",
                  label: str = "") -> None:
        """κ(F*) with its error band, the plateau weights and the headline, on a matplotlib axis."""
        f = self.bandwidths * frequency_scale
        ax.fill_between(f, (self.estimates - self.errors) * scale, (self.estimates + self.errors) * scale,
                        color="C0", alpha=0.25, lw=0)
        ax.plot(f, self.estimates * scale, "o-", color="C0", ms=3, label=f"{label} estimate at F* (±1σ)".strip())
        if self.converged:
            ax.axhspan((self.value - self.error) * scale, (self.value + self.error) * scale, color="C3", alpha=0.2,
                       label=f"plateau average {self.value * scale:.3g} ± {self.error * scale:.2g}")
        else:
            ax.axhline(self.lower_bound * scale, color="C1", lw=2, ls="--",
                       label=f"unconverged: ≥ {self.lower_bound * scale:.3g} (run longer)")
        twin = ax.twinx()
        twin.bar(f, self.weights, width=f * 0.25, color="0.6", alpha=0.5)
        twin.set(ylim=(0, 4), yticks=[0, 0.5, 1], ylabel="plateau-start weight")
        ax.set(xscale="log", xlabel=f"bandwidth F* {('(' + frequency_unit + ')') if frequency_unit else ''}".strip())
        ax.legend(fontsize=8, loc="upper right")


def bandwidth_scan(series: np.ndarray | Sequence[np.ndarray], dt: float | Sequence[float], *,
                   coupled: Sequence[np.ndarray] | Sequence[Sequence[np.ndarray]] = (),
                   cutoff: int = DEFAULT_CUTOFF, max_frequency: float | None = None, min_bins: int | None = None,
                   ratio: float = BANDWIDTH_RATIO) -> BandwidthScan:
    """∫₀^∞⟨x(0)x(t)⟩dt of one or several independent runs of a stationary process, from the bandwidth scan.

    Parameters
    ----------
    series : array [n, ℓ] or list of arrays [n_r, ℓ_r]
        The flux of each run; its ℓ columns are independent samples
        (x, y, z; replicas).  Runs of equal length and dt are pooled into one
        periodogram; runs of other lengths are combined per bandwidth.
    dt : float or list of float
        Sampling interval of each run (the result is in x² × dt's unit).
    coupled : list of arrays [n, ℓ] (one run) or list of such lists (several runs)
        Other conserved fluxes to project out (multicomponent Green–Kubo).
    cutoff : int
        P, the cepstral coefficients kept at each bandwidth.
    max_frequency : float, optional
        Largest bandwidth of the scan (1/time units; default: Nyquist).
    min_bins : int, optional
        Smallest bandwidth keeps this many frequency bins of the longest run
        (default: 9 per coefficient; fewer make the finest estimates
        dominated by a few bins with the heavy lower tail of log χ²).
    ratio : float
        Ratio of successive bandwidths.
    """
    runs = [series] if isinstance(series, np.ndarray) else list(series)
    steps = [float(dt)] * len(runs) if np.isscalar(dt) else [float(d) for d in dt]
    if isinstance(series, np.ndarray):
        coupled_per_run = [list(coupled)]
    else:
        coupled_per_run = [list(c) for c in coupled] if len(coupled) else [[] for _ in runs]
    if not (len(runs) == len(steps) == len(coupled_per_run)):
        raise ValueError("give one dt and one list of coupled fluxes per run")
    if cutoff < 1:
        raise ValueError(f"cutoff P must be at least 1, got {cutoff}")
    min_bins = BINS_PER_COEFFICIENT * cutoff if min_bins is None else min_bins
    if any(d <= 0 for d in steps):
        raise ValueError(f"dt must be positive, got {steps}")
    spectra = []
    for d, group, coupled_group in _groups(runs, steps, coupled_per_run):
        pooled, pooled_coupled = _pooled(group, coupled_group)
        spectra.append(log_spectrum(pooled, d, pooled_coupled))
    bandwidths = bandwidth_grid(spectra, max_frequency, max(min_bins, cutoff + 2), ratio)
    extended, extended_covariance = band_estimates(spectra, bandwidths, cutoff, min_bins, LOWEST_BINS)
    log_estimates, covariance = extended[:-1], extended_covariance[:-1, :-1]
    plateau = plateau_average(log_estimates, covariance)
    converged = bool(not still_rising(extended, extended_covariance, plateau)
                     and plateau.weights[-FINEST_BANDS:].sum() < UNCONVERGED_WEIGHT)
    sigma = float(np.sqrt(plateau.variance))
    band_sigma = np.sqrt(np.diag(covariance))
    band_values = 0.5 * np.exp(log_estimates - 0.5 * band_sigma**2)
    value = 0.5 * np.exp(plateau.theta - 0.5 * plateau.variance)
    fine, fine_variance = _gls_constant(log_estimates, covariance, max(len(log_estimates) - FINEST_BANDS, 0))
    lower = 0.5 * np.exp(max(plateau.theta - sigma, fine @ log_estimates - np.sqrt(fine_variance)))
    return BandwidthScan(float(value), float(value * sigma), converged, float(lower), bandwidths, band_values,
                         band_values * band_sigma, plateau.weights, log_estimates, covariance, cutoff,
                         1.0 / max(s.duration for s in spectra), spectra)


def _groups(runs, steps, coupled_per_run):
    """Runs with the same (n, dt, number of coupled fluxes) pooled: yields (dt, [series], [[coupled]])."""
    keyed: dict[tuple, tuple[list, list]] = {}
    for x, d, c in zip(runs, steps, coupled_per_run):
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        key = (len(x), d, len(c))
        keyed.setdefault(key, ([], []))
        keyed[key][0].append(x)
        keyed[key][1].append([np.asarray(f, dtype=float).reshape(len(x), -1) for f in c])
    for (n, d, _), (group, coupled_group) in keyed.items():
        yield d, group, coupled_group


def _pooled(group: list[np.ndarray], coupled_group: list[list[np.ndarray]]) -> tuple[np.ndarray, list[np.ndarray]]:
    series = np.concatenate(group, axis=1)
    coupled = [np.concatenate([c[q] for c in coupled_group], axis=1) for q in range(len(coupled_group[0]))]
    return series, coupled
