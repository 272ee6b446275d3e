"""Reference data the package generates itself (no downloads).

:func:`emt_dataset` samples fcc metals and their random alloys with ASE's EMT
potential: Langevin MD snapshots at several temperatures, strained cells and
vacancies.  The demo model is trained on it (see ``scripts/make_demo_model.py``).
EMT is a cheap many-body reference, not a physical truth: models trained on it
are demonstrations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

from .md import thermalize

#: fcc lattice constants (Å) close to EMT's minima
FCC_LATTICE = {"Ni": 3.52, "Cu": 3.60, "Pd": 3.94, "Ag": 4.06, "Pt": 3.94, "Au": 4.06, "Al": 4.05}
DEMO_ELEMENTS = ("Ni", "Cu", "Ag", "Au")


def random_alloy(elements: Sequence[str], rng: np.random.Generator, repeat: int = 2,
                 vacancies: int = 0) -> Atoms:
    """A cubic fcc supercell (4·repeat³ atoms) with random occupation by ``elements``.

    The lattice constant follows Vegard's law over the chosen composition.
    """
    n = 4 * repeat**3
    weights = rng.dirichlet(np.ones(len(elements)))
    symbols = rng.choice(list(elements), size=n, p=weights)
    a = float(np.mean([FCC_LATTICE[s] for s in symbols]))
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)
    atoms.set_chemical_symbols(list(symbols))
    if vacancies:
        del atoms[rng.choice(len(atoms), size=vacancies, replace=False).tolist()]
    return atoms


def labelled(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` with EMT energy, forces and stress attached."""
    out = atoms.copy()
    calc = EMT()
    out.calc = calc
    energy, forces, stress = out.get_potential_energy(), out.get_forces(), out.get_stress()
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces, stress=stress)
    return out


def emt_dataset(n_trajectories: int = 24, snapshots: int = 8, elements: Sequence[str] = DEMO_ELEMENTS,
                temperatures: tuple[float, float] = (100.0, 1400.0), strain: float = 0.04,
                seed: int = 0) -> list[Atoms]:
    """EMT-labelled structures of fcc ``elements`` and their alloys.

    Each trajectory picks 1-3 elements, a random composition, a random
    isotropic-plus-shear strain (up to ``strain``), sometimes a vacancy, and a
    temperature; ``snapshots`` Langevin snapshots 20 fs apart are labelled.

    Returns
    -------
    list of Atoms
        With a ``SinglePointCalculator`` holding energy (eV), forces (eV/Å)
        and stress (eV/Å³).
    """
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    for _ in range(n_trajectories):
        k = int(rng.integers(1, min(3, len(elements)) + 1))
        chosen = list(rng.choice(list(elements), size=k, replace=False))
        atoms = random_alloy(chosen, rng, vacancies=int(rng.random() < 0.3))
        deformation = np.eye(3) + rng.uniform(-strain, strain, (3, 3)) * np.array([[1, .3, .3], [.3, 1, .3], [.3, .3, 1]])
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        temperature = float(rng.uniform(*temperatures))
        atoms.calc = EMT()
        thermalize(atoms, temperature, rng)
        dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.05, fixcm=False, rng=rng)
        dyn.run(50)
        for _ in range(snapshots):
            dyn.run(10)
            frames.append(labelled(atoms))
    return frames
