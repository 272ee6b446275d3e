"""Maps of the local dipoles: p_cell placed on the lattice of B-centred cells, sliced into layers, plotted.

The lattice position of each cell comes from its B site's fractional
coordinates in the *reference* structure (:class:`~atomflux.analysis.ferroelectric.PerovskiteCells`),
so a map is right whatever the atom order and for any n1 × n2 × n3 supercell
(any cell shape).  The dipoles themselves are whatever the caller computed
(:func:`~atomflux.analysis.ferroelectric.local_dipoles` or the descriptor proxy);
this module only arranges and draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ferroelectric import PerovskiteCells


@dataclass(frozen=True)
class DipoleMap:
    """Local dipoles on the lattice of cells.

    Attributes
    ----------
    values : ndarray [n1, n2, n3, 3]
        Cartesian p of the cell at lattice position (i1, i2, i3) along the
        supercell vectors (i_k = 0 is the layer of B sites nearest the origin side), caller's units.
    cell : ndarray [3, 3]
        Supercell vectors (rows), Å: they define the layer normals and in-plane directions.
    """

    values: np.ndarray
    cell: np.ndarray

    def layer_frame(self, normal_axis: int) -> np.ndarray:
        """[3, 3] orthonormal rows (u, v, n): n normal to the layers of constant i_{normal_axis},
        u along the cell vector (normal_axis + 1) % 3, v = n × u."""
        normal = np.linalg.inv(self.cell)[:, normal_axis]  # reciprocal vector: normal to the lattice planes
        normal /= np.linalg.norm(normal)
        along = self.cell[(normal_axis + 1) % 3]
        u = along - (along @ normal) * normal
        u /= np.linalg.norm(u)
        return np.stack([u, np.cross(normal, u), normal])

    def closest_axis(self) -> int:
        """The lattice axis whose layer normal is closest to the mean dipole (2 when the mean is zero)."""
        mean = self.values.reshape(-1, 3).mean(axis=0)
        normals = np.linalg.inv(self.cell).T
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        overlap = np.abs(normals @ mean)
        return 2 if not np.any(overlap > 0) else int(np.argmax(overlap))

    def layers(self, normal_axis: int) -> np.ndarray:
        """[n_{axis}, n_{axis+1}, n_{axis+2}, 3] (p·u, p·v, p·n) of :meth:`layer_frame` for every layer:
        element [k, a, b] is the cell in layer k at index a along axis (normal_axis + 1) % 3 and b
        along (normal_axis + 2) % 3."""
        if normal_axis not in (0, 1, 2):
            raise ValueError(f"the layer normal is a lattice axis 0, 1 or 2, got {normal_axis}")
        ordered = np.moveaxis(self.values, (normal_axis, (normal_axis + 1) % 3, (normal_axis + 2) % 3), (0, 1, 2))
        return ordered @ self.layer_frame(normal_axis).T


def dipole_map(cells: PerovskiteCells, p: np.ndarray, cell: np.ndarray) -> DipoleMap:
    """Arrange one set of local dipoles [M, 3] on the lattice of ``cells`` (``cell``: the supercell, Å).

    Raises ``ValueError`` when the reference's B sites do not form an n1 × n2 × n3
    grid along the supercell vectors.
    """
    if cells.shape is None:
        raise ValueError("local-dipole maps need a supercell of n1 × n2 × n3 perovskite cells along its own "
                         "vectors; give such a supercell (e.g. `atomflux md --repeat n1 n2 n3`)")
    p = np.asarray(p, dtype=float)
    if p.shape != (cells.n_cells, 3):
        raise ValueError(f"expected one dipole per cell, shape ({cells.n_cells}, 3), got {p.shape}")
    shape = np.array(cells.shape)
    b_fractional = cells.reference_fractional[cells.members[:, 0]] * shape
    offset = b_fractional[0] % 1.0  # every B site sits at (i + offset) / n along each vector
    index = np.rint(b_fractional - offset).astype(int) % shape
    values = np.full((*cells.shape, 3), np.nan)
    values[tuple(index.T)] = p
    if np.isnan(values).any():
        raise ValueError("two B sites of the reference fall on one lattice position; give an undistorted reference")
    return DipoleMap(values, np.asarray(cell, dtype=float))


def plot_dipole_map(dipole_map_: DipoleMap, path: str | Path, title: str, units: str, layers: int = 3,
                    normal_axis: int | None = None) -> Path:
    """PNG of up to ``layers`` evenly spaced layers: in-plane p as arrows, out-of-plane p as colour.

    ``normal_axis`` None: the lattice axis closest to the mean dipole (:meth:`DipoleMap.closest_axis`).
    One colour scale, symmetric about zero, for all panels.
    """
    from ..plotting import pyplot

    axis = dipole_map_.closest_axis() if normal_axis is None else normal_axis
    components = dipole_map_.layers(axis)
    picked = np.unique(np.linspace(0, len(components), min(layers, len(components)), endpoint=False).astype(int))
    limit = float(np.abs(components[..., 2]).max()) or 1.0
    longest = float(np.linalg.norm(components[..., :2], axis=-1).max()) or 1.0  # drawn 0.9 cells long
    names = ("a", "b", "c")
    plt = pyplot()
    fig, panels = plt.subplots(1, len(picked), figsize=(3.6 * len(picked) + 1.2, 3.8), squeeze=False,
                             layout="constrained")
    for ax, k in zip(panels[0], picked):
        layer = components[k]
        image = ax.imshow(layer[..., 2].T, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
        a, b = np.meshgrid(np.arange(layer.shape[0]), np.arange(layer.shape[1]), indexing="ij")
        ax.quiver(a, b, layer[..., 0], layer[..., 1], angles="xy", scale_units="xy",
                           scale=longest / 0.9, pivot="middle", color="k")
        ax.set_xticks(range(layer.shape[0]))
        ax.set_yticks(range(layer.shape[1]))
        ax.set_title(f"layer i_{names[axis]} = {k}", fontsize=9)
        ax.set_xlabel(f"cell index along {names[(axis + 1) % 3]}")
        ax.set_ylabel(f"cell index along {names[(axis + 2) % 3]}")
    colorbar = fig.colorbar(image, ax=panels[0].tolist(), shrink=0.85)
    colorbar.set_label(f"p out of plane ({units})")
    fig.suptitle(f"{title}\narrows: in-plane p (the longest, {longest:.3g} {units}, drawn 0.9 cell long)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
