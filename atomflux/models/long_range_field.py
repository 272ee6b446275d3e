"""Long-range pair fields of per-atom charges with torch-pme: Ewald, PME, P3M or a direct sum.

For per-atom "charges" q_i (one column per channel) and a pair kernel
v(r) = k / r^p (p = 1: Coulomb, k = e²/4πε₀ = 14.3996 eV·Å; p = 6: dispersion,
k = -1 eV·Å⁶), the field of a system is

    Ṽ_i = ½ Σ_j' q_j v(r_ij) - ½ Σ_{j: r_ij < r_c} q_j v(r_ij) s(r_ij)      (eV per unit charge)

with the first sum over all atoms j and all their periodic images (j' ≠ i
in the home cell), the second over the pairs within the short-range cutoff
r_c and s(r) the C² quintic switch of :func:`~atomflux.models.cutoffs.polynomial_cutoff`
(1 at r = 0, 0 at r_c).  The energy E = Σ_i q_i Ṽ_i is then the full lattice
sum ½ Σ_ij q_i q_j v(r_ij) minus the smoothly excluded short pairs, which the
short-range model describes: nothing is counted twice, and the kernel
v(r)(1 - s(r)) is the same whichever method evaluates the first sum:

- fully periodic systems: Ewald (``torchpme.EwaldCalculator``, small cells:
  its memory grows as k-vectors × atoms) or a mesh method (``PMECalculator``, ``P3MCalculator``) on the system's full
  neighbour list (real-space cutoff = r_c), with a neutralising background
  for a charged cell;
- non-periodic systems: the direct sum over all pairs (``torchpme.Calculator``).

Mixed periodicity (slabs with one open direction) is refused.  The Ewald
splitting width (smearing) and the k-space resolution are chosen from
torch-pme's error bounds (``torchpme.tuning``) for unit charges and a stated
RMS force accuracy (eV/Å), deterministically (the largest k-space spacing
that meets the accuracy; no timing runs), and cached per (atoms, cell,
method, accuracy).  A cell that changes (NPT, strain derivatives by finite
differences) is re-tuned: the energy may then step by up to the stated
accuracy between cells.  All of it is differentiable with respect to charges,
positions and cell (autograd), which is how :func:`atomflux.evaluate`
obtains forces and stress of a long-range model.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..systems import Batch
from .cutoffs import polynomial_cutoff

#: e²/(4πε₀) in eV·Å (the value torch-pme uses, ``torchpme.prefactors.eV_A``)
COULOMB_CONSTANT = 14.399645478425667
#: kernel prefactor of each supported exponent p (eV·Å^p per unit "charge" squared)
PREFACTORS = {1: COULOMB_CONSTANT, 6: -1.0}
METHODS = ("auto", "ewald", "pme", "p3m")
#: "auto" uses Ewald while (k-vectors × atoms) stays below this, PME above: in benchmarks/bench_long_range.py
#: PME was already faster for 64 atoms (1.4e5 entries), and Ewald's [k, N] arrays grow as N² at fixed density
EWALD_MAX_ENTRIES = 10**5
#: the finest mesh (points per cell vector) PME/P3M may use before the accuracy is called unreachable
MAX_MESH_POINTS = 256
#: tuned cells kept (oldest dropped first)
TUNING_CACHE_SIZE = 64
#: PME/P3M interpolation order
INTERPOLATION_NODES = 4


def _torchpme():
    try:
        import torchpme
        import torchpme.tuning  # noqa: F401
    except ImportError:
        raise ImportError("long-range models need torch-pme: pip install 'atomflux[longrange]' "
                          "(or pip install torch-pme==0.5.0)") from None
    return torchpme


class LongRangeField:
    """The long-range fields Ṽ [N, C] of a batch for given charges (see module doc).

    Parameters
    ----------
    cutoff
        Short-range cutoff r_c (Å): the exclusion radius and the real-space cutoff.
    exponents
        Exponent p of each charge channel (1 and/or 6).
    accuracy
        Target RMS force error of the k-space method for unit charges, eV/Å.
    method
        ``"auto"`` (Ewald while its k-vectors × atoms stay below :data:`EWALD_MAX_ENTRIES`, i.e. for
        small cells, PME above),
        ``"ewald"``, ``"pme"`` or ``"p3m"``; non-periodic systems always use the direct sum.
    """

    def __init__(self, cutoff: float, exponents: Sequence[int] = (1,), accuracy: float = 1e-3,
                 method: str = "auto") -> None:
        bad = [p for p in exponents if p not in PREFACTORS]
        if bad or not exponents:
            raise ValueError(f"long-range exponents must be chosen from {sorted(PREFACTORS)}, got {list(exponents)}")
        if not (math.isfinite(accuracy) and accuracy > 0):
            raise ValueError(f"long-range accuracy must be > 0 eV/Å, got {accuracy}")
        self.cutoff = float(cutoff)
        self.exponents = [int(p) for p in exponents]
        self.accuracy = float(accuracy)
        self.method = method
        self._tuned: dict[tuple, tuple[float, float]] = {}

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if value not in METHODS:
            raise ValueError(f"long-range method must be one of {', '.join(METHODS)}, got {value!r}")
        self._method = value

    def fields(self, batch: Batch, vectors: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
        """Fields Ṽ [N, C] (eV per unit charge) of every system of ``batch``.

        Parameters
        ----------
        batch
            Systems; their positions and cells (Å) enter the k-space part.
        vectors
            Pair vectors [P, 3] (Å) of ``batch.pairs`` (the real-space part and the exclusion).
        charges
            Charges [N, C], one column per exponent (e for p = 1).
        """
        torchpme = _torchpme()
        periodic = batch.pbc.all(dim=1)
        mixed = batch.pbc.any(dim=1) & ~periodic
        if bool(mixed.any()):
            s = int(torch.nonzero(mixed)[0])
            raise ValueError(f"long-range models need a system periodic in all three directions or in none "
                             f"(system {s} has pbc = {batch.pbc[s].tolist()}); for a slab, make it periodic "
                             "with enough vacuum")
        distances = torch.linalg.norm(vectors, dim=1)
        full = charges.new_zeros(charges.shape)
        open_atoms = torch.nonzero(~periodic[batch.system]).squeeze(1)
        if len(open_atoms):  # all non-periodic systems at once: the direct sum over pairs within each system
            pairs = _open_pairs(open_atoms, batch.system)
            pair_distances = torch.linalg.norm(batch.positions[pairs[:, 1]] - batch.positions[pairs[:, 0]], dim=1)
            columns = []
            for c, p in enumerate(self.exponents):
                calculator = torchpme.Calculator(_potential(torchpme, p, None), full_neighbor_list=True)
                calculator.to(dtype=charges.dtype, device=charges.device)
                columns.append(calculator(charges[:, c:c + 1], batch.cell[0], batch.positions, pairs, pair_distances))
            full = full + torch.cat(columns, dim=1)
        owner = batch.system[batch.pairs[:, 0]]
        for s in torch.nonzero(periodic).squeeze(1).tolist():
            atoms = torch.nonzero(batch.system == s).squeeze(1)
            first = int(atoms[0])
            own = torch.nonzero(owner == s).squeeze(1)
            values = self._periodic(batch.positions[atoms], batch.cell[s], charges[atoms],
                                    batch.pairs[own] - first, distances[own])
            full = full.index_add(0, atoms, values)
        return full - self._excluded(batch, distances, charges)

    def _periodic(self, positions: torch.Tensor, cell: torch.Tensor, charges: torch.Tensor, pairs: torch.Tensor,
                  distances: torch.Tensor) -> torch.Tensor:
        """½ Σ_j' q_j v(r_ij) [n, C] of one periodic system by Ewald, PME or P3M (real space: ``pairs``)."""
        torchpme = _torchpme()
        method, smearing, spacing = self.settings(len(positions), cell)
        columns = []
        for c, p in enumerate(self.exponents):
            potential = _potential(torchpme, p, smearing)
            if method == "ewald":
                calculator = torchpme.EwaldCalculator(potential, lr_wavelength=spacing, full_neighbor_list=True)
            else:
                cls = torchpme.PMECalculator if method == "pme" else torchpme.P3MCalculator
                calculator = cls(potential, mesh_spacing=spacing, interpolation_nodes=INTERPOLATION_NODES,
                                 full_neighbor_list=True)
            calculator.to(dtype=positions.dtype, device=positions.device)
            columns.append(calculator(charges[:, c:c + 1], cell, positions, pairs, distances))
        return torch.cat(columns, dim=1)

    def _excluded(self, batch: Batch, distances: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
        """½ Σ_{j: r_ij < r_c} q_j v(r_ij) s(r_ij) [N, C]: the part the short-range model describes."""
        near = torch.nonzero(distances < self.cutoff).squeeze(1)
        i, j, r = batch.pairs[near, 0], batch.pairs[near, 1], distances[near]
        switch = polynomial_cutoff(r, self.cutoff)
        kernels = torch.stack([PREFACTORS[p] * r.pow(-p) * switch for p in self.exponents], dim=1)   # [p, C]
        return charges.new_zeros(charges.shape).index_add(0, i, 0.5 * charges[j] * kernels)

    def settings(self, n_atoms: int, cell: torch.Tensor) -> tuple[str, float, float]:
        """Method, smearing σ (Å) and k-space spacing (Ewald ``lr_wavelength`` or mesh spacing, Å) of a
        periodic system of ``n_atoms`` atoms.

        Tuned once per (atoms, cell rounded to 1e-6 Å, method, accuracy) from torch-pme's
        error bounds for unit charges: σ sets the real-space error at the cutoff, the spacing
        is the coarsest of torch-pme's tuning grid whose total error bound meets the accuracy.
        ``"auto"`` takes Ewald unless its k-vectors × atoms exceed :data:`EWALD_MAX_ENTRIES`.
        """
        key = (n_atoms, tuple(round(float(x), 6) for x in cell.detach().flatten()), self.method, self.accuracy)
        if key not in self._tuned:
            cell64 = cell.detach().to(torch.float64)
            accuracy = self.accuracy / COULOMB_CONSTANT
            method = "ewald" if self.method == "auto" else self.method
            smearing, spacing = _tune(method, n_atoms, cell64, self.cutoff, accuracy)
            if self.method == "auto" and ewald_entries(n_atoms, cell64, spacing) > EWALD_MAX_ENTRIES:
                method = "pme"
                smearing, spacing = _tune(method, n_atoms, cell64, self.cutoff, accuracy)
            if len(self._tuned) >= TUNING_CACHE_SIZE:  # a cell that changes every step (NPT) re-tunes every step
                self._tuned.pop(next(iter(self._tuned)))
            self._tuned[key] = (method, smearing, spacing)
        return self._tuned[key]


def ewald_entries(n_atoms: int, cell: torch.Tensor, lr_wavelength: float) -> int:
    """k-vectors × atoms of torch-pme's Ewald sum (its grid keeps ceil(|a_i|/λ) points per cell vector)."""
    points = [math.ceil(float(length) / lr_wavelength) for length in torch.linalg.norm(cell, dim=1)]
    return math.prod(points) * n_atoms


def _potential(torchpme, exponent: int, smearing: float | None):
    if exponent == 1:
        return torchpme.CoulombPotential(smearing=smearing, prefactor=PREFACTORS[1])
    return torchpme.InversePowerLawPotential(exponent=exponent, smearing=smearing, prefactor=PREFACTORS[exponent])


def _open_pairs(atoms: torch.Tensor, system: torch.Tensor) -> torch.Tensor:
    """Every ordered pair (i, j), i ≠ j, of ``atoms`` [n] that belong to the same system, Tensor [P, 2]."""
    i, j = torch.meshgrid(atoms, atoms, indexing="ij")
    keep = (i != j) & (system[i] == system[j])
    return torch.stack([i[keep], j[keep]], dim=1)


def _tune(method: str, n_atoms: int, cell: torch.Tensor, cutoff: float, accuracy: float) -> tuple[float, float]:
    """(smearing, spacing) from torch-pme's error bounds for ``n_atoms`` unit charges (accuracy in e²/Å²)."""
    torchpme = _torchpme()
    from torchpme.tuning.ewald import EwaldErrorBounds
    from torchpme.tuning.pme import PMEErrorBounds
    from torchpme.tuning.p3m import P3MErrorBounds
    from torchpme.tuning.tuner import TunerBase

    if float(torch.linalg.det(cell).abs()) < 1e-9:
        raise ValueError("a periodic long-range system needs a cell of non-zero volume")
    charges = torch.ones((n_atoms, 1), dtype=torch.float64)
    positions = torch.zeros((n_atoms, 3), dtype=torch.float64)
    calculator = torchpme.EwaldCalculator if method == "ewald" else torchpme.PMECalculator
    smearing = TunerBase(charges, cell, positions, cutoff, calculator).estimate_smearing(float(accuracy))
    shortest = float(torch.linalg.norm(cell, dim=1).min())
    longest = float(torch.linalg.norm(cell, dim=1).max())
    if method == "ewald":
        # torch-pme 0.5.0's Ewald keeps the k-vectors of an FFT grid of ceil(L/λ) points per direction, i.e.
        # |k| up to π/λ, while its error bound assumes 2π/λ: the bound is evaluated at the effective 2λ
        bounds = EwaldErrorBounds(charges, cell, positions)
        spacings = [shortest / ns for ns in range(1, 400)]
        error = lambda h: float(bounds(smearing=smearing, lr_wavelength=2 * h, cutoff=cutoff))  # noqa: E731
    else:
        bounds = (PMEErrorBounds if method == "pme" else P3MErrorBounds)(charges, cell, positions)
        spacings = [2 * shortest / (2**ns - 1) for ns in range(1, 12)
                    if longest / (2 * shortest / (2**ns - 1)) <= MAX_MESH_POINTS]
        error = lambda h: float(bounds(smearing=smearing, mesh_spacing=h, cutoff=cutoff,  # noqa: E731
                                       interpolation_nodes=INTERPOLATION_NODES))
    for spacing in spacings:
        if error(spacing) < accuracy:
            return smearing, spacing
    raise ValueError(f"no {method} k-space resolution reaches the long-range accuracy {accuracy * COULOMB_CONSTANT:g} "
                     f"eV/Å for this cell; ask for a looser accuracy")
