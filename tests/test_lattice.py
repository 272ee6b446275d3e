"""Lattice thermal conductivity against plain phono3py, batching, resuming, error bars."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones as AseLJ

from atomflux.calculators import AtomfluxCalculator, Committee
from atomflux.lattice import KappaResult, compute_forces, thermal_conductivity
from atomflux.lattice.kappa import build_phono3py, to_ase
from atomflux.models import LennardJones, PowerSpectrumPotential

SIGMA, EPSILON, RC = 3.405, 0.0103, 8.5
ARGON = bulk("Ar", "fcc", a=5.26)
SMALL = dict(supercell=(3, 3, 3), mesh=(7, 7, 7), progress=False)


def atomflux_lj():
    return AtomfluxCalculator(LennardJones(SIGMA, EPSILON, RC, cutoff_mode="smooth"))


def plain_phono3py_kappa(temperatures, folder):
    """The reference: phono3py driven by hand with ASE's own LennardJones, force constants from ``phono3py.load``."""
    import phono3py
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=["Ar"], cell=ARGON.cell.array, scaled_positions=ARGON.get_scaled_positions())
    ph3 = Phono3py(unit, supercell_matrix=np.diag([3, 3, 3]), primitive_matrix="auto", log_level=0)
    ph3.generate_displacements(distance=0.03)
    forces = []
    for cell in ph3.supercells_with_displacements:
        atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        atoms.calc = AseLJ(sigma=SIGMA, epsilon=EPSILON, rc=RC, smooth=True)
        forces.append(atoms.get_forces())
    ph3.forces = np.array(forces)
    ph3.save(str(folder / "reference.yaml"))
    loaded = phono3py.load(str(folder / "reference.yaml"), produce_fc=True, log_level=0)   # symmetrises fc2, fc3
    loaded.mesh_numbers = [11, 11, 11]
    loaded.init_phph_interaction()
    loaded.run_thermal_conductivity(temperatures=temperatures)
    return np.asarray(loaded.thermal_conductivity.kappa)[0]


def test_atomflux_lj_equals_plain_phono3py_with_ase_lj(tmp_path):
    """Same κ within 0.5 %: phono3py's κ itself moves by ~0.1-0.5 % under 1e-16 eV/Å force noise here."""
    temperatures = (20.0, 40.0, 80.0)
    ours = thermal_conductivity(ARGON, atomflux_lj(), supercell=(3, 3, 3), mesh=(11, 11, 11),
                                temperatures=temperatures, progress=False)
    reference = plain_phono3py_kappa(temperatures, tmp_path)
    np.testing.assert_allclose(ours.kappa[:, :3], reference[:, :3], rtol=5e-3)
    assert ours.kappa_std is None and ours.symmetrize == "projector" and not ours.warnings
    assert 0.3 < ours.kappa[0, 0] < 3.0  # LJ argon at 20 K, 3x3x3 / 11³: order 1 W/mK


def test_batched_equals_one_by_one():
    ph3 = build_phono3py(ARGON, (2, 2, 2))
    cells = [to_ase(c) for c in ph3.supercells_with_displacements]
    batched = compute_forces(cells, atomflux_lj(), progress=False).forces

    class Plain(Calculator):  # hides the atomflux type: forces the generic one-by-one path
        implemented_properties = ["energy", "forces"]

        def __init__(self):
            super().__init__()
            self.inner = atomflux_lj()

        def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.inner.calculate(atoms, ["energy", "forces"], all_changes)
            self.results = {k: self.inner.results[k] for k in ("energy", "forces")}

    sequential = compute_forces(cells, Plain(), progress=False).forces
    np.testing.assert_allclose(batched, sequential, atol=1e-14)


def test_identical_members_give_zero_error_bar():
    torch.manual_seed(0)
    model = PowerSpectrumPotential(["Ar"], cutoff=5.0, hidden=[8], n_ensemble=3).double()
    with torch.no_grad():
        model.last_layer.weight[:] = model.last_layer.weight[0]
        model.last_layer.bias[:] = model.last_layer.bias[0]
    lj = AtomfluxCalculator(LennardJones(SIGMA, EPSILON, RC))
    # a pair potential plus a (shared) many-body ensemble: all members identical
    result = thermal_conductivity(ARGON, _Sum(lj.potential, model), temperatures=(30,), **SMALL)
    assert result.kappa_members.shape == (3, 1, 6)
    assert float(np.abs(result.kappa_std).max()) < 1e-9 * float(np.abs(result.kappa).max())


class _Sum(AtomfluxCalculator):
    """LJ plus a tiny ensemble head: an uncertainty-capable calculator with known physics."""

    def __init__(self, lj, ensemble):
        from atomflux.models.base import Potential

        class Combined(Potential):
            def __init__(self):
                super().__init__(["Ar"], max(lj.cutoff, ensemble.cutoff))
                self.lj, self.ens = lj, ensemble
                self.n_ensemble = ensemble.n_ensemble

            def forward(self, batch, vectors):
                base = self.lj(batch, vectors)["energy"]
                ens = self.ens(batch, vectors)
                small = 1e-3 * ens["energy_ensemble"]
                return {"energy": base + small.mean(1), "energy_ensemble": base[:, None] + small}

        super().__init__(Combined())


def test_classical_and_quantum_approach_at_high_temperature():
    calc = atomflux_lj()
    temps = (5.0, 20.0, 80.0, 400.0)
    quantum = thermal_conductivity(ARGON, calc, temperatures=temps, statistics="quantum", **SMALL).kappa[:, 0]
    classical = thermal_conductivity(ARGON, calc, temperatures=temps, statistics="classical", **SMALL).kappa[:, 0]
    ratio = classical / quantum
    assert ratio[0] < 0.8  # at 5 K the quantum phonon gas scatters far less than the classical one
    assert abs(ratio[-1] - 1) < 0.01  # far above θ_D (≈ 90 K for LJ argon) every mode is classical
    # the leading quantum correction is ∝ (ħω / k_B T)²: from 80 K to 400 K it shrinks 25-fold
    assert abs(ratio[3] - 1) / abs(ratio[2] - 1) == pytest.approx((80 / 400) ** 2, rel=0.2)


def test_resumed_run_equals_uninterrupted(tmp_path):
    calls = {"n": 0}

    class Flaky(AseLJ):
        def calculate(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt("simulated interruption")
            super().calculate(*args, **kwargs)

    def lj():
        return Flaky(sigma=SIGMA, epsilon=EPSILON, rc=RC, smooth=True)

    with pytest.raises(KeyboardInterrupt):
        thermal_conductivity(ARGON, lj(), temperatures=(30,), workdir=tmp_path, **SMALL)
    done_before = calls["n"] - 1
    calls["n"] = -10**6
    resumed = thermal_conductivity(ARGON, lj(), temperatures=(30,), workdir=tmp_path, **SMALL)
    n_cells = len(build_phono3py(ARGON, (3, 3, 3)).supercells_with_displacements)
    assert calls["n"] + 10**6 == n_cells - done_before  # only the missing supercells were computed
    straight = thermal_conductivity(ARGON, AseLJ(sigma=SIGMA, epsilon=EPSILON, rc=RC, smooth=True),
                                    temperatures=(30,), **SMALL)
    np.testing.assert_allclose(resumed.kappa, straight.kappa, rtol=1e-12)
    import phono3py

    reopened = phono3py.load(str(tmp_path / "phono3py_params.yaml"), produce_fc=True, log_level=0)
    np.testing.assert_allclose(reopened.forces, np.load(tmp_path / "forces_fc3.npz")["forces"], atol=1e-12)


def test_json_round_trip_and_bad_input(tmp_path):
    result = thermal_conductivity(ARGON, atomflux_lj(), temperatures=(30, 60), **SMALL)
    back = KappaResult.from_json(result.to_json(tmp_path / "k.json"))
    np.testing.assert_allclose(back.kappa, result.kappa)
    assert back.kappa.shape == (2, 6)
    with pytest.raises(ValueError, match="method"):
        thermal_conductivity(ARGON, atomflux_lj(), method="bte", **SMALL)
    molecule = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
    with pytest.raises(ValueError, match="periodic"):
        thermal_conductivity(molecule, atomflux_lj(), **SMALL)


def test_lbte_at_least_rta_and_mesh_convergence():
    """The direct LBTE solution includes normal-process repopulation: κ_LBTE ≥ κ_RTA."""
    from atomflux.lattice import mesh_convergence

    rta = thermal_conductivity(ARGON, atomflux_lj(), temperatures=(40,), method="rta", **SMALL).kappa[0, 0]
    lbte = thermal_conductivity(ARGON, atomflux_lj(), temperatures=(40,), method="lbte", **SMALL).kappa[0, 0]
    assert lbte >= rta * 0.999 and lbte < 3 * rta
    series = mesh_convergence(ARGON, atomflux_lj(), meshes=((5, 5, 5), (7, 7, 7)), temperature=40, progress=False)
    assert series.kappa[1] == pytest.approx(
        thermal_conductivity(ARGON, atomflux_lj(), temperatures=(40,), **SMALL).kappa[0, :3].mean(), rel=1e-10)


def test_phonon_dispersion_of_lj_argon():
    from atomflux.lattice import phonons

    bands = phonons(ARGON, atomflux_lj(), supercell=(3, 3, 3), npoints=60, progress=False)
    gamma = np.argmin(np.linalg.norm(bands.frequencies, axis=1))
    assert np.abs(bands.frequencies[gamma]).max() < 0.05  # acoustic modes vanish at Γ (THz)
    assert bands.frequencies.min() > -0.05  # dynamically stable
    assert 1.2 < bands.frequencies.max() < 3.0  # LJ argon: ~2 THz
    assert np.trapezoid(bands.dos, bands.dos_frequencies) == pytest.approx(3.0, rel=0.05)  # 3 modes per atom


# ---- committees: κ per member from any calculator that returns forces_ensemble -------------------------------

def lj_committee(epsilons):
    """atomflux's Committee of ASE's own Lennard-Jones calculators with different ε."""
    return Committee([AseLJ(sigma=SIGMA, epsilon=e, rc=RC, smooth=True) for e in epsilons],
                     names=[f"LJ eps={e:g}" for e in epsilons])


def test_committee_gives_kappa_per_member_equal_to_separate_runs(tmp_path):
    epsilons = (0.0103, 0.0110, 0.0300)
    settings = dict(temperatures=(30, 60), statistics="classical", **SMALL)
    committee = thermal_conductivity(ARGON, lj_committee(epsilons), **settings)
    separate = np.array([thermal_conductivity(ARGON, AseLJ(sigma=SIGMA, epsilon=e, rc=RC, smooth=True),
                                              **settings).kappa for e in epsilons])
    np.testing.assert_allclose(committee.kappa_members[..., :3], separate[..., :3], rtol=1e-9)
    np.testing.assert_allclose(committee.kappa_std[:, :3], separate.std(0)[:, :3], rtol=1e-9)
    np.testing.assert_allclose(committee.member_isotropic().mean(0), separate[:, :, :3].mean((0, 2)), rtol=1e-6)
    # the committee's own prediction is the mean force, i.e. LJ with the mean ε (forces are linear in ε); the
    # forces agree to 3e-17 eV/Å, but phono3py's κ moves by up to ~1 % under force noise of 1e-16 eV/Å here
    mean_model = thermal_conductivity(ARGON, AseLJ(sigma=SIGMA, epsilon=np.mean(epsilons), rc=RC, smooth=True),
                                      **settings)
    np.testing.assert_allclose(committee.kappa[:, :3], mean_model.kappa[:, :3], rtol=0.02)
    # LJ scaling: κ σ²√(m/ε)/k_B is a function of k_B T/ε, and classically ∝ ε/(k_B T); so κ ∝ ε^(3/2) at fixed T
    assert separate[2, 0, 0] / separate[0, 0, 0] == pytest.approx((0.03 / 0.0103) ** 1.5, rel=0.02)
    table = committee.table()
    assert all(name in table for name in committee.member_names)
    assert committee.flagged_members() == [2]                    # ε = 0.03 lies far outside the other two
    assert "outside 3σ of the other members" in table and "members disagree" in table
    back = KappaResult.from_json(committee.to_json(tmp_path / "k.json"))
    assert back.member_names == committee.member_names and back.flagged_members() == [2]
