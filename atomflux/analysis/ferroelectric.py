"""Local dipoles of ABO3 perovskites: B-centred cells, Born-charge local modes, a descriptor proxy.

The Born-charge "local mode" of a B-centred cell (8 A corners weighted 1/8,
6 X = O face centres weighted 1/2, so that every atom of the crystal is
counted once over all cells)::

    p_cell = (1 / V_cell) Σ_k w_k Z*_k (u_k − ū_cell),   ū_cell = Σ_k w_k u_k / Σ_k w_k

``u_k`` is atom k's displacement from its reference position (the reference
structure's fractional coordinates in the frame's own cell, so a homogeneous
strain displaces nothing), taken under the minimum image; subtracting the
cell's weighted mean displacement ``ū_cell`` measures it from the cell's
centrosymmetric reference translated with the cell, so a rigid translation
changes nothing.  With Born charges that obey the acoustic sum rule
(Σ_k w_k Z*_k = 0 per cell, checked) the cells partition the total dipole
exactly: Σ_cells p_cell V_cell = Σ_atoms Z*_i u_i.

Units: p in e/Å² (``E_PER_A2_TO_UC_PER_CM2`` converts to μC/cm²), V in Å³.

For models without Born charges, :func:`descriptor_dipoles` gives the
order parameter of arXiv:2310.12579's public code: the l = 1 component of
the Gaussian neighbour density around each B site (cutoff 3.0 Å, width 0.5 Å).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

#: 1 e/Å² in μC/cm² (1.602176634e-19 C / 1e-16 cm² × 1e6 μC/C).
E_PER_A2_TO_UC_PER_CM2 = 1602.176634

#: Nominal averaged Born effective charges of BaTiO3 (e), often quoted; tensors are more exact.
BATIO3_BORN_CHARGES = {"Ba": 2.77, "Ti": 6.26, "O": -3.01}

A_WEIGHT, X_WEIGHT = 1.0 / 8.0, 1.0 / 2.0


@dataclass(frozen=True)
class PerovskiteCells:
    """B-centred cells of a periodic ABX3 structure, found once from a reference structure.

    Attributes
    ----------
    members : ndarray [M, 15] int
        Atom indices of each cell: the B site, its 8 A corners, its 6 X faces.
    weights : ndarray [15]
        1 for B, 1/8 for each A, 1/2 for each X.
    reference_fractional : ndarray [N, 3]
        Fractional coordinates of every atom in the reference structure.
    symbols : list of str
        Chemical symbols of the N atoms.
    grid : ndarray [M, 3] int or None
        Integer position of each cell along the three cell vectors when the
        supercell is n1 × n2 × n3 perovskite cells along its own vectors
        (needed by the correlation functions), else None.
    shape : tuple of int or None
        (n1, n2, n3) for ``grid``.
    """

    members: np.ndarray
    weights: np.ndarray
    reference_fractional: np.ndarray
    symbols: list[str]
    grid: np.ndarray | None
    shape: tuple[int, int, int] | None

    @property
    def n_cells(self) -> int:
        return len(self.members)


def perovskite_cells(reference: Atoms, a_site: str, b_site: str, x_site: str = "O") -> PerovskiteCells:
    """The B-centred cells of ``reference`` (ideal cubic or any user-given reference structure).

    Each B site gets its 8 nearest A atoms and 6 nearest X atoms (minimum
    image, any cell shape).  The choice is checked: every A atom must be a
    corner of exactly 8 cells and every X a face of exactly 2, so that the
    weights partition the crystal.

    Parameters
    ----------
    reference : ase.Atoms
        Periodic in all three directions; the same atom order as the frames analysed.
    a_site, b_site, x_site : str
        Chemical symbols of the A (corner), B (centre) and X (face) species.
    """
    from ase.neighborlist import neighbor_list

    if not np.all(reference.pbc):
        raise ValueError("local dipoles need a structure periodic in all three directions (pbc=True)")
    symbols = reference.get_chemical_symbols()
    counts = {s: symbols.count(s) for s in (a_site, b_site, x_site)}
    missing = [s for s, c in counts.items() if c == 0]
    if missing:
        raise ValueError(f"the reference structure has no {', '.join(missing)} atoms (it holds "
                         f"{reference.get_chemical_formula()}); name the A, B and X species it contains")
    if not counts[a_site] == counts[b_site] == counts[x_site] // 3 or counts[x_site] % 3:
        raise ValueError(f"{reference.get_chemical_formula()} is not ABX3 for A={a_site}, B={b_site}, "
                         f"X={x_site}; give a perovskite supercell")
    n_b = counts[b_site]
    spacing = (reference.get_volume() / n_b) ** (1.0 / 3.0)  # the pseudo-cubic lattice constant
    i, j, d = neighbor_list("ijd", reference, 1.2 * spacing)
    numbers = np.array(symbols)
    b_indices = np.flatnonzero(numbers == b_site)
    members = np.empty((n_b, 15), dtype=int)
    order = np.argsort(i, kind="stable")
    starts = np.searchsorted(i[order], np.arange(len(reference) + 1))
    for row, b in enumerate(b_indices):
        near = order[starts[b]:starts[b + 1]]
        for species, count, start in ((a_site, 8, 1), (x_site, 6, 9)):
            pick = near[numbers[j[near]] == species]
            if len(pick) < count:
                raise ValueError(f"B site {b} has fewer than {count} {species} neighbours within "
                                 f"{1.2 * spacing:.2f} Å: the reference is not a perovskite with B={b_site} at the "
                                 "cell centres; give the ideal (cubic) structure as reference")
            nearest = pick[np.argsort(d[pick], kind="stable")[:count]]
            members[row, start:start + count] = j[nearest]
        members[row, 0] = b
    weights = np.array([1.0] + [A_WEIGHT] * 8 + [X_WEIGHT] * 6)
    coverage = np.zeros(len(reference))
    np.add.at(coverage, members.ravel(), np.tile(weights, n_b))
    wrong = np.flatnonzero(~np.isclose(coverage[np.isin(numbers, (a_site, b_site, x_site))], 1.0))
    if len(wrong):
        raise ValueError(f"the B-centred cells do not partition the reference (atom "
                         f"{np.flatnonzero(np.isin(numbers, (a_site, b_site, x_site)))[wrong[0]]} is counted "
                         f"{coverage[wrong[0]]:g} times); give an undistorted reference structure")
    grid, shape = _cell_grid(reference.get_scaled_positions()[b_indices])
    return PerovskiteCells(members, weights, reference.get_scaled_positions(wrap=False), symbols, grid, shape)


def _cell_grid(b_fractional: np.ndarray) -> tuple[np.ndarray | None, tuple[int, int, int] | None]:
    """Integer cell positions when the B sites form an n1 × n2 × n3 grid along the cell vectors."""
    shape = []
    for axis in range(3):
        values = np.sort(b_fractional[:, axis] % 1.0)
        gaps = np.diff(np.concatenate([values, values[:1] + 1.0]))
        shape.append(int(np.sum(gaps > 1e-3)))  # distinct positions along this cell vector
    if np.prod(shape) != len(b_fractional):
        return None, None
    origin = b_fractional[0]
    grid = np.rint((b_fractional - origin) * np.array(shape)).astype(int) % np.array(shape)
    if len({tuple(g) for g in grid}) != len(grid):
        return None, None
    return grid, tuple(shape)


def born_charge_tensors(symbols: Sequence[str], born_charges: Mapping[str, float | np.ndarray]) -> np.ndarray:
    """[N, 3, 3] Born charge tensors (e) of atoms ``symbols`` from a scalar or 3×3 tensor per species."""
    missing = sorted(set(symbols) - set(born_charges))
    if missing:
        raise ValueError(f"no Born charge for {', '.join(missing)}; give one for every species "
                         f"(e.g. --born {','.join(f'{s}=Z' for s in sorted(set(symbols)))})")
    table = {}
    for species, value in born_charges.items():
        z = np.asarray(value, dtype=float)
        if z.shape == ():
            z = z * np.eye(3)
        if z.shape != (3, 3) or not np.all(np.isfinite(z)):
            raise ValueError(f"the Born charge of {species} must be a finite number or a 3×3 tensor, got {value!r}")
        table[species] = z
    return np.stack([table[s] for s in symbols])


@dataclass(frozen=True)
class LocalDipoles:
    """Local dipoles of a series of frames.

    Attributes
    ----------
    p : ndarray [T, M, 3]
        Dipole density of each cell, e/Å².
    cell_volume : ndarray [T]
        Volume per cell (frame volume / M), Å³.
    """

    p: np.ndarray
    cell_volume: np.ndarray

    @property
    def p_uc_cm2(self) -> np.ndarray:
        """[T, M, 3] local polarization in μC/cm²."""
        return self.p * E_PER_A2_TO_UC_PER_CM2

    @property
    def polarization(self) -> np.ndarray:
        """[T, 3] total polarization Σ_cells p V_cell / V, e/Å² (the cells have equal volumes)."""
        return self.p.mean(axis=1)


def _frames(frames: Atoms | Sequence[Atoms], n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError("no frames to analyse")
    if any(len(f) != n_atoms for f in frames):
        raise ValueError(f"a frame has {next(len(f) for f in frames if len(f) != n_atoms)} atoms but the "
                         f"reference has {n_atoms}; give frames of the same supercell, atoms in the same order")
    return np.stack([f.positions for f in frames]), np.stack([f.cell.array for f in frames])


def displacements(cells: PerovskiteCells, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """[T, N, 3] displacements (Å) from the reference's fractional positions in each frame's cell.

    ``positions`` [T, N, 3] Å, ``cell`` [T, 3, 3] (rows are cell vectors).
    Minimum image in fractional coordinates: exact while displacements are
    below half a cell vector's extent, as in any crystal below melting.
    """
    reference = np.einsum("na,tab->tnb", cells.reference_fractional, cell)
    fractional = np.einsum("tnb,tba->tna", positions - reference, np.linalg.inv(cell))
    fractional -= np.rint(fractional)
    return np.einsum("tna,tab->tnb", fractional, cell)


def local_dipoles(cells: PerovskiteCells, frames: Atoms | Sequence[Atoms],
                  born_charges: Mapping[str, float | np.ndarray], sum_rule_tolerance: float = 0.05) -> LocalDipoles:
    """Born-charge local dipoles p_cell (e/Å²) of every cell in every frame (see the module text).

    Parameters
    ----------
    cells : PerovskiteCells
        From :func:`perovskite_cells` on the reference structure.
    frames : ase.Atoms or sequence of them
        Same atoms, same order as the reference; any cell (NPT frames welcome).
    born_charges : mapping
        Species → scalar or 3×3 tensor Z*_{αβ} (e; p_α = Z*_{αβ} u_β).  For
        BaTiO3, :data:`BATIO3_BORN_CHARGES` holds nominal averaged values.
    sum_rule_tolerance : float
        Largest |Σ_k w_k Z*_k| per cell (e) accepted; the partition identity is
        exact only when it is zero.
    """
    charges = born_charge_tensors(cells.symbols, born_charges)
    positions, cell = _frames(frames, len(cells.symbols))
    weights = cells.weights
    cell_charge = np.einsum("k,mkab->mab", weights, charges[cells.members])  # [M, 3, 3]
    worst = float(np.abs(cell_charge).max())
    if worst > sum_rule_tolerance:
        raise ValueError(f"the Born charges break the acoustic sum rule: a cell's Σ w Z* is {worst:.3f} e "
                         f"(1·Z*_B + 8·Z*_A/8 + 6·Z*_X/2 must be 0); correct them so that they sum to zero")
    u = displacements(cells, positions, cell)[:, cells.members]  # [T, M, 15, 3]
    mean_u = np.einsum("k,tmka->tma", weights, u) / weights.sum()
    dipole = np.einsum("k,mkab,tmkb->tma", weights, charges[cells.members], u)
    dipole -= np.einsum("mab,tmb->tma", cell_charge, mean_u)
    volume = np.abs(np.linalg.det(cell)) / cells.n_cells
    return LocalDipoles(dipole / volume[:, None, None], volume)


def neighbour_density_l1(distances: np.ndarray, cutoff: float = 3.0, width: float = 0.5,
                         radial_points: int = 200) -> np.ndarray:
    """h(d): the l = 1 weight of one Gaussian neighbour at distance d (Å), Å³.

    ∫_{|r|<r_c} r̂ exp(−|r − d|²/(2σ²)) d³r = h(d) d̂ with
    h(d) = 4π ∫_0^{r_c} r² exp(−(r² + d²)/(2σ²)) i_1(r d/σ²) dr  (i_1: modified spherical Bessel),
    integrated with Gauss–Legendre quadrature on ``radial_points`` nodes.
    """
    from scipy.special import ive

    nodes, node_weights = np.polynomial.legendre.leggauss(radial_points)
    r = 0.5 * cutoff * (nodes + 1.0)
    d = np.asarray(distances, dtype=float)[..., None]
    a = np.maximum(r * d / width**2, 1e-12)
    # exp(−(r²+d²)/2σ²) i_1(a) = sqrt(π/2a) I_{3/2}(a) e^{−a} e^{−(r−d)²/2σ²}, overflow-free
    radial = np.sqrt(np.pi / (2 * a)) * ive(1.5, a) * np.exp(-((r - d) ** 2) / (2 * width**2))
    return 4 * np.pi * 0.5 * cutoff * np.sum(node_weights * r**2 * radial, axis=-1)


def descriptor_dipoles(frames: Atoms | Sequence[Atoms], b_site: str, cutoff: float = 3.0,
                       width: float = 0.5) -> np.ndarray:
    """[T, M, 3] descriptor proxy of the local dipole at every B site, Å³ (no Born charges needed).

    The l = 1 component of the Gaussian neighbour density ρ_B(r) = Σ_j
    exp(−|r − r_Bj|²/(2σ²)) (all neighbours j, any species), integrated over the
    ball |r| < ``cutoff``, as a Cartesian vector, with the sign flipped so that
    it points along the B site's displacement within its cage:
    d_B = −Σ_j h(r_Bj) r̂_Bj (:func:`neighbour_density_l1`).  Neighbours
    out to cutoff + 5σ are included (the Gaussians reaching into the ball), so
    d_B is smooth in the positions.  Zero at centrosymmetric sites.

    Parameters
    ----------
    b_site : str
        Species of the sites (Ti for BaTiO3).
    cutoff, width : float
        Å; 3.0 and 0.5 as in arXiv:2310.12579's public code.
    """
    from ase.neighborlist import neighbor_list

    if not (cutoff > 0 and width > 0):
        raise ValueError(f"cutoff and width must be > 0 Å, got {cutoff} and {width}")
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    out = []
    for atoms in frames:
        sites = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == b_site)
        if not len(sites):
            raise ValueError(f"no {b_site} atoms in {atoms.get_chemical_formula()}; name the B species")
        i, d_vec, d = neighbor_list("iDd", atoms, cutoff + 5 * width)
        keep = np.isin(i, sites)
        contribution = -(neighbour_density_l1(d[keep], cutoff, width) / d[keep])[:, None] * d_vec[keep]
        total = np.zeros((len(atoms), 3))
        np.add.at(total, i[keep], contribution)
        out.append(total[sites])
    return np.stack(out)


def ideal_perovskite_reference(atoms: Atoms, a_site: str) -> Atoms:
    """The ideal cubic reference of a perovskite supercell frame: every atom moved to its nearest ideal site.

    The supercell must be n1 × n2 × n3 pseudo-cubic cells along its own
    vectors (n_k = |a_k| / a_pc, a_pc = (V / N_A)^(1/3)); ideal sites are the
    multiples of 1/(2 n_k) in fractional coordinates, counted from the first A
    atom.  Displacements up to a quarter of a cell (~1 Å) are undone, far more
    than any ferroelectric distortion.
    """
    symbols = np.array(atoms.get_chemical_symbols())
    a_atoms = np.flatnonzero(symbols == a_site)
    if not len(a_atoms):
        raise ValueError(f"no {a_site} atoms in {atoms.get_chemical_formula()}; name the A species")
    spacing = (atoms.get_volume() / len(a_atoms)) ** (1.0 / 3.0)
    ratio = atoms.cell.lengths() / spacing
    shape = np.rint(ratio)
    if np.any(np.abs(ratio - shape) > 0.1) or np.prod(shape) != len(a_atoms):
        raise ValueError(f"the cell ({', '.join(f'{x:.2f}' for x in atoms.cell.lengths())} Å) is not a whole number of "
                         f"pseudo-cubic cells of {spacing:.2f} Å along each vector; give --reference (the ideal "
                         "structure, same atom order)")
    fractional = atoms.get_scaled_positions(wrap=False)
    origin = fractional[a_atoms[0]]
    ideal = np.rint((fractional - origin) * 2 * shape) / (2 * shape) + origin
    reference = atoms.copy()
    reference.calc = None
    reference.set_scaled_positions(ideal)
    return reference
