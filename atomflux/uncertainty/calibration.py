"""Calibration statistics of predicted uncertainties against actual errors.

All functions take errors (prediction - reference) and predicted standard
deviations of the same shape, in any one unit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import erfinv


def _check(errors: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e, s = np.ravel(errors).astype(float), np.ravel(sigmas).astype(float)
    if e.shape != s.shape:
        raise ValueError(f"errors {e.shape} and sigmas {s.shape} differ in shape")
    if len(e) == 0:
        raise ValueError("no data to calibrate on")
    return e, np.maximum(s, 1e-300)


def gaussian_nll(errors: np.ndarray, sigmas: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood ½[log(2πσ²) + e²/σ²] (nats)."""
    e, s = _check(errors, sigmas)
    return float(np.mean(0.5 * (np.log(2 * np.pi * s**2) + (e / s) ** 2)))


def coverage(errors: np.ndarray, sigmas: np.ndarray, k: float = 1.0) -> float:
    """Fraction of errors within ±kσ (0.683 for k = 1, 0.954 for k = 2 if calibrated)."""
    e, s = _check(errors, sigmas)
    return float(np.mean(np.abs(e) <= k * s))


def reliability_curve(errors: np.ndarray, sigmas: np.ndarray, n_levels: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Expected and observed coverage of central Gaussian intervals, arrays [n_levels].

    For each probability p, the fraction of errors inside ±z_p σ with
    z_p = √2 erf⁻¹(p); a calibrated model follows the diagonal.
    """
    e, s = _check(errors, sigmas)
    z = np.abs(e / s)
    levels = np.linspace(0.0, 1.0, n_levels)
    observed = np.array([np.mean(z <= np.sqrt(2) * erfinv(min(p, 1 - 1e-12))) for p in levels])
    return levels, observed


def miscalibration_area(errors: np.ndarray, sigmas: np.ndarray, n_levels: int = 101) -> float:
    """Area between the observed and ideal coverage of central Gaussian intervals.

    0 means perfectly calibrated; 0.5 is the worst possible.
    """
    levels, observed = reliability_curve(errors, sigmas, n_levels)
    return float(np.trapezoid(np.abs(observed - levels), levels))


def optimal_scale(errors: np.ndarray, sigmas: np.ndarray) -> float:
    """Factor α minimising the NLL of α·σ: α² = mean((e/σ)²)."""
    e, s = _check(errors, sigmas)
    return float(np.sqrt(np.mean((e / s) ** 2)))


#: confidence level of :func:`factor_interval`, and the width (upper/lower) above which a fit warns
INTERVAL_LEVEL, WIDE_INTERVAL = 0.9, 1.5


def factor_interval(count: int, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """How far a calibration factor fitted on ``count`` independent errors may be off, as factors (low, high).

    For Gaussian z = e/(ασ), the NLL-optimal α̂² = mean(z²) over n independent
    values satisfies n α̂²/α² ~ χ²_n, so the true α lies in α̂·[low, high] with
    probability ``level``: low = √(n/χ²_n,(1+level)/2), high = √(n/χ²_n,(1−level)/2).
    Frames of one MD run share their energy error and count as one.
    """
    from scipy.stats import chi2

    if count < 1:
        raise ValueError("a calibration factor needs at least one error")
    return (float(np.sqrt(count / chi2.ppf(0.5 + level / 2, count))),
            float(np.sqrt(count / chi2.ppf(0.5 - level / 2, count))))


def warn_if_imprecise(quantity: str, count: int) -> tuple[float, float]:
    """:func:`factor_interval` of ``count`` values, with a one-line warning when it is wider than :data:`WIDE_INTERVAL`."""
    low, high = factor_interval(count)
    if high / low > WIDE_INTERVAL:
        warnings.warn(f"the {quantity} calibration factor rests on {count} held-out structures: the calibrated σ may be "
                      f"off by ×{low:.2f}–{high:.2f} ({100 * INTERVAL_LEVEL:.0f} %; frames of one MD run count as one); "
                      "give more independent held-out structures", RuntimeWarning, stacklevel=3)
    return low, high


def scale_and_floor(errors: np.ndarray, sigmas: np.ndarray) -> tuple[float, float]:
    """Factor α and noise floor τ of the predictive σ' = √(α²σ² + τ²) that minimise the Gaussian NLL.

    σ is the model's (epistemic) uncertainty of a prediction; the error of a
    prediction against a reference also contains the part no last-layer
    weight can explain (model misspecification, noise of the reference), the
    observation-noise term of Bayesian linear regression's predictive
    variance.  Fitting both on held-out data lets small σ (where the model
    is sure of itself but still wrong by its typical residual) grow to the
    noise level without inflating every other σ; with an informative σ the fit
    returns τ ≈ 0 and α = :func:`optimal_scale`.  Units: α dimensionless, τ
    those of the errors.
    """
    from scipy.optimize import minimize

    e, s = _check(errors, sigmas)
    alpha2 = optimal_scale(e, s) ** 2
    unit = float(np.mean(e**2))

    def nll(log_params: np.ndarray) -> float:
        variance = np.exp(log_params[0]) * alpha2 * s**2 + np.exp(log_params[1]) * unit
        return float(np.mean(np.log(variance) + e**2 / variance))

    best = min((minimize(nll, [0.0, start], method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
                for start in (-8.0, -2.0)), key=lambda r: r.fun)
    alpha_only = nll(np.array([0.0, -60.0]))
    if best.fun >= alpha_only:  # no floor beats the NLL-optimal α alone
        return float(np.sqrt(alpha2)), 0.0
    return float(np.sqrt(np.exp(best.x[0]) * alpha2)), float(np.sqrt(np.exp(best.x[1]) * unit))


def added_term_coefficient(errors: np.ndarray, sigmas: np.ndarray, terms: np.ndarray) -> float:
    """Coefficient c ≥ 0 of the predictive σ' = √(σ² + c² t²) that minimises the Gaussian NLL of ``errors``.

    σ is an already calibrated uncertainty, t a second, independent source of
    error of the same unit (e.g. an atom's energy σ over the cutoff length for
    its force components); 0 when the term does not improve the NLL.
    """
    from scipy.optimize import minimize_scalar

    e, s = _check(errors, sigmas)
    t = np.ravel(terms).astype(float)
    if t.shape != e.shape:
        raise ValueError(f"errors {e.shape} and terms {t.shape} differ in shape")

    def nll(coefficient: float) -> float:
        variance = s**2 + (coefficient * t) ** 2
        return float(np.mean(np.log(variance) + e**2 / variance))

    scale = float(np.sqrt(np.mean(e**2)) / max(float(np.sqrt(np.mean(t**2))), 1e-300))
    best = minimize_scalar(lambda log_c: nll(np.exp(log_c) * scale), bounds=(-12.0, 6.0), method="bounded")
    return float(np.exp(best.x) * scale) if best.fun < nll(0.0) else 0.0


@dataclass
class CalibrationReport:
    """Calibration of one quantity (energies per atom, force components ...)."""

    quantity: str
    unit: str
    count: int
    rmse: float
    mean_sigma: float
    nll: float
    miscalibration_area: float
    coverage_1sigma: float
    coverage_2sigma: float

    @classmethod
    def from_errors(cls, quantity: str, unit: str, errors: np.ndarray, sigmas: np.ndarray) -> "CalibrationReport":
        e, s = _check(errors, sigmas)
        return cls(quantity, unit, len(e), float(np.sqrt(np.mean(e**2))), float(np.mean(s)), gaussian_nll(e, s),
                   miscalibration_area(e, s), coverage(e, s, 1.0), coverage(e, s, 2.0))

    def line(self) -> str:
        return (f"  {self.quantity:10s} n={self.count:6d}  RMSE {self.rmse:.4g} {self.unit}  mean σ {self.mean_sigma:.4g} {self.unit}"
                f"  NLL {self.nll:8.3f}  miscal. area {self.miscalibration_area:.3f}"
                f"  coverage 1σ {100 * self.coverage_1sigma:5.1f} % (68.3)  2σ {100 * self.coverage_2sigma:5.1f} % (95.4)")


#: |z| below which a category counts as honest, and the fraction of values that must be below it
HONEST_Z, HONEST_FRACTION = 3.0, 0.9


@dataclass
class ZScoreStats:
    """How far errors fall outside the predicted σ: one category of structures, one quantity.

    ``within_3sigma`` ≥ 0.9 is the stress-test bound (:data:`HONEST_FRACTION`);
    a Gaussian gives 0.683 / 0.954 / 0.997 within 1 / 2 / 3 σ.
    """

    category: str
    quantity: str
    unit: str
    count: int
    rmse: float
    mean_sigma: float
    within_1sigma: float
    within_2sigma: float
    within_3sigma: float
    median_abs_z: float
    max_abs_z: float

    @classmethod
    def from_errors(cls, category: str, quantity: str, unit: str, errors: np.ndarray,
                    sigmas: np.ndarray) -> "ZScoreStats":
        e, s = _check(errors, sigmas)
        z = np.abs(e / s)
        return cls(category, quantity, unit, len(e), float(np.sqrt(np.mean(e**2))), float(np.mean(s)),
                   float(np.mean(z <= 1)), float(np.mean(z <= 2)), float(np.mean(z < HONEST_Z)),
                   float(np.median(z)), float(z.max()))

    @property
    def honest(self) -> bool:
        return self.within_3sigma >= HONEST_FRACTION

    def line(self) -> str:
        verdict = "ok" if self.honest else "OVERCONFIDENT"
        return (f"  {self.category:14s} {self.quantity:8s} n={self.count:5d}  RMSE {self.rmse:9.4g}  mean σ {self.mean_sigma:9.4g}"
                f" {self.unit:8s} |z|<1 {100 * self.within_1sigma:5.1f} %  <2 {100 * self.within_2sigma:5.1f} %"
                f"  <3 {100 * self.within_3sigma:5.1f} %  median |z| {self.median_abs_z:6.2f}  max {self.max_abs_z:7.2f}  {verdict}")


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str, title: str = "") -> str:
    """Observed vs expected coverage of central intervals, one line per quantity; returns the PNG path.

    ``curves`` maps a label to ``(errors, sigmas)``.
    """
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], "k-", lw=0.8, label="calibrated")
    for label, (err, sig) in curves.items():
        levels, observed = reliability_curve(err, sig)
        ax.plot(levels, observed, lw=1.5, label=f"{label} (area {miscalibration_area(err, sig):.3f})")
    ax.fill_between([0, 1], [0, 1], [1, 1], color="tab:green", alpha=0.06)
    ax.text(0.04, 0.9, "under-confident", fontsize=8, color="tab:green")
    ax.text(0.55, 0.08, "over-confident", fontsize=8, color="tab:red")
    ax.set(xlabel="expected coverage of central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.12))
    return str(save_figure(fig, path))


def calibration_plots(errors: np.ndarray, sigmas: np.ndarray, path_prefix: str, label: str, unit: str) -> list[str]:
    """Error vs predicted σ, and the z-score histogram against N(0, 1); returns the PNG paths."""
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    e, s = _check(errors, sigmas)
    paths = []
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.loglog(s, np.abs(e), ".", ms=3, alpha=0.5)
    grid = np.geomspace(s.min(), s.max(), 50)
    for k, style in ((1, "k-"), (2, "k--")):
        ax.loglog(grid, k * grid, style, lw=0.8, label=f"|error| = {k}σ")
    ax.set(xlabel=f"predicted σ ({unit})", ylabel=f"|error| ({unit})", title=label)
    ax.legend()
    paths.append(str(save_figure(fig, f"{path_prefix}-error-vs-sigma.png")))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    z = e / s
    ax.hist(np.clip(z, -6, 6), bins=60, density=True, alpha=0.7, label="error / σ")
    x = np.linspace(-6, 6, 200)
    ax.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), "k-", label="N(0, 1)")
    ax.set(xlabel="z = error / σ", ylabel="density", title=label)
    ax.legend()
    paths.append(str(save_figure(fig, f"{path_prefix}-zscores.png")))
    return paths
