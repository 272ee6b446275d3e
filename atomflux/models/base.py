"""The :class:`Potential` contract shared by every atomflux model.

A potential is a ``torch.nn.Module`` that maps a :class:`~atomflux.systems.Batch`
and its pair vectors ``r_ij`` (Å, Tensor [P, 3]) to per-atom quantities:

``energy``            Tensor [N], eV — required;
``features``          Tensor [N, F] — input of the last linear layer, if any;
``energy_ensemble``   Tensor [N, M], eV — shallow-ensemble members, if any.

Potentials never compute forces: :func:`atomflux.evaluate` differentiates the
energy with respect to the pair vectors.  Because positions enter only
through ``r_ij``, translation invariance holds by construction.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from ase.data import atomic_numbers, chemical_symbols

from ..systems import Batch


def floating_dtype(module: torch.nn.Module, default: torch.dtype = torch.float64) -> torch.dtype:
    """Floating dtype of a module's parameters (else buffers); ``default`` if it has neither."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default


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
