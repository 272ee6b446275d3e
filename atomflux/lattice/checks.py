"""Checks that keep lattice results from being silently wrong.

- :func:`validate_settings`: one clear line for non-positive supercells,
  meshes, displacements, temperatures (before phono3py sees them: a negative
  mesh panics inside its Rust grid code).
- :func:`phonopy_errors`: phono3py/phonopy input errors ("Grid symmetry is
  broken", "Cell trimming failed" ...) become one-line ``ValueError``\\ s.
- :func:`cutoff_crossings`: neighbour shells within reach of the model's
  cutoff.  Displacing an atom by d moves its pair distances by up to d, and
  fc3 displaces two atoms (up to 2d); where the forces (or their first
  derivatives) jump at the cutoff, such pairs corrupt the finite
  differences — for LJ argon at a = 5.3797 Å (a shell 0.006 Å outside
  r_c = 8.5 Å) κ drops ~4× at the default 0.03 Å.
- :func:`imaginary_modes`: imaginary frequencies on the q mesh (an
  unrelaxed structure, or corrupted fc2).
- :func:`check_kappa`: κ whose diagonal is zero, negative or NaN is refused;
  :func:`check_fc3`: so is an fc3 that vanishes (κ infinite).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from ase import Atoms

#: largest displacement accepted (Å): finite differences need small steps
MAX_DISPLACEMENT = 0.2
#: smallest displacement :func:`adapted_displacement` goes down to, per floating-point precision (Å)
MIN_ADAPTED_DISPLACEMENT = {"float64": 1e-3, "float32": 1e-2}


class CutoffCrossingWarning(UserWarning):
    """Displaced pairs cross a cutoff where the model's forces are not smooth."""


class LatticeWarning(UserWarning):
    """A lattice result that needs attention (imaginary modes, displacement sensitivity, member disagreement)."""


def supercell_matrix(spec, name: str = "supercell") -> np.ndarray:
    """3 positive integers (diagonal) or a 3×3 integer matrix with positive determinant."""
    array = np.asarray(spec)
    if array.shape not in ((3,), (3, 3)) or not np.all(np.equal(np.mod(array, 1), 0)):
        raise ValueError(f"{name} must be 3 integers or a 3x3 integer matrix, got {np.asarray(spec).tolist()}")
    array = array.astype(int)
    if array.shape == (3,):
        if (array <= 0).any():
            raise ValueError(f"{name} entries must be positive integers, got {array.tolist()}")
        return np.diag(array)
    if round(np.linalg.det(array)) <= 0:
        raise ValueError(f"{name} matrix must have a positive determinant, got {array.tolist()}")
    return array


def validate_mesh(mesh) -> list[int]:
    array = np.asarray(mesh)
    if array.shape != (3,) or not np.all(np.equal(np.mod(array, 1), 0)) or (array <= 0).any():
        raise ValueError(f"mesh must be 3 positive integers (q points along each reciprocal axis), got "
                         f"{np.asarray(mesh).tolist()}")
    return [int(m) for m in array]


def validate_settings(*, supercell=None, mesh=None, displacement: float | None = None,
                      temperatures: Sequence[float] | None = None, cutoff_pair_distance: float | None = None,
                      phonon_supercell=None) -> None:
    """Raise a one-line ``ValueError`` for physically impossible settings."""
    if supercell is not None:
        supercell_matrix(supercell)
    if phonon_supercell is not None:
        supercell_matrix(phonon_supercell, "phonon supercell")
    if mesh is not None:
        validate_mesh(mesh)
    if displacement is not None and not 0 < displacement <= MAX_DISPLACEMENT:
        raise ValueError(f"displacement must be positive and at most {MAX_DISPLACEMENT} Å (finite differences; "
                         f"0.01-0.03 Å is usual), got {displacement}")
    if temperatures is not None:
        temps = np.atleast_1d(np.asarray(temperatures, dtype=float))
        if temps.size == 0 or not np.all(np.isfinite(temps)) or (temps <= 0).any():
            raise ValueError(f"temperatures must be positive (K), got {temps.tolist()}")
    if cutoff_pair_distance is not None and not cutoff_pair_distance > 0:
        raise ValueError(f"pair cutoff must be positive (Å), got {cutoff_pair_distance}")


@contextlib.contextmanager
def phonopy_errors(what: str) -> Iterator[None]:
    """Turn phonopy/phono3py input errors raised while doing ``what`` into one-line ``ValueError``\\ s."""
    try:
        yield
    except np.linalg.LinAlgError as err:
        raise ValueError(f"phonopy could not {what}: singular matrix ({err}); check the cell and the supercell "
                         "matrix") from err
    except RuntimeError as err:
        text = str(err)
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        if "Grid symmetry is broken" in text:
            raise ValueError(f"the q mesh breaks the crystal's symmetry ({first.rstrip('.')}); use a mesh with "
                             "the lattice's symmetry, e.g. equal numbers along equivalent axes (11 11 11 for "
                             "a cubic cell)") from err
        if "trimming failed" in text or "primitive" in text.lower():
            raise ValueError(f"phonopy could not {what}: {first} (check the primitive matrix, the supercell "
                             "matrix and for overlapping atoms)") from err
        raise


# ---- cutoff crossings -------------------------------------------------------------------------------


@dataclass
class CutoffShell:
    """A neighbour shell near the cutoff: ``distance`` (Å), ``count`` neighbours per cell, ``gap`` = distance − cutoff."""

    distance: float
    count: int
    gap: float


def model_cutoff(calculator) -> tuple[float | None, int | None, str]:
    """The calculator's interaction cutoff (Å), its smoothness there, and a description.

    Smoothness = the number of derivatives of the energy that are continuous
    at the cutoff: 0 (energy shifted: forces jump), 1 (forces continuous,
    force constants jump), 2 ... ; None when unknown.  A potential can
    declare it as ``cutoff_smoothness``.  Returns ``(None, None, ...)`` for
    calculators whose cutoff is unknown.
    """
    potential = getattr(calculator, "potential", None)
    if potential is not None:
        return getattr(potential, "cutoff", None), _potential_smoothness(potential), type(potential).__name__
    from ase.calculators.lj import LennardJones as AseLennardJones

    if isinstance(calculator, AseLennardJones):
        rc = calculator.parameters.get("rc") or 3.0 * calculator.parameters.get("sigma", 1.0)
        smooth = bool(calculator.parameters.get("smooth", False))
        return float(rc), 1 if smooth else 0, "ASE LennardJones"
    return None, None, type(calculator).__name__


def _potential_smoothness(potential) -> int | None:
    declared = getattr(potential, "cutoff_smoothness", None)
    if declared is not None:
        return int(declared)
    from ..models.analytic import PairPotential
    from ..models.power_spectrum import PowerSpectrumPotential

    if isinstance(potential, PairPotential):
        return 0 if potential.cutoff_mode == "shifted" else 1        # shifted: forces jump; switch_r2 is C¹
    if isinstance(potential, PowerSpectrumPotential):
        return 2                                                     # polynomial_cutoff is C²
    base = getattr(potential, "base", None)                          # LLPR and other wrappers
    return _potential_smoothness(base) if base is not None else None


def shells_near(atoms: Atoms, cutoff: float, window: float) -> list[CutoffShell]:
    """Neighbour shells whose distance lies within ``cutoff ± window`` (Å) in the periodic crystal."""
    from ase.neighborlist import neighbor_list

    distances = neighbor_list("d", atoms, cutoff + window)
    near = np.sort(distances[np.abs(distances - cutoff) <= window])
    shells: list[CutoffShell] = []
    for d in near:
        if shells and abs(d - shells[-1].distance) < 1e-4:
            shells[-1].count += 1
        else:
            shells.append(CutoffShell(float(d), 1, float(d - cutoff)))
    return shells


def cutoff_crossings(atoms: Atoms, calculator, displacement: float, pairs: bool = True) -> tuple[list[CutoffShell], str | None]:
    """Shells that displacements can move across a non-smooth cutoff, and a warning text (None if safe).

    ``pairs``: fc3 sets displace two atoms at once (reach 2d); fc2 sets one (reach d).
    """
    cutoff, smoothness, name = model_cutoff(calculator)
    if cutoff is None or (smoothness is not None and smoothness >= 2):
        return [], None
    reach = (2 if pairs else 1) * displacement
    shells = shells_near(atoms, cutoff, reach)
    if not shells:
        return [], None
    closest = min(shells, key=lambda s: abs(s.gap))
    kind = {0: "its forces jump there (shifted cutoff)", 1: "its force constants jump there (C¹ switch)",
            None: "if its forces or their derivatives are not smooth there"}[smoothness]
    safe = 0.9 * abs(closest.gap) / (2 if pairs else 1)
    text = (f"a neighbour shell at {closest.distance:.4f} Å lies {abs(closest.gap):.4f} Å "
            f"{'outside' if closest.gap >= 0 else 'inside'} the cutoff {cutoff:g} Å of {name}, within the "
            f"±{reach:.3g} Å by which displacements of {displacement:g} Å move pairs, and {kind}: the force "
            f"constants and κ can be badly wrong. Use a displacement below {safe:.2g} Å "
            "(on_cutoff_crossing='adapt', CLI --on-cutoff-crossing adapt), a smooth cutoff, or another "
            "lattice constant")
    return shells, text


def adapted_displacement(shells: Sequence[CutoffShell], displacement: float, pairs: bool, dtype: str) -> float | None:
    """Largest displacement (≤ ``displacement``) that keeps every pair on its side of the cutoff, or None."""
    gap = min(abs(s.gap) for s in shells)
    safe = 0.9 * gap / (2 if pairs else 1)
    floor = MIN_ADAPTED_DISPLACEMENT.get(dtype, MIN_ADAPTED_DISPLACEMENT["float32"])
    return min(displacement, safe) if safe >= floor else None


def calculator_dtype(calculator) -> str:
    """``"float32"`` or ``"float64"``: the precision the calculator computes forces in."""
    dtype = getattr(calculator, "dtype", None)
    return "float32" if dtype is not None and "32" in str(dtype) else "float64"


# ---- results ------------------------------------------------------------------------------------------


def imaginary_modes(frequencies: np.ndarray) -> tuple[int, float]:
    """Number of imaginary modes on the mesh (frequencies below −max(0.01 THz, 0.5 % of the largest)) and the lowest one."""
    freqs = np.asarray(frequencies, dtype=float)
    threshold = max(0.01, 0.005 * float(np.nanmax(np.abs(freqs))))
    return int((freqs < -threshold).sum()), float(np.nanmin(freqs))


def check_fc3(fc3: np.ndarray, fc2: np.ndarray) -> None:
    """Refuse an fc3 that vanishes (κ would be infinite): the typical cause is a 2×2×2 supercell."""
    if np.abs(fc3).max() < 1e-10 * np.abs(fc2).max():
        raise ValueError("fc3 vanishes in this supercell, so nothing scatters phonons and κ would be infinite; in a "
                         "2x2x2 supercell of a centrosymmetric crystal the images at +R and -R coincide and their "
                         "third derivatives cancel: use a supercell of at least 3x3x3")


def check_kappa(kappa: np.ndarray, temperatures: np.ndarray, what: str = "κ") -> None:
    """Refuse κ [n_T, 6] whose diagonal (xx, yy, zz) is zero, negative or NaN (one-line ``ValueError``)."""
    diagonal = np.asarray(kappa)[:, :3]
    bad = ~np.isfinite(diagonal) | (diagonal <= 0)
    if bad.any():
        k, c = np.argwhere(bad)[0]
        raise ValueError(f"{what}_{'xyz'[c] * 2} = {diagonal[k, c]:.3g} W/mK at {temperatures[k]:g} K is not a "
                         "thermal conductivity (it must be positive and finite): the force constants are broken "
                         "(imaginary modes: relax the structure; a displacement crossing a cutoff; a model "
                         "that fails on the displaced supercells)")


def warn(text: str, category: type[Warning] = LatticeWarning) -> None:
    warnings.warn(text, category, stacklevel=3)
