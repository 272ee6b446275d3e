"""NPT molecular dynamics with a fully flexible cell, and heating/cooling ramps that resume from checkpoints.

The integrator is ASE's Martyna–Tobias–Klein NPT (``ase.md.nose_hoover_chain.MTKNPT``,
ASE ≥ 3.26: Nosé–Hoover chains on particles and cell, all nine cell
components free) with one change: the cell momenta are driven by
V (P_int − P_target) for a target *pressure tensor* (symmetric, compressive
positive, like the ``pxx pyy pzz`` targets of LAMMPS's ``fix npt``) instead
of a scalar pressure, so a uniaxial or shear load can be applied.  The
equilibrium condition is the mechanical one, ⟨P_int⟩ = P_target; for a
non-hydrostatic target the reported conserved energy contains only the
hydrostatic work (as in MTK's isotropic form), so monitor the pressure, not
the conserved energy, there.  ASE's own ``NPT`` (Melchionna) also accepts a
stress tensor but needs an upper-triangular cell and a bulk-modulus-scaled
``pfactor``; MTK needs neither.

A ramp is a list of temperatures run one after another, each for the same
number of steps, the cell and velocities carried over.  Each finished stage is
a checkpoint: ``stage-<k>.traj`` (frames every ``stride`` steps) and a row of
``thermo.json``; the state at its end is in ``checkpoint.traj``.  The run
folder is a record (:mod:`atomflux.records`): the same call resumes after the
last finished stage; the MTK equations are deterministic, so a resumed ramp
writes the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms, units
from ase.io import read
from ase.io.trajectory import Trajectory

from .heap import keep_freed_memory
from .md import check_md_settings, thermalize
from .progress import progress as progress_reporter
from .records import deferred_interrupts, finish_run, fingerprint, model_record, open_run, write_atomically

#: eV/Å³ per GPa
GPA = units.GPa


def pressure_tensor(pressure: float | Sequence[float]) -> np.ndarray:
    """3×3 target pressure tensor (GPa) from a scalar or the Voigt six (xx, yy, zz, yz, xz, xy), compressive positive."""
    values = np.atleast_1d(np.asarray(pressure, dtype=float))
    if values.shape == (1,):
        tensor = values[0] * np.eye(3)
    elif values.shape == (6,):
        xx, yy, zz, yz, xz, xy = values
        tensor = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    else:
        raise ValueError(f"the pressure must be one number or six (xx yy zz yz xz xy, GPa), got {len(values)}")
    if not np.all(np.isfinite(tensor)):
        raise ValueError(f"the pressure must be finite, got {values.tolist()}")
    return tensor


def npt_dynamics(atoms: Atoms, timestep: float, temperature: float, pressure: float | Sequence[float],
                 thermostat_time: float, barostat_time: float):
    """MTK NPT dynamics on ``atoms`` with a target pressure tensor (see the module text).

    Parameters
    ----------
    timestep, thermostat_time, barostat_time : float
        fs (ASE suggests ~100 and ~1000 timesteps for the two relaxation times).
    temperature : float
        K.
    pressure : float or six floats
        GPa, compressive positive: hydrostatic, or Voigt xx yy zz yz xz xy.
    """
    try:
        from ase.md.nose_hoover_chain import MTKNPT
    except ImportError as error:
        raise ValueError("NPT MD needs ASE ≥ 3.26 (ase.md.nose_hoover_chain.MTKNPT); upgrade ase") from error
    if not np.all(atoms.pbc):
        raise ValueError("NPT needs a structure periodic in all three directions (pbc=True)")
    for name, value in (("thermostat time", thermostat_time), ("barostat time", barostat_time)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 fs, got {value}")
    target = pressure_tensor(pressure) * GPA

    class StressMTKNPT(MTKNPT):
        """MTKNPT whose cell momenta follow V (P_int − P_target) for a target pressure tensor."""

        def _integrate_p_cell(self, delta: float) -> None:
            internal = self._get_stress()  # pressure tensor, kinetic part included (MTKNPT's convention)
            kinetic = np.sum(self._p**2 / self.masses) / (3 * self._num_atoms_global)
            self._p_g += delta * (self._get_volume() * (internal - target) + kinetic * np.eye(3))

    return StressMTKNPT(atoms, timestep * units.fs, temperature_K=temperature,
                        pressure_au=float(np.trace(target) / 3), tdamp=thermostat_time * units.fs,
                        pdamp=barostat_time * units.fs)


def ramp_temperatures(text: str) -> list[float]:
    """Temperatures of ``"T0:T1:dT"`` (K; heating when T1 > T0, cooling when T1 < T0, both ends included)."""
    try:
        start, stop, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"a temperature ramp is T0:T1:dT in K (e.g. 100:500:25), got {text!r}") from None
    if not step > 0 or start <= 0 or stop <= 0:
        raise ValueError(f"a ramp needs temperatures > 0 K and a step dT > 0 K, got {text!r}")
    n = int(np.floor(abs(stop - start) / step + 1e-9))
    temperatures = start + np.sign(stop - start) * step * np.arange(n + 1)
    return [float(t) for t in temperatures]


def _stage_summary(temperature: float, temps: list[float], pressures: list[np.ndarray], cells: list[np.ndarray],
                   potential: list[float]) -> dict[str, Any]:
    mean_pressure = np.mean(pressures, axis=0) / GPA
    mean_cell = np.mean(cells, axis=0)
    return {"temperature_K": temperature, "mean_temperature_K": float(np.mean(temps)),
            "mean_pressure_GPa": float(np.trace(mean_pressure) / 3),
            "mean_pressure_tensor_GPa": mean_pressure.tolist(),
            "pressure_std_GPa": float(np.std([np.trace(p) / 3 for p in pressures]) / GPA),
            "mean_cell": mean_cell.tolist(), "mean_volume": float(abs(np.linalg.det(mean_cell))),
            "mean_potential_energy_eV": float(np.mean(potential))}


def run_npt_ramp(atoms: Atoms, calculator, output: str | Path, temperatures: Sequence[float], steps: int,
                 pressure: float | Sequence[float] = 0.0, timestep: float = 2.0, thermostat_time: float | None = None,
                 barostat_time: float | None = None, stride: int = 10, seed: int = 0, progress: bool = True,
                 restart: bool = False, model_spec: str | Path | None = None) -> Path:
    """NPT MD at each temperature of ``temperatures`` in turn (a heating or cooling ramp), resumable by stage.

    Written into ``output``: ``run.json`` (the record), ``stage-<k>.traj``
    (frames every ``stride`` steps of stage k, with cell, energy, forces and
    stress), ``thermo.json`` (one row per finished stage: target and mean
    temperature, mean pressure tensor and its scalar spread, mean cell and
    volume, mean potential energy), ``checkpoint.traj`` (state at the end of
    the last finished stage).

    Parameters
    ----------
    temperatures : sequence of float
        K, run in this order (one value: a plain NPT run).
    steps : int
        MD steps per temperature.
    pressure : float or six floats
        GPa (see :func:`pressure_tensor`).
    thermostat_time, barostat_time : float, optional
        fs; default 100 and 1000 timesteps.

    Returns
    -------
    Path of ``thermo.json``.
    """
    temperatures = [float(t) for t in temperatures]
    if not temperatures:
        raise ValueError("no temperatures to run")
    for t in temperatures:
        check_md_settings(temperature=t)
    check_md_settings(steps=steps, timestep=timestep, stride=stride)
    thermostat_time = 100 * timestep if thermostat_time is None else float(thermostat_time)
    barostat_time = 1000 * timestep if barostat_time is None else float(barostat_time)
    target = pressure_tensor(pressure)
    keep_freed_memory()  # each step's freed tensors stay mapped for the next (any calculator)
    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.get_stress()  # unknown elements, no stress from this calculator ...: refused before the folder is touched
    out = Path(output)
    parameters = {"structure": fingerprint(atoms), "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
                  "temperatures_K": temperatures, "steps_per_temperature": int(steps),
                  "pressure_GPa": target.tolist(), "timestep_fs": float(timestep),
                  "thermostat_time_fs": thermostat_time, "barostat_time_fs": barostat_time, "stride": int(stride),
                  "seed": int(seed), "dtype": str(getattr(calculator, "dtype", ""))}
    open_run(out, "md --ensemble npt", parameters, model_record(model_spec, calculator), {}, restart=restart)
    thermo_file, checkpoint = out / "thermo.json", out / "checkpoint.traj"
    rows: list[dict[str, Any]] = json.loads(thermo_file.read_text()) if thermo_file.is_file() else []
    if rows:
        atoms = read(checkpoint)
        atoms.calc = calculator
        if progress:
            print(f"resuming {out}: {len(rows)} of {len(temperatures)} temperatures done")
    else:
        thermalize(atoms, temperatures[0], np.random.default_rng(seed))
    with progress_reporter(len(temperatures) * steps, f"NPT ramp {temperatures[0]:g}→{temperatures[-1]:g} K",
                           unit="step", initial=len(rows) * steps, enabled=progress) as bar:
        for k in range(len(rows), len(temperatures)):
            rows.append(_run_stage(atoms, out / f"stage-{k}.traj", temperatures[k], steps, target, timestep,
                                   thermostat_time, barostat_time, stride, bar))
            with deferred_interrupts():
                write_atomically(checkpoint, lambda tmp: atoms.write(tmp, format="traj"))
                write_atomically(thermo_file, lambda tmp: tmp.write_text(json.dumps(rows, indent=1)))
            bar.set_postfix(T=f"{rows[-1]['mean_temperature_K']:.0f} K", P=f"{rows[-1]['mean_pressure_GPa']:.2f} GPa")
    finish_run(out, {"stages": len(rows)})
    return thermo_file


def _run_stage(atoms: Atoms, trajectory: Path, temperature: float, steps: int, target: np.ndarray, timestep: float,
               thermostat_time: float, barostat_time: float, stride: int, bar) -> dict[str, Any]:
    """One stage of a ramp on ``atoms`` (in place); its trajectory written whole, atomically."""
    dyn = npt_dynamics(atoms, timestep, temperature, _voigt(target), thermostat_time, barostat_time)
    temps: list[float] = []
    pressures: list[np.ndarray] = []
    cells: list[np.ndarray] = []
    potential: list[float] = []
    frames: list[Atoms] = []

    def record() -> None:
        if dyn.nsteps == 0:
            return
        temps.append(atoms.get_temperature())
        pressures.append(-atoms.get_stress(voigt=False, include_ideal_gas=True))
        cells.append(atoms.cell.array.copy())
        potential.append(atoms.get_potential_energy())
        bar.update(1)
        if dyn.nsteps % stride == 0:
            frames.append(_frame(atoms))

    dyn.attach(record, interval=1)
    dyn.run(steps)

    def write(tmp: Path) -> None:
        with Trajectory(str(tmp), "w") as writer:
            for frame in frames:
                writer.write(frame)

    write_atomically(trajectory, write)
    return _stage_summary(temperature, temps, pressures, cells, potential)


def _voigt(tensor: np.ndarray) -> list[float]:
    return [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[1, 2], tensor[0, 2], tensor[0, 1]]


def _frame(atoms: Atoms) -> Atoms:
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                       stress=atoms.get_stress())
    return frame
