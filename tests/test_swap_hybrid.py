"""Hybrid MC/MD swap Monte Carlo: Langevin segments sample canonical positions, relaxations reach minima,
the swap energies stay exact on moved positions, and a resumed hybrid run is the uninterrupted one."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.optimize import FIRE

from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.sampling.run import HybridSettings, load_swap_run, run_swap_mc
from atomflux.systems import Batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def calc():
    return AtomfluxCalculator("demo", uncertainty=False, dtype="float64")


def full_energy(calc, atoms) -> float:
    """The whole system's energy from scratch (positions and species as given)."""
    batch = Batch.from_atoms(atoms, calc.potential.cutoff, torch.float64)
    with torch.no_grad():
        return float(evaluate(calc.potential, batch, forces=False).energy.sum())


def cu_au(seed: int = 0):
    """32-atom fcc Cu with 8 Au (the Au atoms are larger: the lattice relaxes around them)."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True).repeat(2)
    atoms.numbers[np.random.default_rng(seed).choice(len(atoms), 8, replace=False)] = 79
    return atoms


def relaxed_energy(calc, atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    FIRE(atoms, logfile=None).run(fmax=1e-3, steps=2000)
    return float(atoms.get_potential_energy())


def test_md_segments_give_equipartition_of_the_potential_energy(calc):
    """Low-temperature solid: after each Langevin segment the potential energy above the configuration's own
    minimum is (3N − 3)/2 k_B T (harmonic equipartition; the centre of mass is free), so the positions the
    swap chain sees are canonical at the Monte Carlo temperature.  The chain is run one sweep at a time
    (each a run continuing from the last one's atoms) to see the positions of every sample."""
    temperature, sweeps, skip = 60.0, 48, 6
    hybrid = HybridSettings(md_every=1, md_steps=25, timestep=2.0, friction=0.05)
    atoms, excess = cu_au(), []
    for sweep in range(sweeps):
        run = run_swap_mc(atoms, calc, None, temperature, 1, seed=sweep, batch_size=4, hybrid=hybrid,
                          show_progress=False)
        atoms = run.atoms
        assert run.energies[-1] == pytest.approx(full_energy(calc, atoms), abs=1e-8)
        if sweep >= skip:
            excess.append(run.energies[-1] - relaxed_energy(calc, atoms))
    excess = np.array(excess)
    expected = (3 * len(atoms) - 3) / 2 * units.kB * temperature
    error = excess.std(ddof=1) / np.sqrt(len(excess))     # segments start from fresh velocities: ~independent
    print(f"\n<U - U_min> = {excess.mean():.4f} ± {error:.4f} eV, equipartition {expected:.4f} eV")
    assert abs(excess.mean() - expected) < 4 * error
    # power: half or twice the temperature is many error bars away
    assert abs(excess.mean() - 2 * expected) > 8 * error and abs(excess.mean() - 0.5 * expected) > 4 * error


def test_swaps_after_relaxation_keep_exact_energies_and_relaxed_positions(calc):
    """FIRE every 2 sweeps, hot swaps in between: the chain's energy after swaps on relaxed positions equals
    a full recomputation, and the positions after a relaxation sweep are a minimum (forces < fmax)."""
    hybrid = HybridSettings(relax_every=2, fmax=0.02)
    atoms = cu_au(seed=1)
    four = run_swap_mc(atoms, calc, None, 3000.0, 4, seed=5, batch_size=4, hybrid=hybrid, show_progress=False)
    five = run_swap_mc(atoms, calc, None, 3000.0, 5, seed=5, batch_size=4, hybrid=hybrid, show_progress=False)
    relaxed = four.atoms.copy()
    relaxed.calc = calc
    assert np.abs(relaxed.get_forces()).max() < 0.02
    assert not np.allclose(relaxed.positions, atoms.positions, atol=0.01)     # relaxation moved the atoms
    assert np.array_equal(five.numbers[:4], four.numbers)                   # the same chain up to sweep 4
    assert np.allclose(five.atoms.positions, four.atoms.positions)          # sweep 5: swaps only
    assert five.accepted > four.accepted                                    # swaps accepted after the relaxation
    assert not np.array_equal(five.atoms.numbers, four.atoms.numbers)
    assert five.energies[-1] == pytest.approx(full_energy(calc, five.atoms), abs=1e-8)


def test_hybrid_run_resumes_exactly(calc, tmp_path):
    """MD every 2 sweeps into a folder: 4 sweeps then 6 equal 6 at once (species, energies, positions)."""
    hybrid = HybridSettings(md_every=2, md_steps=5, timestep=2.0)
    atoms = cu_au(seed=2)
    settings = dict(seed=3, batch_size=4, checkpoint_every=2, hybrid=hybrid, show_progress=False)
    run_swap_mc(atoms, calc, tmp_path / "once", 1500.0, 6, **settings)
    run_swap_mc(atoms, calc, tmp_path / "twice", 1500.0, 4, **settings)
    run_swap_mc(atoms, calc, tmp_path / "twice", 1500.0, 6, **settings)
    once, twice = load_swap_run(tmp_path / "once"), load_swap_run(tmp_path / "twice")
    assert np.array_equal(once.numbers, twice.numbers) and len(once.numbers) == 6
    assert np.array_equal(once.energies, twice.energies)
    assert np.array_equal(once.atoms.positions, twice.atoms.positions)
    assert not np.allclose(once.atoms.positions, atoms.positions, atol=0.01)  # MD moved the atoms
    assert once.energies[-1] == pytest.approx(full_energy(calc, once.atoms), abs=1e-8)
