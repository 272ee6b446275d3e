"""Symmetry-breaking diagnostics: how far a model is from rotation invariant, on the observables that matter.

For every structure set (``atomflux symmetry MODEL STRUCTURES...``):

- **grid convergence** — the model averaged over grids of increasing order
  against a high-order reference grid: mean |E − E_ref| (meV/atom) and mean
  |F − F_ref| (meV/Å, vector norm per atom), and for isolated structures the
  net torque |Σ (r − r_cm) × F| (meV) of each average, whose exact value is 0;
- **rotational spread** of the bare model (``*_rot_std`` over the reference
  grid) beside its own uncertainty (when it has one) and its error on
  labelled data (when the structures carry energies/forces): symmetry
  breaking well below both is harmless;
- **NVE** for isolated structures: angular momentum |L| (amu·Å²/fs, exactly
  conserved by an invariant model) and total-energy drift with the bare
  model, the averaged model and, optionally, multiple time stepping.

Order 0 of a fixed grid is the identity: the bare model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms, units

from ..training.dataset import frame_from_atoms
from .average import RotationalAverage

#: amu·Å·(Å per ASE time unit) → amu·Å²/fs
ANGULAR_MOMENTUM_PER_FS = units.fs


@dataclass
class NVESettings:
    """The NVE runs on isolated structures.

    Attributes
    ----------
    steps : int
        Steps of each run (0: no NVE).
    timestep : float
        fs.
    temperature : float
        Initial Maxwell–Boltzmann temperature, K (zero net momentum and angular momentum).
    order : int
        Grid order of the averaged run.
    mts_interval : int
        If > 1, also a multiple-time-stepping run: bare model every step, the
        averaged correction every ``mts_interval`` steps.
    seed : int
        Seed of the initial velocities.
    """

    steps: int = 200
    timestep: float = 1.0
    temperature: float = 300.0
    order: int = 3
    mts_interval: int = 0
    seed: int = 0


@dataclass
class SymmetryReport:
    """Results of :func:`symmetry_report`, JSON-able through :meth:`to_dict`.

    ``sets`` maps each structure set to ``{"n_structures", "isolated",
    "convergence": [per order: {"order", "rotations", "energy_meV_per_atom",
    "forces_meV_per_A", "torque_meV"}], "spread": {...}, "nve": {...}}``.
    """

    model: str
    grid: str
    reference: str
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "grid": self.grid, "reference": self.reference, "sets": self.sets}

    def summary(self) -> str:
        """Text tables, one per structure set."""
        lines = [f"model {self.model}; reference: {self.reference}"]
        for name, result in self.sets.items():
            lines.append(f"\n{name}: {result['n_structures']} structures"
                         + (" (isolated)" if result["isolated"] else ""))
            lines.append(f"  {'order':>5} {'rotations':>9} {'|E-E_ref| meV/atom':>19} {'|F-F_ref| meV/Å':>16}"
                         + (f" {'torque meV':>11}" if result["isolated"] else ""))
            for row in result["convergence"]:
                lines.append(f"  {row['order']:>5} {row['rotations']:>9} {row['energy_meV_per_atom']:>19.4g} "
                             f"{row['forces_meV_per_A']:>16.4g}"
                             + (f" {row['torque_meV']:>11.4g}" if result["isolated"] else ""))
            spread = result["spread"]
            lines.append(f"  rotational spread of the bare model: {spread['energy_rot_std_meV_per_atom']:.4g} meV/atom, "
                         f"{spread['forces_rot_std_meV_per_A']:.4g} meV/Å")
            for key, label in (("uncertainty", "its own uncertainty"), ("error", "its error on the labels"),
                               ("averaged_error", "error of the reference average on the labels")):
                if key in spread:
                    value = spread[key]
                    lines.append(f"  {label}: {value.get('energy_meV_per_atom', float('nan')):.4g} meV/atom, "
                                 f"{value.get('forces_meV_per_A', float('nan')):.4g} meV/Å")
            for run, nve in result.get("nve", {}).items():
                lines.append(f"  NVE {run}: |L| {nve['angular_momentum'][0]:.3g} → {nve['angular_momentum'][-1]:.3g} "
                             f"amu·Å²/fs, energy drift {nve['energy_drift_meV_per_atom']:.3g} meV/atom, "
                             f"{1000 * nve['seconds_per_step']:.1f} ms/step")
        return "\n".join(lines)


def torque(atoms: Atoms, forces: np.ndarray) -> np.ndarray:
    """Net torque Σ (r_i − r_cm) × F_i about the centre of mass, eV ([3])."""
    return np.cross(atoms.positions - atoms.get_center_of_mass(), forces).sum(0)


def is_isolated(atoms: Atoms) -> bool:
    """True for a structure without periodic directions (a molecule or cluster)."""
    return not bool(np.any(atoms.pbc))


@dataclass
class _Averages:
    """One order's average over a structure set: energies (eV), forces (eV/Å), all results, grid size."""

    energies: np.ndarray
    forces: list[np.ndarray]
    results: list[dict[str, Any]]
    rotations: int


def _averages(model, atoms_list: Sequence[Atoms], order: int, grid: str, inversion: bool,
              progress_bar=None) -> _Averages:
    calc = RotationalAverage(model, order, grid, inversion)
    energies, forces, results = [], [], []
    for atoms in atoms_list:
        a = atoms.copy()
        a.calc = calc
        energies.append(a.get_potential_energy())
        forces.append(a.get_forces())
        results.append(dict(calc.results))
        if progress_bar is not None:
            progress_bar.update(1)
    return _Averages(np.array(energies), forces, results, calc.last_grid.size)


def symmetry_report(model, sets: dict[str, Sequence[Atoms]], grid: str = "lebedev",
                    orders: Sequence[int] = (0, 1, 2, 3, 4, 6), reference_order: int = 8, inversion: bool = False,
                    nve: NVESettings | None = None, label: str | None = None, progress: bool = True) -> SymmetryReport:
    """Measure the symmetry breaking of ``model`` on structure sets (see module doc).

    Parameters
    ----------
    model
        A potential (evaluated batched) or any ASE calculator (one call per rotation).
    sets
        ``{name: structures}``; structures with energies/forces attached
        (calculator results or info/arrays) are also compared with them.
    grid
        ``"lebedev"`` or ``"legendre"`` (the reference uses the same kind).
    orders
        Grid orders to compare (0: the bare model).
    reference_order
        Order of the reference grid; higher than every order in ``orders``.
    inversion
        Include improper rotations in every grid.
    nve
        NVE runs on the first isolated structure of each set (``None``: none).
    label
        Name of the model in the report.
    progress
        Show progress bars.
    """
    from ..progress import progress as progress_bar

    if grid not in ("lebedev", "legendre"):
        raise ValueError(f"diagnostics need a fixed grid ('lebedev' or 'legendre'), got {grid!r}")
    orders = sorted({int(o) for o in orders})
    if not orders or orders[0] < 0:
        raise ValueError(f"orders must be whole numbers ≥ 0, got {orders}")
    if reference_order <= orders[-1]:
        raise ValueError(f"the reference order ({reference_order}) must be higher than every compared order "
                         f"(up to {orders[-1]})")
    if not sets or not all(len(s) for s in sets.values()):
        raise ValueError("no structures to analyse (every structure set needs at least one structure)")
    reference_grid = RotationalAverage(model, reference_order, grid, inversion).last_grid
    report = SymmetryReport(label or type(model).__name__, grid, reference_grid.describe())
    total = sum(len(s) for s in sets.values()) * (len(orders) + 1)
    with progress_bar(total, "rotational averages", unit="structure", enabled=progress) as bar:
        for name, structures in sets.items():
            report.sets[name] = _analyse_set(model, list(structures), grid, orders, reference_order, inversion, bar)
    if nve is not None and nve.steps > 0:
        for name, structures in sets.items():
            isolated = [a for a in structures if is_isolated(a)]
            if isolated:
                report.sets[name]["nve"] = nve_runs(model, isolated[0], grid, inversion, nve, progress)
    return report


def _analyse_set(model, structures: list[Atoms], grid: str, orders: list[int], reference_order: int,
                 inversion: bool, bar) -> dict[str, Any]:
    isolated = all(is_isolated(a) for a in structures)
    n_atoms = np.array([len(a) for a in structures], dtype=float)
    reference = _averages(model, structures, reference_order, grid, inversion, bar)
    by_order = {order: _averages(model, structures, order, grid, inversion, bar) for order in orders}
    convergence = []
    for order, average in by_order.items():
        row = {"order": order, "rotations": average.rotations,
               "energy_meV_per_atom": 1000 * float(np.mean(np.abs(average.energies - reference.energies) / n_atoms)),
               "forces_meV_per_A": 1000 * float(np.mean(np.concatenate(
                   [np.linalg.norm(f - r, axis=1) for f, r in zip(average.forces, reference.forces)])))}
        if isolated:
            row["torque_meV"] = 1000 * float(np.mean([np.linalg.norm(torque(a, f))
                                                      for a, f in zip(structures, average.forces)]))
        convergence.append(row)
    spread = {"energy_rot_std_meV_per_atom": 1000 * float(np.mean(
                  np.array([r["energy_rot_std"] for r in reference.results]) / n_atoms)),
              "forces_rot_std_meV_per_A": 1000 * float(np.mean(np.concatenate(
                  [np.linalg.norm(r["forces_rot_std"], axis=1) for r in reference.results])))}
    bare = by_order.get(0) or _averages(model, structures, 0, grid, inversion)
    if "energy_uncertainty" in bare.results[0]:
        spread["uncertainty"] = {"energy_meV_per_atom": 1000 * float(np.mean(
            np.array([r["energy_uncertainty"] for r in bare.results]) / n_atoms))}
        if "forces_uncertainty" in bare.results[0]:
            spread["uncertainty"]["forces_meV_per_A"] = 1000 * float(np.mean(np.concatenate(
                [np.linalg.norm(r["forces_uncertainty"], axis=1) for r in bare.results])))
    labels = [frame_from_atoms(a) for a in structures]
    for key, average in (("error", bare), ("averaged_error", reference)):
        errors = _label_errors(labels, average.energies, average.forces)
        if errors:
            spread[key] = errors
    return {"n_structures": len(structures), "isolated": isolated, "convergence": convergence, "spread": spread}


def _label_errors(frames, energies: Sequence[float], forces: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean |E − E_label| (meV/atom) and |F − F_label| (meV/Å, norm per atom) where labels exist."""
    out = {}
    e = [abs(p - f.energy) / len(f.atoms) for f, p in zip(frames, energies) if f.energy is not None]
    if e:
        out["energy_meV_per_atom"] = 1000 * float(np.mean(e))
    fr = [np.linalg.norm(p - f.forces, axis=1) for f, p in zip(frames, forces) if f.forces is not None]
    if fr:
        out["forces_meV_per_A"] = 1000 * float(np.mean(np.concatenate(fr)))
    return out


def nve_runs(model, atoms: Atoms, grid: str, inversion: bool, settings: NVESettings,
             progress: bool = True) -> dict[str, dict[str, Any]]:
    """NVE of an isolated structure with the bare model, its average and (optionally) multiple time stepping.

    Every run starts from the same velocities (Maxwell–Boltzmann at
    ``settings.temperature``, zero momentum and angular momentum).  Returns,
    per run, ``angular_momentum`` (|L| in amu·Å²/fs, every step),
    ``total_energy`` (eV, every step; for multiple time stepping at outer
    steps with the averaged energy), ``energy_drift_meV_per_atom`` (last − first) and
    ``seconds_per_step``.
    """
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    from ..md import thermalize
    from ..mts import MultipleTimeStepVerlet

    start = atoms.copy()
    start.calc = None
    thermalize(start, settings.temperature, np.random.default_rng(settings.seed))
    Stationary(start)
    ZeroRotation(start)
    bare = RotationalAverage(model, 0, grid, inversion)
    averaged = RotationalAverage(model, settings.order, grid, inversion)
    runs = {"bare": (bare, None), f"averaged (order {settings.order})": (averaged, None)}
    if settings.mts_interval > 1:
        runs[f"multiple time stepping (averaged every {settings.mts_interval})"] = (bare, averaged)
    out = {}
    for name, (calc, slow) in runs.items():
        a = start.copy()
        a.calc = calc
        dt = settings.timestep * units.fs
        if slow is None:
            dyn, outer = VelocityVerlet(a, dt), settings.steps
        else:
            dyn = MultipleTimeStepVerlet(a, dt, slow, settings.mts_interval)
            outer = max(1, settings.steps // settings.mts_interval)
        momentum, energy = [], []

        def record() -> None:
            momentum.append(float(np.linalg.norm(a.get_angular_momentum())) * ANGULAR_MOMENTUM_PER_FS)
            energy.append(dyn.conserved_energy() if slow is not None else a.get_total_energy())

        clock = time.perf_counter()
        dyn.attach(record, interval=1)
        from ..progress import progress as progress_bar

        with progress_bar(outer, f"NVE {name}", unit="step", enabled=progress) as bar:
            dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)
            dyn.run(outer)
        inner_steps = outer * (settings.mts_interval if slow is not None else 1)
        out[name] = {"angular_momentum": momentum, "total_energy": energy, "timestep_fs": settings.timestep,
                     "steps": inner_steps,
                     "energy_drift_meV_per_atom": 1000 * (energy[-1] - energy[0]) / len(a),
                     "seconds_per_step": (time.perf_counter() - clock) / max(inner_steps, 1)}
    return out


def plot_report(report: SymmetryReport, path: str | Path) -> Path:
    """Convergence with grid size (log-log) per structure set, and |L| in NVE where run."""
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    has_torque = any(s["isolated"] for s in report.sets.values())
    has_nve = any(s.get("nve") for s in report.sets.values())
    panels = 2 + has_torque + has_nve
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.8), squeeze=False)
    axes = list(axes[0])
    quantities = [("energy_meV_per_atom", "|E − E_ref| (meV/atom)"), ("forces_meV_per_A", "|F − F_ref| (meV/Å)")]
    if has_torque:
        quantities.append(("torque_meV", "net torque |Σ r×F| (meV)"))
    for ax, (key, label) in zip(axes, quantities):
        for k, (name, result) in enumerate(report.sets.items()):
            rows = [r for r in result["convergence"] if key in r]
            if not rows:
                continue
            colour = f"C{k}"
            ax.loglog([r["rotations"] for r in rows], [max(r[key], 1e-12) for r in rows], "o-", color=colour,
                      label=name)
            spread = result["spread"]
            for extra, style in (("uncertainty", "--"), ("error", ":")):
                value = spread.get(extra, {}).get(key)
                if value:
                    ax.axhline(value, ls=style, color=colour, lw=1,
                               label=f"{name}: {'model uncertainty' if extra == 'uncertainty' else 'error vs labels'}")
        ax.set_xlabel("rotations in the grid")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    if has_nve:
        ax = axes[-1]
        for name, result in report.sets.items():
            for run, nve in result.get("nve", {}).items():
                stride = nve["steps"] // max(len(nve["angular_momentum"]) - 1, 1)
                t = np.arange(len(nve["angular_momentum"])) * stride * nve["timestep_fs"]
                ax.plot(t, nve["angular_momentum"], label=f"{name}: {run}")
        ax.set_xlabel("time (fs)")
        ax.set_ylabel("|L| (amu·Å²/fs)")
        ax.set_yscale("symlog", linthresh=1e-6)
        ax.legend(fontsize=7)
    fig.suptitle(f"symmetry breaking of {report.model} ({report.reference} as reference)", fontsize=9)
    return save_figure(fig, path)
