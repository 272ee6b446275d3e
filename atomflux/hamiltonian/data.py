"""Training data for the Hamiltonian head: large-basis MO energies from pyscf.

For each geometry (small molecules, randomly distorted from their equilibrium
structures and randomly oriented) two closed-shell calculations are run:

- the *reference*: RHF in a larger basis (default cc-pVDZ), whose occupied
  orbital energies plus the lowest ``n_virtual`` virtual ones are the
  targets;
- the *minimal-basis* calculation: RHF/STO-3G, the baseline the model must
  beat, and whose Fock diagonal initialises the model's on-site energies.

Results are cached as JSON (geometries, energies in eV), so a dataset is
computed once and reused offline.  pyscf is needed only here, not to use a
trained model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.build import molecule

HARTREE_IN_EV = 27.211386245988

#: molecules the shipped model is trained on, and the one kept out of training
TRAINING_MOLECULES = ("H2O", "NH3", "CH4", "C2H4", "C2H6", "CH3OH")
HELD_OUT_MOLECULES = ("CH3CH2OH",)
DEFAULT_REFERENCE = {"method": "RHF", "basis": "cc-pvdz"}


@dataclass
class OrbitalFrame:
    """One molecule geometry with its orbital energies.

    Attributes
    ----------
    name : str
        Molecule name (ASE's g2 name, e.g. ``"CH3OH"``).
    atoms : Atoms
        Geometry (Å).
    levels : np.ndarray [n_occupied + n_virtual]
        Reference MO energies, eV, lowest first.
    n_occupied : int
        Doubly occupied orbitals.
    minimal_levels : np.ndarray [n_minimal]
        RHF/STO-3G MO energies, eV.
    minimal_fock_diagonal : np.ndarray [n_minimal]
        Diagonal of the STO-3G Fock matrix in the AO basis, eV (pyscf AO order).
    """

    name: str
    atoms: Atoms
    levels: np.ndarray
    n_occupied: int
    minimal_levels: np.ndarray
    minimal_fock_diagonal: np.ndarray

    def to_dict(self) -> dict:
        return {"name": self.name, "symbols": self.atoms.get_chemical_symbols(),
                "positions": self.atoms.positions.tolist(), "levels": self.levels.tolist(),
                "n_occupied": self.n_occupied, "minimal_levels": self.minimal_levels.tolist(),
                "minimal_fock_diagonal": self.minimal_fock_diagonal.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "OrbitalFrame":
        return cls(d["name"], Atoms(d["symbols"], positions=d["positions"]), np.array(d["levels"]),
                   int(d["n_occupied"]), np.array(d["minimal_levels"]), np.array(d["minimal_fock_diagonal"]))


def distorted_geometries(name: str, count: int, seed: int, amplitude: float = 0.04) -> list[Atoms]:
    """``count`` randomly distorted and rotated copies of molecule ``name``.

    Heavy atoms move by Gaussian displacements of ``amplitude`` Å per
    component, hydrogens by twice that (about the thermal spread at a few
    hundred K).
    """
    rng = np.random.default_rng(seed)
    base = molecule(name)
    out = []
    for _ in range(count):
        atoms = base.copy()
        sigma = np.where(atoms.numbers == 1, 2 * amplitude, amplitude)[:, None]
        atoms.positions += rng.normal(size=atoms.positions.shape) * sigma
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        atoms.positions = (atoms.positions - atoms.positions.mean(0)) @ (q * np.sign(np.linalg.det(q)))
        out.append(atoms)
    return out


def _pyscf_molecule(atoms: Atoms, basis: str, charge: int = 0, spin: int = 0):
    from pyscf import gto

    return gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                 basis=basis, charge=charge, spin=spin, unit="Angstrom", verbose=0)


def run_scf(atoms: Atoms, method: str, basis: str):
    """Converged closed-shell pyscf mean-field object (method: ``"RHF"`` or a DFT functional name)."""
    from pyscf import dft, scf

    mol = _pyscf_molecule(atoms, basis)
    if method.upper() == "RHF":
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = method
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"{method}/{basis} SCF did not converge for {atoms.get_chemical_formula()}")
    return mf


def compute_frame(name: str, atoms: Atoms, reference: dict, n_virtual: int) -> OrbitalFrame:
    """Reference and minimal-basis orbital energies of one geometry."""
    big = run_scf(atoms, reference["method"], reference["basis"])
    n_occ = int(big.mol.nelectron // 2)
    small = run_scf(atoms, "RHF", "sto-3g")
    fock = small.get_fock()
    return OrbitalFrame(name, atoms.copy(), big.mo_energy[: n_occ + n_virtual] * HARTREE_IN_EV, n_occ,
                        small.mo_energy * HARTREE_IN_EV, np.diag(fock) * HARTREE_IN_EV)


def generate(molecules: Sequence[str], per_molecule: int, seed: int = 0, reference: dict | None = None,
             n_virtual: int = 1, cache: str | Path | None = None, progress: bool = True) -> list[OrbitalFrame]:
    """Frames for ``per_molecule`` distorted geometries of each molecule, cached.

    Parameters
    ----------
    molecules
        ASE g2 molecule names (closed shell), e.g. ``["H2O", "CH4"]``.
    per_molecule
        Geometries per molecule.
    seed
        Seed of the distortions (different seeds give disjoint samples).
    reference
        ``{"method": "RHF" or a functional, "basis": pyscf basis name}``.
    n_virtual
        Virtual levels kept as targets besides the occupied ones.
    cache
        JSON file; reused when it exists and matches the arguments.
    """
    from tqdm import tqdm

    reference = dict(reference or DEFAULT_REFERENCE)
    key = {"molecules": list(molecules), "per_molecule": per_molecule, "seed": seed, "reference": reference,
           "n_virtual": n_virtual}
    if cache is not None and Path(cache).exists():
        stored = json.loads(Path(cache).read_text())
        if stored.get("key") == key:
            return [OrbitalFrame.from_dict(d) for d in stored["frames"]]
    jobs = []
    for k, name in enumerate(molecules):
        sub_seed = int(hashlib.sha256(f"{name}-{seed}".encode()).hexdigest()[:8], 16) + k
        jobs += [(name, a) for a in distorted_geometries(name, per_molecule, sub_seed)]
    frames = [compute_frame(name, atoms, reference, n_virtual)
              for name, atoms in tqdm(jobs, desc=f"{reference['method']}/{reference['basis']}", unit="molecule",
                                      disable=not progress)]
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        Path(cache).write_text(json.dumps({"key": key, "reference": reference,
                                           "frames": [f.to_dict() for f in frames]}))
    return frames


def read_frames(path: str | Path) -> list[OrbitalFrame]:
    """Frames from a JSON file written by :func:`generate`."""
    return [OrbitalFrame.from_dict(d) for d in json.loads(Path(path).read_text())["frames"]]


def reference_of(path: str | Path) -> dict:
    """The reference level (method, basis, virtual levels) of a data file."""
    stored = json.loads(Path(path).read_text())
    return {**stored["reference"], "n_virtual": stored["key"]["n_virtual"]}
