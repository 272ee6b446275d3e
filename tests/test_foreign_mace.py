"""A MACE model built here, through atomflux, against mace-torch's own MACECalculator.

mace-torch 0.3.16 pins e3nn 0.4.4 and sevenn needs e3nn 0.6, so the two cannot
share an environment: ``make test`` runs this file in a second virtual
environment (``.venv-mace``, made by ``make venv-mace``); elsewhere it skips.
"""

import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk

from atomflux import AtomfluxCalculator, Batch, evaluate, load_model
from atomflux.uncertainty import LLPR

pytest.importorskip("mace", reason="mace-torch is not installed in this environment (it cannot share one with "
                                   "sevenn: e3nn pins); `make test` runs this file in .venv-mace")
warnings.filterwarnings("ignore", module="e3nn")
from conftest import lammps_bridge_or_skip, small_mace_model  # noqa: E402


@pytest.fixture(scope="module")
def mace_model():
    return small_mace_model()


def strained_sic(seed=0):
    """Rattled SiC in a strained triclinic cell smaller than the 8 Å interaction range."""
    rng = np.random.default_rng(seed)
    atoms = bulk("SiC", "zincblende", a=4.36) * (2, 1, 1)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.08 * rng.standard_normal(atoms.positions.shape)
    return atoms


def results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_mace_file_by_spec_equals_mace_calculator(mace_model, tmp_path):
    from mace.calculators import MACECalculator

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    with pytest.raises(ValueError, match="trust=True"):
        AtomfluxCalculator(f"mace:{path}")
    ours = AtomfluxCalculator(f"mace:{path}", trust=True)
    assert ours.dtype == torch.float64
    assert ours.potential.interaction_range == pytest.approx(8.0) and not ours.potential.strictly_local
    theirs = MACECalculator(models=mace_model, default_dtype="float64", device="cpu")
    atoms = strained_sic()
    for a, b in zip(results(ours, atoms), results(theirs, atoms)):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max()


def test_mace_features_and_llpr_round_trip(mace_model, tmp_path):
    """Features = scaled input of the last readout's last linear layer; an LLPR on a MACE file reloads by spec."""
    from atomflux import save_model

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    potential = load_model(f"mace:{path}", trust=True)
    batch = Batch.from_atoms(strained_sic(), potential.cutoff)
    out = potential(batch, batch.pair_vectors())
    hooked = LLPR(potential, last_layer="model.readouts.1.linear_2").fit([batch])
    raw = evaluate(hooked, batch, forces=False).outputs["llpr_features"][:, :-1]
    torch.testing.assert_close(raw * 1.7, out["features"])
    train = [Batch.from_atoms(strained_sic(seed=k), potential.cutoff) for k in range(6)]
    llpr = LLPR(potential).fit(train)
    saved = save_model(llpr, tmp_path / "llpr.pt")
    with pytest.raises(ValueError, match="trust=True"):
        load_model(saved)
    again = load_model(saved, trust=True)
    test = Batch.from_atoms(strained_sic(seed=50), potential.cutoff)
    assert torch.equal(evaluate(llpr, test, uncertainty="energy").energy_uncertainty,
                       evaluate(again, test, uncertainty="energy").energy_uncertainty)


def test_mace_heat_flux_through_the_unfolded_system(mace_model, tmp_path):
    """Two-layer MACE: J = d/dt Σ r_i U_i on a cluster (finite differences); periodic flux = 1/8 of the 2×2×2 cell's."""
    from conftest import assert_flux_is_the_time_derivative, random_cluster

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    potential = load_model(f"mace:{path}", trust=True)
    cluster, velocities = random_cluster(14, 4.36, seed=2, symbol="Si")
    cluster.symbols[::3] = "C"
    assert_flux_is_the_time_derivative(potential, cluster, velocities, h=1e-3, rtol=1e-6)

    crystal = strained_sic()
    v = 0.01 * np.random.default_rng(1).standard_normal((len(crystal), 3))

    def flux(atoms, velocities):
        batch = Batch.from_atoms(atoms, potential.cutoff)
        return evaluate(potential, batch, forces=False, velocities=torch.tensor(velocities),
                        masses=torch.ones(len(atoms))).heat_flux[0].numpy()

    np.testing.assert_allclose(flux(crystal * (2, 2, 2), np.tile(v, (8, 1))), 8 * flux(crystal, v), rtol=1e-8)


def test_mace_in_lammps_equals_mace_calculator(mace_model, tmp_path):
    """pair_style atomflux with the MACE file on one MPI rank (a triclinic box smaller than the 8 Å reach:
    atomflux's periodic graph, no ghosts) equals mace-torch's MACECalculator in float64 to 1e-8: energy,
    forces, stress; LAMMPS's heat/flux potential part equals atomflux's unfolded-system flux; the pickle
    loads only with `trust yes`."""
    lammps_bridge = lammps_bridge_or_skip()
    from ase.geometry import cellpar_to_cell
    from ase.io import write
    from mace.calculators import MACECalculator

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    atoms = strained_sic()
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)     # LAMMPS's lower-triangular box
    data = tmp_path / "sic.data"
    write(data, atoms, format="lammps-data", specorder=["C", "Si"], masses=True)
    setup = f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    with pytest.raises(Exception, match="add `trust yes` to pair_style atomflux"):
        lmp.commands_string(f"{setup}pair_style atomflux\npair_coeff * * mace:{path} C Si\nrun 0")
    lmp.close()
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(
        f"{setup}pair_style atomflux trust yes\npair_coeff * * mace:{path} C Si\n"
        "velocity all create 600 4 mom yes dist gaussian\ncompute ke all ke/atom\ncompute pe all pe/atom\n"
        "compute st all centroid/stress/atom NULL virial\ncompute flux all heat/flux ke pe st\n"
        "compute virial all pressure NULL virial\nthermo_style custom step pe c_virial[1] c_flux[1]\nrun 0")
    energy, forces, stress = results(MACECalculator(models=mace_model, default_dtype="float64", device="cpu"), atoms)
    assert lmp.get_thermo("pe") == pytest.approx(energy, rel=1e-8)
    lammps_forces = np.array(lmp.gather("f", 1, 3)).reshape(-1, 3)
    assert np.abs(lammps_forces - forces).max() <= 1e-8 * np.abs(forces).max()
    pressure = np.array(lmp.numpy.extract_compute("virial", 0, 1))[[0, 1, 2, 5, 4, 3]]   # no kinetic part
    assert np.abs(-pressure / lmp.extract_global("nktv2p") - stress).max() <= 1e-8 * np.abs(stress).max()
    flux = np.array(lmp.numpy.extract_compute("flux", 0, 1)) / 1000.0                # eV·Å/fs
    velocities = np.array(lmp.gather("v", 1, 3)).reshape(-1, 3) / 1000.0             # Å/fs
    lmp.close()
    potential = load_model(f"mace:{path}", trust=True)
    expected = evaluate(potential, Batch.from_atoms(atoms, potential.cutoff), velocities=torch.tensor(velocities),
                        masses=torch.tensor(atoms.get_masses())).heat_flux_potential[0].numpy()
    assert np.abs(flux[:3] - flux[3:] - expected).max() <= 1e-8 * np.abs(expected).max()


def test_mace_flux_vector_equals_the_per_atom_virial_flux(mace_model, tmp_path):
    """Two-layer MACE, triclinic SiC cell smaller than the 8 Å reach: the flux vector (forward-mode pass on the
    message-passing part of the unfolded system) equals the flux of the per-atom receiver virials to 1e-10."""
    from unittest import mock

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    potential = load_model(f"mace:{path}", trust=True)
    atoms = bulk("SiC", "zincblende", a=4.36)                 # 2-atom fcc primitive cell, 3.1 Å vectors
    rng = np.random.default_rng(12)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    batch = Batch.from_atoms(atoms, potential.cutoff)
    v, m = torch.tensor(0.01 * rng.standard_normal((len(atoms), 3))), torch.tensor(atoms.get_masses())
    exact = evaluate(potential, batch, forces=False, velocities=v, masses=m, flux_virials=True).heat_flux_potential
    with mock.patch("atomflux.evaluate.unfolded_flux_virials", side_effect=AssertionError("fell back")):
        vector = evaluate(potential, batch, forces=False, velocities=v, masses=m).heat_flux_potential
    np.testing.assert_allclose(vector.numpy(), exact.numpy(), rtol=1e-10, atol=1e-10 * float(exact.abs().max()))


def test_mace_halo_in_one_process_equals_mace_calculator(mace_model):
    """The two-layer MACE with its second interaction's senders refreshed by the halo and node updates of the
    owned atoms only (mace-torch's LAMMPS path), on a one-cutoff cluster (4 Å + 1 Å skin) of a cell smaller
    than its 8 Å reach, equals MACECalculator (float64, 1e-10); its heat-flux receiver virials through the
    halo equal those of the unfolded system, and its energy, forces and virial from the same pass equal
    MACECalculator."""
    lammps_bridge_or_skip()
    from mace.calculators import MACECalculator

    from atomflux.foreign.mace import mace_from_object
    from test_lammps_halo import halo_in_one_process

    potential = mace_from_object(mace_model)
    assert potential.layer_stack and potential.halo_width == 8 + 8 * 3
    atoms = strained_sic()
    updated = []                                                   # atoms whose nodes the products update
    for product in potential.model.products:
        product.register_forward_hook(lambda module, args, kwargs, out: updated.append(len(out)), with_kwargs=True)
    energy, energies, forces, virial = halo_in_one_process(potential, atoms)
    assert updated == [len(atoms), len(atoms)]                     # not the cluster's images
    with pytest.raises(ValueError, match="refresh= needs owned="):
        potential(Batch.from_atoms(atoms, potential.cutoff), torch.zeros((0, 3), dtype=torch.float64),
                  refresh=lambda h: h)
    reference, reference_forces, stress = results(MACECalculator(models=mace_model, default_dtype="float64",
                                                                 device="cpu"), atoms)
    assert energy == pytest.approx(reference, rel=1e-10)
    assert np.abs(forces - reference_forces).max() <= 1e-10 * np.abs(reference_forces).max()
    voigt = -virial[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] / atoms.get_volume()
    assert np.abs(voigt - stress).max() <= 1e-10 * np.abs(stress).max()
    # a heat-flux step: receiver virials through the halo = the unfolded system of the 8 Å reach, and the
    # energy, forces and virial of the same pass = MACECalculator
    from atomflux.lammps_bridge.whole_system import periodic_flux_step

    batch = Batch.from_atoms(atoms, potential.cutoff)
    expected = evaluate(potential, batch, flux_virials=True).flux_virials
    step = periodic_flux_step(potential, batch)
    assert float((step.flux_virials - expected).abs().max()) <= 1e-10 * float(expected.abs().max())
    assert float(step.energy[0]) == pytest.approx(reference, rel=1e-10)
    assert np.abs(step.forces.numpy() - reference_forces).max() <= 1e-10 * np.abs(reference_forces).max()
    voigt = -step.virial[0].numpy()[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]] / atoms.get_volume()
    assert np.abs(voigt - stress).max() <= 1e-10 * np.abs(stress).max()


def test_mace_rank_without_atoms_makes_the_same_exchanges(mace_model):
    """The per-layer exchanges are collective, so a rank that owns no atom (only ghosts, or nothing: mace-torch
    cannot update zero nodes) must make the same exchange calls, forward and backward, as a rank with atoms,
    on a plain step and on a heat-flux step; its energies and forces are zero."""
    lammps_bridge_or_skip()
    from atomflux.foreign.mace import mace_from_object
    from atomflux.lammps_bridge.whole_system import (Halo, OwnedEnergies, halo_flux_step, image_exchange,
                                                      owned_pairs, system_batch)
    from atomflux.systems import unfold

    potential = mace_from_object(mace_model)
    atoms = strained_sic()
    cluster, origin = unfold(Batch.from_atoms(atoms, potential.cutoff), 0, potential.cutoff + 1.0)

    def calls(batch, n_owned, exchange):
        made = []

        def recorded(data, reverse):
            made.append((data.shape[1], reverse))
            exchange(data, reverse)
        batch = owned_pairs(batch, n_owned, potential.pair_receiver)
        plain = evaluate(OwnedEnergies(potential, n_owned, Halo(recorded, n_owned).refresh), batch, stress=True)
        step = halo_flux_step(potential, batch, Halo(recorded, n_owned))
        return made, plain, step

    reference, _, _ = calls(cluster, len(atoms), image_exchange(origin, len(atoms)))
    assert reference == [(32, False), (32, True), (3, False), (32, False)] + [(32, True)] * 4
    nothing = system_batch(np.zeros((0, 3)), np.zeros(0, dtype=int), np.array(atoms.cell), np.zeros(3),
                           np.ones(3, dtype=bool), potential.cutoff, np.zeros(0, dtype=int))
    for batch in (cluster, nothing):                               # ghosts only; nothing at all
        made, plain, step = calls(batch, 0, lambda data, reverse: None)
        assert made == reference
        assert float(plain.energy[0]) == 0.0 and not plain.forces.any() and not step.flux_virials.any()


def test_mace_on_two_ranks_with_the_halo_equals_one_rank_and_mace_calculator(mace_model, tmp_path):
    """pair_style atomflux with the MACE file on 2 MPI ranks (per-layer halo, ghost shell of 4 Å + skin;
    the ranks' subdomains are narrower than the 8 Å reach) = the serial run (energy, forces, pressure, per-atom
    energies, per-atom and centroid virials, heat flux) and MACECalculator (energy, forces), float64."""
    lammps_bridge_or_skip()
    from ase.io import write
    from mace.calculators import MACECalculator

    from test_lammps import lammps_ready
    from test_lammps_halo import CENTROID, GATHER, PER_ATOM, THERMO, on_ranks

    path = tmp_path / "small.model"
    torch.save(mace_model, path)
    rng = np.random.default_rng(3)
    crystal = bulk("SiC", "zincblende", a=4.36, cubic=True) * (3, 2, 2)
    crystal.set_cell(crystal.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
    crystal.positions += 0.08 * rng.standard_normal(crystal.positions.shape)
    atoms, _ = lammps_ready(crystal, tmp_path, ["C", "Si"])
    assert atoms.cell.lengths()[0] / 2 < 8.0
    data = tmp_path / "sic.data"
    write(data, atoms, format="lammps-data", specorder=["C", "Si"], masses=True)
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                      f"pair_style atomflux trust yes\npair_coeff * * mace:{path} C Si\n{PER_ATOM}{CENTROID}"
                      f"velocity all create 600 4 mom yes dist gaussian\n{THERMO} c_flux[1]\nrun 0\n")
    gather = GATHER + ",c_cs:9"
    serial, reference, _ = on_ranks(script, 1, tmp_path, "stack:1.0", gather, "serial")
    assert serial.returncode == 0, serial.stderr[-3000:]
    done, parallel, log = on_ranks(script, 2, tmp_path, "stack:1.0", gather, "halo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert log.count("per-layer halo exchange on 2 MPI ranks") == 1
    assert parallel["pe"] == pytest.approx(reference["pe"], rel=1e-10)
    assert np.allclose(parallel["press"], reference["press"], rtol=1e-8, atol=1e-6)
    for name in ("f", "c_pe", "c_s", "c_cs", "flux"):
        assert np.abs(np.array(parallel[name]) - reference[name]).max() <= 1e-8 * np.abs(reference[name]).max()
    energy, forces, _ = results(MACECalculator(models=mace_model, default_dtype="float64", device="cpu"), atoms)
    assert parallel["pe"] == pytest.approx(energy, rel=1e-8)
    assert np.abs(np.array(parallel["f"]) - forces).max() <= 1e-8 * np.abs(forces).max()


@pytest.mark.slow
def test_lammps_heat_flux_of_a_mace_file_through_transport_and_compare(tmp_path, monkeypatch):
    """Issue 16's "done when", as a user runs it: examples/lammps/in.heat_flux_mace with a two-layer MACE file
    (fitted to EMT Cu by examples/lammps/small_mace_cu.py) through pair_style atomflux, NVE with compute heat/flux
    over centroid/stress/atom; NVE conserves energy; `atomflux transport` reads the flux file with its temperature
    and volume columns; `atomflux kappa` of the same model and `atomflux compare` set the two κ side by side."""
    import importlib.util
    import json
    from pathlib import Path

    from atomflux.cli import main

    lammps_bridge = lammps_bridge_or_skip()
    examples = Path(__file__).resolve().parents[1] / "examples" / "lammps"
    spec = importlib.util.spec_from_file_location("small_mace_cu", examples / "small_mace_cu.py")
    small_mace_cu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(small_mace_cu)
    monkeypatch.chdir(tmp_path)
    torch.save(small_mace_cu.fit(epochs=20), "small-mace-cu.model")
    bulk("Cu", "fcc", a=3.59).write("cu.cif")

    steps = 200
    lmp = lammps_bridge.start_lammps(["-log", "log.lammps", "-screen", "none", "-var", "n", "2",
                                      "-var", "steps", str(steps), "-var", "T", "300"])
    lmp.file(str(examples / "in.heat_flux_mace"))
    lmp.close()
    thermo = [line.split() for line in Path("log.lammps").read_text().splitlines()]
    thermo = np.array([[float(x) for x in row] for row in thermo
                       if len(row) == 7 and row[0].isdigit()])          # step temp pe etotal Jx Jy Jz
    assert thermo[-1, 0] == steps
    assert np.abs(thermo[:, 3] - thermo[0, 3]).max() / 32 < 1e-3     # eV/atom over 0.4 ps of NVE

    assert main(["transport", "--flux", "heat_flux_mace.txt", "--timestep", "0.002", "--output-dir", "gk"]) in (0, None)
    result = json.loads(Path("gk/greenkubo.json").read_text())["result"]
    assert result["volume_A3"] == pytest.approx(32 * 3.59**3 / 4, rel=1e-6)
    recorded = np.loadtxt("heat_flux_mace.txt")
    assert result["temperature_K"] == pytest.approx(recorded[:, 4].mean(), rel=1e-6)
    assert recorded.shape[0] == steps + 1 and result["samples"] == 3 * (steps + 1)
    assert (result["kappa_W_per_mK"] or result["lower_bound_W_per_mK"]) > 0

    assert main(["kappa", "cu.cif", "--model", "mace:small-mace-cu.model", "--trust-model", "--supercell", "3", "3",
                 "3", "--mesh", "5", "5", "5", "--statistics", "classical", "--no-uncertainty",
                 "-o", "kappa"]) in (0, None)
    lattice = json.loads(Path("kappa/kappa.json").read_text())
    assert lattice["statistics"] == "classical" and min(lattice["kappa"][0][:3]) > 0
    assert main(["compare", "--lattice", "kappa/kappa.json", "--md", "heat_flux_mace.txt", "--timestep", "0.002",
                 "--atoms", "32", "--output-dir", "comparison"]) in (0, None)
    report = Path("comparison/comparison.md").read_text()
    assert "lattice RTA (classical)" in report and "same lattice constant" in report
