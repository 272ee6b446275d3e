"""Summary plot of a distillation run: force error and uncertainty of each student, per condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def summary_plot(rounds: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Force RMSE vs the teacher and mean force σ (meV/Å) of each tested student, one line per condition.

    Round 0 is the first student on its own held-out labels (its calibration
    set); every later point is student k−1 on the labels of round k (frames of
    its own MD, never trained or calibrated on).  The bounds are not drawn:
    they live in the run record.
    """
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharex=True)
    names = list(rounds[0]["conditions"])
    for name in names:
        students = [r["tested_student"] for r in rounds]
        for ax, key in zip(axes, ("force_rmse", "force_sigma")):
            ax.plot(students, [1000 * r["conditions"][name][key] for r in rounds], "o-", label=name)
    axes[0].set(xlabel="student (round trained)", ylabel="force RMSE vs teacher (meV/Å)", title="error")
    axes[1].set(xlabel="student (round trained)", ylabel="mean force σ (meV/Å)", title="uncertainty")
    for ax in axes:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
