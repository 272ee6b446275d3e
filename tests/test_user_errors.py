"""The atomflux command as a user (also a careless one) drives it: nothing lost, nothing silently wrong.

- interrupted runs (Ctrl-C = SIGINT to a subprocess, or a KeyboardInterrupt in the
  middle of the work) resume to exactly the files of an uninterrupted run;
- a folder or file of another run is never mixed with or overwritten by a new one;
- impossible settings are refused by name; ordinary mistakes end with one line,
  exit code 2 and no traceback; a real bug still shows its traceback.
"""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io.trajectory import Trajectory

from atomflux.cli import main
from atomflux.io import load_model, save_model
from atomflux.models import LennardJones, PowerSpectrumPotential

LJ = dict(sigma=3.405, epsilon=0.0103, cutoff=6.5, cutoff_mode="smooth", r_on=5.5)
TRANSPORT = ["--transport", "--repeat", "2", "2", "2", "--temperature", "40", "--equilibration", "40",
             "--timestep", "5", "--checkpoint", "100", "--stride", "7"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs a user has lying around: a model, structures, data, and broken or wrong files."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = {"lj": save_model(LennardJones(**LJ), folder / "lj.pt"), "ar": folder / "ar.cif",
             "data": folder / "cu.extxyz", "empty": folder / "empty.extxyz", "bad_cif": folder / "bad.cif",
             "junk_xyz": folder / "junk.xyz", "notes": folder / "notes.txt", "folder": folder / "a-folder",
             "truncated_traj": folder / "cut.traj"}
    bulk("Ar", "fcc", a=5.3, cubic=True).write(paths["ar"])
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.02 * k, cubic=True)
        atoms.rattle(0.05, rng=rng)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    ase.io.write(paths["data"], frames)
    paths["empty"].write_text("")
    paths["bad_cif"].write_text("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n")
    paths["junk_xyz"].write_text("hello world\n")
    paths["notes"].write_text("my notes\n")
    paths["folder"].mkdir()
    paths["truncated_traj"].write_bytes(paths["lj"].read_bytes()[:300])
    return paths


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``atomflux args`` in this process: exit code, stdout, stderr (argparse's exits included)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    """stderr without the progress status lines."""
    return [line for line in err.splitlines() if line.strip() and ": error:" in line or "Traceback" in line]


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before exec: Ctrl-C's default disposition, as for a command typed in a terminal (a test run
    started in the background by a non-interactive shell, ``make test &``, has SIGINT ignored, and children
    inherit that: the interrupt test then cannot interrupt anything)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def atomflux_subprocess(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "ATOMFLUX_STATUS_SECONDS": "0.5", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "atomflux.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_ctrl_c_as_in_a_terminal,
                            **kwargs)


# ---------------------------------------------------------------- interrupt and resume


def test_ctrl_c_during_production_then_resume_gives_the_uninterrupted_files(files, tmp_path):
    steps = 1500  # long enough that the run cannot finish between the poll and the signal on a loaded machine
    command = ["md", files["ar"], "--model", files["lj"], *TRANSPORT, "--steps", str(steps)]
    straight = atomflux_subprocess(command + ["-o", tmp_path / "straight"])
    interrupted = atomflux_subprocess(command + ["-o", tmp_path / "run"])
    state = tmp_path / "run" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # Ctrl-C once production has passed its first checkpoint
        if state.is_file():
            try:
                current = json.loads(state.read_text())
            except json.JSONDecodeError:
                current = {}
            if current.get("phase") == "production" and current.get("step", 0) >= 100:
                break
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("atomflux md: interrupted; checkpoint in") and "production step" in last
    assert "same command again to resume" in last
    assert "NVE production 40 K: stopped at" in err and "steps/s" in err  # status lines when stderr is not a terminal
    stopped_at = json.loads(state.read_text())["step"]
    assert 100 <= stopped_at < steps

    for process in (atomflux_subprocess(command + ["-o", tmp_path / "run"]), straight):  # resume; the reference
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    a, b = np.load(tmp_path / "run" / "flux.npz"), np.load(tmp_path / "straight" / "flux.npz")
    assert a["heat_flux"].shape == (steps + 1, 3)
    for key in ("time", "heat_flux", "species_velocity", "mean_temperature", "volume"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(np.diff(a["time"]), np.full(steps, 5.0))  # each step once, uniform
    assert json.loads(str(a["units"]))["heat_flux"] == "eV*Angstrom/fs"
    provenance = json.loads(str(a["provenance"]))
    assert provenance["parameters"]["temperature_K"] == 40.0 and provenance["model"]["fingerprint"]
    with Trajectory(str(tmp_path / "run" / "production.traj")) as ra, \
            Trajectory(str(tmp_path / "straight" / "production.traj")) as rb:
        assert len(ra) == len(rb) == steps // 7 + 1  # the bug: frames after the checkpoint written twice
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x.positions, y.positions)
            np.testing.assert_array_equal(x.get_momenta(), y.get_momenta())


def ctrl_c_at_call(function, n: int):
    """``function``, except that its ``n``-th call raises KeyboardInterrupt (as Ctrl-C would there)."""
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return function(*args, **kwargs)

    return wrapped


def test_interrupted_equilibration_resumes_with_the_same_thermostat_noise(tmp_path):
    from atomflux.calculators import AtomfluxCalculator
    from atomflux.md import run_transport_md

    cell = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 1, 1)
    settings = dict(temperature=40.0, equilibration_steps=60, production_steps=10, timestep=5.0,
                    checkpoint_interval=25, stride=5, progress=False)
    straight = np.load(run_transport_md(cell, AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "a", **settings))
    calc = AtomfluxCalculator(LennardJones(**LJ))
    calc.calculate = ctrl_c_at_call(calc.calculate, 40)  # step ~38: after the first checkpoint (25), before the second
    with pytest.raises(KeyboardInterrupt):
        run_transport_md(cell, calc, tmp_path / "b", **settings)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["phase"] == "equilibration"
    resumed = np.load(run_transport_md(cell, AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b", **settings))
    np.testing.assert_array_equal(resumed["heat_flux"], straight["heat_flux"])
    # a finished run asked for more production steps goes on exactly
    longer = np.load(run_transport_md(cell, AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b",
                                      **{**settings, "production_steps": 20}))
    reference = np.load(run_transport_md(cell, AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "c",
                                         **{**settings, "production_steps": 20}))
    assert longer["heat_flux"].shape == (21, 3)
    np.testing.assert_array_equal(longer["heat_flux"], reference["heat_flux"])
    with pytest.raises(ValueError, match="already holds 20 production steps"):
        run_transport_md(cell, AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b",
                         **{**settings, "production_steps": 15})


def test_changed_parameters_are_refused_and_old_results_kept(files, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["md", files["ar"], "--model", files["lj"], *TRANSPORT, "--steps", "20", "-o", out]
    assert run_cli(command, capsys)[0] == 0
    flux = (out / "flux.npz").read_bytes()
    changed = list(command)
    changed[changed.index("--temperature") + 1] = "300"
    changed[changed.index("--timestep") + 1] = "1"
    code, _, err = run_cli(changed, capsys)
    assert code == 2 and len(error_lines(err)) == 1
    assert "temperature_K: 40.0 → 300.0" in err and "timestep_fs: 5.0 → 1.0" in err and "--restart" in err
    other_model = save_model(LennardJones(**{**LJ, "epsilon": 0.011}), tmp_path / "lj2.pt")
    code, _, err = run_cli(command[:3] + [other_model] + command[4:], capsys)
    assert code == 2 and "model:" in err
    assert (out / "flux.npz").read_bytes() == flux  # nothing touched
    code, out_text, _ = run_cli(command, capsys)  # the same finished run: returned, not redone
    assert code == 0 and "already holds this run" in out_text
    assert run_cli(changed + ["--restart"], capsys)[0] == 0
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert (aside / "flux.npz").read_bytes() == flux
    assert json.loads((out / "run.json").read_text())["parameters"]["temperature_K"] == 300.0


def test_plain_md_never_overwrites_another_run(files, tmp_path, capsys):
    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    command = ["md", files["ar"], "--model", files["lj"], "--steps", "10", "--trajectory", traj, "--log", log]
    code, out, _ = run_cli(command, capsys)
    assert code == 0
    summary = json.loads((tmp_path / "md.json").read_text())["summary"]
    assert summary["ensemble"] == "langevin" and "energy_drift_eV_per_atom" not in summary  # meaningless there
    first = traj.read_bytes()
    code, out, _ = run_cli(command, capsys)
    assert code == 0 and "already holds this run" in out and traj.read_bytes() == first
    code, _, err = run_cli(command + ["--ensemble", "nve"], capsys)
    assert code == 2 and "ensemble: langevin → nve" in err and traj.read_bytes() == first
    assert run_cli(command + ["--ensemble", "nve", "--restart"], capsys)[0] == 0
    (aside,) = tmp_path.glob("md.old-*.traj")
    assert aside.read_bytes() == first
    assert "energy_drift_eV_per_atom" in json.loads((tmp_path / "md.json").read_text())["summary"]
    (tmp_path / "mine.log").write_text("my own notes")
    code, _, err = run_cli(command[:-1] + [tmp_path / "mine.log", "--trajectory", tmp_path / "x.traj"], capsys)
    assert code == 2 and "no atomflux run recorded it" in err
    assert (tmp_path / "mine.log").read_text() == "my own notes"


def test_interrupted_training_resumes_to_the_same_model(files, tmp_path, capsys, monkeypatch):
    import functools

    import atomflux.training
    import atomflux.training.trainer as trainer

    # a checkpoint after every epoch (by default at most every 10 s)
    monkeypatch.setattr(atomflux.training, "TrainConfig", functools.partial(trainer.TrainConfig, checkpoint_seconds=0))
    command = ["train", files["data"], "--epochs", "4", "--hidden", "4", "--channels", "2", "--max-angular", "1",
               "--batch-size", "2"]
    assert run_cli(command + ["-o", tmp_path / "straight.pt"], capsys)[0] == 0
    original = trainer._validation_loss
    monkeypatch.setattr(trainer, "_validation_loss", ctrl_c_at_call(original, 3))  # in epoch 3
    code, _, err = run_cli(command + ["-o", tmp_path / "model.pt"], capsys)
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"atomflux train: interrupted; training state in "
                                            f"{tmp_path / 'model-training' / 'checkpoint.pt'}; the same command "
                                            "resumes it")
    monkeypatch.setattr(trainer, "_validation_loss", original)
    code, out, _ = run_cli(command + ["-o", tmp_path / "model.pt"], capsys)
    assert code == 0 and "resuming" in out
    a, b = load_model(tmp_path / "model.pt").state_dict(), load_model(tmp_path / "straight.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "model-training" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert (tmp_path / "model-training" / "learning-curve.png").stat().st_size > 1000
    code, out, _ = run_cli(command + ["-o", tmp_path / "model.pt"], capsys)
    assert code == 0 and "already trained" in out
    code, _, err = run_cli(command + ["-o", tmp_path / "model.pt", "--lr", "0.01"], capsys)
    assert code == 2 and "learning_rate: 0.003 → 0.01" in err
    assert all(torch.equal(a[k], v) for k, v in load_model(tmp_path / "model.pt").state_dict().items())


def test_interrupted_orbital_data_generation_resumes(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyscf")
    from atomflux.hamiltonian import data as hdata

    command = ["hamiltonian", "data", "--molecules", "H2", "LiH", "--per-molecule", "2", "--basis", "sto-3g"]
    assert run_cli(command + ["-o", tmp_path / "straight.json"], capsys)[0] == 0
    original = hdata.compute_frame
    monkeypatch.setattr(hdata, "compute_frame", ctrl_c_at_call(original, 3))
    code, _, err = run_cli(command + ["-o", tmp_path / "d.json"], capsys)
    assert code == 130 and "2 of 4 geometries saved" in err and "same command computes the rest" in err
    code, _, err = run_cli(["hamiltonian", "train", tmp_path / "d.json", "--epochs", "1"], capsys)
    assert code == 2 and "incomplete" in err
    saved = json.loads((tmp_path / "d.json").read_text())["frames"]
    monkeypatch.setattr(hdata, "compute_frame", original)
    assert run_cli(command + ["-o", tmp_path / "d.json"], capsys)[0] == 0
    a, b = json.loads((tmp_path / "d.json").read_text()), json.loads((tmp_path / "straight.json").read_text())
    assert a["complete"] and a["provenance"]["command"] == "hamiltonian data"
    assert a["frames"][:2] == saved  # kept, not recomputed
    assert [f["name"] for f in a["frames"]] == ["H2", "H2", "LiH", "LiH"]
    for x, y in zip(a["frames"], b["frames"]):  # the same geometries; SCF levels to its convergence
        assert x["positions"] == y["positions"]
        np.testing.assert_allclose(x["levels"], y["levels"], atol=1e-6)
    code, _, err = run_cli(command[:-1] + ["6-31g", "-o", tmp_path / "d.json"], capsys)
    assert code == 2 and "sto-3g" in err and "--restart" in err


# ---------------------------------------------------------------- impossible settings, named

REFUSED = [
    (["md", "{ar}", "--steps", "0"], "--steps"),
    (["md", "{ar}", "--steps", "-5"], "--steps"),
    (["md", "{ar}", "--timestep", "0"], "--timestep"),
    (["md", "{ar}", "--timestep", "-1"], "--timestep"),
    (["md", "{ar}", "--timestep", "nan"], "--timestep"),
    (["md", "{ar}", "--temperature", "-10"], "--temperature"),
    (["md", "{ar}", "--temperature", "0"], "temperature"),  # Langevin needs a target
    (["md", "{ar}", "--interval", "0"], "--interval"),
    (["md", "{ar}", "--repeat", "0", "1", "1"], "--repeat"),
    (["md", "{ar}", "--max-uncertainty", "-0.1"], "--max-uncertainty"),
    (["md", "{ar}", "--transport", "--stride", "0"], "--stride"),
    (["md", "{ar}", "--transport", "--checkpoint", "0"], "--checkpoint"),  # looped forever before
    (["md", "{ar}", "--transport", "--equilibration", "-1"], "--equilibration"),
    (["md", "{ar}", "--transport", "--temperature", "0"], "temperature"),
    (["train", "{data}", "--cutoff", "-1"], "--cutoff"),  # a vesin traceback before
    (["train", "{data}", "--epochs", "0"], "--epochs"),
    (["train", "{data}", "--batch-size", "0"], "--batch-size"),
    (["train", "{data}", "--lr", "-1"], "--lr"),
    (["train", "{data}", "--validation-fraction", "1.5"], "--validation-fraction"),
    (["train", "{data}", "--hidden", "0"], "--hidden"),
    (["train", "{data}", "--forces-weight", "-1"], "--forces-weight"),
    (["train", "{data}", "--energy-weight", "0", "--forces-weight", "0", "--stress-weight", "0"], "weights"),
    (["hamiltonian", "data", "--per-molecule", "0"], "--per-molecule"),
    (["hamiltonian", "data", "--virtual", "-1"], "--virtual"),
    (["hamiltonian", "train", "{data}", "--epochs", "0"], "--epochs"),
]


@pytest.mark.parametrize("argv, name", REFUSED, ids=[" ".join(a[2:]) for a, _ in REFUSED])
def test_impossible_settings_are_refused_by_name(files, tmp_path, capsys, argv, name):
    argv = [a.format(**files) for a in argv] + (["--model", str(files["lj"])] if argv[0] == "md" else [])
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error:" in lines[0] and name in lines[0], err


def test_library_refuses_the_same_settings(tmp_path):
    from atomflux.calculators import AtomfluxCalculator
    from atomflux.md import run_md, run_transport_md
    from atomflux.systems import Batch
    from atomflux.training import TrainConfig

    cell = bulk("Ar", "fcc", a=5.3)
    calc = AtomfluxCalculator(LennardJones(**LJ))
    for kwargs, name in (({"timestep": 0}, "timestep"), ({"steps": 0}, "steps"), ({"temperature": -1}, "temperature"),
                         ({"interval": 0}, "interval"), ({"friction": 0}, "friction")):
        with pytest.raises(ValueError, match=name):
            run_md(cell.copy(), calc, **kwargs)
    with pytest.raises(ValueError, match="checkpoint interval"):
        run_transport_md(cell.copy(), calc, tmp_path / "t", checkpoint_interval=0)
    assert not (tmp_path / "t").exists()
    for kwargs, name in (({"epochs": 0}, "epochs"), ({"model": {"cutoff": -1.0}}, "cutoff"),
                         ({"dtype": "float16"}, "dtype"), ({"validation_fraction": 1.0}, "validation_fraction")):
        with pytest.raises(ValueError, match=name):
            TrainConfig(**kwargs).check()
    with pytest.raises(ValueError, match="cutoff must be a positive"):
        Batch.from_atoms(cell, -1.0)
    from ase import Atoms

    empty = Atoms()
    empty.calc = calc
    with pytest.raises(ValueError, match="no atoms"):  # was "cannot reshape tensor of 0 elements"
        empty.get_potential_energy()


# ---------------------------------------------------------------- ordinary mistakes: one line, no traceback

MISTAKES = [
    (["md", "{empty}"], "empty.extxyz is empty"),
    (["md", "{bad_cif}"], "malformed"),  # StopIteration before
    (["md", "{junk_xyz}"], "cannot read"),
    (["md", "{notes}"], "cannot tell the format"),
    (["md", "{truncated_traj}"], "cannot read"),
    (["md", "{folder}"], "is a folder"),
    (["md", "{lj}"], "cannot tell the format"),  # a model file given as the structure
    (["md", "{dir}/missing.cif"], "no structure file"),
    (["md", "{ar}", "--model", "{dir}/missing.pt"], "no model file"),
    (["md", "{ar}", "--model", "{data}"], "not a readable atomflux model file"),  # misnamed a pickle before
    (["md", "{ar}", "--model", "demo"], "Ar not known"),
    (["md", "{ar}", "--model", "demo-hamiltonian"], "orbital energies"),
    (["md", "{ar}", "--model", "{lj}", "--max-uncertainty", "0.01"], "needs a model with uncertainty"),
    (["md", "{ar}", "--model", "{lj}", "--trajectory", "{folder}"], "is a folder"),
    (["md", "{ar}", "--model", "{lj}", "--trajectory", "{ar}/md.traj"], "is a file, not a folder"),
    (["md", "{ar}", "--model", "{lj}", "--trajectory", "{dir}/same", "--log", "{dir}/same"], "the same file"),
    (["md", "{ar}", "--model", "{lj}", "--transport", "-o", "{ar}"], "is a file, not a folder"),
    (["md", "{ar}", "--model", "{lj}", "--ensemble", "nvt"], "invalid choice"),
    (["md", "{ar}", "--model", "{lj}", "--ensemble", "npt", "--transport"], "drop --ensemble npt"),
    (["md", "{ar}", "--model", "{lj}", "--pressure", "1"], "apply to --ensemble npt"),
    (["md", "{ar}", "--model", "{lj}", "--timestep", "two"], "expected a number"),
    (["md"], "required: structure"),
    (["train", "{empty}"], "empty.extxyz is empty"),  # UnknownFileTypeError traceback before
    (["train", "{ar}"], "no energies, forces or stress"),
    (["train", "{lj}"], "cannot tell the format"),
    (["train", "{dir}/missing.extxyz"], "no data file"),
    (["train", "{data}", "-o", "{folder}"], "is a folder"),
    (["train", "{data}", "-o", "{ar}/model.pt"], "is a file, not a folder"),
    (["eval", "{data}", "{data}"], "not a readable atomflux model file"),
    (["eval", "{lj}", "{empty}"], "is empty"),
    (["calibrate", "{lj}", "{data}"], "no uncertainty"),
    (["llpr", "{lj}", "{data}", "-o", "{folder}"], "is a folder"),
    (["llpr", "{lj}", "{data}", "-o", "{lj}"], "already exists and is kept"),
    (["ensemble", "{lj}", "{data}", "-o", "{lj}"], "already exists and is kept"),
    (["hamiltonian", "data", "--molecules", "XYZ"], "unknown molecule 'XYZ'"),  # KeyError traceback before
    (["hamiltonian", "data", "--molecules", "CH3"], "closed-shell"),
    (["hamiltonian", "data", "--molecules", "H2", "--basis", "no-such-basis"], "no basis"),
    (["hamiltonian", "data", "--molecules", "H2", "--method", "NOSUCHXC"], "unknown method"),
    (["hamiltonian", "data", "-o", "{folder}"], "is a folder"),
    (["hamiltonian", "train", "{data}"], "not a data file"),  # "Extra data: line 2 column 1" before
    (["hamiltonian", "eval", "{lj}", "{data}"], "not a Hamiltonian model"),
    (["demo", "--model", "{lj}", "--output", "{ar}"], "is a file, not a folder"),
    (["nonsense"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(a).replace("{", "").replace("}", "")
                                                          for a, _ in MISTAKES])
def test_ordinary_mistakes_end_with_one_line(files, tmp_path, capsys, argv, message):
    if "pyscf" in message or argv[:2] == ["hamiltonian", "data"]:
        pytest.importorskip("pyscf")
    argv = [a.format(dir=tmp_path, **files) for a in argv]
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.strip().splitlines() if ": done," not in line and "status line" not in line]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("atomflux") and ": error: " in lines[0], err
    assert message in lines[0]


def test_a_real_bug_still_shows_its_traceback(files, capsys, monkeypatch):
    import atomflux.cli.md as md_cli

    def broken(*args):
        return {}["no such key"]

    monkeypatch.setattr(md_cli, "_plain_md", broken)
    code, _, err = run_cli(["md", files["ar"]], capsys)
    assert code == 1 and "Traceback" in err and "KeyError" in err and "bug in atomflux" in err
    with pytest.raises(ValueError, match="is empty"):  # --debug: the full traceback, also for mistakes
        main(["md", str(files["empty"]), "--debug"])


# ---------------------------------------------------------------- feedback


def test_guard_warnings_are_rate_limited(tmp_path):
    from atomflux.uncertainty import UncertaintyGuard

    atoms = bulk("Cu", "fcc", a=3.6)
    guard = UncertaintyGuard(atoms, threshold=0.01, action="warn", save=tmp_path / "bad.extxyz",
                             logfile=tmp_path / "u.log")
    values = iter([0.5] * 200 + [0.001] * 5 + [0.5] * 50)
    guard.current = lambda: next(values)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(255):
            guard()
        guard.close()
    assert len(caught) == 2  # the first one, and the sum-up at the end (not 250)
    assert "250 in all" in str(caught[-1].message) and "249 checks above it" in str(caught[-1].message)
    assert guard.n_saved == 2 and len(ase.io.read(tmp_path / "bad.extxyz", ":")) == 2  # one per excursion
    assert len((tmp_path / "u.log").read_text().splitlines()) == 256  # header + every check


def test_status_lines_when_stderr_is_not_a_terminal(monkeypatch):
    import io

    from atomflux.progress import StatusLines, progress

    monkeypatch.setenv("ATOMFLUX_STATUS_SECONDS", "0")
    stream = io.StringIO()
    with progress(50, "NVE production", unit="step", initial=10, stream=stream) as bar:
        assert isinstance(bar, StatusLines)
        for _ in range(40):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("NVE production: 50 steps, resuming at 10")
    assert "NVE production: 30/50 steps (60 %)" in lines[20] and "steps/s" in lines[20] and "left" in lines[20]
    assert lines[-1].startswith("NVE production: done, 50 steps")


def test_saved_models_load_bit_for_bit(tmp_path):
    """load_model used to round float64 weights through float32 (the module was built in float32)."""
    torch.manual_seed(1)
    model = PowerSpectrumPotential(["Cu"], cutoff=4.0, hidden=[8]).double()
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
