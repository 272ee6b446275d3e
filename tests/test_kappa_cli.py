"""`atomflux kappa` as a user drives it: runs are records, impossible inputs get one line, scans on request."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from atomflux.cli import main
from atomflux.io import save_model
from atomflux.models import LennardJones

FAST = ["--supercell", "3", "3", "3", "--mesh", "5", "5", "5", "--temperatures", "30"]


@pytest.fixture
def argon(tmp_path):
    ase.io.write(tmp_path / "ar.cif", bulk("Ar", "fcc", a=5.26))
    model = save_model(LennardJones(3.405, 0.0103, 6.0, cutoff_mode="smooth"), tmp_path / "lj.pt")
    return tmp_path / "ar.cif", model


@pytest.mark.parametrize("arguments, message", [
    (["--displacement", "0"], "displacement must be positive"),
    (["--displacement", "-0.01"], "displacement must be positive"),
    (["--mesh", "0", "0", "0"], "mesh must be 3 positive integers"),
    (["--mesh", "-3", "3", "3"], "mesh must be 3 positive integers"),
    (["--supercell", "0", "2", "2"], "supercell entries must be positive"),
    (["--temperatures", "300", "-5"], "temperatures must be positive"),
    (["--pair-cutoff", "0"], "pair cutoff must be positive"),
    (["--memory-budget", "lots"], "memory budget 'lots' not understood"),
    (["--cell", "missing.traj"], "no such file"),
])
def test_impossible_inputs_one_line_and_no_output(argon, tmp_path, capsys, arguments, message):
    structure, model = argon
    out = tmp_path / "k"
    assert main(["kappa", str(structure), "--model", str(model), *FAST, "-o", str(out), *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atomflux kappa: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_mesh_that_breaks_symmetry_and_unreadable_structure(argon, tmp_path, capsys):
    structure, model = argon
    assert main(["kappa", str(structure), "--model", str(model), "--mesh", "4", "5", "6",
                 "-o", str(tmp_path / "k")]) == 2
    assert "breaks the crystal's symmetry" in capsys.readouterr().err
    (tmp_path / "bad.cif").write_text("data_nothing\n_cell_length_a\n")
    assert main(["kappa", str(tmp_path / "bad.cif"), "--model", str(model), "-o", str(tmp_path / "k2")]) == 2
    err = capsys.readouterr().err
    assert "bad.cif" in err and ("cannot read" in err or "no complete structure" in err)


def test_runs_are_records(argon, tmp_path, capsys):
    structure, model = argon
    out = tmp_path / "k"
    command = ["kappa", str(structure), "--model", str(model), *FAST, "-o", str(out)]
    assert main(command) == 0
    first = json.loads((out / "kappa.json").read_text())
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "kappa" and record["parameters"]["mesh"] == [5, 5, 5]
    assert first["inputs"]["temperatures"] == [30.0] and first["volume_per_atom"] > 0
    record = json.loads((out / "run.json").read_text())
    assert record["finished"] and record["summary"]["result"] == "kappa.json"
    cache = out / "phono3py" / "forces_fc3.npz"
    stamp = cache.stat().st_mtime_ns
    capsys.readouterr()
    assert main(command) == 0                                   # same run: resumes, nothing recomputed
    assert "resuming" in capsys.readouterr().out and cache.stat().st_mtime_ns == stamp
    assert json.loads((out / "kappa.json").read_text())["kappa"] == first["kappa"]
    other_temperature = command[:-2] + ["--temperatures", "60", "-o", str(out)]
    assert main(other_temperature) == 2                         # another run in the same folder: refused
    err = capsys.readouterr().err
    assert "holds a different run" in err and "temperatures: [30.0] → [60.0]" in err and "--restart" in err
    assert json.loads((out / "kappa.json").read_text())["kappa"] == first["kappa"]
    other_model = save_model(LennardJones(3.405, 0.0120, 6.0, cutoff_mode="smooth"), tmp_path / "lj2.pt")
    assert main(["kappa", str(structure), "--model", str(other_model), *FAST, "-o", str(out)]) == 2
    assert "model:" in capsys.readouterr().err
    assert main(other_temperature + ["--restart"]) == 0         # the old run is moved aside, not deleted
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("k.old-")]
    assert len(aside) == 1 and json.loads((aside[0] / "kappa.json").read_text())["kappa"] == first["kappa"]


def test_repeated_model_gives_kappa_per_member(argon, tmp_path, capsys):
    """``--model a --model b``: a committee; each member's κ equals a separate run with that model alone."""
    structure, model = argon
    other = save_model(LennardJones(3.405, 0.0120, 6.0, cutoff_mode="smooth"), tmp_path / "lj2.pt")
    separate = []
    for k, single in enumerate((model, other)):
        assert main(["kappa", str(structure), "--model", str(single), *FAST, "-o", str(tmp_path / f"s{k}")]) == 0
        separate.append(json.loads((tmp_path / f"s{k}" / "kappa.json").read_text())["kappa"])
    out = tmp_path / "committee"
    assert main(["kappa", str(structure), "--model", str(model), "--model", str(other), *FAST, "-o", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads((out / "kappa.json").read_text())
    assert result["member_names"] == [str(model), str(other)] and all(n in table for n in result["member_names"])
    members = np.array(result["kappa_members"])                                     # [M, n_T, 6]
    np.testing.assert_allclose(members[..., :3], np.array(separate)[..., :3], rtol=1e-6)
    np.testing.assert_allclose(result["kappa_std"], members.std(0), rtol=1e-9, atol=1e-12)
    # κ ∝ ε^(3/2) in classical LJ scaling; quantum statistics at 30 K keep the ratio close to it
    assert members[1, 0, 0] / members[0, 0, 0] == pytest.approx((0.0120 / 0.0103) ** 1.5, rel=0.1)
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["spec"] == f"{model} {other}"


def test_cutoff_warning_in_the_table(tmp_path, capsys):
    shifted = save_model(LennardJones(3.405, 0.0103, 8.5), tmp_path / "shifted.pt")
    ase.io.write(tmp_path / "ar40.cif", bulk("Ar", "fcc", a=5.3797))
    out = tmp_path / "k"
    assert main(["kappa", str(tmp_path / "ar40.cif"), "--model", str(shifted), *FAST, "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: a neighbour shell at 8.5061 Å" in captured.out                # in the κ table, one line
    assert "CutoffCrossingWarning" not in captured.err                             # not as a Python warning
    assert json.loads((out / "kappa.json").read_text())["warnings"]


def test_converge(tmp_path, capsys):
    """Mesh ±2, ±4 and supercell ±1 around the settings; the 2x2x2 supercell is reported, not fatal.
    (Nearest-neighbour LJ and the traditional symmetrisation keep the 4x4x4 step cheap.)"""
    ase.io.write(tmp_path / "ar.cif", bulk("Ar", "fcc", a=5.26))
    short = save_model(LennardJones(3.405, 0.0103, 4.5, cutoff_mode="smooth", r_on=4.0), tmp_path / "short.pt")
    out = tmp_path / "k"
    assert main(["kappa", str(tmp_path / "ar.cif"), "--model", str(short), *FAST, "--converge", "--no-uncertainty",
                 "--symmetrize", "traditional", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "κ vs mesh" in text and "κ vs supercell" in text and "fc3 vanishes" in text   # 2x2x2: no fc3
    mesh = json.loads((out / "convergence-mesh.json").read_text())
    assert [m[0] for m in mesh["settings"]] == [3, 5, 7, 9] and len(mesh["kappa"]) == 4
    supercell = json.loads((out / "convergence-supercell.json").read_text())
    assert [s[0] for s in supercell["settings"]] == [2, 3, 4] and list(supercell["failures"]) == ["2x2x2"]
    kappa = json.loads((out / "kappa.json").read_text())["kappa"][0][0]
    assert supercell["kappa"][1] == pytest.approx(kappa, rel=1e-9)                # the same 3x3x3 calculation
    assert (out / "convergence.png").is_file()


def test_interrupt_says_how_to_resume(argon, tmp_path):
    """Ctrl-C (SIGINT) during the force sets: one line naming the cache and how to resume; exit 130."""
    structure, model = argon
    script = ("import sys, atomflux.lattice.forcesets as f\n"
              "original = f.evaluate\n"
              "def interrupted(*a, **k):\n"
              "    raise KeyboardInterrupt\n"
              "f.evaluate = interrupted\n"
              "from atomflux.cli import main\n"
              f"sys.exit(main(['kappa', {str(structure)!r}, '--model', {str(model)!r}, '--mesh', '5', '5', '5', "
              f"'-o', {str(tmp_path / 'k')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 130
    assert "interrupted" in done.stderr and "run the same command again to resume" in done.stderr
    assert "Traceback" not in done.stderr
