"""The command line with third-party models: --model sevennet:7net-0 (and committees) on tiny Si cells."""

import json
import warnings

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from atomflux import load_model
from atomflux.cli import main

warnings.filterwarnings("ignore", module="sevenn")
pytest.importorskip("sevenn", reason="sevenn is not installed: pip install 'atomflux[sevennet]'")
pytest.importorskip("chgnet", reason="chgnet is not installed: pip install 'atomflux[chgnet]'")
from sevenn.calculator import SevenNetCalculator  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return SevenNetCalculator("7net-0", device="cpu")


@pytest.fixture
def si_file(tmp_path):
    path = tmp_path / "si.cif"
    bulk("Si", "diamond", a=5.43).write(path)
    return path


def test_md_with_sevennet_and_committee_guard(si_file, tmp_path, capsys, reference):
    traj = tmp_path / "md.traj"
    assert main(["md", str(si_file), "--model", "sevennet:7net-0", "--steps", "3", "--interval", "1",
                 "--trajectory", str(traj), "--log", str(tmp_path / "md.log")]) == 0
    summary = json.loads(capsys.readouterr().out)
    final = ase.io.read(traj, -1)
    final.calc = reference
    assert summary["final_potential_energy_eV"] == pytest.approx(final.get_potential_energy(), abs=1e-4)
    # two foundation models disagree by far more than 1 meV/atom: the guard stops the run (exit 3)
    assert main(["md", str(si_file), "--model", "sevennet:7net-0", "--model", "chgnet:0.3.0", "--steps", "2",
                 "--interval", "1", "--max-uncertainty", "0.001", "--trajectory", str(tmp_path / "c.traj"),
                 "--log", str(tmp_path / "c.log")]) == 3
    assert (tmp_path / "c.extrapolation.extxyz").is_file()


def test_llpr_and_calibrate_with_sevennet(tmp_path, reference):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(11):
        atoms = bulk("Si", "diamond", a=5.43 * (1 + 0.02 * rng.standard_normal()))
        atoms.rattle(0.05, seed=k)
        atoms.calc = reference
        energy = atoms.get_potential_energy() + 0.02 * rng.standard_normal()  # "DFT" = model + noise
        atoms.calc = None
        atoms.info["energy"] = energy
        frames.append(atoms)
    ase.io.write(tmp_path / "train.extxyz", frames[:8])
    ase.io.write(tmp_path / "val.extxyz", frames[8:])
    out = tmp_path / "si-llpr.pt"
    assert main(["llpr", "sevennet:7net-0", str(tmp_path / "train.extxyz"), "-o", str(out), "--samples", "4",
                 "--validation", str(tmp_path / "val.extxyz")]) == 0
    archive = torch.load(out, weights_only=True)
    assert json.loads(archive["metadata"])["config"]["base"] == {"spec": "sevennet:7net-0"}
    model = load_model(out)
    assert model.base.spec == "sevennet:7net-0" and int(model.n_structures) == 8
    report = tmp_path / "report.json"
    assert main(["calibrate", str(out), str(tmp_path / "val.extxyz"), "--plots", str(tmp_path / "cal"),
                 "--json", str(report)]) == 0
    energy = next(r for r in json.loads(report.read_text()) if r["quantity"] == "energy")
    assert np.isfinite(energy["nll"])


def test_kappa_with_sevennet_spec(si_file, tmp_path, reference):
    """The CLI takes the spec; the forces behind κ are SevenNet's own on every displaced cell."""
    from atomflux import AtomfluxCalculator
    from atomflux.lattice.forcesets import compute_forces
    from atomflux.lattice.kappa import build_phono3py, to_ase

    assert main(["kappa", str(si_file), "--model", "sevennet:7net-0", "--supercell", "1", "1", "1",
                 "--mesh", "3", "3", "3", "--output-dir", str(tmp_path / "k")]) == 0
    kappa = json.loads((tmp_path / "k" / "kappa.json").read_text())["kappa"][0]
    assert 10 < np.mean(kappa[:3]) < 1000 and np.ptp(kappa[:3]) < 1e-6 * np.mean(kappa[:3])   # cubic: isotropic
    cells = [to_ase(c) for c in build_phono3py(ase.io.read(si_file), (1, 1, 1), "auto", None, 0.03)
             .supercells_with_displacements if c is not None]
    batched = compute_forces(cells, AtomfluxCalculator("sevennet:7net-0"), uncertainty=False, progress=False)
    one_by_one = compute_forces(cells, reference, uncertainty=False, progress=False)
    np.testing.assert_allclose(batched.forces, one_by_one.forces, atol=1e-5)
