"""Convergence of lattice κ with the q mesh and the supercell: scans, a table and a plot.

κ from phono3py converges slowly: the q mesh must resolve the long-lived
low-frequency phonons, the supercell must hold the range of fc3 (and of
fc2).  :func:`mesh_convergence` solves κ for a series of meshes from one
set of force constants; :func:`supercell_convergence` computes the force
sets of each supercell.  Each returns a :class:`ConvergenceScan`, which
says whether the last step changed κ by less than its tolerance.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from . import checks
from .kappa import _supercell_forces, build_phono3py, kappa_on_mesh, set_force_constants

#: relative change of κ between the last two settings below which a scan counts as converged
DEFAULT_TOLERANCE = 0.05


@dataclass
class ConvergenceScan:
    """Isotropic κ (W/mK) at one temperature for a series of meshes or supercells.

    Attributes
    ----------
    parameter : str
        ``"mesh"`` or ``"supercell"``.
    settings : list
        The meshes / supercells, in the order scanned.
    kappa : list of float
        (xx+yy+zz)/3 in W/mK for each setting.
    temperature : float
        K.
    method, statistics : str
    tolerance : float
        Relative change counted as converged.
    failures : dict
        Settings that could not be solved (label → reason); their κ is NaN.
    """

    parameter: str
    settings: list
    kappa: list
    temperature: float
    method: str
    statistics: str
    tolerance: float = DEFAULT_TOLERANCE
    failures: dict = field(default_factory=dict)

    @property
    def changes(self) -> list[float | None]:
        """Relative change of κ from the previous solved setting (None for the first and for failures)."""
        out, previous = [], None
        for value in self.kappa:
            ok = np.isfinite(value)
            out.append((value - previous) / previous if ok and previous is not None else None)
            previous = value if ok else previous
        return out

    @property
    def converged(self) -> bool:
        """The last step changed κ by less than ``tolerance``."""
        return self.changes[-1] is not None and abs(self.changes[-1]) < self.tolerance

    def table(self) -> str:
        lines = [f"κ vs {self.parameter} ({self.method.upper()}, {self.statistics}, {self.temperature:g} K)",
                 f"  {self.parameter:>14s}   κ (W/mK)   change"]
        for setting, value, change in zip(self.settings, self.kappa, self.changes):
            label = "x".join(str(v) for v in np.asarray(setting).ravel()[:3]) if np.ndim(setting) else str(setting)
            delta = "" if change is None else f"{100 * change:+8.2f} %"
            lines.append(f"  {label:>14s}   {value:8.4g}   {delta}")
        verdict = ("converged" if self.converged else "NOT converged") + \
            f" within {100 * self.tolerance:g} % at the last step"
        lines += [f"  {label}: not solved: {reason}" for label, reason in self.failures.items()]
        lines.append(f"  {verdict}")
        return "\n".join(lines)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**asdict(self), "changes": self.changes, "converged": self.converged,
                                    "units": {"kappa": "W/mK", "temperature": "K"}}))
        return path

    def plot(self, ax) -> None:
        """Draw κ vs the setting on a matplotlib axis."""
        x = np.arange(len(self.settings))
        ax.plot(x, self.kappa, "o-")
        final = [k for k in self.kappa if np.isfinite(k)][-1] if np.isfinite(self.kappa).any() else np.nan
        ax.axhspan(final * (1 - self.tolerance), final * (1 + self.tolerance), color="0.85",
                   label=f"±{100 * self.tolerance:g} % of the last")
        ax.set_xticks(x, ["x".join(str(v) for v in np.asarray(s).ravel()[:3]) for s in self.settings])
        ax.set(xlabel=self.parameter, ylabel="κ (W/mK)",
               title=f"κ vs {self.parameter} ({'converged' if self.converged else 'not converged'})")
        ax.legend()


def plot_scans(scans: Sequence[ConvergenceScan], path: str | Path) -> Path:
    """One panel per scan; a PNG."""
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(scans), figsize=(4.5 * len(scans), 4), squeeze=False)
    for ax, scan in zip(axes[0], scans):
        scan.plot(ax)
    return save_figure(fig, path)


def _solve_point(ph3, forces, mesh, temperature, method, statistics, symmetrize, label, values, failures) -> None:
    """Append the isotropic κ of one setting to ``values`` (NaN, and the reason in ``failures``, if it fails).

    ``forces`` None: the force constants of ``ph3`` are already set.
    """
    try:
        if forces is not None:
            set_force_constants(ph3, forces, None, symmetrize)
        kappa = kappa_on_mesh(ph3, mesh, [temperature], method, statistics)[0]
        checks.check_kappa(kappa, np.array([temperature]))
        values.append(float(kappa[0, :3].mean()))
    except ValueError as err:                        # e.g. fc3 vanishes in a 2x2x2 supercell
        values.append(float("nan"))
        failures[label] = str(err)


def mesh_convergence(atoms: Atoms, calculator, meshes: Sequence[Sequence[int]] = ((5, 5, 5), (7, 7, 7), (9, 9, 9),
                                                                                 (11, 11, 11), (13, 13, 13)),
                     temperature: float = 300.0, supercell=(3, 3, 3), method: str = "rta", statistics: str = "quantum",
                     displacement: float = 0.03, primitive="auto", symmetrize: str | None = "projector",
                     workdir: str | Path | None = None, memory_budget=None, tolerance: float = DEFAULT_TOLERANCE,
                     progress: bool = True) -> ConvergenceScan:
    """κ for a series of q meshes, from one set of force constants (evaluated once)."""
    for mesh in meshes:
        checks.validate_mesh(mesh)
    checks.validate_settings(temperatures=[temperature])
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    ph3 = build_phono3py(atoms, supercell, primitive, None, displacement)
    forces = _supercell_forces(ph3.supercells_with_displacements, calculator, False, workdir, "forces_fc3", progress,
                               memory_budget).forces
    values, failures = [], {}
    set_force_constants(ph3, forces, None, symmetrize)
    for mesh in meshes:
        _solve_point(ph3, None, mesh, temperature, method, statistics, symmetrize, "x".join(map(str, mesh)),
                     values, failures)
    return ConvergenceScan("mesh", [list(map(int, m)) for m in meshes], values, float(temperature), method, statistics,
                           tolerance, failures)


def supercell_convergence(atoms: Atoms, calculator, supercells: Sequence = ((2, 2, 2), (3, 3, 3), (4, 4, 4)),
                          mesh=(11, 11, 11), temperature: float = 300.0, method: str = "rta",
                          statistics: str = "quantum", displacement: float = 0.03, primitive="auto",
                          symmetrize: str | None = "projector", workdir: str | Path | None = None, memory_budget=None,
                          tolerance: float = DEFAULT_TOLERANCE, progress: bool = True) -> ConvergenceScan:
    """κ for a series of supercells (each its own force sets, cached in ``workdir`` when given)."""
    checks.validate_settings(mesh=mesh, temperatures=[temperature])
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    values, failures = [], {}
    for supercell in supercells:
        label = "x".join(str(v) for v in np.asarray(supercell).ravel())
        ph3 = build_phono3py(atoms, supercell, primitive, None, displacement)
        forces = _supercell_forces(ph3.supercells_with_displacements, calculator, False, workdir,
                                   f"forces_fc3_{label}", progress, memory_budget).forces
        _solve_point(ph3, forces, mesh, temperature, method, statistics, symmetrize, label, values, failures)
    return ConvergenceScan("supercell", [np.asarray(s).tolist() for s in supercells], values, float(temperature),
                           method, statistics, tolerance, failures)
