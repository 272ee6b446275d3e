"""`atomflux transport` / `atomflux compare` as a user drives them: results that never overwrite each other,
flux files that carry units and provenance, and refusals (exit code 2, one line) for impossible input."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from atomflux.analysis.flux_io import ATOMFLUX_UNITS, read_flux
from atomflux.analysis.synthetic import ornstein_uhlenbeck
from atomflux.cli import main

VOLUME, TEMPERATURE = 5000.0, 300.0


def flux_file(path, seed=0, n=20_000, time=None, **extra):
    """A flux.npz as `atomflux md --transport` writes it, holding an OU heat flux with a known κ (W/mK)."""
    f = ornstein_uhlenbeck(n, 20.0, variance=1e-4, dt=2.0, seed=seed)
    np.savez(path, time=2.0 * np.arange(n) if time is None else time, heat_flux=f.series,
             species_velocity=np.zeros((n, 1, 3)), species=np.array(["Ar"]), volume=VOLUME, temperature=TEMPERATURE,
             mean_temperature=TEMPERATURE, timestep=2.0, units=json.dumps(ATOMFLUX_UNITS),
             provenance=json.dumps({"command": "md --transport", "parameters": {"seed": seed}}), **extra)
    factor = 1.602176634e6 / (VOLUME * 8.617333262e-5 * TEMPERATURE**2)
    return path, f.integral * factor


def trajectory_file(path, frozen_chlorine=False, n_frames=300):
    rng = np.random.default_rng(1)
    cell = np.eye(3) * 8.0
    numbers = np.where(np.arange(40) % 2 == 0, 3, 17)
    steps = rng.normal(0, 0.3, (n_frames, 40, 3))
    steps[0] = rng.random((40, 3)) * 8.0
    positions = np.cumsum(steps, axis=0)
    if frozen_chlorine:
        positions[:, numbers == 17] = positions[0, numbers == 17]
    write(path, [Atoms(numbers, positions=p, cell=cell, pbc=True) for p in positions])
    return path


def one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("atomflux transport: error:"), err
    for word in words:
        assert word in err[0], err[0]


def test_flux_file_units_provenance_and_replicas(tmp_path):
    path, _ = flux_file(tmp_path / "flux.npz")
    run = read_flux(path)
    assert run.provenance["parameters"]["seed"] == 0 and run.dt == 2.0 and run.heat_flux.shape == (20_000, 3)
    n = 1000
    flux = np.random.default_rng(0).normal(size=(n, 4, 3))
    np.savez(tmp_path / "replicas.npz", time=np.arange(n) * 1.0, heat_flux=flux, volume=10.0, temperature=5.0,
             species_velocity=np.random.default_rng(1).normal(size=(n, 4, 2, 3)), n_replicas=4)
    run = read_flux(tmp_path / "replicas.npz")                                       # an older file: no units
    assert run.heat_flux.shape == (n, 12) and run.n_replicas == 4
    np.testing.assert_array_equal(run.heat_flux[:, 3:6], flux[:, 1])                 # replica 1's x, y, z
    assert len(run.mass_fluxes) == 1 and run.mass_fluxes[0].shape == (n, 12)
    np.savez(tmp_path / "bad-units.npz", time=np.arange(n) * 1.0, heat_flux=flux[:, 0], volume=10.0, temperature=5.0,
             units=json.dumps({**ATOMFLUX_UNITS, "heat_flux": "eV*Angstrom/ps"}))
    with pytest.raises(ValueError, match="eV\\*Angstrom/ps"):
        read_flux(tmp_path / "bad-units.npz")


def test_flux_then_trajectory_keep_both_results(tmp_path, capsys):
    """The README sequence: transport --flux, then transport --trajectory, into one folder."""
    flux, exact = flux_file(tmp_path / "flux.npz")
    traj = trajectory_file(tmp_path / "md.extxyz")
    out = tmp_path / "an"
    assert main(["transport", "--flux", str(flux), "--output-dir", str(out)]) == 0
    assert main(["transport", "--trajectory", str(traj), "--dt", "10", "--output-dir", str(out)]) == 0
    kappa = json.loads((out / "greenkubo.json").read_text())
    assert kappa["result"]["converged"] and abs(kappa["result"]["kappa_W_per_mK"] - exact) < 3 * kappa["result"][
        "error_W_per_mK"]
    assert kappa["inputs"]["flux"][0]["sha256"] and kappa["result"]["provenance"][0]["command"] == "md --transport"
    assert "Li" in json.loads((out / "diffusion.json").read_text())["result"]["diffusion_cm2_per_s"]
    assert (out / "greenkubo.png").is_file() and (out / "structure-dynamics.png").is_file()
    # the same analysis again: replaced in place; another input: kept beside it
    assert main(["transport", "--flux", str(flux), "--output-dir", str(out)]) == 0
    assert not (out / "greenkubo-2.json").exists()
    other, _ = flux_file(tmp_path / "other.npz", seed=1)
    assert main(["transport", "--flux", str(other), "--output-dir", str(out)]) == 0
    assert (out / "greenkubo-2.json").is_file() and json.loads((out / "greenkubo.json").read_text()) == kappa
    printed = capsys.readouterr().out
    assert "F* (THz)" in printed and "plateau" in printed


def test_independent_runs_combine_into_one_estimate(tmp_path, capsys):
    files = [str(flux_file(tmp_path / f"r{k}.npz", seed=k)[0]) for k in range(3)]
    assert main(["transport", "--flux", *files, "--output-dir", str(tmp_path / "an")]) == 0
    result = json.loads((tmp_path / "an" / "greenkubo.json").read_text())["result"]
    assert len(result["sources"]) == 3 and result["samples"] == 3 * 20_000 * 3
    assert main(["transport", "--flux", files[0], "--output-dir", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "greenkubo.json").read_text())["result"]
    assert result["error_W_per_mK"] < 0.8 * one["error_W_per_mK"]


def test_refusals_exit_2_with_one_line(tmp_path, capsys):
    time = 2.0 * np.arange(20_000)
    time[12_345:] -= 200.0                                                            # a resumed run repeated steps
    bad, _ = flux_file(tmp_path / "resumed.npz", time=time)
    assert main(["transport", "--flux", str(bad)]) == 2
    one_error_line(capsys, "not uniform", "index 12345")
    nan, _ = flux_file(tmp_path / "nan.npz")
    data = dict(np.load(nan))
    data["heat_flux"][100, 1] = np.nan
    np.savez(nan, **data)
    assert main(["transport", "--flux", str(nan)]) == 2
    one_error_line(capsys, "NaN", "index 100")
    data["heat_flux"][:] = 0.0
    np.savez(nan, **data)
    assert main(["transport", "--flux", str(nan)]) == 2
    one_error_line(capsys, "zero")
    hot, _ = flux_file(tmp_path / "hot.npz")
    data = dict(np.load(hot))
    data["mean_temperature"] = 600.0
    np.savez(hot, **data)
    assert main(["transport", "--flux", str(flux_file(tmp_path / "a.npz")[0]), str(hot)]) == 2
    one_error_line(capsys, "different temperatures")
    traj = trajectory_file(tmp_path / "md.extxyz")
    assert main(["transport", "--trajectory", str(traj), "--charges", "Li=1", "Na=1", "--temperature", "500"]) == 2
    one_error_line(capsys, "Na", "does not contain")
    assert main(["transport", "--trajectory", str(traj), "--charges", "Li=1"]) == 2
    one_error_line(capsys, "--temperature")
    assert main(["transport", "--flux", str(bad), "--timestep", "0.001"]) == 2
    one_error_line(capsys, "LAMMPS")


def test_immobile_charges_give_no_haven_ratio(tmp_path, capsys):
    traj = trajectory_file(tmp_path / "md.extxyz", frozen_chlorine=True)
    assert main(["transport", "--trajectory", str(traj), "--charges", "Cl=-1", "--temperature", "500",
                 "--dt", "10", "--output-dir", str(tmp_path / "an")]) == 0
    printed = capsys.readouterr().out
    assert "Haven ratio not meaningful" in printed and "e+" not in printed.split("Haven")[1]
    assert "tracer D(Cl)" in printed and "not" in printed.split("tracer D(Cl)")[1].splitlines()[0]
    result = json.loads((tmp_path / "an" / "diffusion.json").read_text())["result"]
    assert result["conductivity_S_per_m"]["haven_ratio"] is None


def test_unconverged_run_is_not_headlined(tmp_path, capsys):
    from atomflux.analysis.synthetic import crystal_like

    f = crystal_like(2**15, 1000.0, seed=62)                                        # 33 lifetimes
    np.savez(tmp_path / "short.npz", time=np.arange(2**15) * 4.0, heat_flux=f.series * 1e-3, volume=VOLUME,
             temperature=20.0, mean_temperature=20.0, timestep=4.0)
    assert main(["transport", "--flux", str(tmp_path / "short.npz"), "--output-dir", str(tmp_path / "an")]) == 0
    printed = capsys.readouterr().out
    assert "unconverged: κ ≥" in printed and "run longer" in printed
    result = json.loads((tmp_path / "an" / "greenkubo.json").read_text())["result"]
    assert result["kappa_W_per_mK"] is None and not result["converged"] and result["lower_bound_W_per_mK"] > 0


def test_compare_report_groups_runs_and_explains_itself(tmp_path, capsys):
    """Two runs at 300 K combine, one at 600 K stands alone; RTA and LBTE side by side; the report says what
    each method lacks and that the lattice results do not record their cell."""
    from types import SimpleNamespace

    from atomflux.analysis.report import lattice_volume_per_atom
    from atomflux.lattice.kappa import KappaResult

    for method, scale in (("rta", 1.0), ("lbte", 1.4)):
        KappaResult(np.array([300.0, 600.0]), scale * np.array([[2.0, 2.0, 2.0, 0, 0, 0], [1.0, 1.0, 1.0, 0, 0, 0]]),
                    None, method, "classical", [3, 3, 3], [9, 9, 9]).to_json(tmp_path / f"{method}.json")
    files = [str(flux_file(tmp_path / f"a{k}.npz", seed=k)[0]) for k in range(2)]
    hot, _ = flux_file(tmp_path / "hot.npz", seed=5)
    data = dict(np.load(hot))
    data["mean_temperature"] = 600.0
    np.savez(hot, **data)
    out = tmp_path / "cmp"
    assert main(["compare", "--lattice", str(tmp_path / "rta.json"), str(tmp_path / "lbte.json"),
                 "--md", *files, str(hot), "--output-dir", str(out)]) == 0
    report = (out / "comparison.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| 300.0") or line.startswith("| 600.0")]
    assert len(rows) == 2 and "2 run(s)" in rows[0] and "1 run(s)" in rows[1]
    assert "| 2 ± " not in rows[0] and "2.8" in rows[0]                              # LBTE 1.4 × 2 W/mK at 300 K
    assert "three-phonon" in report and "does not record its cell" in report and "classical statistics" in report
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["temperature"] for r in summary["md"]] == [300.0, 600.0]
    assert summary["md"][0]["lattice"]["LBTE (classical)"] == pytest.approx(2.8)
    assert lattice_volume_per_atom(SimpleNamespace(cell=np.eye(3) * 2.0, n_atoms=4)) == pytest.approx(2.0)
    recorded = KappaResult(np.array([300.0]), np.ones((1, 6)), None, "rta", "classical", [3, 3, 3], [9, 9, 9],
                           volume_per_atom=11.57)   # what thermal_conductivity writes: the check must see it
    assert lattice_volume_per_atom(recorded) == pytest.approx(11.57)
    # other inputs into the same folder: the first report stays
    assert main(["compare", "--lattice", str(tmp_path / "rta.json"), "--md", files[0], "--output-dir", str(out)]) == 0
    assert (out / "comparison-2.md").is_file() and (out / "comparison.md").read_text() == report


def test_wrong_file_types_and_impossible_settings_exit_2_with_one_line(tmp_path, capsys):
    """Each file given to the wrong option, and each impossible number, ends with one line naming it."""
    from ase.build import bulk

    good, _ = flux_file(tmp_path / "flux.npz")
    traj = tmp_path / "md.traj"
    write(traj, [bulk("Ar", "fcc", a=5.3)] * 3)
    xyz = trajectory_file(tmp_path / "md.extxyz", n_frames=3)
    (tmp_path / "other.json").write_text('{"energy": 1.0}')
    (tmp_path / "blob.dat").write_bytes(bytes(range(256)) * 4)
    cases = [
        (["transport", "--flux", str(traj)], ("ASE trajectory", "--trajectory")),
        (["transport", "--flux", str(xyz)], ("extended XYZ", "--trajectory")),
        (["transport", "--flux", str(tmp_path / "other.json")], ("JSON", "--lattice")),
        (["transport", "--flux", str(tmp_path / "blob.dat")], ("binary file",)),
        (["transport", "--flux", str(tmp_path)], ("folder",)),
        (["transport", "--trajectory", str(good)], ("heat-flux", "--flux")),
        (["compare", "--lattice", str(good), "--md", str(good)], ("not a JSON file", "kappa.json")),
        (["compare", "--lattice", str(tmp_path / "other.json"), "--md", str(good)], ("not a lattice", "kappa.json")),
        (["transport", "--flux", str(good), "--cutoff", "0"], ("--cutoff", "> 0")),
        (["transport", "--flux", str(good), "--max-frequency", "-1"], ("--max-frequency",)),
        (["transport", "--flux", str(good), "--max-frequency", "300"], ("Nyquist", "250 THz")),
        (["transport", "--flux", str(good), "--max-frequency", "0.5"], ("1.575 THz", "run longer")),
        (["transport", "--trajectory", str(xyz), "--dt", "0"], ("--dt",)),
        (["transport", "--trajectory", str(xyz), "--blocks", "1"], ("--blocks", "≥ 2")),
        (["transport", "--flux", str(good), "--volume", "-5"], ("--volume",)),
        (["compare", "--lattice", str(tmp_path / "none.json"), "--md", str(good)], ("none.json",)),
    ]
    for argv, words in cases:
        try:
            code = main(argv + ["--output-dir", str(tmp_path / "out")])
        except SystemExit as parser_exit:                                           # argparse refuses the number
            code = parser_exit.code
        assert code == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"atomflux {argv[0]}: error:"), (argv, err)
        for word in words:
            assert word in err[0], (argv, err[0])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
