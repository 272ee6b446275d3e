"""NPT MD: the cell follows an applied anisotropic load as the static elastic compliance says; ramps resume exactly."""

import json

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk

from atomflux.calculators import AtomfluxCalculator
from atomflux.md import thermalize
from atomflux.md_npt import npt_dynamics, pressure_tensor, ramp_temperatures, run_npt_ramp
from atomflux.models.analytic import LennardJones

LJ = dict(sigma=3.405, epsilon=0.0103, cutoff=8.0, cutoff_mode="smooth", r_on=7.0)


def argon():
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)
    atoms.calc = AtomfluxCalculator(LennardJones(**LJ))
    return atoms


def npt_means(pressure, steps=1200, skip=300, temperature=10.0):
    """Mean pressure tensor (GPa), its block error and the mean cell lengths (Å) of an NPT run."""
    atoms = argon()
    thermalize(atoms, temperature, np.random.default_rng(1))
    dyn = npt_dynamics(atoms, 5.0, temperature, pressure, thermostat_time=100.0, barostat_time=400.0)
    pressures, lengths = [], []

    def record():
        pressures.append(-atoms.get_stress(voigt=False, include_ideal_gas=True) / units.GPa)
        lengths.append(atoms.cell.lengths())

    dyn.attach(record, interval=1)
    dyn.run(steps)
    p = np.array(pressures[skip:])
    blocks = np.array([b.mean(0) for b in np.array_split(p, 10)])
    return p.mean(0), blocks.std(0) / np.sqrt(len(blocks) - 1), np.mean(lengths[skip:], axis=0), atoms


def static_compliance(atoms, strain=0.003):
    """S11, S12 (1/GPa) of a cubic crystal from ±strain finite differences of the stress at rest (0 K)."""
    atoms = atoms.copy()
    atoms.calc = AtomfluxCalculator(LennardJones(**LJ))
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    a = np.mean(atoms.cell.lengths()) / 2
    base = bulk("Ar", "fcc", a=a, cubic=True) * (2, 2, 2)
    stresses = []
    for e in (strain, -strain):
        strained = base.copy()
        strained.set_cell(base.cell.array @ np.diag([1, 1, 1 + e]), scale_atoms=True)
        strained.calc = atoms.calc
        stresses.append(strained.get_stress(voigt=False) / units.GPa)
    c = (stresses[0] - stresses[1]) / (2 * strain)
    c11, c12 = c[2, 2], c[0, 0]
    det = (c11 - c12) * (c11 + 2 * c12)
    return (c11 + c12) / det, -c12 / det


def test_cell_follows_an_anisotropic_load_and_pressure_matches_target():
    torch.set_num_threads(1)
    free_p, free_err, free_cell, free_atoms = npt_means(0.0)
    load = [0.0, 0.0, 0.015, 0.0, 0.0, 0.0]  # uniaxial compression along z, GPa
    p, err, cell, _ = npt_means(load)
    target = pressure_tensor(load)
    print("mean pressure tensor", p.round(4), "block error", err.round(4))
    # ensemble averages of the instantaneous pressure sit O(kT/V) from the target (here kT/V = 0.1 MPa; ASE's
    # own scalar MTKNPT shows the same +0.7..0.9 MPa offset on this crystal): allowed 10 kT/V = 1 MPa
    offset = 10 * units.kB * 10.0 / free_atoms.get_volume() / units.GPa
    assert np.all(np.abs(free_p - 0.0) < 4 * free_err + offset)
    assert np.all(np.abs(p - target) < 4 * err + offset)
    strain = cell / free_cell - 1
    s11, s12 = static_compliance(free_atoms)
    print("strain", strain.round(4), "static compliance predicts", -s11 * 0.015, -s12 * 0.015)
    assert strain[2] == pytest.approx(-s11 * 0.015, rel=0.25)
    assert strain[0] > 0 and strain[1] > 0  # Poisson expansion across the load
    assert np.mean(strain[:2]) == pytest.approx(-s12 * 0.015, rel=0.5)


def test_ramp_resumes_after_interruption_to_the_same_files(tmp_path, monkeypatch):
    import atomflux.md_npt as md_npt

    torch.set_num_threads(1)
    settings = dict(temperatures=[20.0, 30.0, 40.0], steps=20, pressure=0.01, timestep=5.0, stride=5,
                    progress=False)
    straight = run_npt_ramp(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "a", **settings)
    run_stage = md_npt._run_stage
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_stage(*args, **kwargs)

    monkeypatch.setattr(md_npt, "_run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_npt_ramp(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b", **settings)
    assert len(json.loads((tmp_path / "b" / "thermo.json").read_text())) == 1
    monkeypatch.setattr(md_npt, "_run_stage", run_stage)
    resumed = run_npt_ramp(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b", **settings)
    assert json.loads(resumed.read_text()) == json.loads(straight.read_text())
    from ase.io import read

    for k in range(3):
        a, b = read(tmp_path / "a" / f"stage-{k}.traj", ":"), read(tmp_path / "b" / f"stage-{k}.traj", ":")
        assert len(a) == len(b) == 4
        assert np.array_equal(a[-1].positions, b[-1].positions) and np.array_equal(a[-1].cell, b[-1].cell)
    with pytest.raises(ValueError, match="different run"):
        run_npt_ramp(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b", **{**settings, "steps": 30})


def test_ramp_and_pressure_parsing():
    assert ramp_temperatures("100:200:50") == [100.0, 150.0, 200.0]
    assert ramp_temperatures("300:200:40") == [300.0, 260.0, 220.0]
    with pytest.raises(ValueError, match="T0:T1:dT"):
        ramp_temperatures("100-200")
    with pytest.raises(ValueError, match="one number or six"):
        pressure_tensor([1.0, 2.0])
    assert np.array_equal(pressure_tensor([1, 2, 3, 4, 5, 6]), [[1, 6, 5], [6, 2, 4], [5, 4, 3]])


def test_npt_command_line_errors(tmp_path, capsys):
    from atomflux.cli import main

    bulk("Cu", cubic=True).write(tmp_path / "cu.xyz")
    cases = {("--pressure", "1"): "apply to --ensemble npt",
             ("--ensemble", "npt", "--pressure", "1", "2"): "one number or six",
             ("--ensemble", "npt", "--temperature-ramp", "300-200"): "T0:T1:dT",
             ("--ensemble", "npt", "--transport"): "drop --ensemble npt"}
    for extra, message in cases.items():
        assert main(["md", str(tmp_path / "cu.xyz"), *extra, "-o", str(tmp_path / "run")]) == 2
        assert message in capsys.readouterr().err
