"""Memory budget of batched force evaluations: chunk sizes from measured peak memory, never a fixed atom count.

A batched :func:`~atomflux.evaluate` call keeps the autograd graph of every
structure in the chunk (and, with uncertainty, one backward pass per
ensemble member or LLPR sample), so its peak memory grows linearly with the
number of atoms in the chunk, at a rate that depends on the model and on the
number of members.  :class:`ChunkPlanner` measures that rate on the work
itself: the first chunk is one structure, the peak memory of each chunk is
measured (the process's peak resident set size on Linux, reset before each
chunk; ``torch.cuda.max_memory_allocated`` on a GPU), and the next chunk is
as large as the budget allows at the largest rate seen so far.

The budget (bytes) is, in order of precedence: the ``memory_budget``
argument, the environment variable ``ATOMFLUX_MEMORY_BUDGET``, or
:data:`DEFAULT_FRACTION` of the memory available when the work starts.
Both accept a number of bytes, a size such as ``"4GB"`` or ``"500MiB"``, or a
fraction of the available memory such as ``"0.25"``.
"""

from __future__ import annotations

import ctypes
import os
import re
import warnings
from typing import Callable

from ..memory import available_bytes

#: fraction of the available memory used by default
DEFAULT_FRACTION = 0.5
#: environment variable that sets the budget for every run
BUDGET_VARIABLE = "ATOMFLUX_MEMORY_BUDGET"
#: bytes per atom assumed where peak memory cannot be measured (not Linux, not CUDA): the largest
#: rate measured on the shipped models with uncertainty (≈ 1.9 MB/atom), doubled
FALLBACK_BYTES_PER_ATOM = 4.0e6
#: margin on the measured rate
SAFETY = 1.1
#: smallest rate used for planning (a probe too small to register in the resident set size)
MIN_BYTES_PER_ATOM = 1.0e3
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class MemoryBudgetWarning(UserWarning):
    """A single structure needs more memory than the budget allows."""


def available_memory() -> int:
    """Memory available to new allocations (bytes): ``MemAvailable`` on Linux, free physical pages elsewhere."""
    available = available_bytes()
    if available is not None:
        return available
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def parse_budget(value: str | float | int) -> int:
    """Bytes from ``4e9``, ``"4GB"``, ``"500MiB"`` or a fraction of the available memory (``"0.25"``, ``0.25``)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"memory budget {value!r} not understood: give bytes, a size such as '4GB' or "
                             "'500MiB', or a fraction of the available memory such as '0.25'")
        number, unit = float(match.group(1)), match.group(2).lower()
        value = number * _UNITS[unit] if unit else number
    value = float(value)
    if not value > 0:
        raise ValueError(f"memory budget must be positive, got {value}")
    if value <= 1.0:
        return int(value * available_memory())
    return int(value)


def memory_budget(budget: str | float | int | None = None) -> int:
    """The budget in bytes: ``budget``, else ``$ATOMFLUX_MEMORY_BUDGET``, else half the available memory."""
    if budget is None:
        budget = os.environ.get(BUDGET_VARIABLE) or DEFAULT_FRACTION
    return parse_budget(budget)


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so the next peak is measured from a low baseline."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak(fn: Callable[[], object], device: str = "cpu") -> tuple[object, int | None]:
    """Run ``fn()``; return its result and the peak memory it added (bytes), or None where not measurable.

    CPU (Linux): the process's peak resident set size is reset
    (``/proc/self/clear_refs``) and read back (``VmHWM`` minus the resident
    size before the call).  CUDA: ``torch.cuda.max_memory_allocated``.
    """
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        return result, int(torch.cuda.max_memory_allocated(device) - before)
    _release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return fn(), None
    before = _status_bytes("VmRSS:")
    result = fn()
    peak = _status_bytes("VmHWM:")
    if before is None or peak is None:
        return result, None
    return result, max(0, peak - before)


class ChunkPlanner:
    """How many structures of ``atoms_per_structure`` atoms fit in one batched call under ``budget`` bytes.

    Call :meth:`next_size` before each chunk and :meth:`record` with the
    measured peak after it.  The first chunk is a single structure (the
    probe); afterwards the rate (bytes per atom) is the one measured on the
    largest chunk so far (the first, smallest chunk also carries one-off
    allocations and overestimates it), times :data:`SAFETY`.
    """

    def __init__(self, atoms_per_structure: int, budget: int, label: str = "structure") -> None:
        self.atoms_per_structure = int(atoms_per_structure)
        self.budget = int(budget)
        self.label = label
        self.measured: list[tuple[int, int]] = []          # (atoms in the chunk, peak bytes)
        self._warned = False
        self._unmeasurable = False

    @property
    def bytes_per_atom(self) -> float | None:
        """Planning rate (bytes per atom), None before the first chunk."""
        if not self.measured:
            return None if not self._unmeasurable else FALLBACK_BYTES_PER_ATOM
        atoms, peak = max(self.measured)
        return SAFETY * max(peak / atoms, MIN_BYTES_PER_ATOM)

    def next_size(self, remaining: int) -> int:
        """Structures in the next chunk (≥ 1, ≤ ``remaining``)."""
        if self.bytes_per_atom is None:
            return 1
        per_structure = self.bytes_per_atom * self.atoms_per_structure
        size = int(self.budget // per_structure)
        if size < 1 and not self._warned:
            self._warned = True
            warnings.warn(f"one {self.label} of {self.atoms_per_structure} atoms needs about "
                          f"{per_structure / 1e9:.2f} GB, more than the memory budget of {self.budget / 1e9:.2f} GB; "
                          f"continuing one at a time. Raise the budget (memory_budget=..., --memory-budget or "
                          f"${BUDGET_VARIABLE}) if the machine has the memory, or ask for less (no uncertainty, "
                          "fewer ensemble members, a smaller supercell)", MemoryBudgetWarning, stacklevel=3)
        return max(1, min(remaining, size))

    def record(self, n_structures: int, peak: int | None) -> None:
        """Peak bytes measured for a chunk of ``n_structures`` (None: not measurable here)."""
        if peak is None:
            self._unmeasurable = True
        else:
            self.measured.append((n_structures * self.atoms_per_structure, int(peak)))
