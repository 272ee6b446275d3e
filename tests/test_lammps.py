"""LAMMPS bridges: pair_style atomflux against the ASE calculator and against
LAMMPS's own lj/cut; MPI; uncertainty inside LAMMPS; pair_style python/table exports."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.geometry import cellpar_to_cell
from ase.io import write

from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.io import load_model, save_model
from atomflux.models import LennardJones
from atomflux.systems import Batch

from conftest import lammps_bridge_or_skip

lammps_bridge = lammps_bridge_or_skip()

THERMO = "thermo_style custom step pe pxx pyy pzz pxy pxz pyz"
REL = 1e-8


def lammps_ready(atoms, tmp_path: Path, elements: list[str]):
    """Atoms re-oriented the way LAMMPS stores a triclinic box, and their data file."""
    atoms = atoms.copy()
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    path = tmp_path / "structure.data"
    write(path, atoms, format="lammps-data", specorder=elements, masses=True)
    return atoms, path


def start(data: Path, pair_lines: str, extra: str = ""):
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                        f"{pair_lines}\n{THERMO}\n{extra}\nrun 0")
    return lmp


def gathered(lmp, name: str, width: int) -> np.ndarray:
    """Per-atom array ordered by atom id."""
    return np.array(lmp.gather_atoms(name, 1, width)).reshape(-1, width)


def stress_from_lammps(lmp) -> np.ndarray:
    """ASE-convention Voigt stress (eV/Å³) from the LAMMPS pressure (bar, no kinetic part)."""
    p = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    return -p / bar_per_ev_a3(lmp)


def bar_per_ev_a3(lmp) -> float:
    """LAMMPS's own conversion (1.6021765e6 in units metal; ASE's CODATA value differs by 8e-8)."""
    return lmp.extract_global("nktv2p")


@pytest.fixture
def big_alloy():
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (3, 3, 3)
    rng = np.random.default_rng(0)
    atoms.numbers[rng.random(len(atoms)) < 0.3] = 79
    atoms.numbers[:3] = 28
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.mark.parametrize("structure", ["alloy", "big_alloy"])  # alloy: 8 atoms, triclinic, cell < 2 × cutoff
def test_energy_forces_stress_equal_ase(structure, request, tmp_path):
    elements = ["Cu", "Au", "Ni"]
    atoms, data = lammps_ready(request.getfixturevalue(structure), tmp_path, elements)
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * demo Cu Au Ni",
                "compute pe all pe/atom\ncompute s all stress/atom NULL virial")
    atoms.calc = AtomfluxCalculator("demo")
    energy = atoms.get_potential_energy()
    assert lmp.get_thermo("pe") == pytest.approx(energy, rel=REL)
    forces = atoms.get_forces()
    assert np.abs(gathered(lmp, "f", 3) - forces).max() < REL * np.abs(forces).max()
    stress = atoms.get_stress()
    assert np.abs(stress_from_lammps(lmp) - stress).max() < REL * np.abs(stress).max()
    # per-atom energies and two-body-split per-atom virials, atom by atom
    pe_atom = np.array(lmp.numpy.extract_compute("pe", 1, 1))
    ids = np.array(lmp.numpy.extract_atom("id"))[: len(atoms)] - 1
    assert np.allclose(pe_atom[: len(atoms)], atoms.calc.results["energies"][ids], rtol=0, atol=1e-9)
    s_atom = np.array(lmp.numpy.extract_compute("s", 1, 2))[: len(atoms)] / bar_per_ev_a3(lmp)   # eV, = -W_i
    # LAMMPS's xy is Σ del_x f_y = atomflux's W_yx (per atom the virial is not symmetric for a many-body model)
    model = load_model("demo")
    virials = evaluate(model, Batch.from_atoms(atoms, model.cutoff), virials=True).virials.numpy()[ids]
    expected = -virials.transpose(0, 2, 1).reshape(-1, 9)[:, [0, 4, 8, 1, 2, 5]]
    assert np.abs(s_atom - expected).max() < 1e-8 * np.abs(expected).max()
    # per-atom virials add up to the global virial
    total = s_atom.sum(0) / atoms.get_volume()
    assert np.allclose(total, stress[[0, 1, 2, 5, 4, 3]], rtol=0, atol=1e-9 * np.abs(stress).max())
    lmp.close()


def test_default_precision_is_float32_compute_with_float64_accumulation(big_alloy, tmp_path):
    """pair_style atomflux without options runs an atomflux model as `atomflux md` does (precision auto:
    float32 arithmetic, float64 sums): energy, forces, stress and energy σ within float32 rounding of the
    float64 reference (here 1e-7 eV/atom and 4e-6 eV/Å; test_precision.py: 10^4x below the demo model's
    error), and not bit-equal to it."""
    atoms, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    lmp = start(data, "pair_style atomflux\npair_coeff * * demo Cu Au Ni",
                "compute u all atomflux/uncertainty\nthermo_style custom step pe pxx pyy pzz pxy pxz pyz c_u")
    atoms.calc = AtomfluxCalculator("demo", uncertainty="energy")                  # float64 reference
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert 1e-12 < abs(lmp.get_thermo("pe") - energy) / len(atoms) < 1e-6      # eV/atom
    force_error = np.abs(gathered(lmp, "f", 3) - forces).max()
    assert 1e-12 < force_error < 1e-5 * np.abs(forces).max()
    assert np.abs(stress_from_lammps(lmp) - stress).max() < 1e-5 * np.abs(stress).max()
    assert lmp.extract_compute("u", 0, 0) == pytest.approx(atoms.calc.results["energy_uncertainty"], rel=1e-5)
    lmp.close()


def test_heat_flux_compute_equals_atomflux(big_alloy, tmp_path):
    atoms, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * demo Cu Au Ni",
                "velocity all create 800 4 mom yes dist gaussian\ncompute ke all ke/atom\ncompute pe all pe/atom\n"
                "compute st all centroid/stress/atom NULL virial\ncompute flux all heat/flux ke pe st\n"
                "variable j1 equal c_flux[1]\nthermo_style custom step pe v_j1")
    flux = np.array(lmp.numpy.extract_compute("flux", 0, 1)) / 1000.0          # eV·Å/fs: total[3], convective[3]
    velocities = gathered(lmp, "v", 3) / 1000.0                                # Å/fs
    model = load_model("demo")
    batch = Batch.from_atoms(atoms, model.cutoff)
    results = evaluate(model, batch, velocities=torch.tensor(velocities),
                       masses=torch.tensor(atoms.get_masses()))
    expected_potential = results.heat_flux_potential[0].numpy()
    assert np.abs(flux[:3] - flux[3:] - expected_potential).max() < 1e-8 * np.abs(expected_potential).max()
    assert np.abs(expected_potential).max() > 0.1 * np.abs(flux[:3]).max()    # the virial term matters
    # the convective part differs only by LAMMPS's 8-digit mvv2e
    expected = results.heat_flux[0].numpy()
    assert np.abs(flux[:3] - expected).max() < 1e-6 * np.abs(expected).max()
    lmp.close()


def test_lennard_jones_equals_lj_cut(tmp_path):
    """pair_style atomflux, pair_style table and LAMMPS's own lj/cut on the same LJ crystal."""
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (3, 3, 3)
    atoms.rattle(0.15, seed=2)
    _, data = lammps_ready(atoms, tmp_path, ["Ar"])
    model = tmp_path / "lj.pt"
    save_model(LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5), model)
    reference = start(data, "pair_style lj/cut 8.5\npair_coeff * * 0.0104 3.4\npair_modify shift yes")
    bridged = start(data, f"pair_style atomflux precision float64\npair_coeff * * {model} Ar")
    lammps_bridge.export_table(model, tmp_path / "lj.table", n_points=20000)
    tabulated = start(data, f"pair_style table spline 20000\npair_coeff * * {tmp_path / 'lj.table'} ATOMFLUX 8.5")
    e_ref, f_ref, s_ref = reference.get_thermo("pe"), gathered(reference, "f", 3), stress_from_lammps(reference)
    assert bridged.get_thermo("pe") == pytest.approx(e_ref, rel=1e-10)
    assert np.abs(gathered(bridged, "f", 3) - f_ref).max() < 1e-10 * np.abs(f_ref).max()
    assert np.abs(stress_from_lammps(bridged) - s_ref).max() < 1e-10 * np.abs(s_ref).max()
    # interpolated table: agreement to the interpolation error
    assert tabulated.get_thermo("pe") == pytest.approx(e_ref, rel=1e-6)
    assert np.abs(gathered(tabulated, "f", 3) - f_ref).max() < 1e-4 * np.abs(f_ref).max()
    for lmp in (reference, bridged, tabulated):
        lmp.close()


LJ_CUT = "pair_style lj/cut 8.5\npair_coeff * * 0.0104 3.4\npair_modify shift yes"
# NVE steps with per-atom energies, virials and the heat flux asked for only every 5th step (thermo):
# pair_style atomflux takes a different path on those steps than on the others
LJ_MD = ("velocity all create 80 3 mom yes dist gaussian\ntimestep 0.005\nfix nve all nve\n"
         "compute pe all pe/atom\ncompute s all stress/atom NULL virial\n"
         "compute cs all centroid/stress/atom NULL virial\ncompute ke all ke/atom\n"
         "compute flux all heat/flux ke pe cs\ncompute sums all reduce sum c_pe c_s[1]\n"
         "thermo_style custom step pe pxx pyy pzz pxy pxz pyz c_sums[1] c_sums[2] c_flux[1] c_flux[2] c_flux[3]\n"
         "thermo 5\nrun 20")
PER_ATOM = {"x": 3, "f": 3, "c_pe": 1, "c_s": 6, "c_cs": 9}


def lj_argon(tmp_path: Path) -> tuple[Path, Path]:
    """A rattled 108-atom LJ argon crystal (data file) and the atomflux LennardJones of lj/cut's parameters."""
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (3, 3, 3)
    atoms.rattle(0.15, seed=2)
    _, data = lammps_ready(atoms, tmp_path, ["Ar"])
    model = tmp_path / "lj.pt"
    save_model(LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5), model)
    return data, model


def lj_md(data: Path, pair_lines: str) -> dict:
    """Per-atom arrays (ordered by atom id), pe and heat flux after LJ_MD."""
    lmp = start(data, pair_lines, LJ_MD)
    out = {name: np.array(lmp.gather(name, 1, width)).reshape(-1, width) for name, width in PER_ATOM.items()}
    out["pe"] = lmp.get_thermo("pe")
    out["flux"] = np.array([lmp.extract_compute("flux", 0, 1)[k] for k in range(6)])
    lmp.close()
    return out


def assert_same_md(result: dict, reference: dict, rel: float = 1e-9) -> None:
    """Same state of the (cubic) LJ crystal; positions compared across periodic images."""
    assert result["pe"] == pytest.approx(reference["pe"], rel=rel)
    box = 3 * 5.3
    shift = result["x"] - reference["x"]
    assert np.abs(shift - box * np.round(shift / box)).max() < 1e-9
    for name in [*PER_ATOM.keys() - {"x"}, "flux"]:
        scale = np.abs(reference[name]).max()
        assert np.abs(result[name] - reference[name]).max() < rel * scale, name
    assert result["c_pe"].sum() == pytest.approx(result["pe"], rel=1e-12)


def test_lennard_jones_md_per_atom_equals_lj_cut(tmp_path):
    """20 NVE steps: trajectory, per-atom energies, two-body and centroid virials and heat flux
    of the atomflux LennardJones (a half neighbour list) match lj/cut's."""
    data, model = lj_argon(tmp_path)
    assert_same_md(lj_md(data, f"pair_style atomflux precision float64\npair_coeff * * {model} Ar"),
                   lj_md(data, LJ_CUT))


@pytest.mark.skipif(shutil.which("lmp") is None,
                    reason="needs a LAMMPS with the PYTHON package: Debian's `lammps` (scripts/install-system-packages.sh)")
def test_pair_style_python_equals_lj_cut(tmp_path):
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)
    atoms.rattle(0.15, seed=5)
    _, data = lammps_ready(atoms, tmp_path, ["Ar"])
    model = tmp_path / "lj.pt"
    save_model(LennardJones(sigma=3.4, epsilon=0.0104, cutoff=8.5), model)
    lammps_bridge.export_pair_python(model, tmp_path / "atomflux_lj.py")
    common = (f"units metal\natom_style atomic\natom_modify map array\nread_data {data.name}\n{{pair}}\n"
              f"{THERMO}\nthermo_modify format float %.12g\nrun 0\nwrite_dump all custom forces.txt id fx fy fz "
              "modify sort id format float %.15g\n")
    results = []
    for pair in ("pair_style lj/cut 8.5\npair_coeff * * 0.0104 3.4\npair_modify shift yes",
                 "pair_style python 8.5\npair_coeff * * atomflux_lj.AtomfluxPair Ar"):
        (tmp_path / "in.lammps").write_text(common.format(pair=pair))
        done = subprocess.run(["lmp", "-in", "in.lammps", "-log", "none"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        lines = done.stdout.splitlines()
        header = next(k for k, line in enumerate(lines) if line.split()[:2] == ["Step", "PotEng"])
        thermo = np.array(lines[header + 1].split()[1:], dtype=float)
        forces = np.loadtxt(tmp_path / "forces.txt", skiprows=9)[:, 1:]
        results.append((thermo, forces))
    (t_ref, f_ref), (t_py, f_py) = results
    assert np.allclose(t_py, t_ref, rtol=1e-9, atol=1e-9)
    assert np.abs(f_py - f_ref).max() < 1e-9 * np.abs(f_ref).max()


def on_ranks(script: Path, ranks: int, tmp_path: Path, timeout: int) -> dict:
    """Run ``script`` on ``ranks`` MPI ranks with WORKER; its JSON."""
    mpiexec = Path(sys.prefix) / "bin" / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("mpiexec of the mpich wheel not installed (pip install 'atomflux[lammps]')")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / f"out{ranks}.json"
    done = subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, str(worker), str(script), str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def serial_and_two_ranks(data: Path, body: str, tmp_path: Path, timeout: int) -> tuple[dict, dict]:
    """Run the same input (``read_data`` + ``body``) on 1 and on 2 MPI ranks; WORKER's JSON of each."""
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                      "pair_style atomflux precision float64\npair_coeff * * demo Cu Au Ni\n"
                      "compute u all atomflux/uncertainty\n"
                      f"{body}\n")
    return on_ranks(script, 1, tmp_path, timeout), on_ranks(script, 2, tmp_path, timeout)


def test_mpi_two_ranks_equal_serial(big_alloy, tmp_path):
    _, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    serial, parallel = serial_and_two_ranks(data, f"{THERMO} c_u\nrun 0", tmp_path, timeout=600)
    assert parallel["ranks"] == 2
    assert parallel["pe"] == pytest.approx(serial["pe"], rel=1e-12)
    assert np.abs(np.subtract(parallel["forces"], serial["forces"])).max() < 1e-12
    assert np.allclose(parallel["press"], serial["press"], rtol=1e-10, atol=1e-8)
    assert parallel["uncertainty"] == pytest.approx(serial["uncertainty"], rel=1e-12)


WORKER = """
import json, sys
import numpy as np
from atomflux.lammps_bridge import start_lammps
lmp = start_lammps(["-log", "none", "-screen", "none"])
lmp.file(sys.argv[1])
forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
positions = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
result = {"positions": positions.tolist(), "pe": lmp.get_thermo("pe"), "press": [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")],
          "forces": forces.tolist(), "ranks": lmp.extract_setting("world_size")}
if lmp.has_id("compute", "u"):
    result["uncertainty"] = lmp.extract_compute("u", 0, 0)
if lmp.has_id("compute", "flux"):  # the per-atom quantities of LJ_MD
    result["per_atom"] = {name: np.array(lmp.gather(name, 1, width)).tolist()
                          for name, width in (("x", 3), ("f", 3), ("c_pe", 1), ("c_s", 6), ("c_cs", 9))}
    result["flux"] = [lmp.extract_compute("flux", 0, 1)[k] for k in range(6)]
if lmp.extract_setting("world_rank") == 0:
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
lmp.close()
lmp.finalize()
"""


def test_mpi_lennard_jones_md_equals_lj_cut(tmp_path):
    """The half neighbour list of a pairwise model across 2 MPI ranks (each pair on one rank;
    per-atom energies of ghosts summed into their owners) gives lj/cut's serial MD."""
    data, model = lj_argon(tmp_path)
    reference = lj_md(data, LJ_CUT)
    script = tmp_path / "in.lj"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                      f"pair_style atomflux precision float64\npair_coeff * * {model} Ar\n{LJ_MD}\n")
    parallel = on_ranks(script, 2, tmp_path, timeout=600)
    assert parallel["ranks"] == 2
    result = {name: np.array(parallel["per_atom"][name]).reshape(-1, width) for name, width in PER_ATOM.items()}
    assert_same_md({**result, "pe": parallel["pe"], "flux": np.array(parallel["flux"])}, reference)


def test_uncertainty_compute_matches_calculator(big_alloy, tmp_path):
    atoms, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    for model in ("demo", "demo-llpr"):
        lmp = start(data, f"pair_style atomflux precision float64\npair_coeff * * {model} Cu Au Ni",
                    "compute u all atomflux/uncertainty\nvariable u equal c_u\nthermo_style custom step pe c_u")
        atoms.calc = AtomfluxCalculator(model, uncertainty="energy")
        atoms.get_potential_energy()
        assert lmp.extract_compute("u", 0, 0) == pytest.approx(atoms.calc.results["energy_uncertainty"], rel=1e-8)
        per_atom = np.array(lmp.numpy.extract_compute("u", 1, 1))[: len(atoms)]
        ids = np.array(lmp.numpy.extract_atom("id"))[: len(atoms)] - 1
        assert np.allclose(per_atom, atoms.calc.results["energies_uncertainty"][ids], rtol=1e-8, atol=1e-12)
        lmp.close()


def test_uncertainty_computed_only_on_steps_that_use_it(big_alloy, tmp_path, monkeypatch):
    """evaluate() is asked for the energy uncertainty exactly on the steps where thermo (every 10)
    or fix halt (every 15) read compute atomflux/uncertainty, and there it is the calculator's."""
    asked = []
    original = lammps_bridge.callbacks.evaluate

    def recording(*args, **kwargs):
        asked.append(kwargs["uncertainty"])
        return original(*args, **kwargs)

    monkeypatch.setattr(lammps_bridge.callbacks, "evaluate", recording)
    atoms, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * demo Cu Au Ni",
                "compute u all atomflux/uncertainty\nvariable u equal c_u\nvelocity all create 600 7 mom yes\n"
                "timestep 0.002\nfix nve all nve\nfix guard all halt 15 v_u > 100.0 error continue\n"
                "thermo_style custom step pe c_u\nthermo 10")
    asked.clear()
    lmp.command("run 30")
    assert asked == ["energy" if step in (0, 10, 15, 20, 30) else False for step in range(31)]
    ids = np.array(lmp.numpy.extract_atom("id"))[: len(atoms)] - 1
    atoms.positions[ids] = np.array(lmp.numpy.extract_atom("x"))[: len(atoms)]
    atoms.calc = AtomfluxCalculator("demo", uncertainty="energy")
    atoms.get_potential_energy()
    assert lmp.extract_compute("u", 0, 0) == pytest.approx(atoms.calc.results["energy_uncertainty"], rel=1e-8)
    lmp.close()


def test_nve_conserves_energy(big_alloy, tmp_path):
    _, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * demo Cu Au Ni",
                "velocity all create 600 7 mom yes dist gaussian\ntimestep 0.002\nfix nve all nve\n"
                "thermo_style custom step pe etotal")
    totals = []
    for _ in range(10):
        lmp.command("run 40 post no")
        totals.append(lmp.get_thermo("etotal"))
    kinetic = lmp.get_thermo("etotal") - lmp.get_thermo("pe")
    drift = np.ptp(totals) / len(big_alloy)
    assert kinetic > 0.02 * len(big_alloy)            # it did move (≈ 300 K after equipartition)
    assert drift < 5e-4, f"total energy wanders by {drift * 1e3:.3f} meV/atom over 400 × 2 fs"
    lmp.close()


def test_md_steps_reuse_freed_tensor_memory(tmp_path):
    """Each force call frees its few-MB tensors; the next one must get them back without fresh
    pages (before keep_freed_memory: ~530 page faults per step at 256 atoms, ~1.4k at 864)."""
    from atomflux.heap import keep_freed_memory

    resource = pytest.importorskip("resource")
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt on this platform")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(0.05, seed=0)
    _, data = lammps_ready(atoms, tmp_path, ["Cu"])
    lmp = start(data, "pair_style atomflux\npair_coeff * * demo Cu",
                "velocity all create 300 1 mom yes\ntimestep 0.001\nfix nve all nve")
    lmp.command("run 5")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    lmp.command("run 20 pre no post no")
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 20
    lmp.close()
    assert per_step < 50, f"{per_step:.0f} page faults per MD step of 256 atoms: freed tensor memory is not reused"


def test_fix_halt_stops_extrapolating_run(tmp_path):
    """Expanding the crystal by 25 % drives the model out of its training range; fix halt stops the run."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.symbols[::3] = "Au"
    _, data = lammps_ready(atoms, tmp_path, ["Cu", "Au"])
    lmp = start(data, "pair_style atomflux precision float64\npair_coeff * * demo Cu Au",
                "compute u all atomflux/uncertainty\nvariable u equal c_u/atoms\nthermo_style custom step pe c_u")
    start_sigma = lmp.extract_variable("u")
    lmp.commands_string("velocity all create 300 1\nfix nve all nve\n"
                        "fix grow all deform 1 x scale 1.25 y scale 1.25 z scale 1.25\n"
                        "fix stop all halt 10 v_u > 0.05 error continue\nthermo 10\nrun 500")
    stopped_at = lmp.extract_global("ntimestep")
    assert start_sigma < 0.03
    assert 0 < stopped_at < 500
    assert lmp.extract_variable("u") > 0.05
    lmp.close()


@pytest.mark.parametrize("lines, message", [
    ("pair_style atomflux\npair_coeff * * demo Cu Xx", "'Xx' is not a chemical element"),
    ("pair_style atomflux\npair_coeff * * demo Cu Pt", "Pt not known to this model"),
    ("pair_style atomflux\npair_coeff * * demo Cu", "one element per atom type: 2 type(s) defined, 1"),
    ("pair_style atomflux\npair_coeff * * no-such-model.pt Cu Au", "no model file"),
    ("newton off|pair_style atomflux\npair_coeff * * demo Cu Au", "needs newton pair on"),
    ("pair_style atomflux dtype float16\npair_coeff * * demo Cu Au", "dtype must be float32 or float64"),
    ("pair_style atomflux precision half\npair_coeff * * demo Cu Au",
     "precision must be auto, float32, float64 or native, got 'half'"),
    ("pair_style atomflux\npair_coeff * * demo-hamiltonian Cu Au", "predicts orbital energies, not the energy"),
    ("pair_style lj/cut 4\npair_coeff * * 1 1\ncompute u all atomflux/uncertainty", "needs pair_style atomflux"),
])
def test_bad_input_gives_clear_lammps_error(lines, message, tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.symbols[0] = "Au"
    _, data = lammps_ready(atoms, tmp_path, ["Cu", "Au"])
    before, _, lines = lines.rpartition("|")
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        lmp.commands_string(f"units metal\natom_style atomic\n{before}\nread_data {data}\n{lines}\nrun 0")
    lmp.close()


def test_overlapping_atoms_named_by_id(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions[2] = atoms.positions[1] + [0.1, 0.05, 0.0]
    _, data = lammps_ready(atoms, tmp_path, ["Cu"])
    lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
    with pytest.raises(Exception, match=r"atoms with IDs [23] and [23] overlap: distance 0.112 Å"):
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}\n"
                            "pair_style atomflux\npair_coeff * * demo Cu\nrun 0")
    lmp.close()


def test_wrong_units_and_unreadable_model(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    _, data = lammps_ready(atoms, tmp_path, ["Cu"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    for units_style, model, message in (("real", "demo", "needs 'units metal'"), ("metal", junk, "junk.pt")):
        lmp = lammps_bridge.start_lammps(["-log", "none", "-screen", "none"])
        with pytest.raises(Exception, match=message):
            lmp.commands_string(f"units {units_style}\natom_style atomic\nread_data {data}\n"
                                f"pair_style atomflux\npair_coeff * * {model} Cu\nrun 0")
        lmp.close()


def test_cli_runs_script_and_reports_errors(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    _, data = lammps_ready(atoms, tmp_path, ["Cu"])
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\nread_data {data}\npair_style atomflux precision float64\n"
                      "pair_coeff * * demo ${el}\nthermo_style custom step pe\nrun 0\n"
                      "print \"ENERGY $(pe:%.10f)\"\n")
    command = [sys.executable, "-m", "atomflux.cli", "lammps", str(script), "-log", "none"]
    done = subprocess.run(command + ["-var", "el", "Cu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    atoms.calc = AtomfluxCalculator("demo")
    energy = float(next(line for line in done.stdout.splitlines() if line.startswith("ENERGY")).split()[1])
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    failed = subprocess.run(command + ["-var", "el", "Zr"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert "Zr not known to this model" in failed.stderr


def test_plugin_cached_per_version_and_missing_compiler_is_clear(tmp_path, monkeypatch):
    from atomflux.lammps_bridge import plugin

    monkeypatch.setenv("ATOMFLUX_CACHE", str(tmp_path))
    version = int(lammps_bridge.session.lammps_module().__version__)
    first = plugin.build_plugin(version)
    stamp = first.stat().st_mtime_ns
    assert plugin.build_plugin(version) == first and first.stat().st_mtime_ns == stamp   # reused, not rebuilt
    assert plugin.build_plugin(version + 1) != first                                    # one build per version
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(plugin.PluginBuildError, match="needs a C\\+\\+ compiler"):
        plugin.build_plugin(version + 2)


@pytest.mark.slow
def test_mpi_dynamics_follow_the_serial_trajectory(big_alloy, tmp_path):
    """300 NVE steps on 2 ranks (atoms migrate between domains) stay on the serial trajectory."""
    _, data = lammps_ready(big_alloy, tmp_path, ["Cu", "Au", "Ni"])
    serial, parallel = serial_and_two_ranks(
        data, f"velocity all create 1200 11 mom yes dist gaussian\ntimestep 0.002\nfix nve all nve\n"
        f"{THERMO} c_u\nrun 300", tmp_path, timeout=1200)
    displacement = np.abs(np.subtract(parallel["positions"], serial["positions"])).max()
    assert displacement < 1e-6
    assert parallel["pe"] == pytest.approx(serial["pe"], rel=1e-8)


def test_rotationally_averaged_model_by_spec_suffix_equals_the_averaging_calculator(tmp_path):
    """pair_coeff * * MODEL@lebedev:2 runs the average (an orientation-dependent model: it changes the numbers)."""
    from conftest import orientation_dependent_model_file

    crystal = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    crystal.rattle(0.08, seed=3)
    path = orientation_dependent_model_file(crystal, tmp_path / "unconstrained.pt")
    atoms, data = lammps_ready(crystal, tmp_path, ["Cu"])
    lmp = start(data, f"pair_style atomflux precision float64\npair_coeff * * {path}@lebedev:2 Cu")
    atoms.calc = AtomfluxCalculator(f"{path}@lebedev:2", dtype="float64")
    energy = atoms.get_potential_energy()
    assert lmp.get_thermo("pe") == pytest.approx(energy, rel=REL)
    forces = atoms.get_forces()
    assert np.abs(gathered(lmp, "f", 3) - forces).max() < REL * np.abs(forces).max()
    bare = atoms.copy()
    bare.calc = AtomfluxCalculator(str(path), dtype="float64")
    assert abs(bare.get_potential_energy() - energy) > 1e-6 * abs(energy)   # the average is not the bare model
    lmp.close()


@pytest.mark.parametrize("barostat", ["aniso", "tri"])
def test_fix_npt_with_pair_atomflux_equals_lj_cut(barostat, tmp_path):
    """fix npt with an anisotropic target (x, y free at 0 bar, z at 2000 bar; tri: also the tilts at 0 bar)
    moves the box the same way with pair_style atomflux as with LAMMPS's own lj/cut."""
    data, model = lj_argon(tmp_path)
    targets = {"aniso": "x 0 0 0.5 y 0 0 0.5 z 2000 2000 0.5",
               "tri": "x 0 0 0.5 y 0 0 0.5 z 2000 2000 0.5 xy 0 0 0.5 xz 0 0 0.5 yz 0 0 0.5"}[barostat]
    run = (("change_box all triclinic\n" if barostat == "tri" else "")
           + "velocity all create 40 3 mom yes dist gaussian\ntimestep 0.002\n"
           + f"fix baro all npt temp 40 40 0.1 {targets}\nthermo 10\nrun 100")
    boxes, energies = [], []
    for pair in (LJ_CUT, f"pair_style atomflux precision float64\npair_coeff * * {model} Ar"):
        lmp = start(data, pair, run)
        low, high, xy, yz, xz, _, _ = lmp.extract_box()
        boxes.append(np.array([*np.subtract(high, low), xy, yz, xz]))
        energies.append(lmp.get_thermo("pe"))
        lmp.close()
    assert energies[1] == pytest.approx(energies[0], rel=1e-8)
    assert np.abs(boxes[1] - boxes[0]).max() < 1e-8 * 16
    assert boxes[0][2] < 3 * 5.3 - 0.01 < boxes[0][0]  # compressed along z, not along x: the barostat acted
