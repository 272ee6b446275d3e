"""Thermal conductivity κ (W/mK) from heat-flux runs: Green–Kubo with the bandwidth scan.

κ = V/(k_B T²) ∫₀^∞ ⟨J(0)·J(t)⟩/3 dt with J the heat flux divided by the
volume; with atomflux's J (eV·Å/fs, not divided by V) the prefactor is
1/(V k_B T²).  Each run's flux is scaled by the square root of its own
prefactor, so runs at slightly different volumes or mean temperatures
combine into one estimate of κ (:mod:`atomflux.analysis.bandwidth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bandwidth import BINS_PER_COEFFICIENT, DEFAULT_CUTOFF, BandwidthScan, bandwidth_scan
from .flux_io import FluxRun, read_flux
from .greenkubo import BOLTZMANN_EV_PER_K, EV_PER_ANGSTROM_FS_KELVIN_IN_W_PER_MK, RunningIntegral, running_integral

#: runs whose mean temperatures differ by more than this fraction are not combined
TEMPERATURE_TOLERANCE = 0.05
THZ_PER_INVERSE_FS = 1000.0


@dataclass
class GreenKuboKappa:
    """κ from one or several heat-flux runs at one temperature (W/mK, one standard deviation).

    ``scan`` holds κ at every bandwidth F* (1/fs) and the plateau weights;
    ``converged`` is False when no plateau was found within the resolution
    of the runs — then report ``lower_bound``, not ``value``.
    """

    value: float
    error: float
    temperature: float
    volume: float
    multicomponent: bool
    scan: BandwidthScan = field(repr=False)
    running: RunningIntegral = field(repr=False)
    sources: list[str] = field(default_factory=list)
    duration: float = 0.0
    samples: int = 0
    provenance: list[Any] = field(default_factory=list, repr=False)

    @property
    def converged(self) -> bool:
        return self.scan.converged

    @property
    def lower_bound(self) -> float:
        return self.scan.lower_bound

    def summary(self) -> str:
        """One line: κ ± error with its plateau, or 'unconverged: κ ≥ ...'."""
        return (f"Green–Kubo κ at {self.temperature:.1f} K: "
                + self.scan.summary("W/mK", THZ_PER_INVERSE_FS, "THz")
                + f"; {len(self.sources)} run(s), {self.duration / 1000:.4g} ps, {self.samples} samples"
                + (", multicomponent" if self.multicomponent else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record: the headline, the whole scan (F* in THz) and the inputs."""
        scan = self.scan
        return {"kappa_W_per_mK": self.value if self.converged else None, "error_W_per_mK": self.error,
                "converged": self.converged, "lower_bound_W_per_mK": self.lower_bound,
                "temperature_K": self.temperature, "volume_A3": self.volume, "multicomponent": self.multicomponent,
                "cepstral_cutoff_P": scan.cutoff, "run_length_ps": self.duration / 1000, "samples": self.samples,
                "sources": self.sources,
                "scan": {"bandwidth_THz": (scan.bandwidths * THZ_PER_INVERSE_FS).tolist(),
                         "kappa_W_per_mK": scan.estimates.tolist(), "error_W_per_mK": scan.errors.tolist(),
                         "plateau_start_weight": scan.weights.tolist()}}

    def plot(self, path: str | Path) -> Path:
        """Power spectrum, κ against the bandwidth F* (the scan), and the running integral; a PNG."""
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
        for spectrum in self.scan.spectra:
            thz, power = _log_binned(spectrum.frequencies[1:] * THZ_PER_INVERSE_FS, 0.5 * np.exp(spectrum.log_power[1:]))
            ax1.loglog(thz, power, lw=0.8, alpha=0.8)
        ax1.axvline(self.scan.plateau_bandwidth * THZ_PER_INVERSE_FS, color="C3", ls="--", lw=1,
                    label="plateau start (weighted)")
        ax1.axvline(self.scan.bandwidths[-1] * THZ_PER_INVERSE_FS, color="0.3", ls=":", lw=1,
                    label="finest bandwidth (run length)")
        headline = self.value if self.converged else self.lower_bound
        ax1.axhline(headline, color="C3" if self.converged else "C1", lw=1,
                    label="κ = S(0)/2" if self.converged else "lower bound of κ")
        ax1.set(xlabel="frequency (THz)", ylabel="S(f)/2 in κ units (W/mK)",
                title="heat-flux power spectrum (log-binned)")
        ax1.legend(fontsize=8)
        self.scan.plot_scan(ax2, frequency_scale=THZ_PER_INVERSE_FS, frequency_unit="THz")
        ax2.set(ylabel="κ (W/mK)", title=f"κ against bandwidth F*, {self.temperature:.0f} K")
        shown = np.unique(np.geomspace(1, len(self.running.times) - 1, 2000).astype(int))
        ax3.plot(self.running.times[shown] / 1000.0, self.running.integral[shown], lw=0.8,
                 label="running integral (direct)")
        if self.converged:
            ax3.axhspan(self.value - self.error, self.value + self.error, color="C3", alpha=0.3,
                        label="bandwidth-scan κ ± 1σ")
        else:
            ax3.axhline(self.lower_bound, color="C1", lw=2, ls="--", label="unconverged: lower bound")
        ax3.set(xscale="log", xlabel="correlation time (ps)", ylabel="κ (W/mK)", title="running integral")
        ax3.legend(fontsize=8)
        return save_figure(fig, path)


def kappa_from_runs(runs: Sequence[FluxRun], multicomponent: bool | None = None, cutoff: int = DEFAULT_CUTOFF,
                    max_frequency: float | None = None) -> GreenKuboKappa:
    """κ from independent runs at one temperature, combined into one estimate.

    Parameters
    ----------
    runs
        Heat-flux runs (:func:`atomflux.analysis.flux_io.read_flux`).
    multicomponent
        Project out the mass fluxes of all species but one (default: when the
        runs have two or more species).
    cutoff
        P, cepstral coefficients kept at every bandwidth.
    max_frequency
        Largest bandwidth of the scan, 1/fs (default: the whole spectrum).
    """
    if not runs:
        raise ValueError("no flux runs given")
    temperatures = np.array([r.temperature for r in runs])
    if np.abs(temperatures - temperatures.mean()).max() > TEMPERATURE_TOLERANCE * temperatures.mean():
        listed = ", ".join(f"{Path(r.source).name}: {r.temperature:.1f} K" for r in runs)
        raise ValueError(f"runs at different temperatures ({listed}) are not combined; analyse them separately "
                         "(atomflux compare groups runs by temperature)")
    if multicomponent is None:
        multicomponent = all(r.mass_fluxes for r in runs)
    if multicomponent and not all(r.mass_fluxes for r in runs):
        raise ValueError("multicomponent analysis needs the species velocities of every run "
                         "(LAMMPS heat/flux files have none: analyse them with multicomponent=False)")
    scaled, steps, coupled = [], [], []
    for r in runs:
        prefactor = EV_PER_ANGSTROM_FS_KELVIN_IN_W_PER_MK / (r.volume * BOLTZMANN_EV_PER_K * r.temperature**2)
        scaled.append(r.heat_flux * np.sqrt(prefactor))
        steps.append(r.dt)
        coupled.append(r.mass_fluxes if multicomponent else [])
    _check_bandwidth(runs, cutoff, max_frequency)
    scan = bandwidth_scan(scaled, steps, coupled=coupled, cutoff=cutoff, max_frequency=max_frequency)
    if not (np.isfinite(scan.value) and scan.value > 0 and np.isfinite(scan.error)):
        raise ValueError(f"Green–Kubo κ came out as {scan.value} ± {scan.error} W/mK, which is not a conductivity; "
                         "check the flux file")
    return GreenKuboKappa(scan.value, scan.error, float(temperatures.mean()), float(np.mean([r.volume for r in runs])),
                          bool(multicomponent), scan, _mean_running_integral(scaled, steps),
                          [r.source for r in runs], float(sum(r.duration for r in runs)),
                          int(sum(r.heat_flux.size for r in runs)), [r.provenance for r in runs])


def _check_bandwidth(runs: Sequence[FluxRun], cutoff: int, max_frequency: float | None) -> None:
    """Refuse a scan these runs cannot make (THz in the messages: the CLI's unit)."""
    nyquist = min(0.5 / r.dt for r in runs)
    finest = BINS_PER_COEFFICIENT * cutoff / max(r.duration for r in runs)
    top = nyquist if max_frequency is None else max_frequency
    if max_frequency is not None and max_frequency > nyquist:
        raise ValueError(f"max frequency {max_frequency * THZ_PER_INVERSE_FS:.4g} THz is above the Nyquist frequency "
                         f"{nyquist * THZ_PER_INVERSE_FS:.4g} THz of the flux sampling; give at most that")
    if top <= finest:
        raise ValueError(f"the scan needs F* above {finest * THZ_PER_INVERSE_FS:.4g} THz "
                         f"({BINS_PER_COEFFICIENT} frequency bins per cepstral coefficient, P = {cutoff}, "
                         f"run length {max(r.duration for r in runs) / 1000:.4g} ps); "
                         + ("raise --max-frequency above it, lower --cutoff, or run longer" if max_frequency
                            else "lower --cutoff or run longer"))


def kappa_from_files(paths: Sequence[str | Path] | str | Path, multicomponent: bool | None = None,
                     cutoff: int = DEFAULT_CUTOFF, max_frequency: float | None = None,
                     **lammps_options: Any) -> GreenKuboKappa:
    """κ from flux files (``flux.npz`` or LAMMPS heat/flux output) of independent runs at one temperature."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return kappa_from_runs([read_flux(p, **lammps_options) for p in paths], multicomponent, cutoff, max_frequency)


def heat_conductivity(heat_flux: np.ndarray, dt: float, volume: float, temperature: float, *,
                      coupled: Sequence[np.ndarray] = (), cutoff: int = DEFAULT_CUTOFF,
                      max_frequency: float | None = None) -> GreenKuboKappa:
    """κ of one run from its heat flux [n, 3] (eV·Å/fs, not divided by V), dt (fs), volume (Å³), temperature (K).

    ``coupled``: other conserved fluxes [n, 3] to project out (multicomponent).
    """
    run = FluxRun(np.asarray(heat_flux, dtype=float).reshape(len(heat_flux), -1), float(dt), float(volume),
                  float(temperature), "array", mass_fluxes=[np.asarray(c, float).reshape(len(c), -1) for c in coupled])
    if volume <= 0 or temperature <= 0 or dt <= 0:
        raise ValueError("dt, volume and temperature must be positive")
    return kappa_from_runs([run], bool(len(coupled)), cutoff, max_frequency)


def _log_binned(frequencies: np.ndarray, power: np.ndarray, bins: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Mean power in logarithmically spaced frequency bins (for plots: a readable spectrum, fast to draw)."""
    edges = np.geomspace(frequencies[0], frequencies[-1] * (1 + 1e-9), bins + 1)
    index = np.digitize(frequencies, edges) - 1
    counts = np.bincount(index, minlength=bins)
    used = counts > 0
    return (np.bincount(index, frequencies, bins)[used] / counts[used],
            np.bincount(index, power, bins)[used] / counts[used])


def _mean_running_integral(series: list[np.ndarray], steps: list[float]) -> RunningIntegral:
    """Running integral of the autocorrelation averaged over all samples of all runs (κ units)."""
    max_lag = min(len(x) for x in series) // 2
    parts = [running_integral(x, d, max_lag) for x, d in zip(series, steps)]
    weights = np.array([x.shape[1] for x in series], float)
    weights /= weights.sum()
    first = parts[0]
    if len({d for d in steps}) > 1:  # different sampling: show the first run only
        return first
    return RunningIntegral(first.times, sum(w * p.correlation for w, p in zip(weights, parts)),
                           sum(w * p.integral for w, p in zip(weights, parts)))
