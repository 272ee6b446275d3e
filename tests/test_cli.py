"""The atomflux command as a user runs it."""

import json
import subprocess
import sys

import ase.io
import pytest

from atomflux.cli import main
from atomflux.reference_data import emt_dataset


def test_train_then_eval(tmp_path, capsys):
    data = tmp_path / "d.extxyz"
    ase.io.write(data, emt_dataset(n_trajectories=2, snapshots=4, elements=("Cu", "Au"), seed=1))
    model = tmp_path / "m.pt"
    assert main(["train", str(data), "-o", str(model), "--epochs", "2", "--hidden", "8"]) == 0
    assert model.is_file()
    plot, metrics = tmp_path / "p.png", tmp_path / "m.json"
    assert main(["eval", str(model), str(data), "--plot", str(plot), "--json", str(metrics)]) == 0
    assert plot.stat().st_size > 1000
    assert "forces_mae" in json.loads(metrics.read_text())
    assert "forces" in capsys.readouterr().out


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["eval", "demo", str(tmp_path / "missing.extxyz")]) == 2
    assert "no data file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nomodel.pt"), str(tmp_path / "x")]) == 2


def test_demo_quick_runs_as_a_subprocess(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "atomflux.cli", "demo", "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_metrics_vs_emt"]["forces_mae"] < 0.1
    assert abs(summary["md"]["energy_drift_eV_per_atom"]) < 1e-3
    assert (out / "parity.png").is_file() and (out / "md.traj").is_file()


def test_kappa_command(tmp_path, capsys):
    from ase.build import bulk

    from atomflux.io import save_model
    from atomflux.models import LennardJones

    ase.io.write(tmp_path / "ar.cif", bulk("Ar", "fcc", a=5.26))
    model = save_model(LennardJones(3.405, 0.0103, 8.5), tmp_path / "lj.pt")
    out = tmp_path / "k"
    assert main(["kappa", str(tmp_path / "ar.cif"), "--model", str(model), "--mesh", "5", "5", "5",
                 "--temperatures", "20", "40", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "W/mK" in text and "40.0" in text
    data = json.loads((out / "kappa.json").read_text())
    assert len(data["kappa"]) == 2 and data["kappa"][0][0] > data["kappa"][1][0] > 0  # κ falls with T
    assert (out / "kappa.png").is_file() and (out / "dispersion.png").is_file()
    assert (out / "phono3py" / "phono3py_params.yaml").is_file()


def test_uncertainty_commands(tmp_path, capsys):
    from atomflux.io import load_model, save_model

    base = save_model(load_model("demo-llpr").base, tmp_path / "base.pt")
    train, valid = tmp_path / "train.extxyz", tmp_path / "valid.extxyz"
    ase.io.write(train, emt_dataset(n_trajectories=6, snapshots=2, seed=41))
    ase.io.write(valid, emt_dataset(n_trajectories=6, snapshots=2, seed=42))
    assert main(["llpr", str(base), str(train), "-o", str(tmp_path / "llpr.pt"), "--validation", str(valid)]) == 0
    assert main(["ensemble", str(base), str(train), "-o", str(tmp_path / "ens.pt"), "--members", "4"]) == 0
    assert load_model(tmp_path / "ens.pt").metadata["uncertainty"]["n_members"] == 4
    capsys.readouterr()
    prefix = tmp_path / "plots" / "cal"
    assert main(["calibrate", str(tmp_path / "llpr.pt"), str(valid), "--plots", str(prefix),
                 "--json", str(tmp_path / "cal.json")]) == 0
    out = capsys.readouterr().out
    assert "coverage 1σ" in out and "NLL" in out
    report = json.loads((tmp_path / "cal.json").read_text())
    assert {r["quantity"] for r in report} == {"energy", "forces", "stress"}
    assert (tmp_path / "plots" / "cal-energy-zscores.png").is_file()
    assert (tmp_path / "plots" / "cal-forces-error-vs-sigma.png").is_file()
    assert main(["calibrate", str(base), str(valid)]) == 2  # a model without uncertainty: clear error


def test_md_stops_when_the_model_extrapolates(tmp_path, capsys):
    from ase.build import bulk

    strained = bulk("Cu", "fcc", a=3.6 * 1.3, cubic=True) * (2, 1, 1)
    ase.io.write(tmp_path / "far.cif", strained)
    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    code = main(["md", str(tmp_path / "far.cif"), "--steps", "20", "--interval", "1", "--max-uncertainty", "0.02",
                 "--trajectory", str(traj), "--log", str(log)])
    assert code == 3 and "exceeds threshold" in capsys.readouterr().err
    assert (tmp_path / "md.extrapolation.extxyz").is_file() and (tmp_path / "md.uncertainty.log").is_file()
    ase.io.write(tmp_path / "ok.cif", bulk("Cu", "fcc", a=3.6, cubic=True))
    ok = ["md", str(tmp_path / "ok.cif"), "--steps", "10", "--max-uncertainty", "0.02",
          "--trajectory", str(traj), "--log", str(log)]
    assert main(ok) == 2  # the files of the stopped run are not overwritten by another run
    assert main(ok + ["--restart"]) == 0
    assert len(list(tmp_path.glob("md.extrapolation.old-*.extxyz"))) == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_option_sets_torch_threads_for_the_fit(threads, tmp_path, monkeypatch):
    """--threads reaches the training itself (read inside train), whatever torch had before."""
    import torch

    import atomflux.training

    seen = []
    original_train = atomflux.training.train

    def recording_train(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original_train(*args, **kwargs)

    monkeypatch.setattr(atomflux.training, "train", recording_train)
    data = tmp_path / "d.extxyz"
    ase.io.write(data, emt_dataset(n_trajectories=1, snapshots=3, elements=("Cu",), seed=2))
    before = torch.get_num_threads()
    torch.set_num_threads(3 - threads)
    try:
        assert main(["train", str(data), "-o", str(tmp_path / "m.pt"), "--epochs", "1", "--hidden", "4",
                     "--threads", str(threads)]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [threads]


def test_fitting_commands_take_threads_with_a_default(capsys):
    from atomflux.cli import build_parser
    from atomflux.threads import FITTING_THREADS

    parser = build_parser()
    for command in (["train", "d"], ["distill", "emt", "s"], ["llpr", "m", "d", "-o", "x"],
                    ["ensemble", "m", "d", "-o", "x"], ["hamiltonian", "train", "d"]):
        assert parser.parse_args(command).threads == FITTING_THREADS
        assert parser.parse_args(command + ["--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "d", "--threads", "0"])
    assert "--threads: must be > 0, got 0" in capsys.readouterr().err
