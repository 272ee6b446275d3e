"""The process heap during repeated force calls: glibc malloc keeps each step's freed tensors.

Every MD step allocates and frees the same few-MB tensors.  By default glibc
serves blocks of that size with fresh ``mmap`` pages and trims the heap after
large frees, so each step pays 10²–10³ minor page faults, zero-filling the
same pages again (~20 % of a step of the demo model at 864 atoms in LAMMPS).
:func:`keep_freed_memory` changes two glibc settings so the step's working set
stays mapped.

This is **process-wide**: it holds for every library in the process, and
cannot be undone from here (glibc's adaptive threshold stays off).  The cost
is memory held, not returned: freed heap memory is returned to the system
only when more than :data:`TRIM_THRESHOLD_BYTES` of it is free at the top of
the heap (blocks larger than :data:`MMAP_THRESHOLD_BYTES` are still separate
mappings, returned when freed).  It is applied by what makes many force calls
in one process: :class:`~atomflux.calculators.AtomfluxCalculator`, the MD
drivers (:func:`~atomflux.md.run_md`, :func:`~atomflux.md.run_transport_md`,
:func:`~atomflux.md_npt.run_npt_ramp`, the batched replicas of :mod:`atomflux.md_replicas`) and ``pair_style
atomflux``.  Set the environment variable ``ATOMFLUX_KEEP_FREED_MEMORY=0``
in a process whose malloc settings must stay glibc's.
"""

from __future__ import annotations

import ctypes
import functools
import os

#: glibc malloc: blocks up to this size come from the heap instead of fresh ``mmap`` pages (the largest
#: value glibc accepts on 64-bit)
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: glibc malloc: free memory at the top of the heap is returned to the system only above this
TRIM_THRESHOLD_BYTES = 2**30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (malloc.h)
#: environment variable: "0" leaves malloc's settings alone
OPT_OUT = "ATOMFLUX_KEEP_FREED_MEMORY"


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse the memory of the tensors freed after each force call.

    Serves blocks up to :data:`MMAP_THRESHOLD_BYTES` from the heap and trims
    the heap only above :data:`TRIM_THRESHOLD_BYTES` (see the module text for
    what this costs).  Idempotent: the settings are applied once per process.

    Returns
    -------
    bool
        Whether the settings are in force: ``False`` without glibc (nothing
        changes: macOS, musl, Windows) or with ``ATOMFLUX_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get(OPT_OUT, "1").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
