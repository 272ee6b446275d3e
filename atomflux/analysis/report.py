"""``atomflux compare``: Green–Kubo κ (with its bandwidth scan) beside lattice RTA/LBTE κ at each MD temperature.

The report says what each method leaves out, so that a disagreement reads
as physics rather than as two numbers: the lattice side is three-phonon
scattering of harmonic + cubic force constants at one lattice constant
(with the statistics it was run with); classical MD includes all orders of
anharmonicity at its own volume but has classical statistics, a finite
cell and a finite run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bandwidth import DEFAULT_CUTOFF
from .conductivity import TEMPERATURE_TOLERANCE, THZ_PER_INVERSE_FS, GreenKuboKappa, kappa_from_runs
from .flux_io import FluxRun, file_record, read_flux

#: relative lattice-constant difference above which the report flags a lattice result computed at another volume
LATTICE_CONSTANT_TOLERANCE = 0.002


def group_by_temperature(runs: Sequence[FluxRun], tolerance: float = TEMPERATURE_TOLERANCE) -> list[list[FluxRun]]:
    """Runs sorted by mean temperature, grouped while within ``tolerance`` (relative) of the group's first run."""
    groups: list[list[FluxRun]] = []
    for run in sorted(runs, key=lambda r: r.temperature):
        if groups and run.temperature <= groups[-1][0].temperature * (1 + tolerance):
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def md_kappa_points(flux_files: Sequence[str | Path], max_frequency: float | None = None,
                    multicomponent: bool | None = None, cutoff: int = DEFAULT_CUTOFF,
                    **lammps_options: Any) -> list[GreenKuboKappa]:
    """Green–Kubo κ per temperature (runs at one temperature combined), sorted by temperature."""
    runs = [read_flux(f, **lammps_options) for f in flux_files]
    return [kappa_from_runs(group, multicomponent, cutoff, max_frequency) for group in group_by_temperature(runs)]


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


def lattice_volume_per_atom(lattice) -> float | None:
    """Å³/atom of the cell a lattice result was computed for, when the result records its cell; else None."""
    recorded = getattr(lattice, "volume_per_atom", None)
    if recorded:
        return float(recorded)
    cell = getattr(lattice, "cell", None)
    count = getattr(lattice, "n_atoms", None)
    numbers = getattr(lattice, "numbers", None)
    if count is None and numbers is not None:
        count = len(numbers)
    if cell is None or not count:
        return None
    return float(abs(np.linalg.det(np.asarray(cell, float)))) / int(count)


@dataclass
class _Lattice:
    label: str
    result: Any
    volume_per_atom: float | None


def _load_lattice(paths: Sequence[str | Path]) -> list[_Lattice]:
    from ..lattice.kappa import KappaResult

    loaded = []
    for path in paths:
        result = _read_lattice_result(Path(path), KappaResult)
        loaded.append(_Lattice(f"{result.method.upper()} ({result.statistics})", result,
                               lattice_volume_per_atom(result)))
    return loaded


def _read_lattice_result(path: Path, result_type):
    """A ``kappa.json`` of ``atomflux kappa``; ValueError naming the file when it is anything else."""
    advice = "--lattice takes kappa.json from `atomflux kappa` (heat-flux files go to --md)"
    if not path.is_file():
        raise FileNotFoundError(f"no lattice result {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path} is not a JSON file; {advice}") from None
    required = {"temperatures", "kappa", "method", "statistics"}
    if not isinstance(data, dict) or not required <= set(data):
        found = sorted(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a lattice κ result (keys {found}); {advice}")
    try:
        return result_type.from_json(path)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a lattice κ result of this atomflux version ({err}); {advice}") from None


def _lattice_constant_lines(lattices: list[_Lattice], md: list[GreenKuboKappa], md_atoms: dict[float, int | None],
                            ) -> list[str]:
    lines = []
    for lat in lattices:
        if lat.volume_per_atom is None:
            lines.append(f"- {lat.label}: the lattice result does not record its cell, so whether it was computed "
                         "at the MD's lattice constant cannot be checked.")
            continue
        for k in md:
            atoms = md_atoms.get(k.temperature)
            if not atoms:
                lines.append(f"- {lat.label} vs MD at {k.temperature:.1f} K: the MD run does not record its number "
                             "of atoms (pass --atoms) — lattice constants not compared.")
                continue
            ratio = (k.volume / atoms / lat.volume_per_atom) ** (1 / 3) - 1
            verdict = ("same lattice constant" if abs(ratio) <= LATTICE_CONSTANT_TOLERANCE else
                       "**different lattice constant: the two sides describe different crystals** (thermal "
                       "expansion is in the MD, not in the lattice result)")
            lines.append(f"- {lat.label} vs MD at {k.temperature:.1f} K: MD lattice constant "
                         f"{100 * ratio:+.2f} % relative to the lattice result's cell — {verdict}.")
    return lines


def _method_notes(lattices: list[_Lattice], md: list[GreenKuboKappa]) -> list[str]:
    statistics = {lat.result.statistics for lat in lattices}
    lines = ["## What each method leaves out", "",
             "- **Lattice (phono3py)**: three-phonon scattering only — four-phonon and higher processes are "
             "missing, which overestimates κ in strongly anharmonic or hot crystals (LJ argon: Feng & Ruan, "
             "PRB 93, 045202 (2016)); harmonic + cubic force constants at one fixed lattice constant (no thermal "
             "expansion unless the structure was expanded, no temperature renormalisation of the harmonic force "
             "constants); finite q-mesh and supercell. RTA ignores the repopulation by normal processes that "
             "LBTE solves for (LBTE ≥ RTA).",
             "- **Statistics**: " + ("classical occupations on the lattice side, the same as classical MD."
                                     if statistics == {"classical"} else
                                     "the lattice results use " + ", ".join(sorted(statistics)) + " statistics; "
                                     "classical MD must be compared with `atomflux kappa --statistics classical` "
                                     "(quantum occupations differ below the Debye temperature)."),
             "- **MD (Green–Kubo)**: all orders of anharmonicity and thermal expansion at the MD's volume, but "
             "classical statistics (no zero-point motion), a finite cell (phonons longer than the cell are absent"
             + "".join(f"; {k.temperature:.0f} K: cell edge ≈ {k.volume ** (1 / 3):.1f} Å" for k in md)
             + ") and a finite run (frequency resolution 1/T"
             + "".join(f"; {k.temperature:.0f} K: {k.scan.resolution * THZ_PER_INVERSE_FS * 1000:.3g} GHz"
                       for k in md)
             + "): κ is trusted only where the bandwidth scan shows a plateau.", ""]
    return lines


def compare_report(lattice_json: str | Path | Sequence[str | Path], flux_files: Sequence[str | Path],
                   output: str | Path, max_frequency: float | None = None, multicomponent: bool | None = None,
                   cutoff: int = DEFAULT_CUTOFF, md_atoms: int | None = None, **lammps_options: Any) -> Path:
    """Markdown + PNG report: GK κ (with its bandwidth scan), and each lattice result, at each MD temperature.

    Parameters
    ----------
    lattice_json
        One or several ``kappa.json`` (e.g. RTA and LBTE) from ``atomflux kappa``.
    flux_files
        Heat-flux files (``flux.npz`` or LAMMPS heat/flux output); runs at the
        same temperature are combined into one estimate.
    output
        Folder for ``comparison.md``, ``.png``, ``.json`` (``comparison-2.*`` ... when the folder holds a
        comparison of other inputs).
    max_frequency
        Largest bandwidth of the scan, 1/fs (default: the whole spectrum).
    md_atoms
        Atoms in the MD cell (default: read from the flux files when recorded),
        to compare the MD lattice constant with the lattice result's.

    Returns
    -------
    Path of ``comparison.md``.
    """
    from ..plotting import pyplot, save_figure
    from ..records import claim_result

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    lattice_paths = [lattice_json] if isinstance(lattice_json, (str, Path)) else list(lattice_json)
    inputs = {"lattice": [file_record(p) for p in lattice_paths], "md": [file_record(p) for p in flux_files],
              "max_frequency": max_frequency, "multicomponent": multicomponent, "cutoff": cutoff, "md_atoms": md_atoms,
              **{k: v for k, v in lammps_options.items() if v is not None}}
    stem = claim_result(out, "comparison", inputs)
    lattices = _load_lattice(lattice_paths)
    runs = [read_flux(f, **lammps_options) for f in flux_files]
    groups = group_by_temperature(runs)
    md = [kappa_from_runs(group, multicomponent, cutoff, max_frequency) for group in groups]
    atoms_at = {k.temperature: md_atoms or next((r.n_atoms for r in group if r.n_atoms), None)
                for k, group in zip(md, groups)}

    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(md), figsize=(5.5 * (1 + len(md)), 4.5), squeeze=False)
    ax = axes[0, 0]
    md_t = np.array([k.temperature for k in md])
    for n, lat in enumerate(lattices):
        temps = np.asarray(lat.result.temperatures, float)
        lo, hi = min(temps.min(), md_t.min()), max(temps.max(), md_t.max())
        grid = np.linspace(lo, hi, 100) if lat.result.statistics == "classical" else np.sort(temps)
        curve = np.array([lattice_kappa_at(lat.result, t)[0] for t in grid])
        ax.plot(grid, curve, "-", color=f"C{n}", label=f"lattice {lat.label}")
        ax.plot(temps, lat.result.isotropic()[0], "o", color=f"C{n}")
    for k in md:
        if k.converged:
            ax.errorbar(k.temperature, k.value, yerr=k.error, fmt="s", color="k", capsize=4)
        else:
            ax.plot(k.temperature, k.lower_bound, "^", color="C3", ms=9)
    ax.plot([], [], "ks", label="MD Green–Kubo (±1σ, plateau average)")
    ax.plot([], [], "^", color="C3", label="MD unconverged: lower bound")
    ax.set(xlabel="temperature (K)", ylabel="κ (W/mK)", title="thermal conductivity: lattice vs MD")
    ax.legend(fontsize=8)
    for k, axis in zip(md, axes[0, 1:]):
        k.scan.plot_scan(axis, frequency_scale=THZ_PER_INVERSE_FS, frequency_unit="THz", label="GK")
        for n, lat in enumerate(lattices):
            axis.axhline(lattice_kappa_at(lat.result, k.temperature)[0], color=f"C{n}", ls="--", lw=1,
                         label=f"lattice {lat.label}")
        axis.set(ylabel="κ (W/mK)", title=f"Green–Kubo bandwidth scan, {k.temperature:.1f} K")
        axis.legend(fontsize=7, loc="lower left")
    save_figure(fig, out / f"{stem}.png")

    header = "| MD mean T (K) | Green–Kubo κ (W/mK) | plateau from F* (THz) | MD run | " + \
        " | ".join(f"lattice {lat.label}" for lat in lattices) + " |"
    lines = ["# Thermal conductivity: lattice dynamics vs molecular dynamics", "",
             "Green–Kubo: cepstral estimates of the heat-flux spectrum at f → 0 over a scan of bandwidths F*, "
             "averaged with Akaike weights over where the plateau starts; the error includes that choice. "
             "*Unconverged* means no plateau within the run's frequency resolution: only a lower bound is shown.",
             "Lattice values are taken at each MD temperature (classical: κ ∝ 1/T; quantum: log-log "
             "interpolation); ± is the model-ensemble spread when the lattice result has one.", "",
             header, "|" + "---|" * (4 + len(lattices))]
    records = []
    for k in md:
        gk = f"{k.value:.3g} ± {k.error:.2g}" if k.converged else f"≥ {k.lower_bound:.3g} (unconverged: run longer)"
        run = f"{len(k.sources)} run(s), {k.duration / 1000:.4g} ps"
        cells = []
        for lat in lattices:
            value, std = lattice_kappa_at(lat.result, k.temperature)
            ratio = f" ({value / k.value:.2g}× GK)" if k.converged else ""
            cells.append(f"{value:.3g}" + (f" ± {std:.2g}" if std is not None else "") + ratio)
        lines.append(f"| {k.temperature:.1f} | {gk} | {k.scan.plateau_bandwidth * THZ_PER_INVERSE_FS:.3g} | {run} | "
                     + " | ".join(cells) + " |")
        records.append({"temperature": k.temperature, "kappa": k.value if k.converged else None, "error": k.error,
                        "converged": k.converged, "lower_bound": k.lower_bound, "sources": k.sources,
                        "scan": k.to_dict()["scan"],
                        "lattice": {lat.label: lattice_kappa_at(lat.result, k.temperature)[0] for lat in lattices}})
    lines += ["", "## Same crystal on both sides?", ""] + _lattice_constant_lines(lattices, md, atoms_at)
    lines += [""] + _method_notes(lattices, md)
    lines += [f"![comparison]({stem}.png)", ""]
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines))
    (out / f"{stem}.json").write_text(json.dumps({
        "inputs": inputs, "lattice": [{"label": lat.label, "temperatures": np.asarray(lat.result.temperatures).tolist(),
                     "kappa": lat.result.isotropic()[0].tolist()} for lat in lattices],
        "md": records}, indent=2))
    return path
