"""The MD drivers keep each step's freed tensor memory mapped (atomflux.heap): page faults per step.

malloc settings are process-wide and cannot be undone, so each measurement runs in a
fresh Python process: the one with ``ATOMFLUX_KEEP_FREED_MEMORY=0`` shows the measure
fails without the settings, the other that ``run_md`` applies them.  Without them, glibc's
adaptive mmap threshold makes the count vary from run to run (100–2 400 per step at 864
atoms), so both start from glibc's static thresholds (``MALLOC_*_THRESHOLD_``).
"""

import json
import os
import subprocess
import sys

import pytest

from atomflux.heap import keep_freed_memory

#: ASE MD of 864 fcc Cu atoms (demo model, float32, NVE): minor page faults per step after 5 warm-up steps
MEASURE = """
import json, resource, torch
from ase.build import bulk
from atomflux.calculators import AtomfluxCalculator
from atomflux.md import run_md

torch.set_num_threads(1)
atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (6, 6, 6)
faults = []
run_md(atoms, AtomfluxCalculator("demo", dtype="float32"), steps=25, ensemble="nve", interval=1, progress=False,
       observers=(lambda: faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt),))
print(json.dumps((faults[-1] - faults[5]) / (len(faults) - 6)))
"""


def _faults_per_step(keep: bool) -> float:
    # glibc's static defaults (its adaptive threshold makes the count without the settings vary 100–2 400)
    env = dict(os.environ, ATOMFLUX_KEEP_FREED_MEMORY="1" if keep else "0", MALLOC_MMAP_THRESHOLD_="131072",
               MALLOC_TRIM_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", MEASURE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ase_md_steps_reuse_freed_tensor_memory():
    """864 atoms, both processes started with glibc's static thresholds (128 kB): ~17 000 page faults per
    step without the settings, 10–60 with them (run_md applies them over the environment's)."""
    pytest.importorskip("resource")
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt on this platform (or ATOMFLUX_KEEP_FREED_MEMORY=0)")
    default, kept = _faults_per_step(keep=False), _faults_per_step(keep=True)
    assert default > 5000, f"{default:.0f} faults per step without the settings: the measure no longer sees the effect"
    assert kept < 300, f"{kept:.0f} page faults per MD step of 864 atoms: freed tensor memory is not reused"


def test_keep_freed_memory_is_idempotent_and_can_be_declined(monkeypatch):
    applied = keep_freed_memory()
    assert keep_freed_memory() is applied                    # once per process: the same answer, nothing redone
    keep_freed_memory.cache_clear()
    monkeypatch.setenv("ATOMFLUX_KEEP_FREED_MEMORY", "0")
    try:
        assert keep_freed_memory() is False                 # declined: malloc is not touched
    finally:
        keep_freed_memory.cache_clear()
