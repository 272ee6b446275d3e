"""Training data: frames with reference energies, forces and stress."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress


@dataclass
class Frame:
    """One reference structure; each target may be missing (``None``).

    Attributes
    ----------
    atoms : Atoms
    energy : float or None
        Total energy, eV.
    forces : ndarray [N, 3] or None
        eV/Å.
    stress : ndarray [3, 3] or None
        eV/Å³, ASE sign convention.
    """

    atoms: Atoms
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None


def _result(atoms: Atoms, name: str):
    calc = atoms.calc
    if calc is not None and name in getattr(calc, "results", {}):
        return calc.results[name]
    for store in (atoms.info, atoms.arrays):
        for key in (name, f"REF_{name}", f"ref_{name}", f"dft_{name}"):
            if key in store:
                return store[key]
    return None


#: ``atoms.info`` key naming the MD run (or other source) a frame comes from; frames that share it are
#: near-duplicates (snapshots of one run share their errors), which
#: :func:`~atomflux.training.trainer.split_frames` can keep on one side of a split
RUN_KEY = "md_run"


def frame_from_atoms(atoms: Atoms) -> Frame:
    """Targets read from an ``Atoms`` (calculator results, then info/arrays); of ``info`` only :data:`RUN_KEY` is kept."""
    energy = _result(atoms, "energy")
    forces = _result(atoms, "forces")
    stress = _result(atoms, "stress")
    if stress is not None:  # copies: a live calculator may reuse its result arrays at the next call
        stress = np.array(stress, dtype=np.float64)
        stress = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)
    clean = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if RUN_KEY in atoms.info:
        clean.info[RUN_KEY] = atoms.info[RUN_KEY]
    return Frame(clean, None if energy is None else float(energy),
                 None if forces is None else np.array(forces, dtype=np.float64).reshape(-1, 3),
                 stress)


def read_frames(source: str | Path | Iterable[Atoms]) -> list[Frame]:
    """Frames from an extxyz (or any ASE-readable) file, or from ``Atoms`` objects.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing, empty, unreadable or malformed file, or no frame with any target.
    """
    if isinstance(source, (str, Path)):
        from ..structure_files import read_structures

        if not Path(str(source).partition("@")[0]).exists():
            raise FileNotFoundError(f"no data file {str(source)!r}")
        structures = read_structures(source, index=":")
    else:
        structures = list(source)
    frames = [frame_from_atoms(a) for a in structures]
    if not frames:
        raise ValueError(f"no structures in {source}")
    if all(f.energy is None and f.forces is None and f.stress is None for f in frames):
        raise ValueError(f"no energies, forces or stress found in {source}: training and evaluation need "
                         "reference data (e.g. an extxyz file written from DFT or ASE calculations)")
    return frames


def fingerprint(frames: Sequence[Frame]) -> str:
    """SHA-256 of the structures and targets, identifying a training set."""
    h = hashlib.sha256()
    for f in frames:
        for arr in (f.atoms.numbers, f.atoms.positions, f.atoms.cell.array, f.atoms.pbc,
                    f.forces, f.stress, f.energy):
            h.update(b"-" if arr is None else np.ascontiguousarray(np.asarray(arr, dtype=np.float64)).tobytes())
    return h.hexdigest()


def species_of(frames: Sequence[Frame]) -> list[str]:
    """Sorted chemical symbols (by atomic number) present in the frames."""
    from ase.data import chemical_symbols

    numbers = sorted({int(z) for f in frames for z in f.atoms.numbers})
    return [chemical_symbols[z] for z in numbers]
