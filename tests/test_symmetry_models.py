"""The unconstrained architecture, multiple time stepping and ``atomflux symmetry`` (issue 22).

Physics asserted: the unconstrained model is translation and permutation
invariant but not rotation invariant; its averaged equivariance error and the
net torque Σ r×F on an isolated cluster (exactly 0 for an invariant model)
fall by orders of magnitude with the grid order; NVE conserves energy with
and without averaging; multiple time stepping with the averaged correction
conserves the slow model's energy and reduces to velocity Verlet at k = 1;
the CLI reports a torque that falls with the order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet
from scipy.spatial.transform import Rotation
from test_symmetry import cluster, results, rotated, toy

from atomflux import AtomfluxCalculator
from atomflux.cli import main
from atomflux.io import load_model, save_model
from atomflux.models import LennardJones, UnconstrainedPotential
from atomflux.mts import MultipleTimeStepVerlet
from atomflux.symmetry import RotationalAverage
from atomflux.symmetry.diagnostics import torque
from atomflux.systems import Batch


@pytest.fixture(scope="module")
def unconstrained() -> UnconstrainedPotential:
    """An untrained unconstrained model with input statistics of Cu clusters (its symmetry breaking is large)."""
    torch.manual_seed(0)
    model = UnconstrainedPotential(["Cu"], cutoff=5.0, n_channels=4, max_angular=3, hidden=[16, 16]).double()
    clusters = [cluster(13, seed=s) for s in range(4)]
    model.fit_statistics([Batch.from_atoms(a, 5.0, torch.float64) for a in clusters], [0.0] * 4, forces_rms=0.3)
    return model.eval()


def test_unconstrained_model_is_translation_and_permutation_invariant_but_not_rotation_invariant(unconstrained):
    atoms = cluster(seed=1)
    calc = AtomfluxCalculator(unconstrained, dtype="float64")
    reference = results(calc, atoms)
    shifted = atoms.copy()
    shifted.positions += [0.7, -1.3, 2.1]
    assert results(calc, shifted)["energy"] == pytest.approx(reference["energy"], abs=1e-10)
    order = np.random.default_rng(0).permutation(len(atoms))
    permuted = results(calc, atoms[order])
    assert permuted["energy"] == pytest.approx(reference["energy"], abs=1e-10)
    np.testing.assert_allclose(permuted["forces"], reference["forces"][order], atol=1e-10)
    turned = results(calc, rotated(atoms, Rotation.random(random_state=1).as_matrix()))
    assert abs(turned["energy"] - reference["energy"]) > 1e-4
    assert np.linalg.norm(torque(atoms, reference["forces"])) > 1e-3  # an invariant model has zero net torque


def test_averaging_the_unconstrained_model_reduces_torque_and_equivariance_error_with_order(unconstrained):
    """Net torque |Σ r×F| and the forces' equivariance error F(Rx) − F(x)Rᵀ fall with the grid order."""
    atoms = cluster(seed=2)
    turn = Rotation.random(random_state=3).as_matrix()
    torques, equivariance = [], []
    for order in (0, 2, 4, 6):
        calc = RotationalAverage(unconstrained, order=order, dtype="float64")
        forces = results(calc, atoms)["forces"]
        torques.append(np.linalg.norm(torque(atoms, forces)))
        equivariance.append(np.abs(results(calc, rotated(atoms, turn))["forces"] - forces @ turn.T).max())
    assert all(np.diff(np.log(torques)) < 0) and all(np.diff(np.log(equivariance)) < 0), (torques, equivariance)
    assert torques[-1] < 1e-2 * torques[0] and equivariance[-1] < 1e-2 * equivariance[0], (torques, equivariance)


def test_nve_conserves_energy_with_and_without_averaging(unconstrained):
    """Both the bare unconstrained model and its average are conservative: velocity Verlet keeps
    the total energy to O(δt²), while only the average (nearly) keeps the angular momentum."""
    start = cluster(seed=4)
    start.set_velocities(np.random.default_rng(4).normal(0, 0.01, (len(start), 3)))
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    Stationary(start)
    ZeroRotation(start)
    momentum = {}
    for name, calc in (("bare", AtomfluxCalculator(unconstrained, dtype="float64")),
                       ("averaged", RotationalAverage(unconstrained, order=3, dtype="float64"))):
        atoms = start.copy()
        atoms.calc = calc
        energies = [atoms.get_total_energy()]
        dyn = VelocityVerlet(atoms, 1.0 * units.fs)
        for _ in range(3):
            dyn.run(5)
            energies.append(atoms.get_total_energy())
        assert np.ptp(energies) < 2e-3 * len(atoms), (name, energies)
        momentum[name] = np.linalg.norm(atoms.get_angular_momentum())
    assert momentum["averaged"] < 0.3 * momentum["bare"], momentum


def test_multiple_time_stepping_follows_the_slow_model_and_conserves_its_energy():
    """k = 1 is velocity Verlet with the slow forces; k = 5 conserves kinetic + slow potential energy."""
    start = cluster(seed=5)
    start.set_velocities(np.random.default_rng(5).normal(0, 0.01, (len(start), 3)))
    fast = AtomfluxCalculator(toy(degree=2), dtype="float64")
    slow = RotationalAverage(toy(degree=2), order=2, dtype="float64")
    plain = start.copy()
    plain.calc = RotationalAverage(toy(degree=2), order=2, dtype="float64")
    VelocityVerlet(plain, 1.0 * units.fs).run(8)
    single = start.copy()
    single.calc = fast
    MultipleTimeStepVerlet(single, 1.0 * units.fs, slow, interval=1).run(8)
    np.testing.assert_allclose(single.positions, plain.positions, atol=1e-10)
    atoms = start.copy()
    atoms.calc = fast
    dyn = MultipleTimeStepVerlet(atoms, 1.0 * units.fs, slow, interval=5)
    conserved = [dyn.conserved_energy()]
    for _ in range(6):
        dyn.run(1)
        conserved.append(dyn.conserved_energy())
    assert np.ptp(conserved) < 1e-3, conserved
    assert dyn.slow_calls == 7  # one per outer step and one at the start
    with pytest.raises(ValueError, match="interval"):
        MultipleTimeStepVerlet(atoms, 1.0 * units.fs, slow, interval=0)


def test_unconstrained_model_round_trips_through_a_model_file_and_the_spec_suffix(unconstrained, tmp_path):
    path = save_model(unconstrained, tmp_path / "unconstrained.pt")
    atoms = cluster(seed=6)
    loaded = results(AtomfluxCalculator(str(path), dtype="float64"), atoms)
    assert loaded["energy"] == pytest.approx(results(AtomfluxCalculator(unconstrained, dtype="float64"), atoms)["energy"],
                                             abs=1e-12)
    averaged = load_model(f"{path}@lebedev:2", dtype="float64")
    direct = results(RotationalAverage(unconstrained, order=2, dtype="float64"), atoms)
    assert results(AtomfluxCalculator(averaged, dtype="float64"), atoms)["energy"] == pytest.approx(direct["energy"],
                                                                                                    abs=1e-12)


def test_symmetry_command_reports_torque_falling_with_order(unconstrained, tmp_path, capsys):
    model = save_model(unconstrained, tmp_path / "unconstrained.pt")
    import ase.io

    ase.io.write(tmp_path / "clusters.xyz", [cluster(seed=s) for s in (7, 8)])
    out = tmp_path / "report"
    main(["symmetry", str(model), str(tmp_path / "clusters.xyz"), "-o", str(out), "--orders", "0", "4",
          "--reference-order", "5", "--nve-steps", "2"])
    report = json.loads((out / "symmetry.json").read_text())
    rows = report["sets"]["clusters"]["convergence"]
    assert [r["order"] for r in rows] == [0, 4]
    assert rows[0]["torque_meV"] > 10 * rows[-1]["torque_meV"] > 0
    assert rows[0]["forces_meV_per_A"] > rows[-1]["forces_meV_per_A"]
    assert set(report["sets"]["clusters"]["nve"]) == {"bare", "averaged (order 3)"}
    assert (out / "symmetry.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["symmetry", f"{model}@lebedev:2", str(tmp_path / "clusters.xyz"), "-o", str(tmp_path / "other")]) == 2
    assert "without an averaging suffix" in capsys.readouterr().err


def test_lennard_jones_in_the_symmetry_command_has_no_symmetry_breaking(tmp_path):
    """An exactly invariant model: every grid agrees with the reference to round-off."""
    model = save_model(LennardJones(2.3, 0.2, 5.0, species=["Cu"]), tmp_path / "lj.pt")
    import ase.io

    ase.io.write(tmp_path / "one.xyz", cluster(seed=9))
    main(["symmetry", str(model), str(tmp_path / "one.xyz"), "-o", str(tmp_path / "r"), "--orders", "0", "1",
          "--reference-order", "2", "--nve-steps", "0"])
    rows = json.loads((tmp_path / "r" / "symmetry.json").read_text())["sets"]["one"]["convergence"]
    assert max(max(r["energy_meV_per_atom"], r["forces_meV_per_A"], r["torque_meV"]) for r in rows) < 1e-6


@pytest.mark.slow
def test_augmentation_reduces_the_symmetry_error_of_the_trained_unconstrained_model():
    """Same data (LJ-labelled Cu clusters, all in one orientation), same budget: the model trained with random
    rotations has a smaller rotational spread of its energy on unseen clusters than the one trained without."""
    from atomflux.training import TrainConfig, train
    from atomflux.training.dataset import Frame

    lj = AtomfluxCalculator(LennardJones(2.3, 0.2, 5.0, cutoff_mode="smooth", species=["Cu"]), dtype="float64")
    frames = []
    for seed in range(24):
        atoms = cluster(13, seed=seed)
        atoms.rattle(0.1, seed=seed)
        labelled = results(lj, atoms)
        frames.append(Frame(atoms=atoms, energy=labelled["energy"], forces=labelled["forces"]))
    unseen = [cluster(13, seed=100 + s) for s in range(4)]
    spread = {}
    for augment in (False, True):
        config = TrainConfig(epochs=120, augment=augment, architecture="UnconstrainedPotential", progress=False,
                             dtype="float32", model={"hidden": [32, 32], "max_angular": 2})
        model = train(frames, config).potential
        calc = RotationalAverage(model, order=6, dtype="float64")
        spread[augment] = np.mean([results(calc, a)["energy_rot_std"] / len(a) for a in unseen])
    assert spread[True] < 0.75 * spread[False], spread
