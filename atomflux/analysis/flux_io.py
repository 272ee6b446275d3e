"""Heat-flux time series from files: atomflux ``flux.npz`` and LAMMPS ``compute heat/flux`` output.

Everything is converted to atomflux units on reading: time fs, heat flux
eV·Å/fs (the total flux Σ_i e_i v_i + virial term, NOT divided by the
volume), mass fluxes Å/fs, volume Å³, temperature K.

LAMMPS ``compute heat/flux`` gives a global vector of 6 values, the total
flux (1–3) and its convective part (4–6), "extensive" and in
energy·velocity units (not divided by the volume):

============  ===========================  ==============  ==============
LAMMPS units  heat/flux unit               time unit       to eV·Å/fs
============  ===========================  ==============  ==============
``metal``     eV·Å/ps                      ps              × 10⁻³
``real``      (kcal/mol)·Å/fs              fs              × 0.0433641
============  ===========================  ==============  ==============

Two LAMMPS file layouts are read: ``fix ave/time`` (header
``# TimeStep c_flux[1] c_flux[2] c_flux[3] ...``) and ``fix print`` (any
columns; a ``title`` line naming them, or ``columns=`` given here).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: the ``units`` record of a flux.npz written by :func:`atomflux.md.run_transport_md`
ATOMFLUX_UNITS = {"time": "fs", "heat_flux": "eV*Angstrom/fs", "species_velocity": "Angstrom/fs",
                  "volume": "Angstrom^3", "temperature": "K", "mean_temperature": "K", "timestep": "fs"}
_AVOGADRO, _ELECTRON_VOLT_J = 6.02214076e23, 1.602176634e-19
#: LAMMPS unit style → (heat/flux value in eV·Å/fs, time unit in fs)
LAMMPS_UNITS = {"metal": (1e-3, 1e3), "real": (4184.0 / (_AVOGADRO * _ELECTRON_VOLT_J), 1.0)}
_TEMPERATURE_COLUMNS = ("temp", "c_thermo_temp", "v_temp", "v_t", "temperature")
_VOLUME_COLUMNS = ("vol", "v_vol", "v_v", "v_volume", "volume")
_STEP_COLUMNS = ("timestep", "step", "v_step")
_TIME_COLUMNS = ("time", "v_time")


@dataclass
class FluxRun:
    """One MD run's heat flux in atomflux units.

    Attributes
    ----------
    heat_flux : ndarray [n_steps, n_samples]
        eV·Å/fs, not divided by the volume; the columns are independent
        samples of one process (x, y, z of each replica).
    mass_fluxes : list of ndarray [n_steps, n_samples]
        Σ of velocities of each species but the last (Å/fs), column-aligned
        with ``heat_flux``: the coupled fluxes of multicomponent Green–Kubo.
    dt : float
        Sampling interval, fs.
    volume : float
        Å³.
    temperature : float
        Mean temperature of the run, K.
    """

    heat_flux: np.ndarray
    dt: float
    volume: float
    temperature: float
    source: str
    mass_fluxes: list[np.ndarray] = field(default_factory=list)
    species: list[str] = field(default_factory=list)
    n_replicas: int = 1
    n_atoms: int | None = None
    provenance: dict[str, Any] | None = None
    units: dict[str, str] = field(default_factory=lambda: dict(ATOMFLUX_UNITS))

    @property
    def n_steps(self) -> int:
        return int(self.heat_flux.shape[0])

    @property
    def duration(self) -> float:
        """Length of the run, fs."""
        return self.n_steps * self.dt


def file_record(path: str | Path) -> dict[str, str]:
    """Absolute path and SHA-256 (16 hex digits) of a file's contents: the identity of an analysis input."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(Path(path).resolve()), "sha256": digest.hexdigest()[:16]}


def check_uniform_time(time: np.ndarray, source: str, unit: str = "fs") -> float:
    """The sampling interval of ``time`` [n]; ValueError naming the first index where it is not uniform.

    A flux file must hold each step exactly once, in order (a resumed run
    that repeated or skipped steps, or two runs mixed, breaks this).
    """
    t = np.asarray(time, dtype=float)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(f"{source}: need a time axis with at least 2 samples, found {t.size}")
    dt = (t[-1] - t[0]) / (len(t) - 1)
    steps = np.diff(t)
    bad = np.flatnonzero(np.abs(steps - steps[0]) > 1e-6 * abs(steps[0]) + 1e-12 * np.abs(t[1:]).max())
    if steps[0] <= 0 or len(bad):
        k = int(bad[0]) + 1 if len(bad) else 1
        raise ValueError(f"{source}: time axis is not uniform at index {k} (time {t[k - 1]:g} → {t[k]:g} {unit}, "
                         f"expected steps of {steps[0]:g} {unit}): the file repeats, skips or mixes steps; "
                         "cut it at that index or rerun")
    return float(dt)


def read_flux(path: str | Path, **lammps_options: Any) -> FluxRun:
    """Read ``flux.npz`` (atomflux) or a LAMMPS text file (by extension: ``.npz`` or anything else).

    ``lammps_options`` are passed to :func:`read_lammps_flux` (they are not
    allowed for ``.npz`` files, which carry their own units and metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no flux file {path}" + (" (it is a folder)" if path.is_dir() else ""))
    kind = file_kind(path)
    if kind != "text" and kind != "npz":
        raise ValueError(f"{path} is {kind}, not a heat-flux file; --flux/--md take flux.npz from "
                         "`atomflux md --transport` or LAMMPS compute heat/flux output (fix ave/time, fix print)"
                         + ("; positions go to `atomflux transport --trajectory`" if "trajectory" in kind else ""))
    if kind == "npz":
        given = {k: v for k, v in lammps_options.items() if v is not None}
        if given:
            raise ValueError(f"{path}: an atomflux flux.npz carries its own units, timestep, volume and temperature; "
                             f"options {sorted(given)} are for LAMMPS files")
        return read_flux_npz(path)
    return read_lammps_flux(path, **lammps_options)


def file_kind(path: str | Path) -> str:
    """What a file looks like from its first bytes: "npz", "text", or a description of another kind of file.

    Recognised: numpy ``.npz`` (a zip archive), ASE ``.traj`` (ULM), extxyz/xyz and LAMMPS dumps
    (trajectories), JSON documents, and binary files that are none of these.
    """
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"- of Ulm"):
        return "an ASE trajectory"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the block
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "a binary file"
    lines = [line.strip() for line in text.splitlines()]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "a JSON document (a lattice kappa.json goes to `atomflux compare --lattice`)"
    if lines and lines[0].startswith("ITEM:"):
        return "a LAMMPS dump (a trajectory)"
    if len(lines) > 1 and lines[0].isdigit() and ("Lattice=" in lines[1] or "Properties=" in lines[1]):
        return "an extended XYZ file (a trajectory)"
    return "text"


def read_flux_npz(path: str | Path) -> FluxRun:
    """A ``flux.npz`` of :func:`atomflux.md.run_transport_md` (FLUX_SCHEMA: units, provenance, replicas optional)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}); give flux.npz from `atomflux md --transport`") \
            from None
    if not hasattr(archive, "files"):
        raise ValueError(f"{path}: a single numpy array, not a flux.npz from `atomflux md --transport`")
    with archive as data:
        keys = set(data.files)
        missing = {"time", "heat_flux", "volume"} - keys
        if missing:
            raise ValueError(f"{path}: not an atomflux flux file (missing {sorted(missing)})")
        units = json.loads(str(data["units"])) if "units" in keys else dict(ATOMFLUX_UNITS)
        for key in ("time", "heat_flux", "species_velocity", "volume", "temperature"):
            if key in units and units[key] != ATOMFLUX_UNITS[key]:
                raise ValueError(f"{path}: {key} is in {units[key]!r}; expected {ATOMFLUX_UNITS[key]!r}")
        provenance = json.loads(str(data["provenance"])) if "provenance" in keys else None
        time = np.asarray(data["time"], float)
        flux = np.asarray(data["heat_flux"], float)
        velocity = np.asarray(data["species_velocity"], float) if "species_velocity" in keys else None
        species = [str(s) for s in data["species"]] if "species" in keys else []
        volume = float(data["volume"])
        temperature = float("nan")
        for key in ("mean_temperature", "temperature"):
            if key in keys and np.isfinite(float(data[key])):
                temperature = float(data[key])
                break
        n_atoms = int(data["n_atoms"]) if "n_atoms" in keys else None
    if n_atoms is None and isinstance(provenance, dict):
        recorded = (provenance.get("parameters") or {}).get("n_atoms")
        n_atoms = int(recorded) if recorded else None
    dt = check_uniform_time(time, str(path))
    if len(flux) != len(time):
        raise ValueError(f"{path}: heat_flux has {len(flux)} rows but time has {len(time)}")
    if flux.ndim == 2:
        flux = flux[:, None, :]
        velocity = None if velocity is None else velocity[:, None]
    if flux.ndim != 3 or flux.shape[-1] != 3:
        raise ValueError(f"{path}: heat_flux must be [n, 3] or [n, replicas, 3], got {flux.shape}")
    n, replicas = flux.shape[:2]
    mass_fluxes = []
    if velocity is not None and velocity.shape[2] > 1:  # [n, R, species, 3] → one [n, R·3] array per species but the last
        mass_fluxes = [velocity[:, :, s, :].reshape(n, replicas * 3) for s in range(velocity.shape[2] - 1)]
    return _checked(FluxRun(flux.reshape(n, replicas * 3), dt, volume, temperature, str(path), mass_fluxes,
                            species, replicas, n_atoms, provenance, units))


def read_lammps_flux(path: str | Path, units: str | None = None, timestep: float | None = None,
                     volume: float | None = None, temperature: float | None = None,
                     columns: Sequence[str | int] | None = None, per_volume: bool = False) -> FluxRun:
    """LAMMPS ``compute heat/flux`` values written by ``fix ave/time`` or ``fix print``.

    Parameters
    ----------
    units : {"metal", "real"}
        The LAMMPS ``units`` style of the run (default "metal").
    timestep : float, optional
        The run's ``timestep`` in LAMMPS time units (metal: ps, real: fs);
        needed when the file has a step column but no time column.
    volume, temperature : float, optional
        Å³ and K; default: the mean of a volume/temperature column
        (``vol``, ``v_V``, ``temp``, ``v_T`` ...) when the file has one.
    columns : 4 names or 1-based indices, optional
        The step (or time) column and the Jx, Jy, Jz columns; default: the
        first column and ``c_ID[1..3]`` of the one heat/flux compute in the header.
    per_volume : bool
        The columns hold J/V (e.g. ``variable Jx equal c_flux[1]/vol``);
        they are multiplied back by the volume.
    """
    path = Path(path)
    units = units or "metal"
    if units not in LAMMPS_UNITS:
        raise ValueError(f"LAMMPS units {units!r} are not supported; use one of {sorted(LAMMPS_UNITS)} "
                         "(or convert the flux to eV·Å/fs yourself)")
    flux_unit, time_unit = LAMMPS_UNITS[units]
    names, data = _read_columns(path)
    lower = [n.lower() for n in names]
    if columns is None:
        step_col, flux_cols = 0, _heat_flux_columns(names, path)
    else:
        if len(columns) != 4:
            raise ValueError(f"columns must name 4 columns (step or time, Jx, Jy, Jz), got {list(columns)}")
        step_col, *flux_cols = [_column_index(c, names, data.shape[1], path) for c in columns]
    stamp = data[:, step_col]
    if lower and lower[step_col] in _TIME_COLUMNS:
        time = stamp * time_unit
    elif lower and lower[step_col] not in _STEP_COLUMNS and columns is None:
        raise ValueError(f"{path}: the first column ({names[step_col]!r}) is neither a step nor a time column; "
                         "give columns=(step, Jx, Jy, Jz)")
    else:
        if timestep is None:
            raise ValueError(f"{path}: the file gives step numbers; give the run's timestep in LAMMPS {units} "
                             f"units ({'ps' if units == 'metal' else 'fs'}), e.g. --timestep 0.001")
        if timestep <= 0:
            raise ValueError(f"timestep must be positive, got {timestep}")
        time = stamp * timestep * time_unit
    dt = check_uniform_time(time, str(path))
    volume = _from_column(volume, lower, data, _VOLUME_COLUMNS, "volume", "--volume (Å³)", path)
    temperature = _from_column(temperature, lower, data, _TEMPERATURE_COLUMNS, "temperature", "--temperature (K)", path)
    flux = data[:, flux_cols] * flux_unit
    if per_volume:
        flux = flux * volume
    return _checked(FluxRun(flux, dt, volume, temperature, str(path), units={
        **ATOMFLUX_UNITS, "source_units": f"LAMMPS {units}", "per_volume": str(bool(per_volume))}))


def _checked(run: FluxRun) -> FluxRun:
    if not (np.isfinite(run.volume) and run.volume > 0):
        raise ValueError(f"{run.source}: volume must be positive, got {run.volume}")
    if not (np.isfinite(run.temperature) and run.temperature > 0):
        raise ValueError(f"{run.source}: temperature must be positive, got {run.temperature}")
    if not np.isfinite(run.heat_flux).all():
        k = int(np.flatnonzero(~np.isfinite(run.heat_flux).all(axis=1))[0])
        raise ValueError(f"{run.source}: heat flux is NaN or infinite at index {k}")
    if not np.any(run.heat_flux):
        raise ValueError(f"{run.source}: heat flux is zero throughout")
    return run


def _read_columns(path: Path) -> tuple[list[str], np.ndarray]:
    """Column names (from the last comment line with as many words as data columns) and the data."""
    comments, rows = [], []
    with open(path) as handle:
        for line in handle:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                comments.append(stripped[1:].split())
                continue
            rows.append(stripped.split())
    if not rows:
        raise ValueError(f"{path}: no data rows")
    width = len(rows[0])
    bad = next((k for k, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise ValueError(f"{path}: data row {bad + 1} has {len(rows[bad])} values, the first has {width} "
                         "(fix ave/time in vector mode, or a truncated file?)")
    try:
        data = np.array(rows, dtype=float)
    except ValueError as err:
        raise ValueError(f"{path}: not a table of numbers ({err})") from None
    names = next((c for c in reversed(comments) if len(c) == width), [])
    return names, data


def _heat_flux_columns(names: list[str], path: Path) -> list[int]:
    found: dict[str, dict[int, int]] = {}
    for k, name in enumerate(names):
        match = re.fullmatch(r"c_(\w+)\[(\d)\]", name)
        if match:
            found.setdefault(match.group(1), {})[int(match.group(2))] = k
    complete = {cid: idx for cid, idx in found.items() if {1, 2, 3} <= set(idx)}
    if len(complete) != 1:
        what = "no c_ID[1] c_ID[2] c_ID[3] columns" if not complete else f"several computes ({sorted(complete)})"
        raise ValueError(f"{path}: {what} in the header {names or '(none)'}; give columns=(step, Jx, Jy, Jz)")
    idx = next(iter(complete.values()))
    return [idx[1], idx[2], idx[3]]


def _column_index(column: str | int, names: list[str], width: int, path: Path) -> int:
    if isinstance(column, (int, np.integer)) or str(column).isdigit():
        k = int(column) - 1
        if not 0 <= k < width:
            raise ValueError(f"{path}: column {column} does not exist (the file has {width}; columns count from 1)")
        return k
    if column not in names:
        raise ValueError(f"{path}: no column {column!r}; the header names {names or 'no columns'}")
    return names.index(column)


def _from_column(given: float | None, names: list[str], data: np.ndarray, candidates: tuple[str, ...],
                 what: str, option: str, path: Path) -> float:
    if given is not None:
        return float(given)
    for name in candidates:
        if name in names:
            return float(data[:, names.index(name)].mean())
    raise ValueError(f"{path}: no {what} column; give {option}")
