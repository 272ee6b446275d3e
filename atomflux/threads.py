"""How many CPU threads torch uses: one place to set them (``--threads`` of the fitting commands, swap MC).

Training, ensemble and LLPR fitting, distillation rounds and Monte Carlo make
many small torch calls (a few structures, a few thousand pairs).  Such calls
gain little from a second thread on an idle machine, and on a machine whose
cores are busy torch's default (one thread per core) makes them several times
slower than one thread: every parallel region waits for a thread that is
descheduled (7–20× measured on a shared 2-core machine; docs/benchmarks.md,
"Threads for small fitting calls").  So these commands take ``--threads``,
default :data:`FITTING_THREADS`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

#: the default ``--threads`` of ``atomflux train``, ``distill``, ``ensemble``, ``llpr`` and ``hamiltonian train``
FITTING_THREADS = 1


def set_threads(n: int) -> None:
    """Use ``n`` ≥ 1 threads for torch's intra-op work and, where still possible, inter-op work.

    torch fixes its inter-op pool at the first parallel call; after that only the
    intra-op number changes (which is the one small calls feel).
    """
    import torch  # here: the CLI reads FITTING_THREADS for --help without importing torch

    if int(n) != n or n < 1:
        raise ValueError(f"the number of threads must be a whole number ≥ 1, got {n}")
    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # the inter-op pool has already started
        pass


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
