"""``atomflux ferroelectric``: NPT ramp folders → P(T), χ(T), U₄(T) per size, phases, T_c, hysteresis, correlations.

Each input is a folder written by ``atomflux md --ensemble npt --temperature-ramp``
(``run.json`` with the temperatures, ``stage-<k>.traj`` per temperature).  A
folder is one size (labelled ``L<n>`` from its number of cells, n = N^(1/3)
for cubic supercells) and one direction (heating when its temperatures rise,
cooling when they fall).  The local dipoles come from Born charges
(:func:`~atomflux.analysis.ferroelectric.local_dipoles`, P in μC/cm²) or, without
them, from the descriptor proxy (Å³).  The first ``discard`` frames of each
temperature are dropped (equilibration after the temperature step).  Local-dipole maps
(:mod:`~atomflux.analysis.dipole_maps`) show the last frame of a temperature.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .dipole_correlations import dipole_correlations
from .dipole_maps import DipoleMap, dipole_map, plot_dipole_map
from .ferroelectric import (E_PER_A2_TO_UC_PER_CM2, descriptor_dipoles, ideal_perovskite_reference, local_dipoles,
                            perovskite_cells)
from .transitions import assign_phase, critical_temperature, hysteresis, order_statistics


@dataclass
class RampResult:
    """The analysed ramp of one run folder."""

    folder: str
    size: str
    direction: str
    rows: list[dict[str, Any]]
    maps: dict[float, DipoleMap] = field(default_factory=dict)
    """temperature (K) → local dipoles of the last frame there, on the lattice of cells"""


def _ramp(folder: Path, window: tuple[float, float] | None = None) -> tuple[list[float], list[Path], str]:
    """The finished temperatures of a ramp folder (those inside ``window``, K, when given), their trajectories,
    and the ramp's direction (from its planned temperatures, so that a cooling ramp stopped after its first
    temperature is still a cooling ramp)."""
    record = folder / "run.json"
    if not record.is_file():
        raise ValueError(f"{folder} is not an NPT run folder (no run.json); give folders written by "
                         "`atomflux md --ensemble npt`")
    run = json.loads(record.read_text())
    if run.get("command") != "md --ensemble npt":
        raise ValueError(f"{folder} holds a `{run.get('command')}` run, not `md --ensemble npt`")
    temperatures = run["parameters"]["temperatures_K"]
    done = len(json.loads((folder / "thermo.json").read_text())) if (folder / "thermo.json").is_file() else 0
    if done == 0:
        raise ValueError(f"{folder} has no finished temperature yet; run (or resume) it first")
    direction = "heating" if temperatures[-1] >= temperatures[0] else "cooling"
    low, high = sorted(window) if window is not None else (-np.inf, np.inf)
    kept = [k for k in range(done) if low <= temperatures[k] <= high]
    if not kept:
        raise ValueError(f"{folder} has no finished temperature inside the window {low:g}–{high:g} K "
                         f"(finished: {', '.join(f'{t:g}' for t in temperatures[:done])} K); widen --temperature-window")
    return [temperatures[k] for k in kept], [folder / f"stage-{k}.traj" for k in kept], direction


def unanalysed_temperatures(folders: Sequence[str | Path], wanted: Sequence[float],
                            window: tuple[float, float] | None = None) -> list[float]:
    """The temperatures of ``wanted`` (K) that no folder has finished inside ``window`` (to refuse them up front)."""
    finished = [t for folder in folders for t in _ramp(Path(folder), window)[0]]
    return [t for t in wanted if not any(np.isclose(t, f) for f in finished)]


def analyse_ramp(folder: str | Path, species: tuple[str, str, str], born: Mapping[str, Any] | None,
                 discard: int = 0, blocks: int = 5, threshold: float | None = None,
                 window: tuple[float, float] | None = None,
                 map_temperatures: Sequence[float] | None = ()) -> RampResult:
    """One ramp folder: a row per temperature (order statistics, phase, correlation lengths).

    ``window`` (K, K): analyse only the finished temperatures inside it (e.g. to leave out
    temperatures where the model left its validated range).  ``map_temperatures`` (K): the
    temperatures whose last frame's local dipoles are kept as maps (None: every analysed one).
    """
    from ase.io import read

    folder = Path(folder)
    temperatures, stages, direction = _ramp(folder, window)
    a_site, b_site, x_site = species
    rows = []
    maps: dict[float, DipoleMap] = {}
    cells = None
    for temperature, stage in zip(temperatures, stages):
        frames = read(stage, ":")[discard:]
        if len(frames) < 2 * blocks:
            raise ValueError(f"{stage} holds {len(frames)} frames after discarding {discard}; need ≥ {2 * blocks} "
                             "(run more steps, write frames more often, or lower --discard/--blocks)")
        if cells is None:
            cells = perovskite_cells(ideal_perovskite_reference(frames[0], a_site), a_site, b_site, x_site)
        if born is not None:
            p = local_dipoles(cells, frames, born).p * E_PER_A2_TO_UC_PER_CM2
        else:
            p = descriptor_dipoles(frames, b_site)
        polarization = p.mean(axis=1)
        stats = order_statistics(polarization, temperature, cells.n_cells, blocks=blocks)
        row = {"temperature_K": temperature, **{k: v for k, v in stats.row().items() if k != "temperature"}}
        if threshold is not None:
            phase, components = assign_phase(polarization, threshold)
            row.update(phase=phase, **{f"sorted_component_{k}": float(c) for k, c in enumerate(components)})
        if cells.grid is not None and min(cells.shape) >= 4:
            polar_axis = None if row.get("phase", "cubic") == "cubic" else \
                int(np.argmax(np.abs(polarization @ _unit_rows(frames[0].cell.array).T).mean(0)))
            correlation = dipole_correlations(cells, p, np.mean([f.cell.array for f in frames], axis=0), polar_axis)
            row.update(correlation_length_along_A=correlation.length_along,
                       correlation_length_across_A=correlation.length_across)
        rows.append(row)
        if map_temperatures is None or any(np.isclose(temperature, t) for t in map_temperatures):
            maps[temperature] = dipole_map(cells, p[-1], frames[-1].cell.array)
    size = f"L{round(cells.n_cells ** (1 / 3))}" if cells.shape and len(set(cells.shape)) == 1 else \
        f"N{cells.n_cells}"
    return RampResult(str(folder), size, direction, rows, maps)


def _unit_rows(cell: np.ndarray) -> np.ndarray:
    return cell / np.linalg.norm(cell, axis=1, keepdims=True)


def transition_summary(ramps: list[RampResult]) -> dict[str, Any]:
    """T_c per direction (χ peaks, Binder crossings of consecutive sizes) and the hysteresis per size."""
    from .transitions import OrderStatistics

    summary: dict[str, Any] = {}
    for direction in ("heating", "cooling"):
        scans = {}
        for ramp in sorted((r for r in ramps if r.direction == direction), key=lambda r: r.rows[0]["n_units"]):
            scans[ramp.size] = [OrderStatistics(r["temperature_K"], r["n_units"], np.zeros(1),
                                                (r["mean_abs"], r["mean_abs_err"]),
                                                (r["susceptibility"], r["susceptibility_err"]),
                                                (r["binder"], r["binder_err"])) for r in ramp.rows]
        if not scans:
            continue
        result = critical_temperature(scans)
        entry: dict[str, Any] = {"susceptibility_peaks_K": result.susceptibility_peaks,
                                 "binder_crossings_K": result.binder_crossings}
        try:
            entry["binder_estimate_K"] = result.binder_estimate
        except ValueError as why:
            entry["binder_estimate_K"] = None
            entry["binder_note"] = str(why)
        summary[direction] = entry
    loops = {}
    for size in {r.size for r in ramps}:
        by_direction = {r.direction: r for r in ramps if r.size == size}
        if len(by_direction) == 2:
            curves = {d: (np.array([row["temperature_K"] for row in r.rows]),
                          np.array([row["mean_abs"] for row in r.rows])) for d, r in by_direction.items()}
            loops[size] = hysteresis(curves["heating"], curves["cooling"])
    if loops:
        summary["hysteresis"] = loops
    return summary


def write_report(ramps: list[RampResult], output: str | Path, inputs: dict[str, Any], units: str,
                 map_layers: int = 3) -> dict[str, Path]:
    """``ferroelectric.csv`` (one row per size, direction, temperature), ``ferroelectric.json`` (T_c, hysteresis,
    inputs) and ``ferroelectric.png`` (⟨|P|⟩, χ, U₄ against T per size) in ``output``, and the ramps' local-dipole
    maps (``map_layers`` layers each) as ``ferroelectric-maps/<size>-<direction>-<T>K.png``; never overwrites
    results of other inputs (:func:`~atomflux.records.claim_result`)."""
    from ..plotting import pyplot, save_figure
    from ..records import claim_result, write_atomically

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    stem = claim_result(out, "ferroelectric", inputs)
    table = [{"size": r.size, "direction": r.direction, "folder": r.folder, **row} for r in ramps for row in r.rows]
    columns = list(dict.fromkeys(k for row in table for k in row))

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(table)

    paths = {"table": out / f"{stem}.csv", "summary": out / f"{stem}.json", "plot": out / f"{stem}.png"}
    write_atomically(paths["table"], write_csv)
    summary = {"inputs": inputs, "units": {"P": units, "susceptibility": f"({units})^2 per K × cells",
                                           "temperature": "K"}, **transition_summary(ramps)}
    write_atomically(paths["summary"], lambda tmp: tmp.write_text(json.dumps(summary, indent=1)))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ramp in ramps:
        t = [row["temperature_K"] for row in ramp.rows]
        style = "-o" if ramp.direction == "heating" else "--s"
        for ax, key in zip(axes, ("mean_abs", "susceptibility", "binder")):
            ax.errorbar(t, [row[key] for row in ramp.rows], [row[f"{key}_err"] for row in ramp.rows], fmt=style,
                        ms=3, label=f"{ramp.size} {ramp.direction}")
    for ax, label in zip(axes, (f"⟨|P|⟩ ({units})", "χ = N(⟨P²⟩ − ⟨|P|⟩²)/T", "U₄ = 1 − ⟨P⁴⟩/3⟨P²⟩²")):
        ax.set_xlabel("T (K)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    save_figure(fig, paths["plot"])
    if any(r.maps for r in ramps):
        paths["maps"] = out / f"{stem}-maps"
        names: set[str] = set()
        for number, ramp in enumerate(ramps):
            for temperature, lattice in ramp.maps.items():
                name = f"{ramp.size}-{ramp.direction}-{temperature:g}K"
                name = name if name not in names else f"{name}-run{number}"
                names.add(name)
                plot_dipole_map(lattice, paths["maps"] / f"{name}.png", f"{ramp.size} {ramp.direction}, "
                                f"T = {temperature:g} K, last frame", units, layers=map_layers)
    return paths
