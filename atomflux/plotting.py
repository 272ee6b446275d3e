"""Plots written to PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (creating the folder), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def parity_plot(reference: dict[str, np.ndarray], predicted: dict[str, np.ndarray], path: str | Path,
                title: str = "") -> Path:
    """Predicted vs reference, one panel per property present (energy per atom, forces, stress)."""
    plt = pyplot()
    labels = {"energy": "energy (eV/atom)", "forces": "force component (eV/Å)", "stress": "stress (eV/Å³)"}
    keys = [k for k in labels if k in reference and len(reference[k])]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ref, got = reference[key], predicted[key]
        ax.plot(ref, got, ".", ms=3, alpha=0.6)
        lo, hi = float(min(ref.min(), got.min())), float(max(ref.max(), got.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        rmse = float(np.sqrt(np.mean((got - ref) ** 2)))
        ax.set(xlabel=f"reference {labels[key]}", ylabel=f"predicted {labels[key]}", title=f"RMSE {rmse:.3g}")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
