"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"


def replace_docs_section(name: str, text: str) -> None:
    """Put ``text`` between the markers ``<!-- name:begin -->`` and ``<!-- name:end -->`` of
    docs/benchmarks.md (the file is left alone when it lacks them)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    docs = DOCS.read_text()
    if begin in docs and end in docs:
        head, rest = docs.split(begin, 1)
        DOCS.write_text(head + begin + "\n" + text + end + rest.split(end, 1)[1])


def timed(fn: Callable[[], object], min_seconds: float = 2.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """Mean time (s) of ``fn()`` after one warm-up call, over ≥ 3 calls and ≥ ``min_seconds``.

    ``clock``: wall clock by default; ``time.process_time`` (CPU time of this process) is
    the steadier measure of single-threaded work on a shared machine.
    """
    fn()
    count, start = 0, clock()
    while count < 3 or clock() - start < min_seconds:
        fn()
        count += 1
    return (clock() - start) / count


@contextlib.contextmanager
def source_tree(ref: str | None) -> Iterator[Path | None]:
    """A temporary detached checkout of git ``ref`` to import atomflux from (``None``: this tree).

    Lets a benchmark measure the code of an earlier commit ("before") in the same run as
    the current code ("after"), on the same machine and load.
    """
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="atomflux-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


def run_worker(script: Path, args: list[str], tree: Path | None = None, timeout: float = 3600) -> dict:
    """Run ``script --worker ARGS`` in a fresh process importing atomflux from ``tree``; its last
    output line is a JSON object, returned."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree)] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, str(script), "--worker", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_average() -> float:
    """1-minute load average (machine load while measuring)."""
    return os.getloadavg()[0]


def demo_replicas(atoms, n_replicas: int):
    """The demo model as ``md --transport`` runs it (float32, no uncertainty, heat flux) and the momenta
    [R, N, 3] of R replicas of ``atoms`` thermalised at 300 K (replica r with seed r)."""
    import numpy as np

    from atomflux.calculators import AtomfluxCalculator
    from atomflux.md import thermalize

    calc = AtomfluxCalculator("demo", uncertainty=False, dtype="float32", track_heat_flux=True)
    momenta = []
    for r in range(n_replicas):
        copy = atoms.copy()
        thermalize(copy, 300.0, np.random.default_rng(r))
        momenta.append(copy.get_momenta())
    return calc, np.array(momenta)
