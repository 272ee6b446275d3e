"""Distillation: selection, teacher labels, the active-learning loop, its records and resume, the CLI.

The default tests use a tiny student (seconds per round, bounds it cannot
reach, so every round trains); the slow test runs the loop to convergence
with EMT Cu as teacher and checks the student against fresh teacher MD
frames it never saw.
"""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones as AseLJ

from atomflux import load_model
from atomflux.cli import main
from atomflux.distill import DistillConfig, Teacher, distill, read_rounds, round_summary, select_frames
from atomflux.distill import loop as distill_loop
from atomflux.models import LennardJones
from atomflux.records import RunMismatch, fingerprint
from atomflux.uncertainty import novelty_grades


def copper() -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)


#: a student that trains in about a second per round; bounds it cannot reach, so every round trains
TINY = dict(temperatures=[300.0, 600.0], max_rounds=2, max_force_rmse=1e-4, max_force_sigma=1e-4, md_steps=40,
            sample_interval=10, initial_frames=4, n_uncertain=2, n_random=1, cutoff=4.0, n_channels=4,
            max_angular=2, hidden=[16], epochs=15, patience=10, n_members=4, stop_uncertainty=3.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill") / "run"
    with pytest.warns(RuntimeWarning, match="not converged"):
        result = distill("emt", [copper()], folder, DistillConfig(**TINY), progress=False, log=None)
    return result


# -- selection ------------------------------------------------------------------------------------------------

def test_selection_picks_the_most_uncertain_frames_then_random_others():
    sigmas = [0.3, 0.9, 0.1, 0.7, 0.5, 0.2, 0.8]
    uncertain, random = select_frames(sigmas, 3, 2, np.random.default_rng(0))
    assert uncertain == [1, 6, 3]  # by decreasing σ
    assert len(random) == 2 and not set(random) & set(uncertain) and set(random) <= {0, 2, 4, 5}
    assert select_frames([0.1, 0.2], 3, 5, np.random.default_rng(0)) == ([1, 0], [])  # fewer than asked: all
    draws = {tuple(select_frames(sigmas, 1, 1, np.random.default_rng(seed))[1]) for seed in range(40)}
    assert len(draws) > 3  # the random subset is random, not the next-most uncertain
    with pytest.raises(ValueError, match="NaN"):
        select_frames([0.1, float("nan")], 1, 0, np.random.default_rng(0))


def test_round_zero_frames_are_strained_and_rattled_as_stated():
    """Cell edges × (1 + strain); RMS displacement per component = rattle · √(T / 300 K)."""
    from atomflux.distill import Condition
    from atomflux.distill.sampling import rattled_frames

    frames = rattled_frames(copper(), Condition(1200.0, 0.01), 50, 0.05, np.random.default_rng(0))
    reference = copper()
    reference.set_cell(reference.cell.array * 1.01, scale_atoms=True)
    np.testing.assert_allclose(frames[0].cell.array, reference.cell.array)
    displacements = np.stack([f.positions - reference.positions for f in frames])
    assert np.sqrt(np.mean(displacements**2)) == pytest.approx(0.05 * 2.0, rel=0.03)
    assert Condition(1200.0, 0.01).name == "1200K_strain+0.010" and Condition(300.0).name == "300K"


# -- the teacher ------------------------------------------------------------------------------------------------

def test_batched_teacher_labels_agree_with_ase_lennard_jones():
    """A model teacher labels structures of different sizes in one batch; ASE's own LJ gives the same numbers."""
    sigma, epsilon, rc = 3.405, 0.0103, 8.0
    structures = [bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 2), bulk("Ar", "fcc", a=5.3) * (3, 3, 3)]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.1, seed=k)
    labelled = Teacher(LennardJones(sigma, epsilon, rc, cutoff_mode="shifted"), batch_size=2).label(structures)
    for atoms, ours in zip(structures, labelled):
        ref = atoms.copy()
        ref.calc = AseLJ(sigma=sigma, epsilon=epsilon, rc=rc, smooth=False)
        assert ours.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), atol=1e-9)
        np.testing.assert_allclose(ours.get_stress(), ref.get_stress(), atol=1e-11)


def test_teacher_batches_stay_within_their_structure_and_atom_bounds():
    """Chunks keep the order, hold at most the given structures and atoms, and a too-large structure goes alone;
    the labels do not depend on the chunking."""
    from atomflux.distill.teacher import batch_chunks

    sizes = [8, 8, 32, 8, 100, 8, 8, 8]
    structures = [bulk("Ar", "fcc", a=5.26, cubic=True).repeat((n // 4, 1, 1)) for n in sizes]
    chunks = batch_chunks(structures, most_structures=3, most_atoms=40)
    assert [[len(a) for a in c] for c in chunks] == [[8, 8], [32, 8], [100], [8, 8, 8]]
    assert [a for c in chunks for a in c] == structures
    for k, atoms in enumerate(structures):
        atoms.rattle(0.1, seed=k)
    lj = LennardJones(3.405, 0.0103, 8.0, cutoff_mode="shifted")
    one_by_one = Teacher(lj, batch_size=1).label(structures)
    chunked = Teacher(lj, batch_size=3, batch_atoms=40).label(structures)
    for a, b in zip(one_by_one, chunked):
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-10)
    with pytest.raises(ValueError, match="at least one structure and one atom"):
        Teacher(lj, batch_atoms=0)


def test_teacher_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="cannot use a int as teacher"):
        Teacher(3)


# -- the loop -----------------------------------------------------------------------------------------------------

def test_run_records_every_round_and_the_student_carries_its_teacher(tiny_run):
    folder = tiny_run.folder
    assert [r["round"] for r in tiny_run.rounds] == [0, 1, 2] and not tiny_run.converged
    for k in range(3):
        round_folder = folder / f"round-{k:03d}"
        assert {"labels.extxyz", "student.pt", "metrics.json"} <= {p.name for p in round_folder.iterdir()}
        labels = ase.io.read(round_folder / "labels.extxyz", index=":")
        assert {a.info["condition"] for a in labels} == {"300K", "600K"}
        assert {a.info["split"] for a in labels} == {"train", "holdout"}
        emt = labels[0].copy()
        emt.calc = EMT()  # the labels are the teacher's
        np.testing.assert_allclose(labels[0].get_forces(), emt.get_forces(), atol=1e-6)
    later = ase.io.read(folder / "round-001" / "labels.extxyz", index=":")
    assert {a.info["kind"] for a in later} == {"uncertain", "random"}
    for name in ("300K", "600K"):  # the most uncertain frames are labelled first
        kinds = [a for a in later if a.info["condition"] == name]
        assert min(a.info["student_force_sigma"] for a in kinds if a.info["kind"] == "uncertain") >= \
            max(a.info["student_force_sigma"] for a in kinds if a.info["kind"] == "random")
    record = json.loads((folder / "run.json").read_text())
    assert record["parameters"]["teacher"] == "emt" and "torch" in record["parameters"]["versions"]
    assert record["finished"] and (folder / "summary.png").stat().st_size > 0
    meta = load_model(tiny_run.student_file).metadata
    assert meta["distillation"]["teacher"] == "emt"
    assert [c["temperature_K"] for c in meta["distillation"]["conditions"]] == [300.0, 600.0]
    assert meta["distillation"]["converged"] is False and meta["distillation"]["validated"] is None
    assert meta["uncertainty"]["method"] == "shallow_ensemble" and "scale_forces" in meta["uncertainty"]["calibration"]
    trained = [a for k in range(3) for a in ase.io.read(folder / f"round-{k:03d}" / "labels.extxyz", index=":")
               if a.info["split"] == "train"]  # the student carries the domain of the labels it learnt
    grades = np.concatenate([novelty_grades(load_model(tiny_run.student_file), a) for a in trained])
    assert grades.max() == pytest.approx(1.0, rel=1e-6)
    rows = [round_summary(r) for r in read_rounds(folder)]  # the report's table: the same rounds in meV/Å
    assert [row["round"] for row in rows] == [0, 1, 2]
    for row, metrics in zip(rows, tiny_run.rounds):
        for name, condition in metrics["conditions"].items():
            assert row["force_rmse_meV_per_A"][name] == pytest.approx(1000 * condition["force_rmse"])


def test_resume_after_an_interruption_reproduces_the_rounds(tiny_run, tmp_path, monkeypatch):
    real = distill_loop.train_student

    def interrupted(train_frames, holdout, config, round_index, *args, **kwargs):
        if round_index == 2:
            raise KeyboardInterrupt
        return real(train_frames, holdout, config, round_index, *args, **kwargs)

    monkeypatch.setattr(distill_loop, "train_student", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill("emt", [copper()], tmp_path / "run", DistillConfig(**TINY), progress=False, log=None)
    assert not (tmp_path / "run" / "round-002" / "metrics.json").exists()  # round 2 was cut off: done again
    monkeypatch.setattr(distill_loop, "train_student", real)
    lines = []
    with pytest.warns(RuntimeWarning, match="not converged"):
        resumed = distill("emt", [copper()], tmp_path / "run", DistillConfig(**TINY), progress=False, log=lines.append)
    assert lines[0].startswith("resuming") and "2 round(s) done" in lines[0]
    for k in range(3):
        ours = ase.io.read(tmp_path / "run" / f"round-{k:03d}" / "labels.extxyz", index=":")
        straight = ase.io.read(tiny_run.folder / f"round-{k:03d}" / "labels.extxyz", index=":")
        assert len(ours) == len(straight)
        for a, b in zip(ours, straight):
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(a.get_forces(), b.get_forces())
    assert fingerprint(resumed.student) == fingerprint(tiny_run.student)


def test_a_different_run_into_the_same_folder_is_refused(tiny_run):
    other = DistillConfig(**{**TINY, "temperatures": [300.0, 900.0]})
    with pytest.raises(RunMismatch, match="different run.*temperatures"):
        distill("emt", [copper()], tiny_run.folder, other, progress=False, log=None)
    with pytest.raises(RunMismatch, match="different run.*model"):  # another teacher
        distill(LennardJones(2.3, 0.4, 5.0), [copper()], tiny_run.folder, DistillConfig(**TINY), progress=False,
                log=None)
    with pytest.raises(RunMismatch, match="different run.*structures"):
        distill("emt", [bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 2, 2)], tiny_run.folder, DistillConfig(**TINY),
                progress=False, log=None)


@pytest.mark.parametrize("change, message", [
    ({"temperatures": []}, "no temperatures"),
    ({"temperatures": [300.0, -5.0]}, "temperatures must be > 0 K"),
    ({"strains": [0.5]}, "strains must be fractions"),
    ({"n_members": 1}, "n members must be a whole number ≥ 2"),
    ({"sample_interval": 500}, "no candidate frame"),
    ({"holdout_fraction": 0.0}, "holdout fraction"),
    ({"temperatures": [300.0], "initial_frames": 2}, "fewer than 2"),
])
def test_impossible_settings_are_refused_in_one_line(change, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        distill("emt", [copper()], tmp_path / "run", DistillConfig(**{**TINY, **change}), log=None)
    assert not (tmp_path / "run").exists()


def test_cli_runs_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    structure = tmp_path / "cu.extxyz"
    ase.io.write(structure, copper())
    molecule = tmp_path / "dimer.xyz"
    ase.io.write(molecule, Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]))
    base = ["distill", "emt", structure, "--md-steps", "20", "--initial-frames", "6", "--uncertain", "2",
            "--random", "1", "--cutoff", "4.0", "--channels", "4", "--max-angular", "2", "--hidden", "16",
            "--epochs", "10", "--members", "3", "--max-force-rmse", "10", "--max-force-sigma", "10"]
    assert main([str(a) for a in base + ["-o", tmp_path / "run", "--rounds", "1"]]) == 0
    out = capsys.readouterr().out
    assert "converged" in out and (tmp_path / "run" / "student.pt").is_file()
    for args, message in ((["distill", "emt", tmp_path / "missing.xyz"], "missing.xyz"),
                          (base + ["--temperatures", "0"], "--temperatures: must be > 0"),
                          (base + ["--members", "1"], "n members must be a whole number ≥ 2"),
                          (["distill", "nosuchmodel", structure], "nosuchmodel"),
                          (["distill", "emt", molecule], "not periodic in 3-D")):
        try:
            code = main([str(a) for a in args + ["-o", tmp_path / "bad"]])
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], err


# -- convergence (slow) -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_distilled_student_reproduces_emt_copper_at_every_temperature(tmp_path):
    """EMT Cu → student: converged loop, then checked on fresh teacher MD frames it never saw.

    The loop stops when student k−1's force RMSE and mean σ on frames of its own MD are ≤ 20 meV/Å at
    300 K and 600 K.  On fresh frames of the *teacher's* MD (another distribution: the student's MD
    explores what the student finds) the stated bound is 1.5× that, 30 meV/Å, at every temperature;
    the calibrated force σ covers 60–80 % of the force-component errors at 1σ, pooled over the
    temperatures (68.3 % for a Gaussian; one calibration factor serves every condition, so it is
    under-confident at 300 K and over-confident at 600 K).
    """
    from ase import units
    from ase.md.langevin import Langevin

    from atomflux.distill.student import errors_at
    from atomflux.md import thermalize
    from atomflux.training.dataset import frame_from_atoms
    from atomflux.uncertainty.calibration import coverage
    from atomflux.uncertainty.report import errors_and_sigmas

    config = DistillConfig(temperatures=[300.0, 600.0], max_rounds=8, max_force_rmse=0.02, max_force_sigma=0.02,
                           md_steps=200, initial_frames=8, n_uncertain=4, n_random=4)
    result = distill("emt", [copper()], tmp_path / "run", config, progress=False)
    assert result.converged
    errors, sigmas = [], []
    rng = np.random.default_rng(42)
    for temperature in config.temperatures:
        atoms = copper()
        atoms.calc = EMT()
        thermalize(atoms, temperature, rng)
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02 / units.fs, fixcm=False, rng=rng)
        dyn.run(200)
        frames = []
        for _ in range(10):
            dyn.run(20)
            frames.append(frame_from_atoms(atoms))
        found = errors_at(result.student, frames)
        print(f"{temperature:g} K: fresh teacher MD: force RMSE {1000 * found['force_rmse']:.1f} meV/Å, mean σ "
              f"{1000 * found['force_sigma']:.1f} meV/Å, 1σ coverage {100 * found['force_coverage_1sigma']:.0f} %")
        assert found["force_rmse"] < 1.5 * config.max_force_rmse
        e, s = errors_and_sigmas(result.student, frames)["forces"]
        errors.append(e)
        sigmas.append(s)
    pooled = coverage(np.concatenate(errors), np.concatenate(sigmas))
    print(f"pooled 1σ coverage {100 * pooled:.1f} %; rounds {len(result.rounds) - 1}, "
          f"labels {sum(r['n_labels'] for r in result.rounds)}")
    assert 0.60 <= pooled <= 0.80


@pytest.mark.slow
def test_sevennet_teacher_labels_agree_with_sevennet_own_calculator():
    """A foundation-model teacher labels a batch through atomflux's adapter; SevenNet's calculator agrees."""
    sevenn = pytest.importorskip("sevenn.calculator")
    structures = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("Si", "diamond", a=5.5) * (2, 1, 1)]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=k)
    teacher = Teacher("sevennet:7net-0")
    assert teacher.record()["spec"] == "sevennet:7net-0"
    for atoms, ours in zip(structures, teacher.label(structures)):
        ref = atoms.copy()
        ref.calc = sevenn.SevenNetCalculator("7net-0", device="cpu")
        assert ours.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-4)
        np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), atol=1e-4)  # float32 model
        np.testing.assert_allclose(ours.get_stress(), ref.get_stress(), atol=1e-6)


def test_md_guard_reads_the_threshold_recorded_in_a_distilled_student(tmp_path, capsys):
    """``atomflux md --max-uncertainty`` without a number uses the student's recorded energy threshold: a tiny one
    stops the run at once (exit 3), a large one lets it finish and is the threshold of its record; a model without
    a recorded threshold is refused in one line."""
    import json

    import ase.io

    from atomflux.cli import main
    from atomflux.io import load_model, save_model

    ase.io.write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.6, cubic=True))
    model = load_model("demo")
    save_model(model, tmp_path / "plain.pt")
    files = {}
    for name, threshold in (("tight", 1e-9), ("loose", 0.5)):
        model.metadata = {**model.metadata, "distillation": {"guard_thresholds": {"energy_eV_per_atom": threshold}}}
        files[name] = save_model(model, tmp_path / f"{name}.pt")
    run = ["md", str(tmp_path / "cu.cif"), "--steps", "10", "--interval", "1", "--max-uncertainty"]
    code = main(run + ["--model", str(files["tight"]), "--trajectory", str(tmp_path / "t.traj"),
                       "--log", str(tmp_path / "t.log")])
    assert code == 3 and "exceeds threshold" in capsys.readouterr().err
    assert main(run + ["--model", str(files["loose"]), "--trajectory", str(tmp_path / "l.traj"),
                       "--log", str(tmp_path / "l.log")]) == 0
    assert json.loads((tmp_path / "l.json").read_text())["parameters"]["max_uncertainty"] == 0.5
    capsys.readouterr()
    assert main(run + ["--model", str(tmp_path / "plain.pt"), "--trajectory", str(tmp_path / "p.traj"),
                       "--log", str(tmp_path / "p.log")]) == 2
    assert "is not a distilled student" in capsys.readouterr().err
