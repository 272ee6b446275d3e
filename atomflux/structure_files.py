"""Reading structure files with one clear error per problem.

``ase.io.read`` reports a missing, empty, unrecognised or malformed file in
many ways (``UnknownFileTypeError``, a bare ``StopIteration`` for a broken
CIF, ``XYZError``, ``KeyError``, ...).  :func:`read_structures` turns each into
a ``ValueError`` (or ``FileNotFoundError``) that names the file and what to
do, and refuses files that hold no atoms.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms


def read_structures(path: str | Path, index: str | int = ":", format: str | None = None) -> list[Atoms]:
    """Structures from any ASE-readable file.

    Parameters
    ----------
    path
        File to read (``name@index`` selections as in ASE are accepted).
    index
        ASE index: ``":"`` for all frames, ``-1`` for the last one.
    format
        ASE format name; default: guessed from the name and content.

    Returns
    -------
    list of Atoms (one element when ``index`` is an integer).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A folder, an empty file, a format ASE does not know, a file it cannot
        parse, or structures without atoms.
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    path = Path(path)
    name, _, selection = str(path).partition("@")
    file = Path(name)
    if not file.exists():
        raise FileNotFoundError(f"no structure file {name!r}")
    if file.is_dir() and not (file / "metadata.json").is_file():  # ASE's BundleTrajectory is a folder
        raise ValueError(f"{name} is a folder; give a structure file (cif, extxyz, POSCAR, traj ...)")
    if file.is_file() and file.stat().st_size == 0:
        raise ValueError(f"{name} is empty; give a structure file (cif, extxyz, POSCAR, traj ...)")
    try:
        result = ase.io.read(str(path), index=index if not selection else None, format=format)
    except UnknownFileTypeError as err:
        raise ValueError(f"cannot tell the format of {name} ({err}); use a standard extension "
                         "(.cif, .extxyz, .xyz, .traj, POSCAR, .vasp, .pdb ...)") from None
    except StopIteration:
        raise ValueError(f"no complete structure in {name}: the file is malformed or truncated") from None
    except (PermissionError, IsADirectoryError) as err:
        raise ValueError(f"cannot read {name}: {err.strerror}") from None
    except Exception as err:  # ASE parsers raise many types for a malformed file
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {name} as a structure ({type(err).__name__}: {detail}); "
                         "check that the file is complete and in the format its name says") from None
    structures = result if isinstance(result, list) else [result]
    if not structures:
        raise ValueError(f"no structures in {name} (index {index!r} selects none)")
    for k, atoms in enumerate(structures):
        if len(atoms) == 0:
            where = f"structure {k} of {name}" if len(structures) > 1 else name
            raise ValueError(f"{where} has no atoms")
    return structures


def read_structure(path: str | Path, format: str | None = None) -> Atoms:
    """One structure (the last one of a trajectory); see :func:`read_structures` for the errors."""
    return read_structures(path, index=-1, format=format)[0]
