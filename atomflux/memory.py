"""Memory planned, not discovered: the peak of an evaluation, estimated before it runs.

:func:`atomflux.evaluate` calls :func:`check_evaluation` with the batch it is
about to evaluate; when the estimate exceeds the memory the system reports
as available, it warns and names the cheaper request that fits.  The
estimate is an upper bound of what ``tests/test_memory.py`` measures.
"""

from __future__ import annotations

import warnings
from pathlib import Path

#: per pair: the batch (pairs, shifts), pair vectors in the batch and model types, pair gradients
#: and index work of the sums, in numbers of the batch's floating type
PER_PAIR = 24
#: per pair of a potential differentiated by autograd (no hand-derived path): the graph's
#: intermediates per backward pass (energy or one member), in numbers of the model's type
PER_PAIR_AUTOGRAD = 160
#: per atom: positions, forces, energies, features and their sums, virials (numbers)
PER_ATOM = 160
#: per pair of a hand-derived chunk: fixed, and per backward pass (energy, each member) (numbers;
#: measured 1.2 kB per pair for the energy alone and 5 kB with 8 members, float64)
PER_PAIR_CHUNK, PER_PAIR_CHUNK_PER_PASS = 110, 66
#: evaluations estimated below this are not checked against the free memory: reading
#: /proc/meminfo costs ~20 µs, a few per cent of a small cell's MD step or replica call
UNCHECKED_BYTES = 2**28


def available_bytes() -> int | None:
    """Memory the system can give without swapping (``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def evaluation_bytes(n_atoms: int, n_pairs: int, *, n_members: int, n_features: int, chunked: bool,
                     chunk_bytes: int, itemsize: int = 8) -> int:
    """Upper estimate of the extra memory (bytes) of one :func:`~atomflux.evaluate` call.

    Parameters
    ----------
    n_atoms, n_pairs
        Size of the batch.
    n_members
        Members whose forces are computed (0: energy and its uncertainty only).
    n_features
        Per-atom outputs of the model (features, members), numbers per atom.
    chunked
        Whether the potential has a hand-derived path (peak: one chunk of
        ``chunk_bytes``) or is differentiated by autograd over the whole batch.
    """
    per_atom = PER_ATOM + 2 * n_features + 3 * n_members
    total = itemsize * (PER_PAIR * n_pairs + per_atom * n_atoms)
    if chunked:
        whole = itemsize * n_pairs * (PER_PAIR_CHUNK + PER_PAIR_CHUNK_PER_PASS * (1 + n_members))
        return total + min(chunk_bytes, whole)
    return total + itemsize * PER_PAIR_AUTOGRAD * n_pairs * (1 + n_members)


_warned: set[tuple[int, int]] = set()


def check_evaluation(n_atoms: int, n_pairs: int, *, n_members: int, n_features: int, chunked: bool,
                     chunk_bytes: int, itemsize: int = 8) -> int:
    """Estimate an evaluation and warn (``RuntimeWarning``, once per system size and request)
    when it would not fit in the available memory, naming ``uncertainty='energy'`` when that
    would fit; estimates under :data:`UNCHECKED_BYTES` (256 MiB) are not checked.  Returns the
    estimate."""
    need = evaluation_bytes(n_atoms, n_pairs, n_members=n_members, n_features=n_features, chunked=chunked,
                            chunk_bytes=chunk_bytes, itemsize=itemsize)
    if need < UNCHECKED_BYTES:
        return need
    free = available_bytes()
    if free is not None and need > free and (n_atoms, n_members) not in _warned:
        _warned.add((n_atoms, n_members))
        gib = 2**30
        advice = "split the system or use a machine with more memory"
        if n_members:
            cheaper = evaluation_bytes(n_atoms, n_pairs, n_members=0, n_features=n_features, chunked=chunked,
                                       chunk_bytes=chunk_bytes, itemsize=itemsize)
            if cheaper <= free:
                advice = (f"uncertainty='energy' (energy uncertainty only, about {cheaper / gib:.1f} GiB) "
                          "would fit")
        warnings.warn(f"this evaluation of {n_atoms} atoms needs about {need / gib:.1f} GiB but only "
                      f"{free / gib:.1f} GiB are available: {advice}", RuntimeWarning, stacklevel=3)
    return need
