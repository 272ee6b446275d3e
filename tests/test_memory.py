"""Peak memory of a full-uncertainty force call, measured, and its bound at 20 000 atoms.

Each size runs in a fresh process that first evaluates a tiny cell (so libraries
and caches are loaded) and then reports the growth of its peak resident memory
during one ``forces_uncertainty`` request (energy, forces, members' forces and
stress).  The growth is linear in the number of atoms; its extrapolation to
20 000 atoms must stay below the stated bound (before the chunked hand-derived
path, one such call on 19 652 atoms took 18.8 GB).
"""

import json
import subprocess
import sys

import pytest

from atomflux.evaluate import CHUNK_BYTES
from atomflux.memory import evaluation_bytes

BOUND_20K = 2**30  # bytes: 1 GiB for 20 000 Cu atoms with full uncertainty (shallow ensemble, M = 8)

SCRIPT = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from ase.build import bulk
from atomflux.calculators import AtomfluxCalculator
repeat = int(sys.argv[1])
calc = AtomfluxCalculator("demo")
calc.get_property("forces_uncertainty", bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2))
atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (repeat, repeat, repeat)
atoms.rattle(0.05, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
calc.get_property("forces_uncertainty", atoms)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batch = calc._kept[0]
print(json.dumps({"atoms": len(atoms), "pairs": len(batch.pairs), "growth": 1024 * (after - before)}))
"""


def measure(repeat: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(repeat)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux behaviour")
def test_full_uncertainty_memory_is_linear_and_bounded():
    small, large = measure(6), measure(11)          # 864 and 5 324 atoms
    per_atom = (large["growth"] - small["growth"]) / (large["atoms"] - small["atoms"])
    predicted = large["growth"] + per_atom * (20_000 - large["atoms"])
    assert predicted < BOUND_20K, f"{predicted / 2**20:.0f} MiB predicted for 20 000 atoms"
    # the planner's estimate (used for the warning) is an upper bound of what was measured
    pairs_per_atom = large["pairs"] / large["atoms"]
    estimate = evaluation_bytes(large["atoms"], large["pairs"], n_members=8, n_features=64, chunked=True,
                                chunk_bytes=CHUNK_BYTES)
    assert estimate >= large["growth"], (estimate, large)
    assert evaluation_bytes(20_000, int(20_000 * pairs_per_atom), n_members=8, n_features=64, chunked=True,
                            chunk_bytes=CHUNK_BYTES) < BOUND_20K


def test_warning_names_the_request_that_fits(monkeypatch, recwarn):
    """When the available memory is below the estimate, one warning says so and names
    uncertainty='energy' if that fits."""
    import atomflux.memory as memory

    full = evaluation_bytes(50_000, 2_000_000, n_members=16, n_features=64, chunked=False, chunk_bytes=2**27)
    energy = evaluation_bytes(50_000, 2_000_000, n_members=0, n_features=64, chunked=False, chunk_bytes=2**27)
    monkeypatch.setattr(memory, "available_bytes", lambda: (full + energy) // 2)
    with pytest.warns(RuntimeWarning, match=r"uncertainty='energy' .* would fit"):
        memory.check_evaluation(50_000, 2_000_000, n_members=16, n_features=64, chunked=False, chunk_bytes=2**27)
    memory.check_evaluation(50_000, 2_000_000, n_members=0, n_features=64, chunked=False, chunk_bytes=2**27)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_small_evaluations_do_not_read_the_free_memory(monkeypatch):
    """An evaluation estimated under 256 MiB skips /proc/meminfo (~20 µs a call, a few per cent of a small
    MD step); a large one still reads it."""
    import atomflux.memory as memory

    reads = []
    monkeypatch.setattr(memory, "available_bytes", lambda: reads.append(1) or 2**40)
    small = memory.check_evaluation(108, 6_000, n_members=8, n_features=64, chunked=False, chunk_bytes=2**27)
    assert small < memory.UNCHECKED_BYTES and reads == []
    memory.check_evaluation(50_000, 2_000_000, n_members=16, n_features=64, chunked=False, chunk_bytes=2**27)
    assert reads == [1]
