"""Long-range models against LAMMPS's own rigid-ion NaCl (born/coul/long + Ewald; born + coul/cut without a cell).

Default run: atomflux's Ewald (torch-pme through ``evaluate``) against LAMMPS's Ewald on the same
fixed charges, and the rigid-ion reference's own sanity (finite differences, textbook Madelung).
Slow: short-range and long-range models trained on the same LAMMPS bulk data, compared beyond
their cutoff (ion-pair and charged-cluster dissociation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

pytest.importorskip("torchpme", reason="torch-pme is a test dependency (pip install 'atomflux[longrange]')")
from conftest import lammps_bridge_or_skip  # noqa: E402

lammps_bridge_or_skip()

from atomflux import evaluate  # noqa: E402
from atomflux.models.base import Potential  # noqa: E402
from atomflux.models.cutoffs import polynomial_cutoff  # noqa: E402
from atomflux.models.long_range_field import COULOMB_CONSTANT, LongRangeField  # noqa: E402
from atomflux.reference_data import NACL_BORN_MAYER, NACL_LATTICE, rigid_ion_nacl  # noqa: E402
from atomflux.systems import Batch  # noqa: E402

#: the rigid-ion model with the Born–Mayer repulsion switched off: LAMMPS's coul/long + Ewald only
COULOMB_ONLY = {pair: (0.0, rho, sigma) for pair, (_, rho, sigma) in NACL_BORN_MAYER.items()}
MADELUNG_ROCKSALT = 1.747565


class FixedCharges(Potential):
    """±1 e on Na/Cl in atomflux's long-range field plus the excluded pairs added back: the full
    Coulomb energy, through the production path (``LongRangeField`` + ``evaluate``'s strain autograd)."""

    long_range = True
    strictly_local = False

    def __init__(self, cutoff: float, accuracy: float, method: str) -> None:
        super().__init__(["Na", "Cl"], cutoff)
        self.field = LongRangeField(cutoff, (1,), accuracy, method)

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        q = torch.where(batch.numbers == 11, 1.0, -1.0).to(vectors.dtype)[:, None]
        r = vectors.norm(dim=1)
        near = r < self.cutoff
        i, j = batch.pairs[near, 0], batch.pairs[near, 1]
        excluded = 0.5 * COULOMB_CONSTANT * q[i, 0] * q[j, 0] * polynomial_cutoff(r[near], self.cutoff) / r[near]
        energy = (q * self.field.fields(batch, vectors, q)).sum(1).index_add(0, i, excluded)
        return {"energy": energy}


def _rattled(seed: int = 0) -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
    deformation = np.eye(3) + 0.02 * rng.normal(size=(3, 3))
    atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)        # triclinic, LAMMPS re-orients it
    return atoms


#: LAMMPS's coul/long evaluates erfc by a polynomial (without tables, ``pair_modify table 0``, as the
#: reference runs it so that its forces are derivatives of its energy): relative energy errors of a few
#: 1e-7 that do not shrink with the k-space accuracy (Madelung 1.7475654 at 1e-8; exact 1.74756459)
LAMMPS_ENERGY_FLOOR = 1e-6


def test_atomflux_ewald_equals_lammps_ewald() -> None:
    """Two independent codes, the same charges: LAMMPS (coul/long + kspace ewald 1e-8) and atomflux's
    field (torch-pme, exclusion added back) agree on the Madelung energy of ideal NaCl (and both on
    the textbook constant) and on the energy, forces and stress of a rattled triclinic cell."""
    ideal = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True)
    rattled = _rattled()
    lammps = rigid_ion_nacl([ideal, rattled], repulsion=COULOMB_ONLY)
    model = FixedCharges(cutoff=4.5, accuracy=1e-8, method="ewald").double()
    madelung = {}
    for name, energy in (("lammps", lammps[0].get_potential_energy()),
                         ("atomflux", float(evaluate(model, Batch.from_atoms(ideal, 4.5), forces=False).energy[0]))):
        madelung[name] = -energy / (len(ideal) / 2) * (NACL_LATTICE / 2) / COULOMB_CONSTANT
    assert madelung["lammps"] == pytest.approx(MADELUNG_ROCKSALT, abs=1e-6)
    tolerance = LAMMPS_ENERGY_FLOOR
    assert madelung["atomflux"] == pytest.approx(madelung["lammps"], rel=tolerance)
    res = evaluate(model, Batch.from_atoms(rattled, 4.5), stress=True)
    reference = lammps[1]
    scale = np.abs(reference.get_forces()).max()
    print(f"Madelung {madelung}; rattled cell: ΔE = {float(res.energy[0]) - reference.get_potential_energy():.2e} eV, "
          f"max |ΔF| = {np.abs(res.forces.numpy() - reference.get_forces()).max():.2e} eV/Å (max |F| {scale:.2f}), "
          f"max |Δσ| = {np.abs(res.stress[0].numpy() - reference.get_stress(voigt=False)).max():.2e} eV/Å³")
    assert float(res.energy[0]) == pytest.approx(reference.get_potential_energy(), rel=tolerance)
    assert np.abs(res.forces.numpy() - reference.get_forces()).max() < 10 * tolerance * scale
    stress = reference.get_stress(voigt=False)
    assert np.abs(res.stress[0].numpy() - stress).max() < 5 * tolerance * np.abs(stress).max()


def test_rigid_ion_reference_forces_and_stress_are_derivatives() -> None:
    """The LAMMPS labels themselves: forces and stress are central differences of LAMMPS's energy
    (periodic: Ewald; open: direct sum), so the helper's unit, order and rotation handling is right."""
    atoms = _rattled(seed=1)
    cluster = Atoms("Na4Cl4", positions=bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True).positions
                    + np.random.default_rng(2).normal(scale=0.1, size=(8, 3)))
    h = 1e-4
    for structure in (atoms, cluster):
        labelled = rigid_ion_nacl([structure])[0]
        displaced = []
        for sign in (1, -1):
            moved = structure.copy()
            moved.positions[3, 1] += sign * h
            displaced.append(moved)
        plus, minus = (a.get_potential_energy() for a in rigid_ion_nacl(displaced))
        assert labelled.get_forces()[3, 1] == pytest.approx(-(plus - minus) / (2 * h), rel=1e-6, abs=1e-6)
    strained = []
    for sign in (1, -1):
        eps = np.zeros((3, 3))
        eps[0, 1] = eps[1, 0] = sign * h
        s = atoms.copy()
        s.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        strained.append(s)
    plus, minus = (a.get_potential_energy() for a in rigid_ion_nacl(strained))
    stress = rigid_ion_nacl([atoms])[0].get_stress(voigt=False)
    assert stress[0, 1] == pytest.approx((plus - minus) / (2 * h) / atoms.get_volume() / 2, rel=1e-5, abs=1e-8)
