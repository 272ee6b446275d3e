"""Energy changes of trial atom swaps: locally for strictly local potentials, else the whole system.

A *swap* exchanges the species of two atoms ``(a, b)``; positions stay.  The
engines here keep the energy of one configuration and give the energy
change ΔE (eV) of many trial swaps at once; :meth:`SwapEnergy.apply`
commits one of them.

- :class:`DensitySwapEnergy` (the power-spectrum reference architecture, the
  default for it): the same affected atoms, but their densities are updated
  by the terms of the pairs pointing at ``a`` and ``b`` from pair factors
  cached per set of positions, then the network of those atoms alone.
- :class:`LocalSwapEnergy` (other atomflux potentials with ``strictly_local``):
  atom k's energy depends only on its own pairs, so a swap of ``a`` and
  ``b`` changes the energies of the *affected* atoms {a, b} ∪ N(a) ∪ N(b)
  (N: neighbours within the cutoff, periodic images included) and nothing
  else.  Per-atom energies of the current configuration are stored; for K
  trial swaps one :func:`~atomflux.evaluate` call computes the new energies
  of the K affected sets, so ΔE = Σ_affected (e'_k − e_k).  The batch holds
  each trial's affected atoms as centres (their pairs copied from the full
  neighbour list, the swapped species applied) followed by the neighbour
  atoms they see, which have no pairs of their own.
- :class:`FullSwapEnergy` (any atomflux potential): K copies of the whole
  system with the species swapped, in one batched ``evaluate`` call.
- :class:`CalculatorSwapEnergy` (any ASE calculator): one energy call per trial.

The neighbour list (and everything cached from positions) is built for the
positions given to ``reset``; after MD or relaxation the engine must be reset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from ase import Atoms

from ..evaluate import evaluate
from ..systems import Batch

#: atoms per evaluate call when whole systems are copied (FullSwapEnergy)
DEFAULT_ATOMS_PER_CALL = 20000


@dataclass
class Trial:
    """One trial swap of atoms ``a`` and ``b`` evaluated in the engine's current configuration.

    Attributes
    ----------
    a, b : int
        The atoms whose species are exchanged.
    delta : float
        Energy change of the swap, eV.
    affected : ndarray or None
        Atoms whose energies the swap changes (``None``: potentially all):
        a later accepted swap whose affected atoms overlap these makes ``delta`` stale.
    payload : Any
        What :meth:`SwapEnergy.apply` needs to commit the swap without recomputing.
    """

    a: int
    b: int
    delta: float
    affected: np.ndarray | None
    payload: Any = None


class SwapEnergy:
    """Base class: the configuration (``numbers``, eV ``energy``) and trial swaps on it."""

    numbers: np.ndarray
    energy: float
    #: whether several trials cost less per trial than one (else the chain evaluates them one at a time)
    batched: bool = True

    def reset(self, atoms: Atoms) -> None:
        """Take positions, cell and species from ``atoms`` and compute the energy."""
        raise NotImplementedError

    def trials(self, swaps: np.ndarray) -> list[Trial]:
        """Energy changes of the swaps ``[K, 2]`` (atom indices) in the current configuration."""
        raise NotImplementedError

    def apply(self, trial: Trial) -> None:
        """Commit a trial swap evaluated in the current configuration."""
        raise NotImplementedError

    def _bind(self, potential: torch.nn.Module) -> None:
        """Evaluate with ``potential`` in its own floating dtype, on the device of its buffers."""
        self.potential = potential
        self.dtype = _dtype_of(potential)
        self.device = next((t.device for t in potential.buffers()), torch.device("cpu"))

    def _swap_numbers(self, a: int, b: int) -> None:
        self.numbers[[a, b]] = self.numbers[[b, a]]


def swap_energy(model, atoms: Atoms, atoms_per_call: int = DEFAULT_ATOMS_PER_CALL) -> SwapEnergy:
    """The fastest exact engine for ``model`` (a potential, an ``AtomfluxCalculator`` or any ASE calculator).

    Strictly local atomflux potentials get :class:`LocalSwapEnergy`, other
    atomflux potentials :class:`FullSwapEnergy`, other calculators
    :class:`CalculatorSwapEnergy`.
    """
    potential = model if isinstance(model, torch.nn.Module) else getattr(model, "potential", None)
    if isinstance(potential, torch.nn.Module):
        if getattr(potential, "strictly_local", False):
            return DensitySwapEnergy(potential, atoms) if has_pair_densities(potential) else \
                LocalSwapEnergy(potential, atoms)
        return FullSwapEnergy(potential, atoms, atoms_per_call)
    if not hasattr(model, "get_potential_energy"):
        raise ValueError(f"swap Monte Carlo needs an atomflux potential or an ASE calculator, got {type(model).__name__}")
    return CalculatorSwapEnergy(model, atoms)


def _dtype_of(potential: torch.nn.Module) -> torch.dtype:
    from ..io import native_dtypes

    for tensor in list(potential.parameters()) + list(potential.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return native_dtypes(potential)[0]


def _check_species(potential: torch.nn.Module, numbers: np.ndarray) -> None:
    check = getattr(potential, "check_species", None)
    if check is not None:
        check(numbers)


class LocalSwapEnergy(SwapEnergy):
    """ΔE of swaps from the per-atom energies of the affected atoms only (strictly local potentials).

    Parameters
    ----------
    potential
        An atomflux potential with ``strictly_local = True`` (its atomic
        energy depends only on its own pairs and their species).
    atoms
        The configuration (positions, cell, periodicity, species).
    """

    def __init__(self, potential: torch.nn.Module, atoms: Atoms) -> None:
        if not getattr(potential, "strictly_local", False):
            raise ValueError(f"{type(potential).__name__} is not strictly local: use FullSwapEnergy")
        self._bind(potential)
        self.reset(atoms)

    def reset(self, atoms: Atoms) -> None:
        _check_species(self.potential, atoms.numbers)
        batch = Batch.from_atoms(atoms, self.potential.cutoff, self.dtype, self.device)
        order = torch.argsort(batch.pairs[:, 0], stable=True)          # pairs grouped by their centre
        self._batch = replace(batch, pairs=batch.pairs[order], shifts=batch.shifts[order])
        centres = self._batch.pairs[:, 0].cpu().numpy()
        self._neighbour = self._batch.pairs[:, 1].cpu().numpy()
        self._offsets = np.searchsorted(centres, np.arange(len(atoms) + 1))
        self._affected_by = [np.union1d(self._neighbour[self._offsets[i]:self._offsets[i + 1]], [i])
                             for i in range(len(atoms))]
        self.numbers = atoms.numbers.astype(np.int64).copy()
        self._environment_slot = np.zeros(len(atoms), dtype=np.int64)   # scratch: batch index of environment atoms
        with torch.no_grad():
            res = evaluate(self.potential, self._batch, forces=False, energies=True)
        self.atom_energies = res.energies.cpu().numpy().astype(np.float64)
        self.energy = float(self.atom_energies.sum())

    def affected(self, a: int, b: int) -> np.ndarray:
        """Atoms whose energies change when ``a`` and ``b`` swap species: {a, b} ∪ N(a) ∪ N(b)."""
        return np.union1d(self._affected_by[a], self._affected_by[b])

    def trials(self, swaps: np.ndarray) -> list[Trial]:
        swaps = np.asarray(swaps, dtype=np.int64).reshape(-1, 2)
        if len(swaps) == 0:
            return []
        centres = [self.affected(int(a), int(b)) for a, b in swaps]
        sizes = np.array([len(c) for c in centres])
        centre_atoms = np.concatenate(centres)                                   # [C] full-system index
        trial_of_centre = np.repeat(np.arange(len(swaps)), sizes)
        # pairs of every centre, copied from the full (sorted) list
        counts = self._offsets[centre_atoms + 1] - self._offsets[centre_atoms]
        first = np.repeat(self._offsets[centre_atoms] - np.cumsum(counts) + counts, counts)
        pair_index = first + np.arange(counts.sum())                             # [P] into the full list
        owner = np.repeat(np.arange(len(centre_atoms)), counts)                  # local centre of each pair
        neighbour = self._neighbour[pair_index]
        # neighbours that are the trial's own swapped atoms point to that trial's centre copy
        # (they are always centres of their trial); every other neighbour to a shared environment atom
        trial_of_pair = trial_of_centre[owner]
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        local_j = np.full(len(neighbour), -1, dtype=np.int64)
        for column in range(2):
            swapped = swaps[trial_of_pair, column]
            hit = neighbour == swapped
            position = np.array([np.searchsorted(centres[t], swaps[t, column]) for t in range(len(swaps))])
            local_j[hit] = start[trial_of_pair[hit]] + position[trial_of_pair[hit]]
        outside = local_j < 0
        seen = np.zeros(len(self.numbers), dtype=bool)              # a lookup table, not a sort of the pairs
        seen[neighbour[outside]] = True
        environment = np.flatnonzero(seen)
        self._environment_slot[environment] = np.arange(len(centre_atoms), len(centre_atoms) + len(environment))
        local_j[outside] = self._environment_slot[neighbour[outside]]
        numbers = self.numbers[centre_atoms].copy()
        for column, other in ((0, 1), (1, 0)):
            is_swapped = centre_atoms == swaps[trial_of_centre, column]
            numbers[is_swapped] = self.numbers[swaps[trial_of_centre[is_swapped], other]]
        all_atoms = np.concatenate([centre_atoms, environment])
        full = self._batch
        tensor = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        batch = Batch(
            positions=full.positions[tensor(all_atoms)],
            numbers=tensor(np.concatenate([numbers, self.numbers[environment]])),
            cell=full.cell, pbc=full.pbc,
            system=torch.zeros(len(all_atoms), dtype=torch.long, device=self.device),
            pairs=tensor(np.stack([owner, local_j], axis=1)),
            shifts=full.shifts[tensor(pair_index)],
            cutoff=full.cutoff,
        )
        with torch.no_grad():
            res = evaluate(self.potential, batch, forces=False, energies=True)
        new = res.energies[:len(centre_atoms)].cpu().numpy().astype(np.float64)
        change = np.bincount(trial_of_centre, weights=new - self.atom_energies[centre_atoms], minlength=len(swaps))
        pieces = np.split(new, np.cumsum(sizes)[:-1])
        return [Trial(int(a), int(b), float(change[t]), centres[t], pieces[t]) for t, (a, b) in enumerate(swaps)]

    def apply(self, trial: Trial) -> None:
        self._swap_numbers(trial.a, trial.b)
        self.atom_energies[trial.affected] = trial.payload
        self.energy = float(self.atom_energies.sum())


class DensitySwapEnergy(SwapEnergy):
    """ΔE of swaps by updating neighbour densities pair by pair (potentials with ``pair_factors``).

    For a potential whose atomic energy is a function of the atom's species
    and its neighbour density, with the density of atom i (see
    :meth:`~atomflux.models.PowerSpectrumPotential.pair_factors`)

        A_i = s(z_i) ⊙ U_i,    U_i = Σ_j (b_ij · W[z_j]) ⊗ m_ij,

    positions enter only through the pair factors b_ij (radial basis) and
    m_ij (angular monomials), species only through the centre scale s(z_i)
    and the neighbour weights W[z_j].  Positions are fixed between
    ``reset`` calls, so the factors of every pair are computed once there,
    stored in the order of the atom each pair points at.  A swap of ``a`` and
    ``b`` then changes U only through the pairs pointing at them: by
    (b_ij · (W[z_b] − W[z_a])) ⊗ m_ij for every pair j = a, the opposite for
    j = b; the centre scale changes for a and b themselves.  A trial is one
    gather of the stored factors, one product with the weight changes, an
    update of the affected atoms' U, and the network for those atoms; all K
    trials in one call.  ΔE is exact to round-off (the stored U carry ~1e-16
    relative round-off per accepted swap; ``reset`` recomputes them).

    After positions change (MD, relaxation) ``reset`` must be called: it
    rebuilds the neighbour list, the pair factors and the densities.  The
    potential's parameters are read at ``reset`` too (weights, centre scales,
    :class:`~atomflux.models.power_spectrum.EnergyReadout`).

    Parameters
    ----------
    potential
        A strictly local atomflux potential with ``pair_factors``,
        ``radial_channels``, ``species_radial_weights``, ``centre_scales``
        and ``energy_readout`` (the power-spectrum reference architecture).
    atoms
        The configuration.
    pairs_per_call
        Pairs per call when the pair factors and densities are computed (``reset``).
    """

    def __init__(self, potential: torch.nn.Module, atoms: Atoms, pairs_per_call: int = 20000) -> None:
        if not has_pair_densities(potential):
            raise ValueError(f"{type(potential).__name__} has no pair densities: use LocalSwapEnergy")
        self._bind(potential)
        self.pairs_per_call = int(pairs_per_call)
        self.reset(atoms)

    @torch.no_grad()
    def reset(self, atoms: Atoms) -> None:
        _check_species(self.potential, atoms.numbers)
        batch = Batch.from_atoms(atoms, self.potential.cutoff, self.dtype, self.device)
        centre, neighbour = (column.cpu().numpy() for column in batch.pairs.T)
        order = np.argsort(neighbour, kind="stable")                   # pairs grouped by the atom they point at
        self._centre = centre[order]
        self._offsets = np.searchsorted(neighbour[order], np.arange(len(atoms) + 1))
        self.numbers = atoms.numbers.astype(np.int64).copy()
        self._kinds = self.potential.species_index(torch.as_tensor(self.numbers, device=self.device)).cpu().numpy()
        n_species = len(self.potential.species)
        self._readout = self.potential.energy_readout(self.dtype, self.device)
        self._scales = self.potential.centre_scales(torch.arange(n_species, device=self.device)).detach()   # [S, C]
        weights = self.potential.species_radial_weights().to(self.dtype)                      # [S, K, C]
        # W[new] − W[old] of every species change old → new, laid out [K, old·S + new, C]
        self._weight_changes = (weights[None, :] - weights[:, None]).flatten(0, 1).transpose(0, 1).contiguous()
        vectors = batch.pair_vectors()[torch.as_tensor(order, device=self.device)]
        centres = torch.as_tensor(self._centre, device=self.device)
        neighbour_kinds = torch.as_tensor(self._kinds[neighbour[order]], device=self.device)
        spec = self.potential.descriptor_spec(self.dtype, self.device)
        unscaled = torch.zeros((len(atoms), spec.n_channels, spec.n_moments), dtype=self.dtype, device=self.device)
        basis, monomials = [torch.zeros((0, spec.n_radial), dtype=self.dtype, device=self.device)], \
            [torch.zeros((0, spec.n_moments), dtype=self.dtype, device=self.device)]
        for first in range(0, len(order), self.pairs_per_call):
            chosen = slice(first, first + self.pairs_per_call)
            b, m = self.potential.pair_factors(vectors[chosen])
            unscaled.index_add_(0, centres[chosen],
                                self.potential.radial_channels(b, neighbour_kinds[chosen])[:, :, None] * m[:, None, :])
            basis.append(b)
            monomials.append(m)
        basis = torch.cat(basis)
        self._signed_basis = torch.cat([basis, -basis])     # row P + q: −b of pair q (pairs pointing at b of a swap)
        self._monomials = torch.cat(monomials)
        self.unscaled_densities = unscaled
        self.atom_energies = self._energies(unscaled, torch.as_tensor(self._kinds, device=self.device))
        self.energy = float(self.atom_energies.sum())

    def _energies(self, unscaled: torch.Tensor, kinds: torch.Tensor) -> np.ndarray:
        densities = unscaled * self._scales.index_select(0, kinds)[:, :, None]
        energies = self._readout(densities, kinds)
        return energies.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def trials(self, swaps: np.ndarray) -> list[Trial]:
        swaps = np.asarray(swaps, dtype=np.int64).reshape(-1, 2)
        if len(swaps) == 0:
            return []
        n_atoms, n_trials, n_pairs = len(self.numbers), len(swaps), len(self._centre)
        # the pairs pointing at a or at b of every trial
        starts, ends = self._offsets[swaps].ravel(), self._offsets[swaps + 1].ravel()
        counts = ends - starts
        pairs = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        site = np.repeat(np.arange(2 * n_trials), counts)             # 2t: pointing at a, 2t + 1: at b
        trial_of_pair, at_b = site >> 1, (site & 1) * n_pairs         # at b: the rows of −b_ij
        centres = self._centre[pairs]
        # affected atoms of every trial, as sorted keys trial·N + atom: {a, b} ∪ centres of the pairs
        keys = np.unique(np.concatenate([(np.arange(n_trials)[:, None] * n_atoms + swaps).ravel(),
                                         trial_of_pair * n_atoms + centres]))
        slot_atoms, trial_of_slot = keys % n_atoms, keys // n_atoms
        targets = np.searchsorted(keys, trial_of_pair * n_atoms + centres)
        old, new = self._kinds[swaps[:, 0]], self._kinds[swaps[:, 1]]          # species of a and b
        kinds = self._kinds[slot_atoms]                                # centre species after the swap
        for column in range(2):
            is_site = slot_atoms == swaps[trial_of_slot, column]
            kinds[is_site] = self._kinds[swaps[trial_of_slot[is_site], 1 - column]]
        # pairs pointing at a: b_ij · (W[z_b] − W[z_a]), pointing at b: the opposite; one transfer of all indices
        rows = np.arange(len(pairs)) * n_trials + trial_of_pair       # each pair's own trial in the [Q, T] products
        packed = torch.as_tensor(np.concatenate([pairs + at_b, pairs, rows, slot_atoms, targets, kinds,
                                                 old * len(self._scales) + new]), device=self.device)
        signed_t, pairs_t, rows_t, slots_t, targets_t, kinds_t, change_t = packed.split(
            [len(pairs)] * 3 + [len(slot_atoms), len(pairs), len(slot_atoms), n_trials])
        n_radial, _, n_channels = self._weight_changes.shape
        changes = self._weight_changes.index_select(1, change_t).view(n_radial, n_trials * n_channels)
        channels = (self._signed_basis.index_select(0, signed_t) @ changes).view(-1, n_channels)
        if n_trials > 1:
            channels = channels.index_select(0, rows_t)
        terms = channels[:, :, None] * self._monomials.index_select(0, pairs_t)[:, None, :]
        unscaled = self.unscaled_densities.index_select(0, slots_t).index_add_(0, targets_t, terms)
        energies = self._energies(unscaled, kinds_t)
        delta = np.bincount(trial_of_slot, weights=energies - self.atom_energies[slot_atoms], minlength=n_trials)
        bounds = np.searchsorted(trial_of_slot, np.arange(n_trials + 1))
        return [Trial(int(a), int(b), float(delta[t]), slot_atoms[bounds[t]:bounds[t + 1]],
                      (unscaled[bounds[t]:bounds[t + 1]], energies[bounds[t]:bounds[t + 1]]))
                for t, (a, b) in enumerate(swaps)]

    def apply(self, trial: Trial) -> None:
        self._swap_numbers(trial.a, trial.b)
        self._kinds[[trial.a, trial.b]] = self._kinds[[trial.b, trial.a]]
        unscaled, energies = trial.payload
        self.unscaled_densities.index_copy_(0, torch.as_tensor(trial.affected, device=self.device), unscaled)
        self.atom_energies[trial.affected] = energies
        self.energy = float(self.atom_energies.sum())


def has_pair_densities(potential) -> bool:
    """Whether ``potential`` gives its densities pair by pair (:class:`DensitySwapEnergy` applies)."""
    return all(callable(getattr(potential, name, None)) for name in
               ("pair_factors", "radial_channels", "species_radial_weights", "centre_scales", "energy_readout"))


class FullSwapEnergy(SwapEnergy):
    """ΔE of swaps from whole-system energies: K copies of the system per ``evaluate`` call.

    For atomflux potentials that are not strictly local (message passing).
    """

    def __init__(self, potential: torch.nn.Module, atoms: Atoms, atoms_per_call: int = DEFAULT_ATOMS_PER_CALL) -> None:
        self._bind(potential)
        self.atoms_per_call = int(atoms_per_call)
        self.reset(atoms)

    def reset(self, atoms: Atoms) -> None:
        _check_species(self.potential, atoms.numbers)
        self._batch = Batch.from_atoms(atoms, self.potential.cutoff, self.dtype, self.device)
        self.numbers = atoms.numbers.astype(np.int64).copy()
        self.energy = float(self._energies([self.numbers])[0])

    def _energies(self, configurations: list[np.ndarray]) -> np.ndarray:
        per_call = max(1, self.atoms_per_call // max(len(self.numbers), 1))
        out = []
        for first in range(0, len(configurations), per_call):
            chunk = configurations[first:first + per_call]
            batch = Batch.collate([replace(self._batch, numbers=torch.as_tensor(n, device=self.device)) for n in chunk])
            with torch.no_grad():
                out.append(evaluate(self.potential, batch, forces=False).energy.cpu().numpy().astype(np.float64))
        return np.concatenate(out)

    def trials(self, swaps: np.ndarray) -> list[Trial]:
        swaps = np.asarray(swaps, dtype=np.int64).reshape(-1, 2)
        configurations = []
        for a, b in swaps:
            numbers = self.numbers.copy()
            numbers[[a, b]] = numbers[[b, a]]
            configurations.append(numbers)
        if not configurations:
            return []
        energies = self._energies(configurations)
        return [Trial(int(a), int(b), float(e - self.energy), None, float(e)) for (a, b), e in zip(swaps, energies)]

    def apply(self, trial: Trial) -> None:
        self._swap_numbers(trial.a, trial.b)
        self.energy = trial.payload


class CalculatorSwapEnergy(SwapEnergy):
    """ΔE of swaps from any ASE calculator: one energy call per trial (the reference path)."""

    batched = False

    def __init__(self, calculator, atoms: Atoms) -> None:
        self.calculator = calculator
        self.reset(atoms)

    def reset(self, atoms: Atoms) -> None:
        self._atoms = atoms.copy()
        self._atoms.calc = self.calculator
        self.numbers = atoms.numbers.astype(np.int64).copy()
        self.energy = float(self._atoms.get_potential_energy())

    def trials(self, swaps: np.ndarray) -> list[Trial]:
        out = []
        for a, b in np.asarray(swaps, dtype=np.int64).reshape(-1, 2):
            numbers = self.numbers.copy()
            numbers[[a, b]] = numbers[[b, a]]
            self._atoms.numbers = numbers
            energy = float(self._atoms.get_potential_energy())
            out.append(Trial(int(a), int(b), energy - self.energy, None, energy))
        self._atoms.numbers = self.numbers.copy()
        return out

    def apply(self, trial: Trial) -> None:
        self._swap_numbers(trial.a, trial.b)
        self.energy = trial.payload
