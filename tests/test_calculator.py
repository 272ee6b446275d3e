"""The ASE calculator: clear errors, and use with ase.md, ase.optimize, ase.filters, ase.io."""

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.stress import full_3x3_to_voigt_6_stress
from ase.build import bulk, molecule
from ase.filters import FrechetCellFilter
from ase.io import read
from ase.io.trajectory import Trajectory
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.md import thermalize
from atomflux.models import LennardJones


@pytest.fixture(scope="module")
def demo_calc():
    return AtomfluxCalculator("demo", uncertainty=False)


def test_unknown_element_is_named(demo_calc):
    atoms = bulk("Cu", cubic=True)
    atoms.symbols[0] = "Fe"
    atoms.calc = demo_calc
    with pytest.raises(ValueError, match=r"Fe not known to this model; it knows Ni, Cu, Ag, Au"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("mutate,message", [
    (lambda a: a.positions.__setitem__((2, 1), np.inf), "NaN or inf"),
    (lambda a: a.positions.__setitem__(1, a.positions[0] + [0.05, 0.0, 0.1]), r"overlap.*0\.3 Å"),
    (lambda a: a.set_cell([[3.6, 0, 0], [0, 3.6, 0], [0, 0, 0]]), "zero-length"),
])
def test_bad_positions_and_cells(demo_calc, mutate, message):
    atoms = bulk("Cu", cubic=True)
    mutate(atoms)
    atoms.calc = demo_calc
    with pytest.raises(ValueError, match=message):
        atoms.get_forces()


def test_nonperiodic_has_no_stress():
    atoms = molecule("H2O")
    atoms.calc = AtomfluxCalculator(LennardJones(1.0, 0.01, 3.0))
    assert np.isfinite(atoms.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_nve_energy_drift_lennard_jones():
    """3000 steps of 5 fs in solid argon (smooth cutoff): total energy drift < 1e-4 eV/atom."""
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)
    atoms.calc = AtomfluxCalculator(LennardJones(3.405, 0.0103, 8.0, cutoff_mode="smooth", r_on=7.0))
    thermalize(atoms, 40, np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 5 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    dyn.run(3000)
    drift = (max(energies) - min(energies)) / len(atoms)
    assert atoms.get_temperature() > 5  # it moved
    assert drift < 1e-4


def test_nve_energy_drift_demo_model(demo_calc):
    """1000 steps of 2 fs of a Cu/Au alloy at 500 K with the demo model: drift < 1 meV/atom."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 2, 2)
    atoms.symbols[::4] = "Au"
    atoms.calc = demo_calc
    thermalize(atoms, 500, np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 2 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=5)
    dyn.run(1000)
    assert (max(energies) - min(energies)) / len(atoms) < 1e-3


def test_relaxation_positions_and_cell(demo_calc, tmp_path):
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.calc = demo_calc
    traj = tmp_path / "relax.traj"
    opt = BFGS(FrechetCellFilter(atoms), trajectory=str(traj), logfile=None)
    assert opt.run(fmax=1e-3, steps=200)
    assert np.abs(atoms.get_forces()).max() < 1e-3
    assert np.abs(atoms.get_stress()).max() < 1e-4  # eV/Å³ (16 MPa)
    a = atoms.cell.lengths()[0]
    assert 3.4 < a < 3.8  # EMT Cu is 3.59 Å; the demo model must land near it
    frames = read(traj, ":")
    assert len(frames) > 1 and frames[-1].get_potential_energy() <= frames[0].get_potential_energy()


def test_trajectory_keeps_results(demo_calc, tmp_path):
    atoms = bulk("Ag", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=5)
    atoms.calc = demo_calc
    forces, stress = atoms.get_forces(), atoms.get_stress()
    with Trajectory(str(tmp_path / "x.traj"), "w", atoms) as traj:
        traj.write()
    back = read(tmp_path / "x.traj")
    np.testing.assert_allclose(back.get_forces(), forces)
    np.testing.assert_allclose(back.get_stress(), stress)


def test_only_what_is_asked_is_computed(monkeypatch):
    """get_forces does not pay for member forces; stress, per-atom stresses and the heat flux at the
    same positions come from the kept pair gradients (no second model call) and equal a fresh
    full evaluation; forces uncertainty takes exactly one more call."""
    import atomflux.calculators.ase_calculator as module

    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("uncertainty"))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(module, "evaluate", counting)
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 2, 1)
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.05, seed=2)
    thermalize(atoms, 300, np.random.default_rng(0))
    calc = AtomfluxCalculator("demo")
    atoms.calc = calc
    forces = atoms.get_forces()
    assert "forces_uncertainty" not in calc.results and "energy_uncertainty" in calc.results
    stress, stresses = atoms.get_stress(), calc.get_property("stresses", atoms)
    flux = calc.get_property("heat_flux", atoms)
    assert calls == ["energy"]
    sigma = calc.get_property("forces_uncertainty", atoms)
    assert calls == ["energy", "full"] and sigma.shape == forces.shape and (sigma > 0).all()
    reference = AtomfluxCalculator("demo", skin=0.0)
    fresh = evaluate(reference.potential, reference.batch(atoms), stress=True, virials=True, uncertainty=True,
                     velocities=torch.tensor(atoms.get_velocities() * units.fs),
                     masses=torch.tensor(atoms.get_masses()))
    np.testing.assert_allclose(forces, fresh.forces.numpy(), atol=1e-12)
    np.testing.assert_allclose(stress, full_3x3_to_voigt_6_stress(fresh.stress[0].numpy()), atol=1e-14)
    np.testing.assert_allclose(stresses, full_3x3_to_voigt_6_stress(-fresh.virials.numpy() / atoms.get_volume()),
                               atol=1e-14)
    np.testing.assert_allclose(flux, fresh.heat_flux[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(sigma, fresh.forces_uncertainty.numpy(), atol=1e-12)
    np.testing.assert_allclose(calc.results["stress_uncertainty"],
                               full_3x3_to_voigt_6_stress(fresh.stress_uncertainty[0].numpy()), atol=1e-14)
    with pytest.raises(PropertyNotImplementedError, match="uncertainty='full'"):
        AtomfluxCalculator("demo", uncertainty="energy").get_property("forces_uncertainty", atoms)


def test_skin_and_float32_md_follow_the_reference():
    """NVE with the reused neighbour list is the same trajectory as with a search at every step;
    float32 compute (float64 accumulation) stays within 1e-4 eV/Å of it over 50 steps."""
    start = bulk("Cu", "fcc", a=3.62, cubic=True) * (2, 2, 2)
    thermalize(start, 600, np.random.default_rng(3))
    runs = {}
    for label, kwargs in {"search every step": dict(skin=0.0), "skin": dict(skin=1.0),
                          "float32": dict(dtype="float32")}.items():
        atoms = start.copy()
        atoms.calc = AtomfluxCalculator("demo", uncertainty=False, **kwargs)
        VelocityVerlet(atoms, 2 * units.fs).run(50)
        runs[label] = (atoms.positions.copy(), atoms.get_forces(), atoms.calc)
    np.testing.assert_allclose(runs["skin"][0], runs["search every step"][0], atol=1e-10)
    np.testing.assert_allclose(runs["skin"][1], runs["search every step"][1], atol=1e-10)
    assert runs["skin"][2].neighbours.searches < 10 < runs["search every step"][2].neighbours.searches
    assert np.abs(runs["float32"][1] - runs["search every step"][1]).max() < 1e-4
