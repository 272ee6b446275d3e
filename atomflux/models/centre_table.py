"""Neighbour pairs grouped by centre atom in a padded table.

Many-body descriptors sum over the pairs that start at each atom.  Grouping
the pairs by centre into a padded table ``[n_atoms, width]`` (``width`` = the
largest neighbour count) turns these sums into batched matrix products, and
lets a model work on any contiguous range of centre atoms at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CentreTable:
    """Slots of a padded ``[n_atoms, width]`` table for the pairs of a batch.

    Attributes
    ----------
    n_atoms : int
        Number of centre atoms (rows).
    width : int
        Slots per row (the largest number of pairs of any atom, at least 1).
    order : Tensor [P] (long) or None
        Pair indices sorted by centre (stable); ``None`` when the pairs already are.
    starts : Tensor [n_atoms + 1] (long)
        Position of each atom's first pair in the sorted order (CSR row pointer).
    slots : Tensor [P] (long)
        Flat slot ``atom * width + rank`` of each pair, in sorted order.
    """

    n_atoms: int
    width: int
    order: torch.Tensor | None
    starts: torch.Tensor
    slots: torch.Tensor

    @classmethod
    def from_centres(cls, centres: torch.Tensor, n_atoms: int) -> "CentreTable":
        """Table for pairs whose first atom is ``centres`` [P] (indices < ``n_atoms``)."""
        order = None
        if len(centres) > 1 and not bool((centres[1:] >= centres[:-1]).all()):
            order = torch.argsort(centres, stable=True)
            centres = centres[order]
        counts = torch.bincount(centres, minlength=n_atoms)
        starts = torch.zeros(n_atoms + 1, dtype=torch.long, device=centres.device)
        torch.cumsum(counts, 0, out=starts[1:])
        width = max(int(counts.max()) if n_atoms else 0, 1)
        rank = torch.arange(len(centres), device=centres.device) - starts[centres]
        return cls(int(n_atoms), width, order, starts, centres * width + rank)

    def pair_range(self, first: int, last: int) -> tuple[torch.Tensor | slice, torch.Tensor]:
        """Pairs of the centre atoms ``first..last-1``: their indices and their slots in the
        sub-table of those rows (``(atom - first) * width + rank``)."""
        begin, end = int(self.starts[first]), int(self.starts[last])
        pairs = slice(begin, end) if self.order is None else self.order[begin:end]
        return pairs, self.slots[begin:end] - first * self.width

    def last_centre(self) -> int:
        """Index of the last atom that has pairs (-1 if none)."""
        counts = self.starts[1:] - self.starts[:-1]
        nonzero = torch.nonzero(counts)
        return int(nonzero[-1]) if len(nonzero) else -1

    def max_pairs(self, first: int, last: int) -> int:
        """Slots of rows ``first..last-1`` (padded size of that part of the table)."""
        return (last - first) * self.width
