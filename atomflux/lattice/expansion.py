"""Thermal expansion for the lattice side: the cell of an MD run, or the quasi-harmonic cell at T.

Lattice κ computed at the 0 K lattice constant cannot be compared with MD
at temperature T: the crystal has expanded, its phonons have softened.  Two
ways to put the lattice calculation at the right volume:

- :func:`cell_from_md`: the mean cell of an MD trajectory (NPT run, ASE
  trajectory or extxyz), divided by its supercell matrix.  This is the
  volume the MD actually had, with all its anharmonicity: use it to compare
  with that MD.
- :func:`quasi_harmonic`: the volume that minimises F(V, T) = E_static(V) +
  F_vib(V, T), with F_vib from phonopy's harmonic free energy at each
  volume, classical (k_B T Σ ln(ħω/k_B T), to compare with classical MD) or
  quantum (Bose–Einstein, with zero-point energy), fitted with phonopy's
  equation of state (Vinet by default).  The cell shape is kept (isotropic
  scaling): exact for cubic crystals, an approximation otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms


def read_frames(source: str | Path | Atoms | Sequence[Atoms]) -> list[Atoms]:
    """All frames of an ASE-readable trajectory (``.traj``, extxyz, ...), or the given Atoms."""
    if isinstance(source, Atoms):
        return [source]
    if isinstance(source, (str, Path)):
        import ase.io

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no trajectory file {path}")
        try:
            frames = ase.io.read(path, index=":")
        except Exception as err:  # ASE raises many types for unreadable files
            raise ValueError(f"cannot read {path} as a trajectory ({type(err).__name__}: {err})") from err
        frames = frames if isinstance(frames, list) else [frames]
    else:
        frames = list(source)
    if not frames:
        raise ValueError(f"no frames in {source}")
    return frames


def supercell_of(unit_cell: Atoms, cell: np.ndarray, n_atoms: int) -> np.ndarray:
    """Integer matrix P with ``cell ≈ P · unit_cell.cell`` (within 10 % strain), checked against the atom count."""
    unit = unit_cell.cell.array
    matrix = np.rint(np.asarray(cell) @ np.linalg.inv(unit)).astype(int)
    det = int(round(np.linalg.det(matrix))) if matrix.any() else 0
    strain = np.abs(np.asarray(cell) @ np.linalg.inv(matrix @ unit) - np.eye(3)).max() if det > 0 else np.inf
    if det <= 0 or strain > 0.1 or det * len(unit_cell) != n_atoms:
        raise ValueError(f"the MD cell ({n_atoms} atoms) is not a supercell of the given unit cell "
                         f"({len(unit_cell)} atoms): give the unit cell the MD supercell was built from")
    return matrix


def mean_cell(frames: Sequence[Atoms], equilibration: float = 0.0) -> np.ndarray:
    """Mean cell (Å, rows = lattice vectors) of the frames after dropping the first ``equilibration`` fraction."""
    if not 0 <= equilibration < 1:
        raise ValueError(f"equilibration must be a fraction in [0, 1), got {equilibration}")
    kept = list(frames)[int(equilibration * len(frames)):]
    return np.mean([f.cell.array for f in kept], axis=0)


def cell_from_md(unit_cell: Atoms, trajectory: str | Path | Atoms | Sequence[Atoms],
                 equilibration: float = 0.0) -> Atoms:
    """The unit cell scaled to the mean cell of an MD trajectory (fractional positions kept).

    Parameters
    ----------
    unit_cell
        The unit cell the MD supercell was built from (any lattice constant).
    trajectory
        File (ASE trajectory, extxyz ...) or frames of the MD run (NPT for
        thermal expansion), all of one supercell of ``unit_cell``.
    equilibration
        Fraction of the frames dropped from the start.
    """
    frames = read_frames(trajectory)
    cell = mean_cell(frames, equilibration)
    matrix = supercell_of(unit_cell, cell, len(frames[0]))
    scaled = unit_cell.copy()
    scaled.set_cell(np.linalg.inv(matrix) @ cell, scale_atoms=True)
    return scaled


# ---- quasi-harmonic volume ------------------------------------------------------------------------------


@dataclass
class QuasiHarmonic:
    """Quasi-harmonic equilibrium at one temperature.

    Attributes
    ----------
    temperature : float
        K.
    statistics : str
        ``"classical"`` or ``"quantum"`` vibrational free energy.
    strains : ndarray [n]
        Linear strains of the input cell that were sampled.
    volumes : ndarray [n]
        Å³ per atom.
    static_energies, free_energies : ndarray [n]
        E_static(V) and E_static + F_vib(V, T) in eV per atom.
    volume : float
        Equilibrium volume at ``temperature`` (Å³ per atom).
    static_volume : float
        Minimum of E_static(V) (Å³ per atom).
    atoms : Atoms
        The input cell scaled to ``volume``.
    """

    temperature: float
    statistics: str
    strains: np.ndarray
    volumes: np.ndarray
    static_energies: np.ndarray
    free_energies: np.ndarray
    volume: float
    static_volume: float
    atoms: Atoms = field(repr=False)

    @property
    def linear_expansion(self) -> float:
        """(V/V_static)^(1/3) − 1: the linear thermal expansion relative to the static lattice."""
        return float((self.volume / self.static_volume) ** (1 / 3) - 1)

    def plot(self, path: str | Path) -> Path:
        """E_static(V) and F(V, T) with both minima; a PNG."""
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot(self.volumes, 1e3 * (self.static_energies - self.static_energies.min()), "o-", label="E static")
        ax.plot(self.volumes, 1e3 * (self.free_energies - self.free_energies.min()), "s-",
                label=f"F({self.temperature:g} K, {self.statistics})")
        ax.axvline(self.static_volume, color="C0", ls=":")
        ax.axvline(self.volume, color="C1", ls=":")
        ax.set(xlabel="volume (Å³/atom)", ylabel="energy (meV/atom, shifted)", title="quasi-harmonic volume")
        ax.legend()
        return save_figure(fig, path)


def quasi_harmonic(atoms: Atoms, calculator, temperature: float, statistics: str = "classical", supercell=(4, 4, 4),
                   mesh=(20, 20, 20), strains: Sequence[float] = tuple(np.linspace(-0.01, 0.04, 11)),
                   displacement: float = 0.01, primitive="auto", eos: str = "vinet", symmetrize: str | None = "projector",
                   progress: bool = True) -> QuasiHarmonic:
    """Quasi-harmonic equilibrium volume at ``temperature`` (K) with phonopy at each strained cell.

    Parameters
    ----------
    atoms
        Unit cell (ideally relaxed at 0 K); scaled isotropically by ``1 + strain``.
    statistics
        ``"classical"`` (equipartition, to compare with classical MD) or
        ``"quantum"`` (Bose–Einstein, zero-point energy included).
    supercell, mesh, displacement, primitive, symmetrize
        Harmonic phonons at each volume (fc2 by finite displacements).  A
        displacement that would carry pairs across a non-smooth cutoff is
        reduced at that volume (see :mod:`.checks`).
    eos
        Equation of state fitted by phonopy: ``"vinet"``, ``"murnaghan"``, ``"birch_murnaghan"``.
    """
    from phonopy import Phonopy
    from phonopy.physical_units import get_physical_units
    from phonopy.qha.eos import fit_to_eos, get_eos

    from . import checks
    from .forceconstants import produce_fc2
    from .forcesets import compute_forces
    from .kappa import to_ase, to_phonopy

    if statistics not in ("classical", "quantum"):
        raise ValueError(f"statistics must be 'classical' or 'quantum', got {statistics!r}")
    checks.validate_settings(supercell=supercell, mesh=mesh, displacement=displacement, temperatures=[temperature])
    strains = np.asarray(strains, dtype=float)
    if len(strains) < 5 or (strains <= -1).any():
        raise ValueError("quasi-harmonic fit needs at least 5 strains > -1")
    ev_to_kjmol = get_physical_units().EvTokJmol
    volumes, static, free = [], [], []
    for strain in strains:
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array * (1 + strain), scale_atoms=True)
        strained.calc = calculator
        static.append(strained.get_potential_energy() / len(strained))
        volumes.append(strained.get_volume() / len(strained))
        shells, _ = checks.cutoff_crossings(strained, calculator, displacement, pairs=False)
        step = displacement
        if shells:
            step = checks.adapted_displacement(shells, displacement, False, checks.calculator_dtype(calculator))
            if step is None:
                raise ValueError(f"at strain {strain:+.4f} a neighbour shell sits on the model's non-smooth cutoff; "
                                 "choose strains that avoid it")
        with checks.phonopy_errors("set up the phonon supercell"):
            phonon = Phonopy(to_phonopy(strained), supercell_matrix=checks.supercell_matrix(supercell),
                             primitive_matrix=primitive)
        phonon.generate_displacements(distance=step)
        cells = [to_ase(c) for c in phonon.supercells_with_displacements]
        produce_fc2(phonon, compute_forces(cells, calculator, uncertainty=False, progress=progress,
                                           label=f"fc2 at strain {strain:+.3f}").forces, symmetrize)
        with checks.phonopy_errors("sample the q mesh"):
            phonon.run_mesh(checks.validate_mesh(mesh), is_gamma_center=True)
        phonon.run_thermal_properties(temperatures=[temperature], classical=statistics == "classical")
        f_vib = phonon.thermal_properties.free_energy[0] / ev_to_kjmol                  # eV per primitive cell
        free.append(static[-1] + f_vib / len(phonon.primitive))
    volumes, static, free = map(np.asarray, (volumes, static, free))
    law = get_eos(eos)
    v_static = float(fit_to_eos(volumes, static, law)[3])
    v_t = float(fit_to_eos(volumes, free, law)[3])
    for v, what in ((v_static, "static"), (v_t, f"{temperature:g} K")):
        if not volumes.min() <= v <= volumes.max():
            raise ValueError(f"the {what} equilibrium volume {v:.3f} Å³/atom lies outside the sampled volumes "
                             f"{volumes.min():.3f}-{volumes.max():.3f}: widen the strains")
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell.array * (v_t * len(atoms) / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    return QuasiHarmonic(float(temperature), statistics, strains, volumes, static, free, v_t, v_static, scaled)
