"""Analytic references against ASE's own implementations and closed forms."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ

from atomflux.calculators import AtomfluxCalculator
from atomflux.models import LennardJones, Morse
from conftest import finite_difference_forces


def argon():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 2)
    atoms.rattle(0.1, seed=0)
    cell = atoms.cell.array.copy()
    cell[1, 0] += 0.5
    atoms.set_cell(cell, scale_atoms=True)
    return atoms


@pytest.mark.parametrize("smooth", [False, True])
def test_lennard_jones_matches_ase(smooth):
    sigma, epsilon, rc = 3.405, 0.0103, 8.0
    ours, ref = argon(), argon()
    ours.calc = AtomfluxCalculator(LennardJones(sigma, epsilon, rc, cutoff_mode="smooth" if smooth else "shifted"))
    ref.calc = AseLJ(sigma=sigma, epsilon=epsilon, rc=rc, smooth=smooth)
    assert ours.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), atol=1e-10)
    np.testing.assert_allclose(ours.get_stress(), ref.get_stress(), atol=1e-12)
    np.testing.assert_allclose(ours.get_potential_energies(), ref.get_potential_energies(), atol=1e-10)


def test_morse_dimer_closed_form_and_forces():
    D, a, r0, rc = 0.6, 1.4, 2.6, 7.0
    model = Morse(D, a, r0, cutoff=rc)
    for r in (2.2, 2.6, 3.5):
        dimer = Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]])
        dimer.calc = AtomfluxCalculator(model)
        u = lambda x: D * (np.exp(-2 * a * (x - r0)) - 2 * np.exp(-a * (x - r0)))
        assert dimer.get_potential_energy() == pytest.approx(u(r) - u(rc), abs=1e-12)
        du = -2 * a * D * (np.exp(-2 * a * (r - r0)) - np.exp(-a * (r - r0)))
        assert dimer.get_forces()[1, 0] == pytest.approx(-du, abs=1e-12)


def test_smooth_cutoff_has_continuous_forces():
    model = Morse(0.5, 1.2, 2.5, cutoff=5.0, cutoff_mode="smooth")
    calc = AtomfluxCalculator(model)

    def force(r):
        dimer = Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]])
        dimer.calc = calc
        return dimer.get_forces()[1, 0]

    assert abs(force(5.0 - 1e-7)) < 1e-6 * abs(force(4.0))  # C¹: the force vanishes linearly at r_c
    cluster = argon()[:5]
    cluster.pbc = False
    cluster.calc = calc
    fd = finite_difference_forces(lambda at: (setattr(at, "calc", calc), at.get_potential_energy())[1], cluster)
    np.testing.assert_allclose(cluster.get_forces(), fd, atol=1e-8)


def test_bad_cutoff_mode():
    with pytest.raises(ValueError, match="cutoff_mode"):
        LennardJones(1.0, 1.0, cutoff_mode="abrupt")
