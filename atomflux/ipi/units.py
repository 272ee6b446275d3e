"""Atomic units on the i-PI side of the socket, and the cell layout i-PI uses.

i-PI talks in atomic units (bohr, hartree) and stores the cell as a matrix h
whose *columns* are the lattice vectors; ASE (and atomflux) use Å, eV and
cells whose *rows* are the lattice vectors.

The two conversion factors are i-PI's own (``ipi/utils/units.py``:
1 Å = 1.8897261 bohr, 1 eV = 0.036749326 Ha).  They differ from ASE's CODATA
values by 1.4e-8 (length) and 1.0e-7 (energy) relative; using i-PI's makes
the round trip exact: positions i-PI read in Å (with ``units`` and
``cell_units`` set to ``angstrom``) reach the model unchanged, and the
energies i-PI prints in eV are the model's eV.  (i-PI's separate factors for
eV/Å and eV/Å³ outputs are rounded to 8 digits and are 1e-7 off its own eV
and Å: forces and stresses printed in those units carry that rounding.)
"""

from __future__ import annotations

import numpy as np

#: bohr per Å, as i-PI converts lengths
BOHR_PER_ANGSTROM = 1.8897261
#: hartree per eV, as i-PI converts energies
HARTREE_PER_EV = 0.036749326


def positions_to_angstrom(positions_bohr: np.ndarray) -> np.ndarray:
    """Positions (or any length) from bohr to Å."""
    return np.asarray(positions_bohr, dtype=np.float64) / BOHR_PER_ANGSTROM


def cell_to_ase(h_bohr: np.ndarray) -> np.ndarray:
    """i-PI cell matrix h [..., 3, 3] (lattice vectors as columns, bohr) → ASE cell (rows, Å)."""
    return np.swapaxes(np.asarray(h_bohr, dtype=np.float64), -1, -2) / BOHR_PER_ANGSTROM


def energy_to_hartree(energy_ev: np.ndarray | float) -> np.ndarray:
    """Energies or virials from eV to hartree."""
    return np.asarray(energy_ev, dtype=np.float64) * HARTREE_PER_EV


def forces_to_atomic(forces_ev_per_angstrom: np.ndarray) -> np.ndarray:
    """Forces from eV/Å to hartree/bohr."""
    return np.asarray(forces_ev_per_angstrom, dtype=np.float64) * (HARTREE_PER_EV / BOHR_PER_ANGSTROM)
