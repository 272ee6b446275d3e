"""Surface segregation in slabs: layers, per-layer concentration profiles, enrichment, Langmuir–McLean.

- :func:`assign_layers`: atomic layers of a slab of any facet, along the
  surface normal (the non-periodic direction, or the periodic one crossed by
  vacuum), robust against thermal noise.
- :func:`concentration_profile`: per-layer concentration of every element
  over Monte Carlo samples, with block-averaged statistical errors
  (and, when given, a model error from runs with ensemble members).
- :meth:`SegregationProfile.enrichment`: surface minus bulk concentration per element.
- :func:`langmuir_mclean_surface`, :func:`langmuir_mclean_energy`,
  :func:`langmuir_mclean_profile`: the dilute-limit isotherm
  c_s/(1−c_s) = c_b/(1−c_b)·exp(−E_seg/k_B T), its inversion for E_seg,
  and its per-layer form for a finite slab.

Convention: the segregation energy E_seg of a solute is E(solute in the
layer) − E(solute in the bulk), eV; E_seg < 0 means the solute segregates
(the notes' ε is −E_seg).  Heights in Å, temperatures in K, concentrations
are atom fractions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units
from ase.data import chemical_symbols

#: smallest gap (Å) between heights that can separate two layers
MIN_LAYER_SEPARATION = 0.3
#: smallest empty stretch (Å) that makes a periodic direction a vacuum direction
MIN_VACUUM = 4.0


@dataclass
class Layers:
    """Atomic layers of a slab.

    Attributes
    ----------
    index : ndarray [N] (int)
        Layer of each atom, 0 = lowest along ``normal``.
    heights : ndarray [L]
        Mean height of each layer along ``normal``, Å, from the lowest layer.
    normal : ndarray [3]
        Unit surface normal.
    """

    index: np.ndarray
    heights: np.ndarray
    normal: np.ndarray

    @property
    def n_layers(self) -> int:
        return len(self.heights)

    @property
    def depth(self) -> np.ndarray:
        """[L] layers between each layer and the nearer surface (0: a surface layer)."""
        k = np.arange(self.n_layers)
        return np.minimum(k, self.n_layers - 1 - k)

    @property
    def sites(self) -> np.ndarray:
        """[L] atoms per layer."""
        return np.bincount(self.index, minlength=self.n_layers)


def surface_axis(atoms: Atoms, min_vacuum: float = MIN_VACUUM) -> int:
    """The cell vector crossing the vacuum: the one non-periodic vector, or the periodic one with a gap.

    Raises ``ValueError`` for a structure that is not a slab (two or three
    non-periodic directions, or bulk without a vacuum gap of ``min_vacuum`` Å).
    """
    if len(atoms) == 0:
        raise ValueError("the structure holds no atoms; give a slab")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if (~pbc).sum() == 1:
        return int(np.flatnonzero(~pbc)[0])
    if (~pbc).sum() > 1:
        raise ValueError(f"a slab is periodic in two directions; this structure has pbc={pbc.tolist()} "
                         "(a cluster or wire): set the in-plane directions periodic")
    gaps = [_largest_gap(atoms, k)[1] for k in range(3)]
    axis = int(np.argmax(gaps))
    if gaps[axis] < min_vacuum:
        raise ValueError(f"no vacuum in this periodic cell (largest empty stretch {gaps[axis]:.2f} Å < "
                         f"{min_vacuum} Å): give a slab, e.g. ase.build.fcc111(..., vacuum=10)")
    return axis


def _normal(atoms: Atoms, axis: int) -> np.ndarray:
    a, b = (atoms.cell.array[k] for k in range(3) if k != axis)
    normal = np.cross(a, b)
    length = np.linalg.norm(normal)
    if length == 0:
        raise ValueError("the two in-plane cell vectors of the slab are zero or parallel; give a proper cell")
    normal /= length
    return normal if normal @ atoms.cell.array[axis] >= 0 else -normal


def _largest_gap(atoms: Atoms, axis: int) -> tuple[float, float]:
    """(fractional coordinate just above the largest empty stretch along a periodic ``axis``, its width in Å)."""
    spacing = abs(float(atoms.cell.array[axis] @ _normal(atoms, axis)))
    if spacing == 0:
        return 0.0, 0.0
    s = np.sort(atoms.get_scaled_positions(wrap=True)[:, axis])
    gaps = np.diff(np.concatenate([s, [s[0] + 1.0]]))
    k = int(np.argmax(gaps))
    return float(s[(k + 1) % len(s)]), float(gaps[k] * spacing)


def heights_along_normal(atoms: Atoms, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heights of the atoms along the surface normal (Å, lowest atom at 0) and the unit normal [3].

    Across a periodic vacuum direction the slab is made contiguous first (an
    atom wrapped to the other side of the cell counts where it belongs).
    """
    axis = surface_axis(atoms) if axis is None else axis
    normal = _normal(atoms, axis)
    if atoms.pbc[axis]:
        start, _ = _largest_gap(atoms, axis)
        scaled = atoms.get_scaled_positions(wrap=True)
        scaled[:, axis] = (scaled[:, axis] - start) % 1.0
        positions = scaled @ atoms.cell.array
    else:
        positions = atoms.positions
    heights = positions @ normal
    return heights - heights.min(), normal


def assign_layers(atoms: Atoms, separation: float | None = None,
                  min_separation: float = MIN_LAYER_SEPARATION) -> Layers:
    """Group the atoms of a slab into layers along the surface normal.

    Heights are sorted; a gap between consecutive heights larger than the
    threshold starts a new layer.  The default threshold is the natural break
    of the gaps: thermal noise makes many small gaps inside layers and the
    interlayer spacing a few large ones, so the threshold sits at the largest
    ratio between consecutive sorted gaps (among gaps above
    ``min_separation``).  This works for any facet whose interlayer spacing is
    clearly larger than the height noise (fcc(110): 1.3 Å for Cu).

    Parameters
    ----------
    atoms
        A slab: periodic in two directions, or in three with a vacuum gap.
    separation
        Å: a fixed threshold instead of the natural break.
    min_separation
        Å: no gap below this separates layers.

    Returns
    -------
    Layers
    """
    if separation is not None and not separation > 0:
        raise ValueError(f"layer separation must be > 0 Å, got {separation}")
    heights, normal = heights_along_normal(atoms)
    order = np.argsort(heights, kind="stable")
    gaps = np.diff(heights[order])
    threshold = separation if separation is not None else _natural_break(gaps, min_separation)
    layer_sorted = np.concatenate([[0], np.cumsum(gaps > threshold)])
    index = np.empty(len(atoms), dtype=np.int64)
    index[order] = layer_sorted
    n_layers = int(layer_sorted[-1]) + 1
    mean = np.bincount(index, weights=heights, minlength=n_layers) / np.bincount(index, minlength=n_layers)
    return Layers(index, mean - mean[0], normal)


def _natural_break(gaps: np.ndarray, min_separation: float) -> float:
    """The height gap (Å) separating layers: the largest jump (ratio) in the sorted gaps above ``min_separation``."""
    if not (gaps > min_separation).any():
        return float("inf")  # one layer
    noise_floor = 1e-3  # Å: gaps of a perfect lattice (zero) are compared as this
    s = np.sort(np.maximum(gaps, noise_floor))
    ratio = s[1:] / s[:-1]
    ratio[s[1:] <= min_separation] = 0.0  # the upper gap of a break must itself separate layers
    if len(s) == 1 or ratio.max() <= 1.0:
        return min_separation
    k = int(np.argmax(ratio))
    return float(np.sqrt(s[k] * s[k + 1]))


def layer_concentrations(numbers: np.ndarray, layer_index: np.ndarray, elements: Sequence[int],
                         n_layers: int) -> np.ndarray:
    """Concentration of each element in each layer for each sample.

    Parameters
    ----------
    numbers
        Atomic numbers, [S, N] (or [N] for one sample).
    layer_index
        Layer of each atom, [N].
    elements
        Atomic numbers of the E elements.
    n_layers
        L.

    Returns
    -------
    ndarray [S, L, E]
        Atom fractions (each layer's row sums to 1 over the elements present).
    """
    numbers = np.atleast_2d(np.asarray(numbers))
    sites = np.bincount(layer_index, minlength=n_layers).astype(float)
    out = np.empty((len(numbers), n_layers, len(elements)))
    for e, z in enumerate(elements):
        is_z = (numbers == z).astype(float)                       # [S, N]
        counts = np.zeros((len(numbers), n_layers))
        np.add.at(counts.T, layer_index, is_z.T)
        out[:, :, e] = counts / sites
    return out


def block_average(samples: np.ndarray, n_blocks: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean and block-averaged standard error over the first axis of ``samples`` [S, ...].

    The samples are cut into ``n_blocks`` consecutive blocks; the error is the
    standard error of the block means, which includes the correlation of
    consecutive Monte Carlo samples when the blocks are longer than it.
    """
    samples = np.asarray(samples, dtype=float)
    if n_blocks < 2:
        raise ValueError(f"block averaging needs at least 2 blocks, got {n_blocks}")
    if len(samples) < n_blocks:
        raise ValueError(f"{len(samples)} samples cannot make {n_blocks} blocks: sample longer (more sweeps "
                         "after equilibration) or use fewer blocks")
    means = np.array([block.mean(axis=0) for block in np.array_split(samples, n_blocks)])
    return samples.mean(axis=0), means.std(axis=0, ddof=1) / np.sqrt(n_blocks)


@dataclass
class Enrichment:
    """Surface and bulk concentration of one element, and their difference (with block-averaged errors)."""

    element: str
    surface: float
    surface_error: float
    bulk: float
    bulk_error: float
    enrichment: float
    enrichment_error: float
    model_error: float | None = None


@dataclass
class SegregationProfile:
    """Per-layer concentrations of each element over Monte Carlo samples.

    Attributes
    ----------
    elements : list of str
        E element symbols.
    layers : Layers
        The layers (of the input structure).
    samples : ndarray [S, L, E]
        Concentration of each element in each layer, per sample.
    n_blocks : int
        Blocks of the error estimate.
    member_means : ndarray [M, L, E] or None
        Mean profiles of runs with each ensemble member (the model error is their spread).
    """

    elements: list[str]
    layers: Layers
    samples: np.ndarray
    n_blocks: int = 10
    member_means: np.ndarray | None = None
    _stats: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def concentration(self) -> np.ndarray:
        """[L, E] mean concentration."""
        return self._statistics()[0]

    @property
    def error(self) -> np.ndarray:
        """[L, E] statistical error (block-averaged standard error)."""
        return self._statistics()[1]

    @property
    def model_error(self) -> np.ndarray | None:
        """[L, E] standard deviation of the members' mean profiles (None without members)."""
        return None if self.member_means is None else self.member_means.std(axis=0, ddof=1)

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stats is None:
            self._stats = block_average(self.samples, self.n_blocks)
        return self._stats

    def enrichment(self, bulk_depth: int = 2, surface_layers: Sequence[int] | None = None) -> list[Enrichment]:
        """Surface minus bulk concentration of every element.

        Parameters
        ----------
        bulk_depth
            Layers at least this deep (counted from the nearer surface, 0 = surface) are bulk.
        surface_layers
            Layer indices that form the surface (default: the two outermost layers).

        The difference is block-averaged sample by sample (surface and bulk
        fluctuations are correlated in a canonical run).
        """
        depth = self.layers.depth
        surface = np.array([0, self.layers.n_layers - 1] if surface_layers is None else surface_layers)
        bulk = np.flatnonzero(depth >= bulk_depth)
        if len(bulk) == 0:
            raise ValueError(f"the slab has {self.layers.n_layers} layers: none is {bulk_depth} or more layers "
                             "below a surface; use a thicker slab or a smaller bulk depth")
        if surface.min() < 0 or surface.max() >= self.layers.n_layers:
            raise ValueError(f"surface layers {surface.tolist()} outside 0..{self.layers.n_layers - 1}")
        sites = self.layers.sites

        def weighted(c: np.ndarray, which: np.ndarray) -> np.ndarray:
            return (c[..., which, :] * sites[which, None]).sum(-2) / sites[which].sum()

        out = []
        c_surface, c_bulk = weighted(self.samples, surface), weighted(self.samples, bulk)
        (s, ds), (b, db) = block_average(c_surface, self.n_blocks), block_average(c_bulk, self.n_blocks)
        diff, ddiff = block_average(c_surface - c_bulk, self.n_blocks)
        model = None
        if self.member_means is not None:
            model = (weighted(self.member_means, surface) - weighted(self.member_means, bulk)).std(axis=0, ddof=1)
        for e, symbol in enumerate(self.elements):
            out.append(Enrichment(symbol, float(s[e]), float(ds[e]), float(b[e]), float(db[e]), float(diff[e]),
                                  float(ddiff[e]), None if model is None else float(model[e])))
        return out

    def table(self) -> str:
        """Plain-text table: one row per layer, concentration ± statistical (± model) error per element."""
        model = self.model_error
        head = f"{'layer':>5} {'depth':>5} {'z/Å':>7} {'atoms':>5}"
        for symbol in self.elements:
            head += f" {symbol + ' ± stat' + (' ± model' if model is not None else ''):>26}"
        rows = [head]
        for l in range(self.layers.n_layers):
            row = f"{l:>5d} {self.layers.depth[l]:>5d} {self.layers.heights[l]:>7.2f} {self.layers.sites[l]:>5d}"
            for e in range(len(self.elements)):
                cell = f"{self.concentration[l, e]:.4f} ± {self.error[l, e]:.4f}"
                if model is not None:
                    cell += f" ± {model[l, e]:.4f}"
                row += f" {cell:>26}"
            rows.append(row)
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """JSON-able summary (concentrations [L][E], errors, layers, enrichment when the slab is thick enough)."""
        out = {"elements": self.elements, "layer_heights_A": self.layers.heights.tolist(),
               "layer_depth": self.layers.depth.tolist(), "atoms_per_layer": self.layers.sites.tolist(),
               "concentration": self.concentration.tolist(), "statistical_error": self.error.tolist(),
               "model_error": None if self.model_error is None else self.model_error.tolist(),
               "n_samples": len(self.samples), "n_blocks": self.n_blocks}
        if (self.layers.depth >= 2).any():
            out["enrichment"] = [vars(e) for e in self.enrichment()]
        return out

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Concentration of each element vs layer height (statistical error bars; model error as a band)."""
        from ..plotting import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        z = self.layers.heights
        model = self.model_error
        for e, symbol in enumerate(self.elements):
            line = ax.errorbar(z, self.concentration[:, e], yerr=self.error[:, e], marker="o", capsize=3,
                               label=symbol)
            if model is not None:
                ax.fill_between(z, self.concentration[:, e] - model[:, e], self.concentration[:, e] + model[:, e],
                                color=line[0].get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("height along the surface normal (Å)")
        ax.set_ylabel("concentration (atom fraction)")
        ax.set_title(title or "per-layer concentration" + (" (band: model error)" if model is not None else ""))
        ax.legend()
        return save_figure(fig, path)


def concentration_profile(numbers: np.ndarray, layers: Layers, elements: Sequence[int] | None = None,
                          n_blocks: int = 10, member_numbers: Sequence[np.ndarray] | None = None) -> SegregationProfile:
    """The per-layer concentration profile of Monte Carlo samples.

    Parameters
    ----------
    numbers
        Atomic numbers of each sample, [S, N] (the equilibration already removed).
    layers
        Layers of the slab (:func:`assign_layers`).
    elements
        Atomic numbers to report (default: all present, ascending).
    n_blocks
        Blocks for the statistical error.
    member_numbers
        Samples [S_m, N] of runs with each ensemble member of the model: their
        mean profiles give the model error.
    """
    numbers = np.atleast_2d(np.asarray(numbers))
    elements = np.unique(numbers[0]) if elements is None else np.asarray(elements)
    samples = layer_concentrations(numbers, layers.index, elements, layers.n_layers)
    members = None
    if member_numbers is not None:
        if len(member_numbers) < 2:
            raise ValueError("a model error needs runs with at least 2 ensemble members")
        members = np.array([layer_concentrations(m, layers.index, elements, layers.n_layers).mean(axis=0)
                            for m in member_numbers])
    profile = SegregationProfile([chemical_symbols[int(z)] for z in elements], layers, samples, n_blocks, members)
    profile._statistics()  # refuse too few samples now, not when first asked
    return profile


def langmuir_mclean_surface(c_bulk: float | np.ndarray, segregation_energy: float | np.ndarray,
                            temperature: float) -> np.ndarray:
    """Surface concentration of the Langmuir–McLean isotherm.

    c_s/(1−c_s) = c_b/(1−c_b)·exp(−E_seg/k_B T), with E_seg (eV) < 0 for a segregating solute, T in K.
    """
    c_bulk = np.asarray(c_bulk, dtype=float)
    x = c_bulk / (1 - c_bulk) * np.exp(-np.asarray(segregation_energy) / (units.kB * temperature))
    return x / (1 + x)


def langmuir_mclean_energy(c_surface: Sequence[float], c_bulk: Sequence[float], temperature: Sequence[float],
                           c_surface_error: Sequence[float] | None = None,
                           c_bulk_error: Sequence[float] | None = None) -> tuple[float, float]:
    """Segregation energy (eV) of the Langmuir–McLean isotherm fitted to measured concentrations.

    Each (c_s, c_b, T) gives E_seg = −k_B T ln[(c_s/(1−c_s)) / (c_b/(1−c_b))]
    with error k_B T·√((δc_s / c_s(1−c_s))² + (δc_b / c_b(1−c_b))²); several
    points (temperatures) are combined by their inverse-variance weighted
    mean.  Without errors the plain mean is returned with the standard error
    of the points (NaN for one point).

    Returns
    -------
    (E_seg, error) in eV
    """
    c_s, c_b, t = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (c_surface, c_bulk, temperature))
    if not (len(c_s) == len(c_b) == len(t)):
        raise ValueError("c_surface, c_bulk and temperature need the same number of points")
    for name, c in (("surface", c_s), ("bulk", c_b)):
        if ((c <= 0) | (c >= 1)).any():
            raise ValueError(f"{name} concentrations must lie strictly between 0 and 1 for a Langmuir–McLean fit, "
                             f"got {c.tolist()}: sample longer, or the element is absent (or pure) there")
    kt = units.kB * t
    energies = -kt * (np.log(c_s / (1 - c_s)) - np.log(c_b / (1 - c_b)))
    if c_surface_error is None or c_bulk_error is None:
        error = energies.std(ddof=1) / np.sqrt(len(energies)) if len(energies) > 1 else float("nan")
        return float(energies.mean()), float(error)
    ds, db = np.atleast_1d(c_surface_error), np.atleast_1d(c_bulk_error)
    sigma = kt * np.sqrt((ds / (c_s * (1 - c_s))) ** 2 + (db / (c_b * (1 - c_b))) ** 2)
    if (sigma <= 0).any():
        return float(energies.mean()), 0.0
    w = 1 / sigma**2
    return float((w * energies).sum() / w.sum()), float(1 / np.sqrt(w.sum()))


def langmuir_mclean_profile(layer_energies: Sequence[float], sites: Sequence[int], n_solute: float,
                            temperature: float) -> np.ndarray:
    """Dilute-limit solute concentration per layer of a finite slab (canonical: the solute count is fixed).

    Each layer l follows Langmuir–McLean with its own single-swap segregation
    energy E_l (eV, relative to the bulk, E = 0 there) and one common bulk
    reservoir: c_l = 1 / (1 + exp((E_l − μ)/k_B T)), with μ fixed by
    Σ_l n_l c_l = ``n_solute`` (``sites`` n_l per layer).  Solute–solute
    interactions are neglected (the dilute limit).

    Returns
    -------
    ndarray [L] concentrations.
    """
    from scipy.optimize import brentq

    energies, n = np.asarray(layer_energies, dtype=float), np.asarray(sites, dtype=float)
    if not 0 < n_solute < n.sum():
        raise ValueError(f"{n_solute} solute atoms do not fit {int(n.sum())} sites")
    beta = 1 / (units.kB * temperature)

    def occupation(mu: float) -> np.ndarray:
        return 0.5 * (1 - np.tanh(0.5 * beta * (energies - mu)))     # 1/(1+e^{β(E−μ)}) without overflow

    width = 50 / beta + np.ptp(energies)
    mu = brentq(lambda m: (n * occupation(m)).sum() - n_solute, energies.min() - width, energies.max() + width,
                xtol=1e-14)
    return occupation(mu)


def layer_segregation_energies(slab: Atoms, model, solute: str, host: str | None = None,
                               layers: Layers | None = None, sites_per_layer: int = 4) -> np.ndarray:
    """Single-swap segregation energy of a solute atom into each layer, eV, relative to the central layer.

    The slab is made pure ``host`` (positions as given) with one ``solute``
    atom in the central layer; the energy change of swapping it with a host
    atom of layer l is E_l = E(solute in l) − E(solute in the centre), averaged
    over up to ``sites_per_layer`` sites of the layer.  The swaps go through
    the same engines as the Monte Carlo (:func:`atomflux.sampling.swap_energy`:
    local ΔE for atomflux potentials, one call per swap for other ASE
    calculators), at fixed positions as the Monte Carlo sees them.

    Parameters
    ----------
    slab
        The slab (its species are replaced).
    model
        An atomflux potential, an ``AtomfluxCalculator`` or any ASE calculator.
    solute, host
        Element symbols; ``host`` defaults to the slab's most common element.
    layers
        Layers of ``slab`` (default: :func:`assign_layers`).
    sites_per_layer
        Sites averaged per layer (≥ 1).

    Returns
    -------
    ndarray [L]; the surface segregation energies are entries 0 and L−1.
    """
    from ase.data import atomic_numbers

    from ..sampling import swap_energy

    for name, symbol in (("solute", solute), ("host", host)):
        if symbol is not None and symbol not in atomic_numbers:
            raise ValueError(f"{name} {symbol!r} is not an element symbol")
    if sites_per_layer < 1:
        raise ValueError(f"sites_per_layer must be >= 1, got {sites_per_layer}")
    layers = assign_layers(slab) if layers is None else layers
    if host is None:
        host = chemical_symbols[int(np.bincount(slab.numbers).argmax())]
    if host == solute:
        raise ValueError(f"solute and host are both {solute}; name two different elements")
    centre = int(np.argmax(layers.depth))
    reference = int(np.flatnonzero(layers.index == centre)[0])
    config = slab.copy()
    config.calc = None
    config.numbers = np.full(len(slab), atomic_numbers[host])
    config.numbers[reference] = atomic_numbers[solute]
    engine = swap_energy(model, config)
    swaps, owner = [], []
    for layer in range(layers.n_layers):
        sites = [i for i in np.flatnonzero(layers.index == layer) if i != reference][:sites_per_layer]
        swaps += [(reference, int(i)) for i in sites]
        owner += [layer] * len(sites)
    if len(set(owner)) < layers.n_layers:
        raise ValueError("the central layer holds a single atom; give a wider slab")
    deltas = np.array([trial.delta for trial in engine.trials(np.array(swaps))])
    owner = np.array(owner)
    return np.array([deltas[owner == layer].mean() for layer in range(layers.n_layers)])
