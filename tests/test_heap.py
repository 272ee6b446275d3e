"""The MD drivers keep each step's freed tensor memory mapped (atomflux.heap): page faults per step.

malloc settings are process-wide and cannot be undone, so each measurement runs in a
fresh Python process: the one with ``ATOMFLUX_KEEP_FREED_MEMORY=0`` shows the measure
fails without the settings, the other that ``run_md`` applies them.
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
    env = dict(os.environ, ATOMFLUX_KEEP_FREED_MEMORY="1" if keep else "0")
    out = subprocess.run([sys.executable, "-c", MEASURE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ase_md_steps_reuse_freed_tensor_memory():
    """Measured at 864 atoms: ~2 400 page faults per step with glibc's defaults, ~60 with the settings."""
    pytest.importorskip("resource")
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt on this platform (or ATOMFLUX_KEEP_FREED_MEMORY=0)")
    default, kept = _faults_per_step(keep=False), _faults_per_step(keep=True)
    assert default > 800, f"{default:.0f} faults per step with glibc's defaults: the measure no longer sees the effect"
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
