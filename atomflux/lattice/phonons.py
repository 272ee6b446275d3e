"""Harmonic phonons with phonopy: dispersion along a band path and density of states."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from . import checks
from .forceconstants import produce_fc2
from .forcesets import compute_forces
from .kappa import to_ase, to_phonopy


@dataclass
class Phonons:
    """Dispersion (THz) along ``path_labels`` and the total DOS (states/THz per unit cell)."""

    distances: np.ndarray
    frequencies: np.ndarray          # [n_points, n_bands]
    special_points: list[tuple[float, str]]
    dos_frequencies: np.ndarray
    dos: np.ndarray

    def plot(self, path: str | Path) -> Path:
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [3, 1]}, sharey=True)
        ax1.plot(self.distances, self.frequencies, "k-", lw=1)
        for x, _ in self.special_points:
            ax1.axvline(x, color="0.7", lw=0.5)
        ax1.set_xticks([x for x, _ in self.special_points], [s for _, s in self.special_points])
        ax1.set(xlim=(self.distances[0], self.distances[-1]), ylabel="frequency (THz)", title="phonon dispersion")
        ax2.plot(self.dos, self.dos_frequencies, "k-")
        ax2.set(xlabel="DOS (1/THz)")
        return save_figure(fig, path)


def phonons(atoms: Atoms, calculator, supercell=(4, 4, 4), primitive="auto", displacement=0.01,
            npoints: int = 200, dos_mesh=(20, 20, 20), symmetrize: str | None = "projector",
            progress: bool = True) -> Phonons:
    """Phonon dispersion along ASE's standard band path of the primitive cell, and the DOS.

    fc2 is symmetrised as ``phonopy.load`` does (``symmetrize``, see
    :mod:`.forceconstants`); a displacement that can carry pairs across a
    non-smooth model cutoff raises a :class:`~.checks.CutoffCrossingWarning`.
    """
    from phonopy import Phonopy

    checks.validate_settings(supercell=supercell, mesh=dos_mesh, displacement=displacement)
    _, text = checks.cutoff_crossings(atoms, calculator, displacement, pairs=False)
    if text is not None:
        checks.warn(text, checks.CutoffCrossingWarning)
    with checks.phonopy_errors("build the supercells"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="primitive_matrix defaulted")
        ph = Phonopy(to_phonopy(atoms), supercell_matrix=checks.supercell_matrix(supercell), primitive_matrix=primitive)
    ph.generate_displacements(distance=displacement)
    supercells = [to_ase(c) for c in ph.supercells_with_displacements]
    forces = compute_forces(supercells, calculator, uncertainty=False, progress=progress, label="fc2 force sets").forces
    produce_fc2(ph, forces, symmetrize)
    prim = to_ase(ph.primitive)
    bandpath = prim.cell.bandpath(npoints=npoints)
    ph.run_qpoints(bandpath.kpts)
    frequencies = ph.qpoints.frequencies
    x, special_x, labels = bandpath.get_linear_kpoint_axis()
    with checks.phonopy_errors("sample the q mesh"):
        ph.run_mesh(list(dos_mesh), is_gamma_center=True)
    ph.run_total_dos()
    dos = ph.total_dos
    return Phonons(np.asarray(x), np.asarray(frequencies), list(zip(map(float, special_x), labels)),
                   np.asarray(dos.frequency_points), np.asarray(dos.dos))
