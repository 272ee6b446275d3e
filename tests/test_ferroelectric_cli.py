"""`atomflux ferroelectric` on NPT-ramp folders whose frames hold known displacements."""

import csv
import json

import numpy as np
import pytest
from ase.io.trajectory import Trajectory

from atomflux.cli import main
from atomflux.records import open_run

from test_ferroelectric import A0, batio3

Z_TI = 6.26


def ramp_folder(path, temperatures, shifts, size=2, frames=20, seed=0, finished=None):
    """A folder as `atomflux md --ensemble npt` writes it; stage k: Ti shifted by shifts[k] (Å) along z ± noise."""
    rng = np.random.default_rng(seed)
    ideal = batio3((size,) * 3)
    open_run(path, "md --ensemble npt", {"temperatures_K": temperatures, "n": seed}, None)
    ti = np.array(ideal.get_chemical_symbols()) == "Ti"
    for k, shift in enumerate(shifts):
        with Trajectory(str(path / f"stage-{k}.traj"), "w") as traj:
            for _ in range(frames):
                frame = ideal.copy()
                frame.positions[ti, 2] += shift * (1 + 0.05 * rng.normal())
                frame.positions += 1.3  # rigid translation: irrelevant
                traj.write(frame)
    (path / "thermo.json").write_text(json.dumps([{}] * (len(shifts) if finished is None else finished)))


def test_ferroelectric_command_tables_phases_and_hysteresis(tmp_path, capsys):
    ramp_folder(tmp_path / "heat", [100.0, 200.0, 300.0], [0.10, 0.06, 0.0], seed=1)
    ramp_folder(tmp_path / "cool", [300.0, 200.0, 100.0], [0.0, 0.0, 0.10], seed=2)
    out = tmp_path / "out"
    args = ["ferroelectric", str(tmp_path / "heat"), str(tmp_path / "cool"), "--born", "Ba=2.77,Ti=6.26,O=-3.01",
            "-o", str(out)]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "ferroelectric.csv")))
    assert [r["direction"] for r in rows] == ["heating"] * 3 + ["cooling"] * 3 and rows[0]["size"] == "L2"
    expected = Z_TI * 0.10 / A0**3 * 1602.176634  # μC/cm²: a uniform Ti shift, Z*_Ti δ / V_cell
    assert float(rows[0]["mean_abs"]) == pytest.approx(expected, rel=0.03)
    assert [r["phase"] for r in rows] == ["tetragonal", "tetragonal", "cubic", "cubic", "cubic", "tetragonal"]
    summary = json.loads((out / "ferroelectric.json").read_text())
    loop = summary["hysteresis"]["L2"]
    assert loop["T_heating"] == pytest.approx(250.0) and loop["T_cooling"] == pytest.approx(150.0)
    assert (out / "ferroelectric.png").stat().st_size > 0
    # other inputs: a second result beside the first, never over it
    assert main(args[:-4] + ["--born", "Ba=2.0,Ti=7.03,O=-3.01", "-o", str(out)]) == 0
    assert (out / "ferroelectric-2.csv").is_file()
    capsys.readouterr()
    assert main(["ferroelectric", str(tmp_path), "-o", str(out)]) == 2
    assert "not an NPT run folder" in capsys.readouterr().err
    assert main(args[:-4] + ["--born", "Ba=2.77,Ti=6.26"]) == 2
    assert "no Born charge for O" in capsys.readouterr().err


def test_a_cooling_ramp_stopped_after_its_first_temperature_is_still_cooling(tmp_path):
    ramp_folder(tmp_path / "cool", [300.0, 200.0, 100.0], [0.0, 0.0, 0.10], finished=1)
    out = tmp_path / "out"
    assert main(["ferroelectric", str(tmp_path / "cool"), "--born", "Ba=2.77,Ti=6.26,O=-3.01", "-o", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "ferroelectric.csv")))
    assert [(r["direction"], float(r["temperature_K"])) for r in rows] == [("cooling", 300.0)]


def test_temperature_window_keeps_only_the_temperatures_inside_it(tmp_path, capsys):
    ramp_folder(tmp_path / "heat", [100.0, 200.0, 300.0], [0.10, 0.06, 0.0])
    out = tmp_path / "out"
    args = ["ferroelectric", str(tmp_path / "heat"), "--born", "Ba=2.77,Ti=6.26,O=-3.01", "-o", str(out)]
    assert main(args + ["--temperature-window", "250", "150"]) == 0
    rows = list(csv.DictReader(open(out / "ferroelectric.csv")))
    assert [float(r["temperature_K"]) for r in rows] == [200.0]
    expected = Z_TI * 0.06 / A0**3 * 1602.176634
    assert float(rows[0]["mean_abs"]) == pytest.approx(expected, rel=0.03)
    capsys.readouterr()
    assert main(args + ["--temperature-window", "400", "500"]) == 2
    assert "no finished temperature inside the window 400–500 K" in capsys.readouterr().err


def test_local_dipole_maps_are_written_per_run_and_temperature_and_bad_temperatures_refused(tmp_path, capsys):
    ramp_folder(tmp_path / "heat", [100.0, 200.0, 300.0], [0.10, 0.06, 0.0], frames=10)
    out = tmp_path / "out"
    args = ["ferroelectric", str(tmp_path / "heat"), "--born", "Ba=2.77,Ti=6.26,O=-3.01", "-o", str(out)]
    assert main(args + ["--map-temperatures", "100", "300", "--map-layers", "2"]) == 0
    maps = sorted(p.name for p in (out / "ferroelectric-maps").iterdir())
    assert maps == ["L2-heating-100K.png", "L2-heating-300K.png"]
    assert all((out / "ferroelectric-maps" / name).stat().st_size > 1000 for name in maps)
    assert main(args + ["--map-layers", "0", "-o", str(tmp_path / "none")]) == 0
    assert not (tmp_path / "none" / "ferroelectric-maps").exists()
    capsys.readouterr()
    assert main(args + ["--map-temperatures", "150", "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "no run has analysed 150 K" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
