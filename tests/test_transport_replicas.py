"""Transport MD of R replicas in one batched run (``md --transport --replicas R``).

The reference is ASE: replica r of a batched run must follow the
single-replica run with seed ``seed + r``, which ASE's own ``Langevin`` and
``VelocityVerlet`` integrate (``run_transport_md``'s one-replica path), to the
rounding of the force sums (a batch sums a pair's contributions in another
order than a single system may: 1 ulp, growing only slowly over tens of steps).
"""

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.io.trajectory import Trajectory

from atomflux.calculators import AtomfluxCalculator
from atomflux.analysis.flux_io import read_flux_npz
from atomflux.cli import main
from atomflux.md import run_transport_md
from atomflux.md_replicas import ReplicaForces, ReplicaState, verlet_step
from atomflux.models import LennardJones
from atomflux.records import RunMismatch
from test_user_errors import ctrl_c_at_call

LJ = dict(sigma=3.405, epsilon=0.0103, cutoff=6.5, cutoff_mode="smooth", r_on=5.5)
SETTINGS = dict(temperature=40.0, equilibration_steps=30, production_steps=40, timestep=5.0,
                checkpoint_interval=10, stride=7, progress=False)


def assert_close(actual, desired, scale=None, tolerance=1e-9):
    """Equal to rounding: ``tolerance`` relative to ``scale`` (default the largest entry)."""
    desired = np.asarray(desired)
    scale = np.abs(desired).max() if scale is None else scale
    np.testing.assert_allclose(actual, desired, rtol=tolerance, atol=tolerance * scale)


def argon():
    return bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)


def lj_calculator():
    return AtomfluxCalculator(LennardJones(**LJ))


@pytest.mark.parametrize("model", ["lj", "demo"])
def test_each_replica_is_the_ase_run_with_its_seed(model, tmp_path):
    if model == "lj":  # float64: the force sums differ in their last bits
        cell, make, settings, tolerance = argon(), lj_calculator, SETTINGS, 1e-9
    else:  # float32 compute (the CLI default for atomflux models): float32 rounding of the descriptor sums
        tolerance = 1e-5
        cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        make = lambda: AtomfluxCalculator("demo", uncertainty=False, dtype="float32")  # noqa: E731
        settings = {**SETTINGS, "temperature": 300.0, "timestep": 2.0, "equilibration_steps": 10,
                    "production_steps": 15}
    batched = np.load(run_transport_md(cell, make(), tmp_path / "batched", replicas=3, seed=5, **settings))
    n = settings["production_steps"] + 1
    assert batched["heat_flux"].shape == (n, 3, 3) and int(batched["n_replicas"]) == 3
    assert batched["species_velocity"].shape == (n, 3, 1, 3)
    assert json.loads(str(batched["provenance"]))["parameters"]["replicas"] == 3
    analysed = read_flux_npz(tmp_path / "batched" / "flux.npz")  # the Green–Kubo reader: 3 samples per replica
    assert analysed.n_replicas == 3 and analysed.heat_flux.shape == (n, 9)
    np.testing.assert_array_equal(analysed.heat_flux[:, 3:6], batched["heat_flux"][:, 1])
    temperatures = []
    for r in range(3):
        single = np.load(run_transport_md(cell, make(), tmp_path / f"single{r}", seed=5 + r, **settings))
        assert_close(batched["heat_flux"][:, r], single["heat_flux"], tolerance=tolerance)
        # Σ v per species is 0 up to rounding here (one species, zero total momentum): compare on the
        # scale of one atom's thermal velocity, ~1e-3 Å/fs
        assert_close(batched["species_velocity"][:, r], single["species_velocity"], scale=1e-3,
                     tolerance=tolerance)
        temperatures.append(float(single["mean_temperature"]))
    assert not np.allclose(batched["heat_flux"][:, 0], batched["heat_flux"][:, 1])  # independent noise
    assert float(batched["mean_temperature"]) == pytest.approx(np.mean(temperatures), rel=tolerance)
    for key in ("time", "volume", "timestep", "temperature", "species"):
        np.testing.assert_array_equal(batched[key], single[key])
    with Trajectory(str(tmp_path / "batched" / "production.traj")) as a, \
            Trajectory(str(tmp_path / "single0" / "production.traj")) as b:
        assert len(a) == len(b) == (n - 1) // 7 + 1
        for x, y in zip(a, b):  # replica 0 = the run with the base seed
            assert_close(x.positions, y.positions, tolerance=tolerance)
            assert_close(x.get_momenta(), y.get_momenta(), tolerance=tolerance)
            assert_close(x.get_forces(), y.get_forces(), tolerance=tolerance)
            assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), rel=tolerance)


def test_batched_verlet_conserves_each_replicas_energy():
    cell = argon()
    calc = lj_calculator()
    forces_of = ReplicaForces(calc.potential, cell, 2)
    rng = np.random.default_rng(1)
    masses = cell.get_masses()
    positions = cell.positions + rng.normal(scale=0.05, size=(2, len(cell), 3))
    momenta = rng.normal(size=(2, len(cell), 3)) * np.sqrt(masses[:, None] * units.kB * np.array([30, 60])[:, None, None])
    state = ReplicaState(positions, momenta)

    def total_energy():
        kinetic = 0.5 * (state.momenta**2 / masses[:, None]).sum(axis=(1, 2))
        return forces_of.results.energy.numpy() + kinetic

    forces = forces_of(state.positions)
    start = total_energy()
    energies = []
    for _ in range(400):  # 2 ps at 5 fs
        forces = verlet_step(state, forces, forces_of, masses, 5.0)
        energies.append(total_energy())
    kinetic_scale = 1.5 * len(cell) * units.kB * np.array([30, 60])
    drift = np.abs(np.array(energies) - start).max(axis=0)
    assert (drift < 2e-3 * kinetic_scale).all(), drift / kinetic_scale  # each replica on its own
    assert abs(start[1] - start[0]) > 0.1 * kinetic_scale[0]  # two different states, two conserved energies


@pytest.mark.parametrize("interrupt_at_call, phase", [(25, "equilibration"), (60, "production")])
def test_interrupted_replica_run_resumes_to_the_uninterrupted_files(interrupt_at_call, phase, tmp_path, monkeypatch):
    import atomflux.md_replicas as md_replicas

    straight = np.load(run_transport_md(argon(), lj_calculator(), tmp_path / "straight", replicas=2, **SETTINGS))
    with monkeypatch.context() as patch:
        patch.setattr(md_replicas, "evaluate", ctrl_c_at_call(md_replicas.evaluate, interrupt_at_call))
        with pytest.raises(KeyboardInterrupt):
            run_transport_md(argon(), lj_calculator(), tmp_path / "run", replicas=2, **SETTINGS)
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["phase"] == phase
    resumed = np.load(run_transport_md(argon(), lj_calculator(), tmp_path / "run", replicas=2, **SETTINGS))
    for key in ("time", "heat_flux", "species_velocity", "mean_temperature"):
        np.testing.assert_array_equal(resumed[key], straight[key])
    with Trajectory(str(tmp_path / "run" / "production.traj")) as a, \
            Trajectory(str(tmp_path / "straight" / "production.traj")) as b:
        assert len(a) == len(b) == 40 // 7 + 1
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.get_momenta(), y.get_momenta())
    # a finished run asked for more steps goes on exactly
    longer = np.load(run_transport_md(argon(), lj_calculator(), tmp_path / "run", replicas=2,
                                      **{**SETTINGS, "production_steps": 50}))
    reference = np.load(run_transport_md(argon(), lj_calculator(), tmp_path / "ref", replicas=2,
                                         **{**SETTINGS, "production_steps": 50}))
    np.testing.assert_array_equal(longer["heat_flux"], reference["heat_flux"])


def test_impossible_or_mismatched_replica_settings_are_refused(tmp_path, capsys):
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="replicas must be a whole number ≥ 1"):
            run_transport_md(argon(), lj_calculator(), tmp_path / "bad", replicas=bad, **SETTINGS)
    assert not (tmp_path / "bad").exists()
    settings = {**SETTINGS, "equilibration_steps": 0, "production_steps": 3}
    single = run_transport_md(argon(), lj_calculator(), tmp_path / "one", **settings)
    assert np.load(single)["heat_flux"].shape == (4, 3)  # one replica: the layout of earlier versions
    assert "replicas" not in json.loads((tmp_path / "one" / "run.json").read_text())["parameters"]
    with pytest.raises(RunMismatch, match="replicas: \\(not set\\) → 2"):
        run_transport_md(argon(), lj_calculator(), tmp_path / "one", replicas=2, **settings)
    (tmp_path / "ar.cif").write_text("")
    argon().write(tmp_path / "ar.cif")
    for args, message in ((["--replicas", "2"], "--replicas applies to --transport runs only"),
                          (["--transport", "--replicas", "0"], "--replicas")):
        try:
            code = main(["md", str(tmp_path / "ar.cif"), "--model", "demo", *args, "-o", str(tmp_path / "cli")])
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists()


@pytest.mark.parametrize("skin", [1.0, 5.0])  # the overlap found by a new search / by the filter of the old list
def test_replica_forces_name_the_replica_that_overlaps_or_blew_up(skin):
    from atomflux.md_replicas import ReplicaForces

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    forces_of = ReplicaForces(AtomfluxCalculator("demo").potential, atoms, 3, skin=skin)
    positions = np.repeat(atoms.positions[None], 3, axis=0)
    forces_of(positions)
    overlapping = positions.copy()
    overlapping[2, 5] = overlapping[2, 4] + 0.1
    with pytest.raises(ValueError, match=r"atoms [45] \(Cu\) and [45] \(Cu\) overlap") as error:
        forces_of(overlapping)
    assert "replica 2" in str(error.value)
    blown_up = positions.copy()
    blown_up[1, 7, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in replica 1"):
        forces_of(blown_up)
