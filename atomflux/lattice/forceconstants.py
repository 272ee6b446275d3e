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

The projector's basis depends only on the supercell and its symmetry, not on
the force constants, so :class:`_Projector` computes it once per phono3py
object and reuses it for every force-constant set (the ensemble members, the
meshes of a scan); the projection itself is the same P = C B Bᵀ Cᵀ that
phonopy applies (``phonopy.interface.symfc.symmetrize_by_projector``).

symfc's projector fails on some very small supercells (an assertion in its
eigen-solver, e.g. fcc 2×2×2; ``phono3py.load`` fails there too): then the
traditional scheme is used and the functions return ``"traditional"``.
"""

from __future__ import annotations

import weakref

import numpy as np

SYMMETRIZE = ("projector", "traditional", None)


def check_symmetrize(symmetrize: str | None) -> None:
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize must be 'projector' (as phono3py.load), 'traditional' (as the phono3py "
                         f"command line) or None, got {symmetrize!r}")


def produce_fc2_fc3(ph3, forces: np.ndarray, phonon_forces: np.ndarray | None, symmetrize: str | None,
                    fc2: np.ndarray | None = None) -> str | None:
    """Set ``ph3.fc3`` and ``ph3.fc2`` from forces [n, N, 3] (and fc2-supercell forces), symmetrised.

    Follows ``phono3py.cui.load.compute_force_constants_from_datasets``: fc3
    (and fc2 when there is no separate phonon supercell) from the fc3
    displacements, fc2 from the phonon supercell otherwise.  A given ``fc2``
    (e.g. renormalised) is used as it is instead.  Returns the scheme applied.
    """
    check_symmetrize(symmetrize)
    ph3.forces = forces
    if phonon_forces is not None:
        ph3.phonon_forces = phonon_forces
    ph3.produce_fc3()
    if ph3.phonon_supercell_matrix is not None and fc2 is None:
        ph3.produce_fc2()
    scheme = _symmetrize_fc3_fc2(ph3, symmetrize, fc2 is None)
    if fc2 is not None:
        ph3.fc2 = fc2
    return scheme


class _Projector:
    """symfc projector of one (super)cell and order: the basis computed once, applied to any fc."""

    def __init__(self, supercell, primitive, symmetry, order: int) -> None:
        from phonopy.interface.symfc import SymfcFCSolver

        solver = SymfcFCSolver(supercell, symmetry=symmetry)
        solver.compute_basis_set(orders=[order])
        self.basis = solver.basis_set[order]
        self.same_primitive = (solver.p2s_map is not None and len(primitive.p2s_map) == len(solver.p2s_map)
                               and bool((primitive.p2s_map == solver.p2s_map).all()))
        self.args = (supercell, primitive, symmetry, order)

    def __call__(self, fc: np.ndarray) -> np.ndarray:
        compact = fc.shape[0] != fc.shape[1]
        if compact and not self.same_primitive:                 # phonopy re-lays the fc out itself
            from phonopy.interface.symfc import symmetrize_by_projector

            supercell, primitive, symmetry, order = self.args
            return symmetrize_by_projector(supercell, fc, order, primitive=primitive, symmetry=symmetry)
        compression = (self.basis.compact_compression_matrix if compact else self.basis.compression_matrix).tocsc()
        coefficients = self.basis.blocked_basis_set.T @ (fc.ravel() @ compression).T
        projected = compression @ (self.basis.blocked_basis_set @ coefficients)
        if compact:
            projected = projected * len(self.basis.translation_permutations)
        return np.asarray(projected).reshape(fc.shape)


_PROJECTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _projected(ph3, which: str, fc: np.ndarray) -> np.ndarray:
    cache = _PROJECTORS.setdefault(ph3, {})
    if which not in cache:
        if which == "fc3":
            cache[which] = _Projector(ph3.supercell, ph3.primitive, ph3.symmetry, 3)
        elif ph3.phonon_supercell_matrix is None:
            cache[which] = _Projector(ph3.supercell, ph3.primitive, ph3.symmetry, 2)
        else:
            cache[which] = _Projector(ph3.phonon_supercell, ph3.phonon_primitive, ph3.phonon_supercell_symmetry, 2)
    return cache[which](fc)


def _symmetrize_fc3_fc2(ph3, symmetrize: str | None, with_fc2: bool) -> str | None:
    if symmetrize is None:
        return None
    raw = (ph3.fc3.copy(), ph3.fc2.copy() if with_fc2 else None)
    try:
        if symmetrize == "projector":
            ph3.fc3 = _projected(ph3, "fc3", ph3.fc3)
            if with_fc2:
                ph3.fc2 = _projected(ph3, "fc2", ph3.fc2)
        else:
            ph3.symmetrize_fc3()
            if with_fc2:
                ph3.symmetrize_fc2()
        return symmetrize
    except AssertionError:                              # symfc on a tiny supercell
        ph3.fc3 = raw[0]
        ph3.symmetrize_fc3()
        if with_fc2:
            ph3.fc2 = raw[1]
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
