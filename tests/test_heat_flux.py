"""Heat flux: pairwise formula, d/dt Σ r_i e_i along a trajectory, periodic images."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import AMU_A2_PER_FS2_IN_EV, evaluate
from atomflux.md import thermalize
from atomflux.models import LennardJones
from atomflux.systems import Batch

SIGMA, EPS, RC = 3.405, 0.0103, 7.0


def test_lennard_jones_flux_is_the_pairwise_formula():
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 1, 1)  # 5.3 Å < 2 r_c: many images of each atom
    atoms.rattle(0.2, seed=0)
    thermalize(atoms, 80, np.random.default_rng(0))
    model = LennardJones(SIGMA, EPS, RC)
    v = atoms.get_velocities() * units.fs
    res = evaluate(model, Batch.from_atoms(atoms, RC), energies=True,
                   velocities=torch.tensor(v), masses=torch.tensor(atoms.get_masses()))
    # reference, written independently: J = Σ_i e_i v_i - ½ Σ_(i,j images) r_ij u'(r_ij) (r̂_ij · v_j)
    i, j, d, D = neighbor_list("ijdD", atoms, RC)
    s6 = (SIGMA / d) ** 6
    du = 4 * EPS * (-12 * s6**2 + 6 * s6) / d
    u = 4 * EPS * (s6**2 - s6) - 4 * EPS * ((SIGMA / RC) ** 12 - (SIGMA / RC) ** 6)
    e = np.zeros(len(atoms))
    np.add.at(e, i, 0.5 * u)
    e += 0.5 * AMU_A2_PER_FS2_IN_EV * atoms.get_masses() * (v**2).sum(1)
    hat = D / d[:, None]
    pot = -0.5 * (D * (du * (hat * v[j]).sum(1))[:, None]).sum(0)
    expected = (e[:, None] * v).sum(0) + pot
    np.testing.assert_allclose(res.heat_flux[0].numpy(), expected, rtol=1e-10, atol=1e-14)
    assert np.abs(pot).max() > 1e-4  # the potential part matters here


@pytest.mark.parametrize("model", ["demo", "lj"])
def test_cluster_flux_is_time_derivative_of_energy_barycentre(model):
    """Finite cluster in NVE: J(t) = d/dt Σ_i r_i e_i, by central differences along the trajectory."""
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True) * (2, 2, 2)
    atoms.pbc = False
    atoms.symbols[::3] = "Au"
    potential = "demo" if model == "demo" else LennardJones(2.3, 0.4, 5.0, cutoff_mode="smooth")
    atoms.calc = AtomfluxCalculator(potential, uncertainty=False)
    thermalize(atoms, 600, np.random.default_rng(3))
    dt = 0.25  # fs
    dyn = VelocityVerlet(atoms, dt * units.fs)
    barycentre, flux = [], []

    def record():
        flux.append(atoms.calc.heat_flux(atoms))  # current (full-step) velocities
        e = atoms.calc.results["energies"] + 0.5 * AMU_A2_PER_FS2_IN_EV * atoms.get_masses() * (
            (atoms.get_velocities() * units.fs) ** 2).sum(1)
        barycentre.append((atoms.positions * e[:, None]).sum(0))

    dyn.attach(record, interval=1)
    dyn.run(40)
    barycentre, flux = np.array(barycentre), np.array(flux)
    derivative = (barycentre[2:] - barycentre[:-2]) / (2 * dt)
    scale = np.abs(flux).max()
    assert scale > 1e-3
    np.testing.assert_allclose(derivative, flux[1:-1], atol=2e-3 * scale)


def test_periodic_many_body_flux_equals_replicated_supercell():
    """The flux of a 2x2x2 replica (same velocities) is 8 × that of the cell, for the many-body model."""
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
    atoms.symbols[1] = "Ag"
    atoms.rattle(0.1, seed=2)
    thermalize(atoms, 500, np.random.default_rng(4))
    big = atoms * (2, 2, 2)
    fluxes = []
    for a in (atoms, big):
        a.calc = AtomfluxCalculator("demo", uncertainty=False)
        fluxes.append(a.calc.heat_flux(a))
    np.testing.assert_allclose(fluxes[1], 8 * fluxes[0], rtol=1e-9, atol=1e-12)
    assert np.abs(fluxes[0]).max() > 1e-3


def test_flux_needs_a_local_potential(alloy):
    class Opaque(torch.nn.Module):
        cutoff = 3.0

        def forward(self, batch, vectors):
            return {"energy": vectors.norm(dim=1).new_zeros(len(batch.numbers))}

    with pytest.raises(ValueError, match="strictly_local"):
        evaluate(Opaque(), Batch.from_atoms(alloy, 3.0), velocities=torch.zeros(len(alloy), 3),
                 masses=torch.ones(len(alloy)))
