"""Figures of the Hamiltonian head: level parity plot and energy-level diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..plotting import pyplot, save_figure
from .data import OrbitalFrame


def level_parity_plot(errors: dict, path: str | Path, title: str = "") -> Path:
    """Predicted vs reference orbital energies (eV): all levels, and the valence region enlarged."""
    plt = pyplot()
    ref = np.concatenate([r["reference"] for r in errors["levels"]])
    got = np.concatenate([r["predicted"] for r in errors["levels"]])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, window in zip(axes, (None, (-45.0, 10.0))):
        keep = np.ones_like(ref, bool) if window is None else (ref > window[0]) & (ref < window[1])
        ax.plot(ref[keep], got[keep], ".", ms=4, alpha=0.6)
        lo, hi = float(min(ref[keep].min(), got[keep].min())), float(max(ref[keep].max(), got[keep].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.mean(np.abs(got[keep] - ref[keep])))
        ax.set(xlabel="reference MO energy (eV)", ylabel="predicted eigenvalue (eV)",
               title=("all levels" if window is None else "valence and LUMO") + f", MAE {mae:.3f} eV")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def level_diagram(frame: OrbitalFrame, predicted: Sequence[float], path: str | Path, title: str = "",
                  window: tuple[float, float] = (-45.0, 12.0)) -> Path:
    """Energy levels of one molecule side by side: minimal-basis RHF, the model, the large-basis reference."""
    plt = pyplot()
    columns = {"STO-3G RHF": frame.minimal_levels, "atomflux model": np.asarray(predicted),
               "reference": frame.levels}
    fig, ax = plt.subplots(figsize=(6, 5))
    for x, (label, levels) in enumerate(columns.items()):
        for k, e in enumerate(levels):
            if window[0] < e < window[1]:
                occupied = k < frame.n_occupied
                ax.hlines(e, x - 0.3, x + 0.3, colors="C0" if occupied else "C3", lw=2)
    ax.set_xticks(range(len(columns)), list(columns))
    ax.set(ylabel="orbital energy (eV)", ylim=window,
           title=title or f"{frame.name}: occupied (blue) and virtual (red) levels")
    return save_figure(fig, path)
