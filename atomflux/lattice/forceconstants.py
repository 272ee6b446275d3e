"""fc2 and fc3 from finite-displacement forces, symmetrised with phonopy's / phono3py's own routines.

phono3py 4.x ``Phono3py.produce_fc3`` and phonopy's ``produce_force_constants``
no longer symmetrise.  What their loaders apply (read from the installed
sources, phono3py/phonopy 4.10):

- ``phono3py.load`` and ``phonopy.load`` (Python API, defaults): the
  finite-difference solver, then ``symmetrize_fc3(use_symfc_projector=True)``
  and ``symmetrize_fc2(use_symfc_projector=True)`` — the symfc projector,
  which projects the force constants onto the space allowed by the space
  group, index permutation and the translational (acoustic) sum rules in
  one step.  This is atomflux's default, ``symmetrize="projector"``.
- the ``phono3py`` command line (default, ``--sym-fc``): the traditional
  scheme, translational and permutation symmetrisation applied alternately
  three times (``symmetrize="traditional"``).

``symmetrize=None`` keeps the raw finite-difference force constants.

symfc's projector fails on some very small supercells (an assertion in its
eigen-solver, e.g. fcc 2×2×2; ``phono3py.load`` fails there too): then the
traditional scheme is used and the functions return ``"traditional"``.
"""

from __future__ import annotations

import numpy as np

SYMMETRIZE = ("projector", "traditional", None)


def check_symmetrize(symmetrize: str | None) -> None:
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize must be 'projector' (as phono3py.load), 'traditional' (as the phono3py "
                         f"command line) or None, got {symmetrize!r}")


def produce_fc2_fc3(ph3, forces: np.ndarray, phonon_forces: np.ndarray | None, symmetrize: str | None) -> str | None:
    """Set ``ph3.fc3`` and ``ph3.fc2`` from forces [n, N, 3] (and fc2-supercell forces), symmetrised.

    Follows ``phono3py.cui.load.compute_force_constants_from_datasets``: fc3
    (and fc2 when there is no separate phonon supercell) from the fc3
    displacements, fc2 from the phonon supercell otherwise.  Returns the
    scheme applied.
    """
    check_symmetrize(symmetrize)
    ph3.forces = forces
    if phonon_forces is not None:
        ph3.phonon_forces = phonon_forces
    ph3.produce_fc3()
    if ph3.phonon_supercell_matrix is not None:
        ph3.produce_fc2()
    if symmetrize is None:
        return None
    raw = (ph3.fc3.copy(), ph3.fc2.copy())
    try:
        ph3.symmetrize_fc3(use_symfc_projector=symmetrize == "projector")
        ph3.symmetrize_fc2(use_symfc_projector=symmetrize == "projector")
        return symmetrize
    except AssertionError:                              # symfc on a tiny supercell
        ph3.fc3, ph3.fc2 = raw
        ph3.symmetrize_fc3()
        ph3.symmetrize_fc2()
        return "traditional"


def produce_fc2(phonon, forces: np.ndarray, symmetrize: str | None) -> str | None:
    """Set ``phonon.force_constants`` (a phonopy ``Phonopy``) from forces [n, N, 3], symmetrised as ``phonopy.load``."""
    check_symmetrize(symmetrize)
    phonon.forces = forces
    phonon.produce_force_constants()
    if symmetrize is None:
        return None
    raw = phonon.force_constants.copy()
    try:
        phonon.symmetrize_force_constants(use_symfc_projector=symmetrize == "projector")
        return symmetrize
    except AssertionError:                              # symfc on a tiny supercell
        phonon.force_constants = raw
        phonon.symmetrize_force_constants()
        return "traditional"
