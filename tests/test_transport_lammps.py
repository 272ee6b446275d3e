"""LAMMPS ``compute heat/flux`` output read by atomflux equals atomflux's own heat flux on the same trajectory.

LAMMPS runs NVE with its native ``lj/cut`` (shifted), writing heat/flux every
step with ``fix ave/time`` and ``fix print`` and dumping positions and
velocities; atomflux reads the files (unit conversion included) and
``evaluate(..., velocities=, masses=)`` with its own ``LennardJones`` gives
the flux of every dumped frame.  Checked in ``units metal`` and ``units real``.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import write

from atomflux.analysis.flux_io import LAMMPS_UNITS, read_flux, read_lammps_flux
from atomflux.evaluate import evaluate
from atomflux.models import LennardJones
from atomflux.systems import Batch

lammps_bridge = pytest.importorskip("atomflux.lammps_bridge")
try:  # native lj/cut only: the atomflux plugin (and a compiler) is not needed
    lammps_bridge.session.lammps_module()
except ImportError as error:  # pragma: no cover - depends on the machine
    pytest.skip(f"LAMMPS python module unavailable here: {error}", allow_module_level=True)

SIGMA, EPSILON_EV, CUTOFF = 3.405, 0.0103, 8.5
STEPS = 12


def run_lammps(folder, units):
    """NVE LJ argon in LAMMPS; returns (atoms, timestep in LAMMPS units)."""
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True) * (3, 3, 3)
    atoms.rattle(0.05, seed=3)
    write(folder / "ar.data", atoms, format="lammps-data", masses=True)
    energy = EPSILON_EV if units == "metal" else EPSILON_EV / LAMMPS_UNITS["real"][0]  # eV or kcal/mol
    timestep = 0.004 if units == "metal" else 4.0  # 4 fs
    lmp = lammps_bridge.session.lammps_module().lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_string(f"""
        units {units}
        atom_style atomic
        atom_modify map array
        read_data {folder / 'ar.data'}
        pair_style lj/cut {CUTOFF}
        pair_coeff * * {energy} {SIGMA}
        pair_modify shift yes
        timestep {timestep}
        velocity all create 60 7 mom yes dist gaussian
        fix integrate all nve
        compute ke all ke/atom
        compute pe all pe/atom
        compute st all centroid/stress/atom NULL virial
        compute flux all heat/flux ke pe st
        fix averaged all ave/time 1 1 1 c_flux[1] c_flux[2] c_flux[3] c_flux[4] c_flux[5] c_flux[6] file {folder / 'flux.dat'} format ' %.15g'
        variable jx equal c_flux[1]
        variable jy equal c_flux[2]
        variable jz equal c_flux[3]
        fix printed all print 1 "$(step) ${{jx}} ${{jy}} ${{jz}} $(temp) $(vol)" file {folder / 'print.dat'} screen no title "# step Jx Jy Jz temp vol"
        dump frames all custom 1 {folder / 'frames.dump'} id x y z vx vy vz
        dump_modify frames sort id format float %.17g
        run {STEPS}
    """)
    lmp.close()
    return atoms, timestep


def read_dump(path, n_atoms):
    """Positions [F, N, 3] and velocities [F, N, 3] (LAMMPS units) of every dumped frame, with the step numbers."""
    lines = path.read_text().splitlines()
    steps, frames, k = [], [], 0
    while k < len(lines):
        steps.append(int(lines[k + 1]))
        start = k + 9
        frames.append(np.array([line.split()[1:] for line in lines[start:start + n_atoms]], dtype=float))
        k = start + n_atoms
    frames = np.array(frames)
    return np.array(steps), frames[..., :3], frames[..., 3:]


@pytest.mark.parametrize("units", ["metal", "real"])
def test_lammps_heat_flux_import_equals_atomflux_flux(tmp_path, units):
    atoms, timestep = run_lammps(tmp_path, units)
    model = LennardJones(sigma=SIGMA, epsilon=EPSILON_EV, cutoff=CUTOFF, cutoff_mode="shifted")
    steps, positions, velocities = read_dump(tmp_path / "frames.dump", len(atoms))
    velocity_to_angstrom_per_fs = 1e-3 if units == "metal" else 1.0
    expected = []
    for r, v in zip(positions, velocities):
        frame = Atoms(atoms.numbers, positions=r, cell=atoms.cell, pbc=True)
        result = evaluate(model, Batch.from_atoms(frame, model.cutoff),
                          velocities=torch.tensor(v * velocity_to_angstrom_per_fs),
                          masses=torch.tensor(atoms.get_masses()))
        expected.append(result.heat_flux[0].numpy())
    expected = np.array(expected)                                                     # eV·Å/fs, [F, 3]

    averaged = read_lammps_flux(tmp_path / "flux.dat", units=units, timestep=timestep,
                                volume=atoms.get_volume(), temperature=60.0)
    printed = read_flux(tmp_path / "print.dat", units=units, timestep=timestep, columns=["step", "Jx", "Jy", "Jz"])
    assert averaged.dt == pytest.approx(4.0) and printed.dt == pytest.approx(4.0)     # fs, whatever the units
    assert printed.volume == pytest.approx(atoms.get_volume(), rel=1e-12)            # read from the vol column
    assert 30 < printed.temperature < 90                                              # read from the temp column
    n = min(len(expected), averaged.n_steps)
    scale = np.abs(expected).max()
    # the same steps: fix ave/time writes from step 0, the dump too; 1e-7: LAMMPS's 8-digit mvv2e in the
    # convective part (metal units) and the 15 digits written
    assert n >= STEPS
    np.testing.assert_allclose(averaged.heat_flux[:n], expected[:n], rtol=0, atol=1e-7 * scale)
    offset = len(expected) - printed.n_steps                                         # fix print starts after step 0
    np.testing.assert_allclose(printed.heat_flux, expected[offset:], rtol=0, atol=1e-7 * scale)
    # the potential (virial) term matters: the convective part alone is far off
    convective = np.loadtxt(tmp_path / "flux.dat")[:n, 4:7] * LAMMPS_UNITS[units][0]
    assert np.abs(convective - expected[:n]).max() > 0.05 * scale


def test_lammps_flux_needs_its_units_and_timestep(tmp_path):
    (tmp_path / "f.dat").write_text("# Time-averaged data for fix J\n# TimeStep c_flux[1] c_flux[2] c_flux[3]\n"
                                    + "".join(f"{k} {np.sin(k)} {np.cos(k)} {k % 3}\n" for k in range(0, 40, 2)))
    with pytest.raises(ValueError, match="timestep"):
        read_lammps_flux(tmp_path / "f.dat", volume=1000.0, temperature=300.0)
    with pytest.raises(ValueError, match="units 'lj'"):
        read_lammps_flux(tmp_path / "f.dat", units="lj", timestep=0.001, volume=1000.0, temperature=300.0)
    with pytest.raises(ValueError, match="volume"):
        read_lammps_flux(tmp_path / "f.dat", timestep=0.001, temperature=300.0)
    run = read_lammps_flux(tmp_path / "f.dat", timestep=0.001, volume=1000.0, temperature=300.0, per_volume=True)
    assert run.dt == pytest.approx(2.0)                                              # 2 steps × 1 fs
    np.testing.assert_allclose(run.heat_flux[1], [np.sin(2) * 1e-3 * 1000.0, np.cos(2), 2.0])
