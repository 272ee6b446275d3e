"""The novelty grade (issue 18 (e)): the per-atom Mahalanobis distance of the standardised descriptor from the
training atoms, in units of the farthest training atom.  It stops MD of a Cu3 island leaving a surface for a
model that never saw a cluster, where every σ (LLPR, shallow ensembles, committees) stays small
(``test_calibration.py``, ``test_committee_guard.py``: strict xfails)."""

import warnings

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet

from atomflux import AtomfluxCalculator, load_model, save_model
from atomflux.cli import main
from atomflux.io import shipped_models
from atomflux.models import LennardJones, PowerSpectrumPotential
from atomflux.reference_data import emt_dataset
from atomflux.systems import Batch
from atomflux.training import read_frames
from atomflux.uncertainty import (ExtrapolationError, UncertaintyGuard, add_llpr, fit_novelty, fit_shallow_ensemble,
                                  novelty_grades)
from atomflux.uncertainty.novelty import attach_novelty
from test_calibration import cluster_free_config, cluster_free_frames, cluster_on_surface

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def alloy_structures(n: int, seed: int) -> list[Atoms]:
    """Rattled fcc Cu-Ni cells of 32 atoms with random composition and lattice constant."""
    rng = np.random.default_rng(seed)
    structures = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=rng.uniform(3.45, 3.7), cubic=True).repeat(2)
        atoms.numbers[rng.random(len(atoms)) < 0.4] = 28
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        structures.append(atoms)
    return structures


@pytest.fixture(scope="module")
def alloy_model():
    """A small two-species descriptor model with its descriptor standardisation fitted on 6 alloy cells."""
    torch.manual_seed(0)
    model = PowerSpectrumPotential(["Cu", "Ni"], cutoff=4.0, n_radial=4, n_channels=3, max_angular=2, hidden=[8])
    training = alloy_structures(6, seed=1)
    model.fit_statistics([Batch.from_atoms(a, model.cutoff) for a in training], [None] * len(training))
    return model.double().eval(), training


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit & Wolf (2004) shrinkage covariance of the rows of x, from the paper's definitions term by term."""
    n, p = x.shape
    centred = x - x.mean(0)
    s = centred.T @ centred / n
    m = np.trace(s) / p
    d2 = np.linalg.norm(s - m * np.eye(p), "fro") ** 2
    b2_bar = sum(np.linalg.norm(np.outer(row, row) - s, "fro") ** 2 for row in centred) / n ** 2
    b2 = min(b2_bar, d2)
    return b2 / d2 * m * np.eye(p) + (d2 - b2) / d2 * s


def test_grade_equals_numpy_mahalanobis_from_ledoit_wolf_covariance(alloy_model):
    """Per species: the mean and the Ledoit–Wolf covariance of the standardised descriptors of the training atoms
    (numpy, from the paper's formulas), Mahalanobis distances by np.linalg.solve, divided by the largest one among
    the training atoms; the grades of new structures (other species mix, larger rattle) equal atomflux's to 1e-8,
    and the largest grade over the training atoms of each species is 1."""
    model, training = alloy_model

    def standardised(atoms: Atoms) -> np.ndarray:
        batch = Batch.from_atoms(atoms, model.cutoff)
        with torch.no_grad():
            raw = model.descriptors(batch, batch.pair_vectors()).numpy()
        return (raw - model.descriptor_mean.numpy()) / model.descriptor_std.numpy()

    x = np.concatenate([standardised(a) for a in training])
    numbers = np.concatenate([a.numbers for a in training])
    novelty = fit_novelty(model, training)
    attach_novelty(model, novelty)
    assert all(0.01 < shrinkage < 0.99 for shrinkage in novelty.shrinkage)  # the shrinkage matters here
    tested = alloy_structures(2, seed=5)
    tested[1].rattle(0.3, seed=7)
    new_x, new_numbers = np.concatenate([standardised(a) for a in tested]), np.concatenate([a.numbers for a in tested])
    expected = np.empty(len(new_x))
    for index, z in enumerate((29, 28)):
        rows = x[numbers == z]
        mean, covariance = rows.mean(0), ledoit_wolf(rows)

        def distance(v: np.ndarray) -> np.ndarray:
            d = v - mean
            return np.sqrt(np.einsum("nd,nd->n", d, np.linalg.solve(covariance, d.T).T))

        largest = distance(rows).max()
        assert novelty.largest[index].item() == pytest.approx(largest, rel=1e-8)
        expected[new_numbers == z] = distance(new_x[new_numbers == z]) / largest
        training_grades = np.concatenate([novelty_grades(model, a)[a.numbers == z] for a in training])
        assert training_grades.max() == pytest.approx(1.0, rel=1e-8)
    grades = np.concatenate([novelty_grades(model, a) for a in tested])
    np.testing.assert_allclose(grades, expected, rtol=1e-8)
    assert grades[len(tested[0]):].max() > 1.0  # the strongly rattled cell lies beyond the training atoms


def test_novelty_survives_saving_and_loading(alloy_model, tmp_path):
    """Stored as tensors + JSON: the loaded model (float64, and float32 as MD runs it) gives the same grades; the
    metadata names the training atoms per species; an LLPR or a post-hoc shallow ensemble fitted on the loaded model
    keeps them (its base's descriptor); a model whose descriptor changed after fitting is saved without them (warning), and novelty data
    of another model are refused."""
    model, training = alloy_model
    attach_novelty(model, fit_novelty(model, training))
    path = save_model(model, tmp_path / "with-novelty.pt")
    probe = alloy_structures(1, seed=9)[0]
    loaded = load_model(path)
    np.testing.assert_allclose(novelty_grades(loaded, probe), novelty_grades(model, probe), rtol=1e-12)
    np.testing.assert_allclose(novelty_grades(load_model(path, dtype="float32"), probe),
                               novelty_grades(model, probe), rtol=1e-4)
    assert sum(loaded.metadata["novelty"]["n_atoms"].values()) == sum(len(a) for a in training)
    assert torch.load(path, weights_only=True)["novelty"]["precision"].shape == (2, model.n_descriptors,
                                                                                model.n_descriptors)
    labelled = read_frames(emt_dataset(n_trajectories=2, snapshots=2, elements=("Cu", "Ni"), seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a calibration on two structures: a wide factor interval
        llpr = add_llpr(loaded, labelled[:2], labelled[2:])
        ensemble = fit_shallow_ensemble(loaded, labelled[:2], labelled[2:], n_members=4, steps=20)
    llpr_file = load_model(save_model(llpr, tmp_path / "llpr.pt"))  # LLPR keeps its base's novelty data
    np.testing.assert_allclose(novelty_grades(llpr_file, probe), novelty_grades(model, probe), rtol=1e-12)
    ensemble_file = load_model(save_model(ensemble, tmp_path / "ensemble.pt"))  # so does a post-hoc ensemble
    np.testing.assert_allclose(novelty_grades(ensemble_file, probe), novelty_grades(model, probe), rtol=1e-12)
    with torch.no_grad():
        loaded.radial_weights.mul_(1.1)  # as if fine-tuned
    with pytest.warns(RuntimeWarning, match="descriptor changed"):
        save_model(loaded, tmp_path / "tuned.pt")
    assert getattr(load_model(tmp_path / "tuned.pt"), "novelty", None) is None
    with pytest.raises(ValueError, match="another model's descriptors"):
        attach_novelty(load_model(tmp_path / "tuned.pt"), model.novelty)


@pytest.mark.parametrize("architecture", ["LongRangePotential", "UnconstrainedPotential", "demo-llpr"])
def test_every_descriptor_architecture_stores_its_novelty(architecture, tmp_path):
    """Long-range and unconstrained models and an LLPR wrapper (its base's descriptor) fit, save and load novelty
    data: the largest grade over the training atoms is 1 and the loaded model grades new structures alike."""
    from atomflux.models import ARCHITECTURES

    if architecture == "demo-llpr":
        model, structures = load_model("demo-llpr"), alloy_structures(3, seed=2)
    else:
        model = ARCHITECTURES[architecture](["Na", "Cl"], cutoff=4.0, hidden=[8]).double()
        structures = [bulk("NaCl", "rocksalt", a=5.6).repeat(2) for _ in range(3)]
        for k, atoms in enumerate(structures):
            atoms.rattle(0.1, seed=k)
    attach_novelty(model, fit_novelty(model, structures[:2]))
    assert max(novelty_grades(model, atoms).max() for atoms in structures[:2]) == pytest.approx(1.0, rel=1e-8)
    loaded = load_model(save_model(model, tmp_path / "model.pt"))
    np.testing.assert_allclose(novelty_grades(loaded, structures[2]), novelty_grades(model, structures[2]),
                               rtol=1e-12)


def test_novelty_bad_inputs_get_one_clear_line(tmp_path, capsys):
    """A model without novelty data, a model without descriptors, an existing output file, a committee."""
    bare = load_model("demo")
    del bare.novelty  # the shipped models carry novelty data: a model file without them
    bare_file = str(save_model(bare, tmp_path / "bare.pt"))
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = AtomfluxCalculator(bare_file)
    with pytest.raises(ValueError, match="no novelty data.*atomflux novelty"):
        UncertaintyGuard(atoms, threshold=1.0, quantity="novelty").current()
    with pytest.raises(ValueError, match="exposes no per-atom descriptors"):
        fit_novelty(LennardJones(sigma=2.3, epsilon=0.4, cutoff=5.0), [atoms])
    with pytest.raises(ValueError, match="quantity must be one of"):
        UncertaintyGuard(atoms, threshold=1.0, quantity="grade")
    data = tmp_path / "train.extxyz"
    ase.io.write(data, emt_dataset(n_trajectories=2, snapshots=2, seed=3))
    (tmp_path / "taken.pt").write_bytes(b"keep me")
    assert main(["novelty", "demo", str(data), "-o", str(tmp_path / "taken.pt")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "taken.pt").read_bytes() == b"keep me"
    ase.io.write(tmp_path / "cu.cif", atoms)
    assert main(["md", str(tmp_path / "cu.cif"), "--steps", "2", "--max-novelty", "--model", bare_file,
                 "--trajectory", str(tmp_path / "md.traj"), "--log", str(tmp_path / "md.log")]) == 2
    assert "no novelty data" in capsys.readouterr().err
    assert main(["md", str(tmp_path / "cu.cif"), "--steps", "2", "--max-novelty", "--model", "demo", "--model",
                 "demo-llpr", "--trajectory", str(tmp_path / "md.traj"), "--log", str(tmp_path / "md.log")]) == 2
    assert "single --model" in capsys.readouterr().err


def test_cli_adds_novelty_and_md_stops_beyond_the_training_atoms(tmp_path, capsys):
    """`atomflux novelty` writes a model with novelty data (the shipped file untouched), as `atomflux train` does for
    the model it trains (the largest grade over its training atoms is 1); `atomflux md --max-novelty`
    runs quietly on a cell like the training data and stops (exit 3, frame and log written) on a cell strained
    by 30 %, which no training atom resembles."""
    data = tmp_path / "train.extxyz"
    ase.io.write(data, emt_dataset(n_trajectories=3, snapshots=3, elements=("Cu",), seed=4))
    out = tmp_path / "demo-novelty.pt"
    shipped = shipped_models()["demo"].read_bytes()
    assert main(["novelty", "demo", str(data), "-o", str(out), "--check", str(data)]) == 0
    text = capsys.readouterr().out
    assert "Cu:" in text and "0 of 9 structures have an atom beyond" in text
    assert shipped_models()["demo"].read_bytes() == shipped
    trained = tmp_path / "trained.pt"  # atomflux train writes novelty data of its training structures
    assert main(["train", str(data), "-o", str(trained), "--epochs", "1", "--hidden", "4"]) == 0
    grades = np.concatenate([novelty_grades(load_model(trained), atoms) for atoms in ase.io.read(data, ":")])
    assert grades.max() == pytest.approx(1.0, rel=1e-8)
    ase.io.write(tmp_path / "ok.cif", ase.io.read(data, 0))
    ase.io.write(tmp_path / "far.cif", bulk("Cu", "fcc", a=3.6 * 1.3, cubic=True))
    run = ["--model", str(out), "--steps", "6", "--interval", "2", "--max-novelty", "--temperature", "100",
           "--trajectory", str(tmp_path / "md.traj"), "--log", str(tmp_path / "md.log"), "--restart"]
    assert main(["md", str(tmp_path / "ok.cif")] + run) == 0
    assert '"checks_above_max_novelty": 0' in capsys.readouterr().out
    assert main(["md", str(tmp_path / "far.cif")] + run) == 3
    assert "novelty grade" in capsys.readouterr().err
    assert (tmp_path / "md.novel.extxyz").is_file() and (tmp_path / "md.novelty.log").is_file()


@pytest.fixture(scope="module")
def cluster_free_model_with_novelty():
    """The cluster-free Cu model of test_calibration.py (bulk, flat slabs, vacancies; no cluster), its novelty
    fitted on its 24 training structures, and its force RMSE on the 16 held-out structures (eV/Å)."""
    from atomflux.training import train

    frames, held_out = cluster_free_frames()
    model = train(frames, cluster_free_config(seed=0)).potential
    attach_novelty(model, fit_novelty(model, frames))
    calc = AtomfluxCalculator(model)
    errors = []
    for frame in held_out:
        atoms = frame.atoms.copy()
        atoms.calc = calc
        errors.append(atoms.get_forces() - frame.forces)
    return model, held_out, float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def island_md_under_novelty_guard(model, threshold: float, kick: float, save) -> UncertaintyGuard:
    """150 NVE steps (2 fs) of the Cu3 island on Cu(111) with a novelty guard checked every 5 steps."""
    atoms, _ = cluster_on_surface(kick=kick)
    atoms.calc = AtomfluxCalculator(model)
    guard = UncertaintyGuard(atoms, threshold=threshold, quantity="novelty", save=save)
    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    dynamics.attach(guard, interval=5)
    dynamics.run(150)
    return guard


def test_novelty_guard_stops_a_cluster_the_model_never_saw_evaporating(cluster_free_model_with_novelty, tmp_path):
    """The answer to the shared bias that no σ sees: the guard (quantity="novelty", threshold 1.2× the largest
    per-atom grade on the 16 held-out in-domain structures, as the σ guards of test_calibration.py use 2× the
    largest in-domain σ; at least grade 1, the farthest training atom) stays quiet for the Cu3 island vibrating in
    place, and stops NVE MD of the island kicked off the surface once it has detached (> 2.6 Å above the slab;
    adsorbed 2.1 Å), where the model's force error on the island against EMT is ≥ 10× its in-domain force RMSE.
    The same rule on three more cluster-free models: docs/benchmarks.md (bench_novelty)."""
    model, held_out, in_domain_rmse = cluster_free_model_with_novelty
    threshold = max(1.0, 1.2 * max(novelty_grades(model, frame.atoms).max() for frame in held_out))
    calm = island_md_under_novelty_guard(model, threshold, kick=0.0, save=tmp_path / "none.extxyz")
    assert not calm.triggered and max(calm.history) < threshold
    with pytest.raises(ExtrapolationError, match="novelty grade"):
        island_md_under_novelty_guard(model, threshold, kick=0.03, save=tmp_path / "bad.extxyz")
    stopped, n_slab = ase.io.read(tmp_path / "bad.extxyz"), cluster_on_surface(kick=0.0)[1]
    assert stopped.positions[n_slab:, 2].mean() - stopped.positions[:n_slab, 2].max() > 2.6
    stopped.calc = AtomfluxCalculator(model)
    predicted = stopped.get_forces()
    stopped.calc = EMT()
    error = np.linalg.norm(predicted - stopped.get_forces(), axis=1)[n_slab:].max()
    assert error > 10 * in_domain_rmse, (error, in_domain_rmse)


@pytest.mark.parametrize("name", ["demo", "demo-llpr"])
def test_shipped_models_carry_novelty_data_that_separate_their_domain(name):
    """The shipped models carry their training atoms' descriptor statistics (scripts/make_demo_model.py, step 7):
    fresh in-domain structures stay below `atomflux md --max-novelty`'s default grade, while self-interstitials —
    environments the training set has only six cells of — mostly lie beyond it."""
    from atomflux.reference_data import stress_test_dataset

    model = load_model(name)
    in_domain = [novelty_grades(model, a).max() for a in emt_dataset(n_trajectories=12, snapshots=1, seed=11)]
    interstitial = [novelty_grades(model, a).max() for a in stress_test_dataset(per_category=8, seed=2024)["interstitial"]]
    assert max(in_domain) < 1.0 < 1.5 < np.median(interstitial), (max(in_domain), interstitial)
