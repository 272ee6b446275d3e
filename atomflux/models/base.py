"""The :class:`Potential` contract shared by every atomflux model.

A potential is a ``torch.nn.Module`` that maps a :class:`~atomflux.systems.Batch`
and its pair vectors ``r_ij`` (Å, Tensor [P, 3]) to per-atom quantities:

``energy``            Tensor [N], eV — required;
``features``          Tensor [N, F] — input of the last linear layer, if any;
``energy_ensemble``   Tensor [N, M], eV — shallow-ensemble members, if any.

Potentials never assemble forces: :func:`atomflux.evaluate` turns the gradient
of the energy with respect to the pair vectors into forces, stress and
virials.  It gets that gradient from autograd, or, for a potential that
implements :meth:`Potential.gradient_chunks`, from the potential's own
hand-derived backward pass (energy and ensemble members together, a range
of centre atoms at a time, so memory stays bounded).  Because positions
enter only through ``r_ij``, translation invariance holds by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from ase.data import atomic_numbers, chemical_symbols

from ..systems import Batch


def no_uncertainty_message(potential: torch.nn.Module) -> str:
    """The one-line error for asking uncertainty of a model that has none."""
    return (f"{type(potential).__name__} has no uncertainty: make it a shallow ensemble or "
            "add LLPR (atomflux.uncertainty)")


def n_members(potential: torch.nn.Module) -> int:
    """Number of members (shallow ensemble) or posterior samples (LLPR); 0 if none."""
    if hasattr(potential, "n_samples"):
        return int(potential.n_samples)
    return int(getattr(potential, "n_ensemble", 1)) if getattr(potential, "n_ensemble", 1) > 1 else 0


def floating_dtype(module: torch.nn.Module, default: torch.dtype = torch.float64) -> torch.dtype:
    """Floating dtype of a module's parameters (else buffers); ``default`` if it has neither."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default


@dataclass
class GradientChunk:
    """What a potential computed for a range of centre atoms (see :meth:`Potential.gradient_chunks`).

    Attributes
    ----------
    atoms : slice
        The centre atoms.
    pairs : slice or Tensor [p] (long)
        Their pairs (indices into ``batch.pairs``): all pairs that start at them.
    outputs : dict of Tensor
        Per-atom outputs of :meth:`Potential.forward` for these atoms (``energy`` [n], ...).
    energy_gradient : Tensor [p, 3] or None
        ∂E/∂r_p of these pairs, eV/Å.
    member_gradients : Tensor [M, p, 3] or None
        ∂E_m/∂r_p of every ensemble member (or posterior sample), eV/Å.
    energy_is_member_mean : bool
        ``energy_gradient`` is the mean of ``member_gradients`` (the energy is the members'
        mean): sums of the energy gradient (forces, virial) may be taken as the mean of
        the members' sums.
    """

    atoms: slice
    pairs: slice | torch.Tensor
    outputs: dict[str, torch.Tensor]
    energy_gradient: torch.Tensor | None = None
    member_gradients: torch.Tensor | None = None
    energy_is_member_mean: bool = False


class Potential(torch.nn.Module):
    """Base class: species bookkeeping, cutoff and the serialisable config.

    Parameters
    ----------
    species
        Chemical symbols the model knows, e.g. ``["Cu", "Ag"]``.  ``None``
        (analytic potentials only) means every element.
    cutoff
        Interaction cutoff radius in Å.
    """

    #: name used in model files to rebuild the architecture
    architecture: str = ""
    #: True when atom i's energy depends only on the pairs (i, j) that start at i
    #: (no message passing): the heat flux then has a closed pair form
    strictly_local: bool = False
    #: False for heads that predict other quantities than the energy (the Hamiltonian head)
    predicts_energy: bool = True
    #: True when the energy is a sum over pairs of a term symmetric in its two atoms, half to
    #: each atom, and nothing else: then any half of the full pair list carries half the
    #: energy (the LAMMPS bridge evaluates such models on a half list)
    pairwise: bool = False

    def __init__(self, species: Sequence[str] | None, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        if species is None:
            self.species: list[str] | None = None
            table = torch.zeros(len(chemical_symbols), dtype=torch.long)
        else:
            self.species = [str(s) for s in species]
            unknown = [s for s in self.species if s not in atomic_numbers]
            if unknown:
                raise ValueError(f"unknown chemical symbol(s) {unknown}")
            if len(set(self.species)) != len(self.species):
                raise ValueError(f"species listed twice in {self.species}")
            table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
            for k, s in enumerate(self.species):
                table[atomic_numbers[s]] = k
        self.register_buffer("species_table", table, persistent=False)

    @property
    def n_species(self) -> int:
        return 1 if self.species is None else len(self.species)

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """Index of each atom's species in :attr:`species`, Tensor [N] (long).

        Raises
        ------
        ValueError
            If an element is not known to the model.
        """
        index = self.species_table[numbers]
        if self.species is not None and bool((index < 0).any()):
            missing = sorted({chemical_symbols[int(z)] for z in numbers[index < 0]})
            raise ValueError(
                f"element(s) {', '.join(missing)} not known to this model; "
                f"it knows {', '.join(self.species)}"
            )
        return index

    def check_species(self, numbers: Sequence[int]) -> None:
        """Raise ``ValueError`` if any atomic number is unknown to the model."""
        self.species_index(torch.as_tensor(list(numbers), dtype=torch.long))

    def config(self) -> dict[str, Any]:
        """Hyper-parameters that rebuild this architecture (JSON-serialisable)."""
        raise NotImplementedError

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def gradient_chunks(self, batch: Batch, vectors: torch.Tensor, *, gradients: bool = True, members: bool = False,
                        max_bytes: int = 2**27, feature_directions: torch.Tensor | None = None,
                        centred_directions: bool = False) -> Iterator[GradientChunk] | None:
        """Outputs and pair gradients without autograd, a range of centre atoms at a time.

        Only for strictly local potentials, whose atomic energies depend on their
        own pairs alone.  ``gradients``: also ∂E/∂r_p; ``members``: also every
        ensemble member's ∂E_m/∂r_p.  ``max_bytes`` bounds the working memory
        of one chunk.  ``feature_directions`` [M, F]: members with atomic
        energies ``e_i + f_i · d_m`` (LLPR samples) instead of the model's own;
        ``centred_directions``: they sum to zero (Σ_m d_m = 0), so the energy is the
        members' mean and needs no cotangent of its own.  Returns ``None`` (the default) when the potential has no
        such path; :func:`atomflux.evaluate` then uses autograd.
        """
        return None


@torch.no_grad()
def fit_energy_baseline(potential: "Potential", batches: Sequence[Batch], energies: Sequence[float | None],
                        forces_rms: float | None = None) -> None:
    """Neighbour normalisation, per-species energy baseline and output energy scale from training data.

    For models with buffers ``inv_neighbours`` (atoms per pair), ``baseline``
    [n_species] (eV per atom of each species, least squares on the total
    energies) and ``energy_scale`` (eV: ``forces_rms`` when given, else the
    std of the per-atom residual energies).

    Parameters
    ----------
    potential
        The model whose buffers are set.
    batches
        One batch per training structure.
    energies
        Total energy of each structure in eV (``None`` where unknown).
    forces_rms
        RMS force component of the training data, eV/Å.
    """
    n_pairs = sum(b.pairs.shape[0] for b in batches)
    n_atoms = sum(len(b.numbers) for b in batches)
    potential.inv_neighbours.fill_(n_atoms / max(n_pairs, 1))
    rows, targets = [], []
    for b, e in zip(batches, energies):
        if e is not None:
            rows.append(torch.bincount(potential.species_index(b.numbers), minlength=potential.n_species)
                        .to(torch.float64))
            targets.append(float(e))
    if rows:
        a, y = torch.stack(rows), torch.tensor(targets, dtype=torch.float64)
        coef = torch.linalg.solve(a.T @ a + 1e-8 * torch.eye(a.shape[1], dtype=torch.float64), a.T @ y)
        potential.baseline.copy_(coef.to(potential.baseline.dtype))
        residual = (y - a @ coef) / a.sum(1)
        scale = forces_rms if forces_rms else float(residual.std()) if len(y) > 1 else 1.0
        potential.energy_scale.fill_(max(scale, 1e-3))
    elif forces_rms:
        potential.energy_scale.fill_(forces_rms)
