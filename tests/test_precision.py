"""Float32 compute with float64 accumulation against the float64 reference.

The float32 option is acceptable where its deviation from float64 is far
below the model's own error against the reference method (EMT for the demo
models), on held-out structures, and where it conserves energy in NVE as
well as float64 does.
"""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from atomflux import load_model
from atomflux.calculators import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.md import thermalize
from atomflux.reference_data import emt_dataset
from atomflux.systems import Batch
from atomflux.training import read_frames


def deviations(frames):
    """RMS of (float32 − float64) and of (float64 − EMT), energies per atom (eV) and force components (eV/Å)."""
    exact, single = load_model("demo"), load_model("demo", dtype=torch.float32)
    rows = {"e32": [], "e_model": [], "f32": [], "f_model": []}
    for frame in frames:
        batch = Batch.from_atoms(frame.atoms, 4.5)
        a, b = evaluate(exact, batch), evaluate(single, batch)
        n = len(frame.atoms)
        rows["e32"].append(float(b.energy - a.energy) / n)
        rows["e_model"].append((float(a.energy) - frame.energy) / n)
        rows["f32"].append((b.forces - a.forces).numpy().ravel())
        rows["f_model"].append(a.forces.numpy().ravel() - frame.forces.ravel())
    return {k: float(np.sqrt(np.mean(np.hstack(v) ** 2))) for k, v in rows.items()}


def test_float32_deviation_is_far_below_model_error():
    """On 20 held-out EMT structures of the demo elements: float32 − float64 < 1 % of the model's error."""
    rms = deviations(read_frames(emt_dataset(n_trajectories=10, snapshots=2, seed=202)))
    assert rms["e32"] < 0.01 * rms["e_model"], rms
    assert rms["f32"] < 0.01 * rms["f_model"], rms


def nve_drift(dtype: str, steps: int) -> float:
    """Energy drift (eV/atom, max − min of the total energy) of NVE for a 256-atom Cu/Au alloy at 600 K."""
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (4, 4, 4)
    atoms.symbols[::4] = "Au"
    atoms.calc = AtomfluxCalculator("demo", uncertainty=False, dtype=dtype)
    thermalize(atoms, 600, np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 2 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    dyn.run(steps)
    return (max(energies) - min(energies)) / len(atoms)


@pytest.mark.slow
def test_float32_nve_conserves_energy_like_float64():
    """10 ps (5 000 steps of 2 fs) of NVE: float32 compute drifts no more than 1.5 × float64 + 2e-5 eV/atom."""
    drift64, drift32 = nve_drift("float64", 5000), nve_drift("float32", 5000)
    print(f"NVE drift over 10 ps, 256 atoms, 600 K: float64 {drift64:.2e} eV/atom, float32 {drift32:.2e} eV/atom")
    assert drift32 < 1.5 * drift64 + 2e-5
