"""Training data for the Hamiltonian head: large-basis MO energies from pyscf.

For each geometry (small molecules, randomly distorted from their equilibrium
structures and randomly oriented) two closed-shell calculations are run:

- the *reference*: RHF in a larger basis (default cc-pVDZ), whose occupied
  orbital energies plus the lowest ``n_virtual`` virtual ones are the
  targets;
- the *minimal-basis* calculation: RHF/STO-3G, the baseline the model must
  beat, and whose Fock diagonal initialises the model's on-site energies.

Results are cached as JSON (geometries, energies in eV), so a dataset is
computed once and reused offline.  The file records what produced it (the
request, atomflux version) and is written as the work goes on: an
interrupted generation resumes with the geometries still missing; a file of
another request is never overwritten (``restart=True`` moves it aside).
pyscf is needed only here, not to use a trained model.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
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
        raise ValueError(f"{method}/{basis} SCF did not converge for {atoms.get_chemical_formula()}; try another "
                         "method, basis or seed")
    return mf


def check_request(molecules: Sequence[str], per_molecule: int, reference: dict, n_virtual: int) -> None:
    """Raise ``ValueError`` for a request pyscf would fail on (before any calculation starts).

    Checks: at least one geometry per molecule, ``n_virtual`` ≥ 0, molecule
    names that ASE knows, closed shells (an even number of electrons), a basis
    pyscf knows for every element, and a method (RHF or a functional) it knows.
    """
    from pyscf import gto
    from pyscf.dft import libxc

    if not molecules:
        raise ValueError("no molecules given")
    if int(per_molecule) != per_molecule or per_molecule < 1:
        raise ValueError(f"per_molecule (--per-molecule) must be a whole number ≥ 1, got {per_molecule}")
    if int(n_virtual) != n_virtual or n_virtual < 0:
        raise ValueError(f"n_virtual (--virtual) must be a whole number ≥ 0, got {n_virtual}")
    elements = set()
    for name in molecules:
        try:
            atoms = molecule(name)
        except KeyError:
            raise ValueError(f"unknown molecule {name!r}: use names of ASE's g2 set (ase.collections.g2), "
                             "e.g. H2O, NH3, CH4, C2H4, CH3OH") from None
        if sum(atoms.numbers) % 2:
            raise ValueError(f"{name} has an odd number of electrons: the Hamiltonian head needs closed-shell "
                             "molecules")
        elements |= set(atoms.get_chemical_symbols())
    for symbol in sorted(elements):
        try:
            with warnings.catch_warnings():  # pyscf's advice to install basis-set-exchange
                warnings.simplefilter("ignore")
                gto.basis.load(reference["basis"], symbol)
        except Exception:  # pyscf raises BasisNotFoundError, KeyError ... depending on the name
            raise ValueError(f"pyscf has no basis {reference['basis']!r} for {symbol}; use a pyscf basis name "
                             "such as cc-pvdz, def2-svp, 6-31g*") from None
    if reference["method"].upper() != "RHF":
        try:
            libxc.parse_xc(reference["method"])
        except (KeyError, ValueError):
            raise ValueError(f"unknown method {reference['method']!r}: use RHF or a functional pyscf knows "
                             "(PBE, PBE0, B3LYP ...)") from None


def compute_frame(name: str, atoms: Atoms, reference: dict, n_virtual: int) -> OrbitalFrame:
    """Reference and minimal-basis orbital energies of one geometry."""
    big = run_scf(atoms, reference["method"], reference["basis"])
    n_occ = int(big.mol.nelectron // 2)
    small = run_scf(atoms, "RHF", "sto-3g")
    fock = small.get_fock()
    return OrbitalFrame(name, atoms.copy(), big.mo_energy[: n_occ + n_virtual] * HARTREE_IN_EV, n_occ,
                        small.mo_energy * HARTREE_IN_EV, np.diag(fock) * HARTREE_IN_EV)


def generate(molecules: Sequence[str], per_molecule: int, seed: int = 0, reference: dict | None = None,
             n_virtual: int = 1, cache: str | Path | None = None, progress: bool = True,
             restart: bool = False, save_seconds: float = 10.0) -> list[OrbitalFrame]:
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
        JSON file, written every ``save_seconds`` while the work goes on; when
        it exists for the same request, its frames are reused (a partial file
        is completed).
    restart
        A ``cache`` of another request is moved aside rather than refused.

    Raises
    ------
    ValueError
        An impossible request (see :func:`check_request`).
    RunMismatch
        ``cache`` holds the data of another request, or is not a data file.
    """
    from ..progress import progress as progress_reporter
    from ..records import RunMismatch, deferred_interrupts, differences, move_aside, run_record, write_atomically

    reference = dict(reference or DEFAULT_REFERENCE)
    check_request(molecules, per_molecule, reference, n_virtual)
    key = {"molecules": list(molecules), "per_molecule": per_molecule, "seed": seed, "reference": reference,
           "n_virtual": n_virtual}
    frames: list[OrbitalFrame] = []
    if cache is not None and Path(cache).exists() and restart:
        print(f"previous data file moved to {move_aside(cache)}")
    elif cache is not None and Path(cache).exists():
        try:
            stored = json.loads(Path(cache).read_text())
            stored_key = stored["key"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IsADirectoryError):
            raise RunMismatch(f"{cache} exists and is not a data file of `atomflux hamiltonian data`; write to "
                              "another file (-o), or pass --restart to move it aside") from None
        lines = differences(stored_key, key)
        if lines:
            raise RunMismatch(f"{cache} holds the data of another request ({'; '.join(lines)}); write to another "
                              "file (-o), or pass --restart to move it aside (it is not deleted)")
        frames = [OrbitalFrame.from_dict(d) for d in stored["frames"]]
        if stored.get("complete", True):
            return frames
    jobs = []
    for k, name in enumerate(molecules):
        sub_seed = int(hashlib.sha256(f"{name}-{seed}".encode()).hexdigest()[:8], 16) + k
        jobs += [(name, a) for a in distorted_geometries(name, per_molecule, sub_seed)]
    for frame, (name, atoms) in zip(frames, jobs):  # a partial file must be the start of this very request
        if frame.name != name or not np.allclose(frame.atoms.positions, atoms.positions, atol=1e-8):
            raise RunMismatch(f"{cache} does not match its own request (geometry of {name}); pass --restart")
    provenance = run_record("hamiltonian data", key)

    def save() -> None:
        if cache is None:
            return
        text = json.dumps({"key": key, "reference": reference, "complete": len(frames) == len(jobs),
                           "provenance": provenance, "frames": [f.to_dict() for f in frames]})
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with deferred_interrupts():
            write_atomically(cache, lambda tmp: tmp.write_text(text))

    last_save = time.monotonic()
    with progress_reporter(len(jobs), f"{reference['method']}/{reference['basis']}", unit="molecule",
                           initial=len(frames), enabled=progress) as bar:
        try:
            for name, atoms in jobs[len(frames):]:
                frames.append(compute_frame(name, atoms, reference, n_virtual))
                bar.update(1)
                if time.monotonic() - last_save >= save_seconds:
                    save()
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            save()
            raise
    save()
    return frames


def saved_count(path: str | Path) -> str:
    """How many geometries a (partial) data file holds, for messages after an interruption."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return f"nothing saved in {path} yet"
    total = len(stored["key"]["molecules"]) * stored["key"]["per_molecule"]
    return f"{len(stored['frames'])} of {total} geometries saved in {path}"


def _read_data_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file {str(path)!r}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        stored = None
    if not isinstance(stored, dict) or not {"frames", "key", "reference"} <= set(stored):
        raise ValueError(f"{path} is not a data file of `atomflux hamiltonian data` (JSON with orbital energies); "
                         "make one with `atomflux hamiltonian data -o FILE`")
    if not stored.get("complete", True):
        raise ValueError(f"{path} is incomplete ({saved_count(path)}); finish it by running the same "
                         "`atomflux hamiltonian data` command again")
    if not stored["frames"]:
        raise ValueError(f"{path} holds no geometries")
    return stored


def read_frames(path: str | Path) -> list[OrbitalFrame]:
    """Frames from a JSON file written by :func:`generate`."""
    return [OrbitalFrame.from_dict(d) for d in _read_data_file(path)["frames"]]


def reference_of(path: str | Path) -> dict:
    """The reference level (method, basis, virtual levels) of a data file."""
    stored = _read_data_file(path)
    return {**stored["reference"], "n_virtual": stored["key"]["n_virtual"]}
