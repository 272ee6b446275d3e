"""The transport MD driver: flux file contents, resuming from a checkpoint, and the CLI reports."""

import json

import numpy as np
import pytest
from ase.build import bulk

from atomflux.calculators import AtomfluxCalculator
from atomflux.analysis.flux_io import read_flux
from atomflux.cli import main
from atomflux.io import save_model
from atomflux.md import run_transport_md
from atomflux.models import LennardJones

LJ = dict(sigma=3.405, epsilon=0.0103, cutoff=8.0, cutoff_mode="smooth", r_on=7.0)


def argon():
    return bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)


class Interrupting(AtomfluxCalculator):
    def __init__(self, after):
        super().__init__(LennardJones(**LJ))
        self.after, self.calls = after, 0

    def calculate(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt("simulated interruption")
        super().calculate(*args, **kwargs)


def test_resumed_run_equals_uninterrupted(tmp_path):
    settings = dict(temperature=40.0, equilibration_steps=60, production_steps=200, timestep=5.0,
                    checkpoint_interval=50, stride=20, progress=False)
    straight = np.load(run_transport_md(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "a", **settings))
    with pytest.raises(KeyboardInterrupt):
        run_transport_md(argon(), Interrupting(after=200), tmp_path / "b", **settings)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert state["phase"] == "production" and 0 < state["step"] < 200
    resumed = np.load(run_transport_md(argon(), AtomfluxCalculator(LennardJones(**LJ)), tmp_path / "b", **settings))
    assert straight["heat_flux"].shape == (201, 3)
    np.testing.assert_array_equal(resumed["time"], straight["time"])
    np.testing.assert_allclose(resumed["heat_flux"], straight["heat_flux"], rtol=1e-10, atol=1e-14)
    assert float(resumed["volume"]) == pytest.approx(argon().get_volume())


def test_transport_and_compare_commands(tmp_path, capsys):
    model = save_model(LennardJones(**LJ), tmp_path / "lj.pt")
    argon().write(tmp_path / "ar.cif")
    assert main(["md", str(tmp_path / "ar.cif"), "--transport", "--model", str(model), "--temperature", "40",
                 "--equilibration", "50", "--steps", "400", "--timestep", "5", "--stride", "10",
                 "-o", str(tmp_path / "run")]) == 0
    flux = tmp_path / "run" / "flux.npz"
    run = read_flux(flux)                                        # FLUX_SCHEMA: units and the run record
    assert run.units["heat_flux"] == "eV*Angstrom/fs" and run.dt == 5.0 and run.n_atoms == len(argon())
    assert run.provenance["parameters"]["temperature_K"] == 40 and run.provenance["model"]["fingerprint"]
    assert main(["transport", "--flux", str(flux), "--trajectory", str(tmp_path / "run" / "production.traj"),
                 "--dt", "50", "--output-dir", str(tmp_path / "an")]) == 0
    kappa = json.loads((tmp_path / "an" / "greenkubo.json").read_text())["result"]
    diffusion = json.loads((tmp_path / "an" / "diffusion.json").read_text())["result"]
    assert kappa["lower_bound_W_per_mK"] > 0 and len(kappa["scan"]["bandwidth_THz"]) >= 3
    assert "Ar" in diffusion["diffusion_cm2_per_s"]
    assert (tmp_path / "an" / "greenkubo.png").is_file() and (tmp_path / "an" / "structure-dynamics.png").is_file()
    ar = tmp_path / "ar1.cif"
    bulk("Ar", "fcc", a=5.26).write(ar)
    assert main(["kappa", str(ar), "--model", str(model), "--mesh", "5", "5", "5", "--temperatures", "30", "60",
                 "--statistics", "classical", "--output-dir", str(tmp_path / "k")]) == 0
    assert main(["kappa", str(ar), "--model", str(model), "--mesh", "5", "5", "5", "--temperatures", "30", "60",
                 "--statistics", "classical", "--method", "lbte", "--output-dir", str(tmp_path / "k-lbte")]) == 0
    assert main(["compare", "--lattice", str(tmp_path / "k" / "kappa.json"), str(tmp_path / "k-lbte" / "kappa.json"),
                 "--md", str(flux), "--output-dir", str(tmp_path / "cmp")]) == 0
    report = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Green–Kubo" in report and (tmp_path / "cmp" / "comparison.png").is_file()
    assert "lattice RTA (classical)" in report and "lattice LBTE (classical)" in report
    assert "three-phonon" in report and "classical statistics" in report
    assert "unconverged" in report                                                   # 2 ps of a crystal
    assert main(["transport", "--flux", str(tmp_path / "missing.npz")]) == 2
