"""pair_style atomflux on several MPI ranks with the per-layer halo exchange.

A layer-stack model (``layer_stack``: its forward takes ``refresh=``) runs on each rank's local atoms and
LAMMPS's ordinary ghost shell of one cutoff; between layers the ghosts' node features are refreshed from
their owners by LAMMPS's forward communication, and their gradients go back by reverse communication.
Checks: in one process, with the exchange played by an index map on the unfolded one-cutoff cluster, the
halo autograd path equals the periodic model (the three-layer toy; SevenNet-0 against its own ASE
calculator); under ``mpiexec -n 2`` on cells whose subdomains are smaller than the interaction range, the
halo run equals the serial run (energy, forces, pressure, per-atom energies and virials, energy σ, ten NVE
steps) with the toy in float64 and SevenNet-0 in float32, and its ghost shell is one cutoff deep; an
opaque model falls back to the full shell with one log line; ``halo yes`` for an opaque model and
centroid virials with the halo are refused with one clear line.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from atomflux import Batch, evaluate
from atomflux.systems import unfold

from conftest import LayerStackToy, TwoLayerToy, lammps_bridge_or_skip
from test_lammps import lammps_ready
from test_lammps_message_passing import assert_close

lammps_bridge = lammps_bridge_or_skip()
from atomflux.lammps_bridge.whole_system import (Halo, OwnedEnergies, halo_flux_step, image_exchange,  # noqa: E402
                                                  owned_pairs, periodic_flux_step)

STACK_CUTOFF = 3.5        # three layers: reach 10.5 Å
THERMO = "thermo_style custom step pe pxx pyy pzz pxy pxz pyz"


def halo_in_one_process(potential, atoms, skin=1.0):
    """Energy, per-atom energies, forces on the owned atoms (ghost forces folded onto owners), virial:
    the periodic ``atoms`` as owned atoms + images within one cutoff + ``skin``, with the per-layer halo."""
    batch = Batch.from_atoms(atoms, potential.cutoff)
    cluster, origin = unfold(batch, 0, potential.cutoff + skin)
    n = len(atoms)
    assert len(cluster.numbers) > n
    model = OwnedEnergies(potential, n, Halo(image_exchange(origin, n), n).refresh)
    results = evaluate(model, owned_pairs(cluster, n, potential.pair_receiver), stress=True, energies=True)
    forces = torch.zeros((n, 3), dtype=results.forces.dtype).index_add_(0, origin, results.forces)
    return float(results.energy[0]), results.energies[:n].numpy(), forces.numpy(), results.virial[0].numpy()


class FrameBlind(Halo):
    """A halo that leaves out the owner-frame correction of the weighted passes (ghost shifts read as zero)."""

    shifts = property(lambda self: None if self._shifts is None else torch.zeros_like(self._shifts),
                      lambda self, value: setattr(self, "_shifts", value))


def frame_blind_flux_virials(potential, atoms):
    """The receiver virials of :func:`periodic_flux_step` without the owner-frame correction."""
    batch = Batch.from_atoms(atoms, potential.cutoff)
    cluster, origin = unfold(batch, 0, potential.cutoff + 0.5)
    n = len(atoms)
    virials = halo_flux_step(potential, owned_pairs(cluster, n, potential.pair_receiver),
                             FrameBlind(image_exchange(origin, n), n)).flux_virials
    return torch.zeros((n, 3, 3), dtype=virials.dtype).index_add_(0, origin, virials).numpy()


def test_toy_halo_receiver_virials_equal_the_unfolded_system():
    """Receiver virials through the halo (one forward, four backward passes that move ghost cotangents into
    their owners' frame) = the unfolded-system virials of the 10.5 Å reach, in a cell smaller than it;
    without the frame correction they would differ."""
    toy = LayerStackToy(STACK_CUTOFF)
    atoms = bulk("Ar", "fcc", a=4.2) * (2, 2, 1)
    atoms.positions += 0.2 * np.random.default_rng(0).standard_normal(atoms.positions.shape)
    batch = Batch.from_atoms(atoms, toy.cutoff)
    expected = evaluate(toy, batch, flux_virials=True).flux_virials.numpy()
    assert_close(periodic_flux_step(toy, batch).flux_virials.numpy(), expected, 1e-11)
    blind = frame_blind_flux_virials(toy, atoms)
    assert np.abs(blind - expected).max() > 1e-2 * np.abs(expected).max()        # 0.02 of 0.9 eV


def test_toy_heat_flux_step_from_one_pass_equals_the_periodic_model():
    """A heat-flux step takes energies, forces, virial, per-atom virials and energy σ from the same forward
    pass as the receiver virials (its first backward pass is the energy gradient): = the periodic model
    evaluated on its own (1e-12), and the receiver virials sum to the virial."""
    toy = LayerStackToy(STACK_CUTOFF, members=4)
    atoms = bulk("Ar", "fcc", a=4.2) * (2, 2, 1)
    atoms.positions += 0.2 * np.random.default_rng(3).standard_normal(atoms.positions.shape)
    batch = Batch.from_atoms(atoms, toy.cutoff)
    reference = evaluate(toy, batch, stress=True, energies=True, virials=True, uncertainty="energy")
    step = periodic_flux_step(toy, batch, virials=True, uncertainty=True)
    assert float(step.energy[0]) == pytest.approx(float(reference.energy[0]), rel=1e-12)
    for name in ("energies", "forces", "virials", "energies_uncertainty"):
        assert_close(getattr(step, name).numpy(), getattr(reference, name).numpy(), 1e-12)
    assert_close(step.virial[0].numpy(), reference.virial[0].numpy(), 1e-12)
    assert_close(step.outputs["energy_ensemble"].numpy(), reference.outputs["energy_ensemble"].numpy(), 1e-12)
    assert_close(step.flux_virials.sum(0).numpy(), reference.virial[0].numpy(), 1e-11)
    assert periodic_flux_step(toy, batch).virials is None


def test_toy_halo_in_one_process_equals_the_periodic_model():
    """The autograd exchange (forward: copy owners into ghosts; backward: sum ghosts into owners) is exact;
    without the refresh, the same one-cutoff cluster is wrong."""
    toy = LayerStackToy(STACK_CUTOFF)
    atoms = bulk("Ar", "fcc", a=4.2) * (2, 1, 1)
    atoms.positions += 0.1 * np.random.default_rng(0).standard_normal(atoms.positions.shape)
    assert max(atoms.cell.lengths()) < toy.interaction_range
    reference = evaluate(toy, Batch.from_atoms(atoms, toy.cutoff), stress=True, energies=True)
    energy, energies, forces, virial = halo_in_one_process(toy, atoms)
    assert energy == pytest.approx(float(reference.energy[0]), rel=1e-12)
    assert_close(energies, reference.energies.numpy(), 1e-12)
    assert_close(forces, reference.forces.numpy(), 1e-12)
    assert_close(virial, reference.virial[0].numpy(), 1e-12)
    cluster, _ = unfold(Batch.from_atoms(atoms, toy.cutoff), 0, toy.cutoff + 1.0)
    stale = evaluate(OwnedEnergies(toy, len(atoms)), owned_pairs(cluster, len(atoms)))
    assert abs(float(stale.energy[0]) - energy) > 1e-3 * abs(energy)


def test_sevennet_halo_in_one_process_equals_its_own_calculator():
    """SevenNet-0's interactions refreshed by the halo on a 7 Å cluster = SevenNetCalculator (25 Å reach)."""
    calculator = pytest.importorskip("sevenn.calculator").SevenNetCalculator("7net-0", device="cpu")
    from atomflux.foreign.sevennet import load_sevennet

    potential = load_sevennet("7net-0")
    assert potential.layer_stack and potential.halo_width == 480
    atoms = bulk("Si", "diamond", a=5.43) * (2, 1, 1)
    atoms.positions += 0.05 * np.random.default_rng(1).standard_normal(atoms.positions.shape)
    energy, energies, forces, virial = halo_in_one_process(potential, atoms, skin=2.0)
    atoms.calc = calculator
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-5)
    assert_close(energies, atoms.calc.results["energies"], 1e-5)
    assert_close(forces, atoms.get_forces(), 1e-5)
    assert_close(-virial / atoms.get_volume(), atoms.get_stress(voigt=False), 1e-5)


def test_halo_yes_is_refused_for_a_model_without_layers(monkeypatch):
    import atomflux.io
    from atomflux.lammps_bridge.callbacks import parse_options, setup_model

    opaque, stack = TwoLayerToy(3.0), LayerStackToy(3.0)
    models = {"opaque": opaque, "stack": stack}
    monkeypatch.setattr(atomflux.io, "load_model", lambda name, *args, **kwargs: models[name])
    with pytest.raises(ValueError, match="halo yes: TwoLayerToy does not expose its message-passing layers"):
        setup_model("opaque", ["Ar"], "halo yes", "metal", 1, nprocs=2)
    assert not setup_model("opaque", ["Ar"], "", "metal", 1, nprocs=2).halo          # full-shell fallback
    assert setup_model("stack", ["Ar"], "", "metal", 1, nprocs=2).halo
    assert not setup_model("stack", ["Ar"], "halo no", "metal", 1, nprocs=2).halo
    assert not setup_model("stack", ["Ar"], "", "metal", 1, nprocs=1).halo           # one rank: periodic, exact
    with pytest.raises(ValueError, match="halo must be auto, yes or no, got 'maybe'"):
        parse_options("halo maybe", 1)


# ---- several MPI ranks

WORKER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import atomflux.io
from conftest import LayerStackToy, TwoLayerToy
kind, cutoff = sys.argv[4].split(":")
toy = {"stack": LayerStackToy, "opaque": TwoLayerToy}[kind](float(cutoff), members=4)
original = atomflux.io.load_model
atomflux.io.load_model = lambda name, *a, **k: toy if name == "toy" else original(name, *a, **k)
from atomflux.lammps_bridge import start_lammps
lmp = start_lammps(["-log", sys.argv[2] + ".log", "-screen", "none"])
lmp.file(sys.argv[1])
result = {"pe": lmp.get_thermo("pe"), "ranks": lmp.extract_setting("world_size"),
          "press": [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")]}
if "c_u:" in sys.argv[5]:
    result["uncertainty"] = lmp.extract_compute("u", 0, 0)
if "c_cs:" in sys.argv[5]:
    result["flux"] = [lmp.extract_compute("flux", 0, 1)[k] for k in range(6)]
for item in sys.argv[5].split(","):
    name, width = item.split(":")
    result[name] = np.array(lmp.gather(name, 1, int(width))).reshape(-1, int(width)).tolist()
rank = lmp.extract_setting("world_rank")
with open(f"{sys.argv[2]}.rank{rank}", "w") as f:       # each rank's atoms at the end
    json.dump({"nlocal": lmp.extract_global("nlocal"), "nghost": lmp.extract_global("nghost")}, f)
if rank == 0:
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
lmp.close()
lmp.finalize()
"""

PER_ATOM = "compute pe all pe/atom\ncompute s all stress/atom NULL virial\n"
CENTROID = ("compute cs all centroid/stress/atom NULL virial\ncompute ke all ke/atom\n"
            "compute flux all heat/flux ke pe cs\n")
GATHER = "x:3,f:3,c_pe:1,c_s:6"


def on_ranks(script: Path, ranks: int, tmp_path: Path, model: str, gather: str, name: str):
    """Run ``script`` under ``mpiexec -n ranks``; the result (rank 0) and the LAMMPS log."""
    mpiexec = Path(sys.prefix) / "bin" / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("mpiexec of the mpich wheel not installed (pip install 'atomflux[lammps]')")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / f"{name}.json"
    done = subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, str(worker), str(script), str(out),
                           str(Path(__file__).parent), model, gather], capture_output=True, text=True, timeout=900)
    log = Path(f"{out}.log").read_text() if Path(f"{out}.log").exists() else ""
    return done, (json.loads(out.read_text()) if done.returncode == 0 else None), log


def sheared_argon():
    """64 rattled argon atoms in a sheared cell: 16.9 Å along x, so two ranks' subdomains (8.4 Å) are
    narrower than the toy's 10.5 Å reach but wider than its one-cutoff ghost shell (3.5 + 2 Å skin)."""
    atoms = bulk("Ar", "fcc", a=4.2, cubic=True) * (4, 2, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0, 0], [0.08, 1, 0], [0.05, -0.06, 1]]), scale_atoms=True)
    atoms.positions += 0.08 * np.random.default_rng(5).standard_normal(atoms.positions.shape)
    return atoms


def toy_nve_script(tmp_path: Path, data: Path, processors: str = "") -> Path:
    """LAMMPS input: 10 NVE steps (2 fs) of the float64 layer-stack toy from 300 K, with energy σ, per-atom
    energies and virials, centroid virials and the heat flux in thermo; returns its path."""
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\n{processors}read_data {data}\n"
                      "pair_style atomflux precision float64\npair_coeff * * toy Ar\n"
                      f"compute u all atomflux/uncertainty\n{PER_ATOM}{CENTROID}"
                      "velocity all create 300 7 mom yes dist gaussian\ntimestep 0.002\nfix nve all nve\n"
                      f"thermo 5\n{THERMO} c_u c_flux[1]\nrun 10\n")
    return script


def test_toy_on_two_ranks_with_the_halo_equals_one_rank(tmp_path):
    """Ten NVE steps of the three-layer toy (float64) on 2 ranks with a ghost shell of one cutoff follow the
    serial periodic run to 1e-9 (positions, energy, forces, pressure, per-atom energies, per-atom and centroid
    virials, heat flux, energy σ), whose heat flux equals the unfolded system's; the log names the halo once."""
    atoms, data = lammps_ready(sheared_argon(), tmp_path, ["Ar"])
    assert atoms.cell.lengths()[0] / 2 < LayerStackToy(STACK_CUTOFF).interaction_range
    script = toy_nve_script(tmp_path, data)
    model, gather = f"stack:{STACK_CUTOFF}", GATHER + ",v:3,c_u:1,c_cs:9"
    serial, reference, _ = on_ranks(script, 1, tmp_path, model, gather, "serial")
    assert serial.returncode == 0, serial.stderr[-3000:]
    final = atoms.copy()                                  # the serial heat flux = the unfolded system's
    final.positions = np.array(reference["x"])
    toy = LayerStackToy(STACK_CUTOFF)
    velocities = torch.tensor(reference["v"], dtype=torch.float64) / 1000.0          # Å/fs
    flux = evaluate(toy, Batch.from_atoms(final, toy.cutoff), velocities=velocities,
                    masses=torch.tensor(final.get_masses())).heat_flux_potential[0].numpy()
    assert_close((np.array(reference["flux"][:3]) - reference["flux"][3:]) / 1000.0, flux, 1e-9)
    done, parallel, log = on_ranks(script, 2, tmp_path, model, gather, "halo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert parallel["ranks"] == 2
    assert parallel["pe"] == pytest.approx(reference["pe"], rel=1e-11)
    assert np.allclose(parallel["press"], reference["press"], rtol=1e-9, atol=1e-6)
    assert parallel["uncertainty"] == pytest.approx(reference["uncertainty"], rel=1e-10)
    for name in ("x", "v", "f", "c_pe", "c_s", "c_u", "c_cs", "flux"):
        assert_close(parallel[name], reference[name], 1e-9)
    assert log.count("per-layer halo exchange on 2 MPI ranks") == 1
    ghosts = float(log.split("per-layer halo exchange on 2 MPI ranks: ")[1].split()[0])
    assert ghosts < 1000          # 666 of one cutoff + skin; a 12 Å shell holds 3 310 here (the fallback test)


def argon_slab_in_a_long_box(start: float, length: float):
    """32 rattled argon atoms in a slab 8.4 Å thick from x = ``start`` (Å) in a box ``length`` Å long."""
    atoms = bulk("Ar", "fcc", a=4.2, cubic=True) * (2, 2, 2)
    atoms.positions += 0.08 * np.random.default_rng(11).standard_normal(atoms.positions.shape) + [start, 0.0, 0.0]
    atoms.set_cell(np.diag([length, 8.4, 8.4]))
    return atoms


@pytest.mark.parametrize("start, length, ghosts", [(1.0, 32.0, True), (7.0, 50.0, False)],
                         ids=["ghosts-only", "nothing"])
def test_a_rank_without_atoms_takes_part_in_the_halo_exchange(tmp_path, start, length, ghosts):
    """Every rank calls the model even with no atoms, since each layer's exchange is collective. With
    ``processors * 1 1`` rank 1's half of the box holds no atom of the slab: only ghosts of its periodic image
    (slab at 1-9.4 Å in 32 Å), or nothing at all (7-15.4 Å in 50 Å; the ghost shell is 3.5 + 2 Å). Ten NVE
    steps of the three-layer toy with per-atom energies, virials, centroid virials, heat flux and energy σ on
    2 ranks equal the serial run to 1e-9."""
    atoms, data = lammps_ready(argon_slab_in_a_long_box(start, length), tmp_path, ["Ar"])
    script = toy_nve_script(tmp_path, data, processors="processors * 1 1\n")
    model, gather = f"stack:{STACK_CUTOFF}", GATHER + ",v:3,c_u:1,c_cs:9"
    serial, reference, _ = on_ranks(script, 1, tmp_path, model, gather, "serial")
    assert serial.returncode == 0, serial.stderr[-3000:]
    done, parallel, log = on_ranks(script, 2, tmp_path, model, gather, "halo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert parallel["ranks"] == 2 and log.count("per-layer halo exchange on 2 MPI ranks") == 1
    ranks = [json.loads((tmp_path / f"halo.json.rank{r}").read_text()) for r in range(2)]
    assert ranks[0]["nlocal"] == len(atoms) and ranks[1]["nlocal"] == 0 and (ranks[1]["nghost"] > 0) == ghosts
    assert parallel["pe"] == pytest.approx(reference["pe"], rel=1e-11)
    assert np.allclose(parallel["press"], reference["press"], rtol=1e-9, atol=1e-6)
    assert parallel["uncertainty"] == pytest.approx(reference["uncertainty"], rel=1e-10)
    for name in ("x", "v", "f", "c_pe", "c_s", "c_u", "c_cs", "flux"):
        assert_close(parallel[name], reference[name], 1e-9)


def test_an_opaque_model_on_two_ranks_falls_back_to_the_full_shell_with_one_log_line(tmp_path):
    atoms, data = lammps_ready(sheared_argon(), tmp_path, ["Ar"])
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                      "comm_modify cutoff 12\npair_style atomflux precision float64\npair_coeff * * toy Ar\n"
                      f"{PER_ATOM}{THERMO}\nrun 0\n")
    done, _, log = on_ranks(script, 2, tmp_path, "opaque:5.0", GATHER, "opaque")
    assert done.returncode == 0, done.stderr[-3000:]
    assert log.count("pair_style atomflux: full-shell fallback") == 1
    assert "does not expose its layers" in log and "ghosts per local atom" in log


def strained_silicon():
    """64 rattled Si atoms in a strained triclinic cell of 10.9 Å: two ranks' subdomains (5.4 Å) are a fifth
    of SevenNet-0's 25 Å reach and narrower than its 7 Å ghost shell (ghosts of ghosts)."""
    rng = np.random.default_rng(2)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.01 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms


@pytest.mark.slow
def test_sevennet_on_two_ranks_with_the_halo_equals_one_rank_and_its_own_calculator(tmp_path):
    """SevenNet-0 (float32): 2 ranks with the halo = the serial run and SevenNetCalculator to 1e-5; with
    centroid/stress/atom and heat/flux (one rank: an in-process halo of one cutoff instead of the unfolded
    system of 25 Å, which would need > 14 GB), 2 ranks = 1 rank and the centroid virials sum to the virial."""
    calculator = pytest.importorskip("sevenn.calculator").SevenNetCalculator("7net-0", device="cpu")
    atoms, data = lammps_ready(strained_silicon(), tmp_path, ["Si"])
    script = tmp_path / "in.lammps"
    script.write_text(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                      f"pair_style atomflux\npair_coeff * * sevennet:7net-0 Si\n{PER_ATOM}{THERMO}\nrun 0\n")
    model = "stack:1.0"          # unused: the model is loaded by its spec
    serial, reference, _ = on_ranks(script, 1, tmp_path, model, GATHER, "serial")
    assert serial.returncode == 0, serial.stderr[-3000:]
    done, parallel, log = on_ranks(script, 2, tmp_path, model, GATHER, "halo")
    assert done.returncode == 0, done.stderr[-3000:]
    assert log.count("per-layer halo exchange on 2 MPI ranks") == 1
    assert parallel["pe"] == pytest.approx(reference["pe"], rel=1e-5)
    scale = max(np.abs(reference["press"]))
    assert np.abs(np.array(parallel["press"]) - reference["press"]).max() <= 1e-5 * scale
    for name in ("f", "c_pe", "c_s"):
        assert_close(parallel[name], reference[name], 1e-5)
    atoms.calc = calculator
    assert parallel["pe"] == pytest.approx(atoms.get_potential_energy(), rel=1e-5)
    assert_close(parallel["f"], atoms.get_forces(), 1e-5)
    assert_close(np.array(parallel["c_pe"])[:, 0], atoms.calc.results["energies"], 1e-5)
    script.write_text(script.read_text().replace(PER_ATOM, PER_ATOM + CENTROID).replace(
        "run 0", "velocity all create 600 4 mom yes dist gaussian\nrun 0"))
    done, serial, _ = on_ranks(script, 1, tmp_path, model, GATHER + ",c_cs:9", "centroid-serial")
    assert done.returncode == 0, done.stderr[-3000:]
    done, centroid, _ = on_ranks(script, 2, tmp_path, model, GATHER + ",c_cs:9", "centroid")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_close(centroid["c_cs"], serial["c_cs"], 1e-5)
    assert_close(centroid["flux"], serial["flux"], 1e-5)
    total = np.array(centroid["c_cs"]).sum(0)                      # xx yy zz xy xz yz yx zx zy
    virial = np.array(centroid["c_s"]).sum(0)                      # xx yy zz xy xz yz
    assert_close(total[:6], virial, 1e-4)
    assert_close(total[6:], virial[3:], 1e-4)
