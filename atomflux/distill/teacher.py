"""The teacher: any model atomflux can load, or any ASE calculator, labelling structures in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..evaluate import evaluate
from ..models.base import Potential, floating_dtype
from ..records import fingerprint
from ..systems import Batch

#: teachers named by a word rather than a model (for tests, demonstrations and benchmarks)
NAMED_CALCULATORS = {"emt": "ASE's EMT potential (Ni, Cu, Pd, Ag, Pt, Au, Al; a cheap many-body teacher)"}


class Teacher:
    """Reference energies, forces and stress for the student to learn.

    Parameters
    ----------
    model
        An atomflux model (file, shipped name, :class:`~atomflux.models.Potential`), a
        third-party model spec (``"sevennet:7net-0"``), ``"emt"`` (ASE's EMT), or any ASE calculator.
    trust
        Allow a third-party pickle outside its package (see :func:`atomflux.load_model`).
    batch_size
        Most structures per evaluation for model teachers (ASE calculators label one at a time).
    batch_atoms
        Most atoms per evaluation for model teachers (a structure larger than this is evaluated alone):
        a foundation model's memory grows with the atoms of one call (SevenNet-0: ~5.6 GB for 1 000 atoms).

    Attributes
    ----------
    spec : str
        What the teacher is, as recorded in the run and the student's model file.
    """

    def __init__(self, model: Any, trust: bool = False, batch_size: int = 16, batch_atoms: int = 256) -> None:
        if int(batch_size) < 1 or int(batch_atoms) < 1:
            raise ValueError(f"teacher batches need at least one structure and one atom, got batch_size "
                             f"{batch_size}, batch_atoms {batch_atoms}")
        self.batch_size = int(batch_size)
        self.batch_atoms = int(batch_atoms)
        self.potential: Potential | None = None
        self.calculator = None
        self._fresh = None  # makes a new calculator per structure: labels that do not depend on what came before
        if isinstance(model, (str, Path)) and str(model).lower() in NAMED_CALCULATORS:
            from ase.calculators.emt import EMT

            self.calculator, self.spec, self._fresh = EMT(), "emt", EMT
        elif isinstance(model, (str, Path)):
            from ..io import load_model

            self.potential, self.spec = load_model(model, trust=trust), str(model)
        elif isinstance(model, Potential):
            self.potential = model
            self.spec = str(getattr(model, "spec", None) or (getattr(model, "metadata", None) or {}).get("spec")
                            or type(model).__name__)
        elif hasattr(model, "get_potential_energy") or hasattr(model, "calculate"):
            self.calculator = model
            self.spec = str(getattr(model, "spec", None) or type(model).__name__)
        else:
            raise ValueError(f"cannot use a {type(model).__name__} as teacher: give a model file, a shipped model "
                             "name, a model spec (e.g. sevennet:7net-0), 'emt', or an ASE calculator")
        if self.potential is not None:
            self.potential.eval()

    def record(self) -> dict[str, str]:
        """``{"spec": ..., "fingerprint": ...}`` for run records (see :func:`atomflux.records.model_record`)."""
        return {"spec": self.spec, "fingerprint": fingerprint(self.potential if self.potential is not None
                                                              else self.calculator)}

    def label(self, structures: Sequence[Atoms]) -> list[Atoms]:
        """Copies of ``structures`` carrying the teacher's energy (eV), forces (eV/Å) and stress (eV/Å³, 3-D
        periodic cells only) in a ``SinglePointCalculator``; ``info`` is kept.

        Model teachers and ``"emt"`` give labels that depend on the positions alone (bit for bit); a
        calculator passed as an object is reused, so its labels may depend on what it computed before (e.g. a
        neighbour list's order: ~1e-14 eV for ASE's EMT), and a resumed run reproduces them to that level.
        """
        if self.potential is not None:
            return self._label_batched(structures)
        out = []
        for atoms in structures:
            copy = atoms.copy()
            copy.calc = self.calculator if self._fresh is None else self._fresh()
            results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
            if copy.pbc.all():
                results["stress"] = copy.get_stress()
            copy.calc = SinglePointCalculator(copy, **results)
            out.append(copy)
        return out

    def _label_batched(self, structures: Sequence[Atoms]) -> list[Atoms]:
        potential = self.potential
        dtype = floating_dtype(potential)
        out = []
        for chunk in batch_chunks(structures, self.batch_size, self.batch_atoms):
            batch = Batch.collate([Batch.from_atoms(a, potential.cutoff, dtype) for a in chunk])
            periodic = all(bool(a.pbc.all()) for a in chunk)
            res = evaluate(potential, batch, forces=True, stress=periodic)
            forces = np.split(res.forces.detach().double().numpy(), np.cumsum([len(a) for a in chunk])[:-1])
            for k, atoms in enumerate(chunk):
                copy = atoms.copy()
                results = {"energy": float(res.energy[k]), "forces": forces[k]}
                if periodic:
                    s = res.stress[k].detach().double().numpy()
                    results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
                copy.calc = SinglePointCalculator(copy, **results)
                out.append(copy)
        return out

    def md_calculator(self):
        """An ASE calculator of the teacher (for round 0's teacher MD and benchmarks)."""
        if self.calculator is not None:
            return self.calculator
        from ..calculators import AtomfluxCalculator

        return AtomfluxCalculator(self.potential, uncertainty=False)


def batch_chunks(structures: Sequence[Atoms], most_structures: int, most_atoms: int) -> list[list[Atoms]]:
    """``structures`` in order, cut into consecutive chunks of at most ``most_structures`` structures and
    ``most_atoms`` atoms (a structure larger than ``most_atoms`` forms a chunk of its own)."""
    chunks: list[list[Atoms]] = []
    atoms_in_last = 0
    for atoms in structures:
        if chunks and len(chunks[-1]) < most_structures and atoms_in_last + len(atoms) <= most_atoms:
            chunks[-1].append(atoms)
            atoms_in_last += len(atoms)
        else:
            chunks.append([atoms])
            atoms_in_last = len(atoms)
    return chunks
