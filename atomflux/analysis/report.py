"""Reports: one MD run (`atomflux transport`) and lattice vs MD thermal conductivity (`atomflux compare`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .greenkubo import GreenKuboKappa, kappa_from_flux_file


def md_kappa_points(flux_files: Sequence[str | Path], max_frequency: float | None = None,
                    multicomponent: bool | None = None) -> list[GreenKuboKappa]:
    """Cepstral Green–Kubo κ of each ``flux.npz`` (sorted by temperature)."""
    results = [kappa_from_flux_file(f, multicomponent=multicomponent, max_frequency=max_frequency) for f in flux_files]
    return sorted(results, key=lambda r: r.temperature)


def lattice_kappa_at(lattice, temperature: float) -> tuple[float, float | None]:
    """Isotropic lattice κ (W/mK) and its std at ``temperature`` (K).

    Classical statistics: κ ∝ 1/T exactly (scaled from the nearest computed T);
    quantum: interpolation of log κ in log T (clamped to the computed range).
    """
    iso, iso_std = lattice.isotropic()
    temps = np.asarray(lattice.temperatures, float)
    if lattice.statistics == "classical":
        k = int(np.argmin(np.abs(temps - temperature)))
        factor = temps[k] / temperature
        return float(iso[k] * factor), None if iso_std is None else float(iso_std[k] * factor)
    order = np.argsort(temps)
    logt = np.log(temps[order])
    value = float(np.exp(np.interp(np.log(temperature), logt, np.log(iso[order]))))
    std = None if iso_std is None else float(np.interp(np.log(temperature), logt, iso_std[order]))
    return value, std


def compare_report(lattice_json: str | Path, flux_files: Sequence[str | Path], output: str | Path,
                   max_frequency: float | None = None, multicomponent: bool | None = None) -> Path:
    """κ_lattice(T) with its model-uncertainty band beside κ_GK(T) with its statistical error.

    Writes ``comparison.md`` and ``comparison.png`` into ``output``; returns the markdown path.
    """
    from ..lattice.kappa import KappaResult
    from ..plotting import pyplot, save_figure

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    lattice = KappaResult.from_json(lattice_json)
    iso, iso_std = lattice.isotropic()
    md = md_kappa_points(flux_files, max_frequency, multicomponent)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    all_t = np.concatenate([lattice.temperatures, [r.temperature for r in md]])
    grid = np.linspace(all_t.min(), all_t.max(), 100) if lattice.statistics == "classical" else lattice.temperatures
    curve = np.array([lattice_kappa_at(lattice, t) for t in grid], dtype=object)
    mean = np.array([c[0] for c in curve], float)
    ax.plot(grid, mean, "-", color="C0", label=f"lattice ({lattice.method.upper()}, {lattice.statistics} statistics)")
    ax.plot(lattice.temperatures, iso, "o", color="C0")
    if iso_std is not None:
        std = np.array([c[1] for c in curve], float)
        ax.fill_between(grid, mean - std, mean + std, color="C0", alpha=0.25, label="lattice: model uncertainty (±1σ)")
    ax.errorbar([r.temperature for r in md], [r.value for r in md], yerr=[r.error for r in md], fmt="s",
                color="C3", capsize=4, label="MD Green–Kubo (cepstral, ±1σ statistical)")
    ax.set(xlabel="temperature (K)", ylabel="κ (W/mK)", title="thermal conductivity: lattice vs MD")
    ax.legend()
    save_figure(fig, out / "comparison.png")
    lines = ["# Thermal conductivity: lattice dynamics vs molecular dynamics", "",
             f"Lattice: phono3py {lattice.method.upper()}, {lattice.statistics} statistics, supercell "
             f"{lattice.supercell}, mesh {lattice.mesh}; error = std over model ensemble members.",
             "MD: equilibrium Green–Kubo of the heat flux, cepstral analysis (AIC cutoff)"
             + (", multicomponent (mass fluxes projected out)" if md and md[0].multicomponent else "")
             + "; error = statistical (one standard deviation).", "",
             "Lattice values are taken at each MD run's mean temperature"
             + (" (classical κ ∝ 1/T)." if lattice.statistics == "classical" else " (log-log interpolation)."), "",
             "| MD run: mean T (K) | κ MD, Green–Kubo (W/mK) | κ lattice at that T (W/mK) |", "|---|---|---|"]
    for r in md:
        value, std = lattice_kappa_at(lattice, r.temperature)
        lines.append(f"| {r.temperature:.1f} | {r.value:.3g} ± {r.error:.2g} | {value:.3g}"
                     + (f" ± {std:.2g}" if std is not None else "") + " |")
    if lattice.statistics == "quantum":
        lines += ["", "Note: classical MD should be compared with `--statistics classical` lattice results."]
    lines += ["", "![comparison](comparison.png)", ""]
    path = out / "comparison.md"
    path.write_text("\n".join(lines))
    (out / "comparison.json").write_text(json.dumps({
        "lattice": {"temperatures": lattice.temperatures.tolist(), "kappa": iso.tolist(),
                    "std": None if iso_std is None else iso_std.tolist()},
        "md": [{"temperature": r.temperature, "kappa": r.value, "error": r.error} for r in md]}, indent=2))
    return path
