"""Symmetric proposals of canonical swaps: uniform over the unordered pairs of unlike atoms in a region.

The number of unlike pairs in a region, Σ_{s<t} n_s n_t, depends only on the
region's composition, which swaps inside it do not change: the proposal
probability 1/M is the same before and after any swap, so Metropolis
acceptance min(1, e^(−βΔE)) alone gives detailed balance.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.data import chemical_symbols


class SwapProposer:
    """Draws pairs of unlike atoms from ``region``, uniformly, and tracks the species as swaps are accepted.

    Parameters
    ----------
    numbers
        Atomic numbers of all atoms, [N].
    region
        Indices of the atoms that may swap (default: all).
    rng
        The random generator (shared with the Monte Carlo chain, so that a
        saved generator state reproduces the run).
    """

    def __init__(self, numbers: np.ndarray, region: Sequence[int] | None, rng: np.random.Generator) -> None:
        self.rng = rng
        self.numbers = np.asarray(numbers, dtype=np.int64).copy()
        self.region = np.arange(len(numbers)) if region is None else np.unique(np.asarray(region, dtype=np.int64))
        if len(self.region) and (self.region.min() < 0 or self.region.max() >= len(numbers)):
            raise ValueError(f"swap region holds atom indices outside 0..{len(numbers) - 1}")
        self.elements = np.unique(self.numbers[self.region])
        if len(self.elements) < 2:
            only = chemical_symbols[int(self.elements[0])] if len(self.elements) else "no atoms"
            raise ValueError(f"nothing to swap: the swap region holds only {only}; "
                             "give a structure (or region) with at least two elements")
        self._lists = [self.region[self.numbers[self.region] == z].copy() for z in self.elements]
        self._slot = np.full(len(numbers), -1, dtype=np.int64)
        for members in self._lists:
            self._slot[members] = np.arange(len(members))
        self._kind = {int(z): k for k, z in enumerate(self.elements)}
        self.counts = np.array([len(m) for m in self._lists], dtype=float)
        # swaps keep the counts, so the cumulative weights of the kind draws are constants
        total = self.counts.sum()
        self._first_kind = np.cumsum(self.counts * (total - self.counts))     # P(s) ∝ n_s (N − n_s)
        self._second_kind = [np.cumsum(np.where(np.arange(len(self.counts)) == s, 0.0, self.counts))
                             for s in range(len(self.counts))]               # P(t | s) ∝ n_t, t ≠ s

    @property
    def n_region(self) -> int:
        return len(self.region)

    @property
    def n_unlike_pairs(self) -> int:
        """M = Σ_{s<t} n_s n_t (constant under swaps)."""
        total = self.counts.sum()
        return int(round((total**2 - (self.counts**2).sum()) / 2))

    def draw(self, size: int) -> np.ndarray:
        """``size`` independent uniform draws of unlike pairs, [size, 2].

        The first atom's species s with probability ∝ n_s (N − n_s), the second's
        t ≠ s ∝ n_t, each atom uniform within its species: every unlike pair has
        probability 1/M (each of its two orders contributes 1/(2M)).
        """
        uniforms = self.rng.random((size, 4))
        out = np.empty((size, 2), dtype=np.int64)
        for k, (u_first, u_second, u_a, u_b) in enumerate(uniforms):
            s = _pick_weighted(self._first_kind, u_first)
            out[k, 0] = self._pick(s, u_a)
            out[k, 1] = self._pick(_pick_weighted(self._second_kind[s], u_second), u_b)
        return out

    def draw_touching(self, touched: np.ndarray) -> np.ndarray:
        """One uniform draw among the unlike pairs with at least one atom in ``touched``, [2].

        With ``touched`` the atoms swapped since a batch of proposals was drawn,
        a stale proposal that touches them is replaced by this draw: the
        unlike pairs away from them are the same before and after those swaps
        and so are their numbers, so the proposal stays uniform.
        """
        touched = np.asarray(touched, dtype=np.int64)
        total = self.counts.sum()
        kinds = np.array([self._kind[int(z)] for z in self.numbers[touched]])
        cumulative = np.cumsum(total - self.counts[kinds])
        touched_set = set(touched.tolist())
        while True:
            u_x, u_kind, u_y, u_keep = self.rng.random(4)
            x = int(touched[_pick_weighted(cumulative, u_x)])
            s = self._kind[int(self.numbers[x])]
            y = self._pick(_pick_weighted(self._second_kind[s], u_kind), u_y)
            # a pair with both atoms touched can be reached from either side: keep it half the time
            if y not in touched_set or u_keep < 0.5:
                return np.array([x, y], dtype=np.int64)

    def swap(self, a: int, b: int) -> None:
        """Record that atoms ``a`` and ``b`` exchanged species."""
        ka, kb = self._kind[int(self.numbers[a])], self._kind[int(self.numbers[b])]
        sa, sb = self._slot[a], self._slot[b]
        self._lists[ka][sa], self._lists[kb][sb] = b, a
        self._slot[a], self._slot[b] = sb, sa
        self.numbers[[a, b]] = self.numbers[[b, a]]

    def _pick(self, kind: int, uniform: float) -> int:
        """The member of species ``kind`` at the uniform number ``uniform`` ∈ [0, 1)."""
        members = self._lists[kind]
        return int(members[min(int(uniform * len(members)), len(members) - 1)])


def _pick_weighted(cumulative: np.ndarray, uniform: float) -> int:
    """Index k with probability ∝ its weight, from the cumulative weights and a uniform number ∈ [0, 1)."""
    return min(int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right")), len(cumulative) - 1)
