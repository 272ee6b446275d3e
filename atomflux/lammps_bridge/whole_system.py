"""Message-passing models in LAMMPS: whole systems instead of pairs with ghost stand-ins.

A potential that is not strictly local (``strictly_local = False``; message
passing reaches ``interaction_range`` R = layers × cutoff) gives an atom an
energy that depends on atoms up to R away, so the pairs of LAMMPS's
neighbour list with one stand-in atom per ghost type are not enough.
``pair_style atomflux`` hands such a model whole systems instead, as
:class:`~atomflux.systems.Batch` es built by :func:`system_batch`:

- one MPI rank: the local atoms in the LAMMPS box, periodic where the box
  is, with atomflux's own neighbour list (cell shifts, as for ASE): message
  passing over the periodic graph is exact for any box size and no atom is
  replicated;
- several ranks, a layer-stack model (``layer_stack = True``: its
  ``forward`` takes ``refresh=``, see :class:`HaloExchange`): the local
  atoms followed by LAMMPS's ordinary ghost atoms out to ONE cutoff + skin,
  as a non-periodic cluster without the pairs whose messages go to ghosts; before
  each message-passing layer after the first the ghosts' node features are
  replaced by their owners' (forward communication), and the backward pass
  sums the gradients with respect to ghost features into the owners
  (reverse communication), so the ranks differentiate the total energy
  together;
- several ranks, an opaque model: the local atoms followed by LAMMPS's
  ghost atoms out to R + skin, as one non-periodic cluster (the full-shell
  fallback).

Across ranks only the local atoms' energies count (:class:`OwnedEnergies`),
and the forces their gradient puts on ghost atoms are summed into the
owners by LAMMPS's reverse communication.

Forces, the virial and per-atom virials come from
:func:`~atomflux.evaluate.evaluate` on that batch, except on heat-flux steps of
a layer-stack model: then everything, the heat-flux ("centroid") virials
included, comes from one forward pass with the halo (:func:`halo_flux_step`):
across ranks with LAMMPS's exchange, and on one rank with the in-process
exchange of a one-cutoff cluster of images (:func:`periodic_flux_step`).  The
centroid virials of an opaque model come from the unfolded system of its
whole reach (:func:`~atomflux.evaluate.unfolded_flux_virials`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from ase import Atoms

from ..evaluate import (Results, atom_energy_uncertainty, pair_gradient_sums, virials_of_weighted_gradients,
                        weighted_pair_gradients)
from ..models.base import floating_dtype
from ..systems import MIN_DISTANCE, Batch, unfold


def system_batch(positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, origin: np.ndarray,
                 periodic: np.ndarray, cutoff: float, ids: np.ndarray,
                 device: torch.device | str = "cpu") -> Batch:
    """One LAMMPS rank's atoms as a one-system :class:`~atomflux.systems.Batch` (float64).

    Parameters
    ----------
    positions : ndarray [N, 3]
        Atom positions, Å (LAMMPS's ``x``; atoms may have drifted out of the
        box since the last re-neighbouring).
    numbers : ndarray [N]
        Atomic numbers.
    cell : ndarray [3, 3]
        Box vectors a, b, c as rows, Å: LAMMPS's restricted triclinic box
        ``[[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]]`` is ASE's cell as it is.
    origin : ndarray [3]
        ``boxlo``, Å.
    periodic : ndarray [3] (bool)
        Periodicity along a, b, c (``boundary p``); ``f``, ``s`` and ``m``
        directions are open, and a ghost-shell cluster is open in all three.
    cutoff
        Neighbour cutoff, Å.
    ids : ndarray [N]
        LAMMPS atom IDs, to name overlapping atoms.

    N may be 0 (a rank without atoms, whose model call with the per-layer halo still
    takes part in every layer's exchange).

    Raises
    ------
    ValueError
        Atoms closer than :data:`~atomflux.systems.MIN_DISTANCE`, named by ID.
    """
    periodic = np.asarray(periodic, dtype=bool)
    if len(positions) == 0:   # a rank without atoms, which still takes part in the per-layer halo's exchanges
        long = functools.partial(torch.zeros, dtype=torch.long, device=device)
        return Batch(positions=torch.zeros((0, 3), dtype=torch.float64, device=device), numbers=long(0),
                     cell=torch.tensor(np.asarray(cell, dtype=np.float64)[None], device=device),
                     pbc=torch.tensor(periodic[None], device=device), system=long(0), pairs=long((0, 2)),
                     shifts=torch.zeros((0, 3), dtype=torch.float64, device=device), cutoff=cutoff)
    # wrap into the box along periodic vectors (a lattice translation: nothing physical changes)
    fractional = (np.asarray(positions, dtype=np.float64) - origin) @ np.linalg.inv(cell)
    fractional[:, periodic] -= np.floor(fractional[:, periodic])
    atoms = Atoms(numbers=numbers, positions=fractional @ cell, cell=cell, pbc=periodic)
    batch = Batch.from_atoms(atoms, cutoff, device=device, min_distance=0.0)
    if len(batch.pairs):
        distances = torch.linalg.norm(batch.pair_vectors(), dim=1)
        closest = int(torch.argmin(distances))
        if float(distances[closest]) < MIN_DISTANCE:
            a, b = (int(ids[int(k)]) for k in batch.pairs[closest])
            raise ValueError(f"atoms with IDs {a} and {b} overlap: distance {float(distances[closest]):.3g} Å "
                             f"< {MIN_DISTANCE} Å")
    return batch


def owned_pairs(batch: Batch, n_owned: int, receiver: int | None = None) -> Batch:
    """``batch`` with only the pairs whose messages can reach the first ``n_owned`` (owned) atoms.

    With the per-layer halo a ghost atom's own layer outputs are overwritten by
    its owner's before they are used, so messages to ghosts are never needed.

    Parameters
    ----------
    batch
        The cluster, owned atoms first.
    n_owned
        Number of owned atoms.
    receiver
        Which atom of a pair (i, j) receives its message: 0 (i: SevenNet) or 1
        (j: MACE), the potential's ``pair_receiver``; ``None`` keeps every pair
        with an owned end.
    """
    owned = batch.pairs < n_owned
    keep = owned.any(dim=1) if receiver is None else owned[:, receiver]
    return replace(batch, pairs=batch.pairs[keep], shifts=batch.shifts[keep])


#: ``exchange(data, reverse)``: LAMMPS communication of a float64 array [nlocal + nghost, width], in place
Exchange = Callable[[torch.Tensor, bool], None]


class Halo:
    """The per-layer halo of one force call: LAMMPS's exchange and what its backward passes need.

    Parameters
    ----------
    exchange
        Forward (``reverse=False``: owners' rows copied into their ghost rows) or reverse
        (``reverse=True``: ghost rows added into their owners' rows) communication.
    n_owned
        Number of owned (LAMMPS local) atoms, which come first.

    Attributes
    ----------
    shifts : Tensor [N, 3] or None
        Ghost position minus owner position (Å), set by :func:`halo_flux_step`: the
        periodic translation between a ghost and its owner.
    channel : int or None
        ``None`` in an energy backward pass; a, the Cartesian component, in a backward pass
        of Σ_i r_i^a U_i, whose ghost cotangents move into the owner's frame on the way back.
    """

    def __init__(self, exchange: Exchange, n_owned: int) -> None:
        self.exchange, self.n_owned = exchange, int(n_owned)
        self.shifts: torch.Tensor | None = None
        self.channel: int | None = None

    def refresh(self, features: torch.Tensor) -> torch.Tensor:
        """The ``refresh`` a layer-stack potential calls on its node features [N, ...] between layers."""
        return HaloExchange.apply(features, self)


def layer_arguments(potential: torch.nn.Module, refresh: Callable[[torch.Tensor], torch.Tensor],
                    n_owned: int) -> dict:
    """Keyword arguments of a layer stack's ``forward`` with the per-layer halo: ``refresh``, and ``owned``
    (the number of owned atoms, which come first) where the potential updates only their nodes
    (``skips_ghost_updates = True``: the ghosts' features come from ``refresh`` anyway)."""
    if getattr(potential, "skips_ghost_updates", False):
        return {"refresh": refresh, "owned": int(n_owned)}
    return {"refresh": refresh}


def _rows(values: torch.Tensor) -> torch.Tensor:
    """``values`` [N, ...] as float64 rows [N, width] on the CPU, detached and contiguous (N may be 0)."""
    width = math.prod(values.shape[1:])
    return values.detach().to(device="cpu", dtype=torch.float64).reshape(len(values), width).contiguous()


class HaloExchange(torch.autograd.Function):
    """Ghost rows of node features replaced by their owners' rows (LAMMPS forward communication).

    Forward: ``features`` [N, ...] (local atoms first, then LAMMPS's ghosts)
    → the same with every ghost row a copy of its owner's row.  Backward: the
    gradient of a ghost row is added to its owner's row (reverse
    communication) and ghost rows get zero gradient, since their own values
    were discarded.  Each call is collective: every MPI rank makes the same
    calls in the same order (the model's layers, forward and backward).

    For the receiver virials (:func:`halo_flux_step`) the backward passes of
    Σ_i r_i^a U_i cross each ghost into its owner's frame: a ghost at its owner's
    position + s carries the cotangent c^a − s^a c, with c the energy cotangent of
    the same row, kept from the energy pass.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, halo: Halo) -> torch.Tensor:
        ctx.halo, ctx.energy_cotangent = halo, None
        data = _rows(features)
        data = data.clone() if data.data_ptr() == features.data_ptr() else data
        halo.exchange(data, False)
        return data.reshape(features.shape).to(device=features.device, dtype=features.dtype)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        halo, n = ctx.halo, ctx.halo.n_owned
        data = _rows(gradient)
        data = data.clone() if data.data_ptr() == gradient.data_ptr() else data
        if halo.shifts is not None and halo.channel is None:
            ctx.energy_cotangent = data[n:].clone()
        elif halo.channel is not None:
            data[n:] -= halo.shifts[n:, halo.channel, None] * ctx.energy_cotangent
        halo.exchange(data, True)
        data[n:] = 0.0
        return data.reshape(gradient.shape).to(device=gradient.device, dtype=gradient.dtype), None


def image_exchange(origin: torch.Tensor, n_owned: int) -> Exchange:
    """The exchange of a cluster held by one process: atom k ≥ ``n_owned`` is an image of atom ``origin[k]``
    (:func:`~atomflux.systems.unfold`), as LAMMPS's ghosts are copies of their owners."""
    ghosts, owners = slice(n_owned, None), origin[n_owned:].cpu()

    def exchange(data: torch.Tensor, reverse: bool) -> None:
        if reverse:
            data[:n_owned].index_add_(0, owners, data[ghosts])
        else:
            data[ghosts] = data[owners]
    return exchange


def periodic_flux_step(potential: torch.nn.Module, batch: Batch, *, virials: bool = False,
                       uncertainty: bool = False, margin: float = 0.5) -> Results:
    """A heat-flux force call of a layer-stack potential on a one-system ``batch`` (periodic or not), N atoms.

    The same as :func:`halo_flux_step`, through the halo of a cluster of the atoms and their images
    within one cutoff (+ ``margin``, Å) instead of the unfolded system of the whole reach (for
    SevenNet-0 on 8 Si atoms 90 atoms instead of 4 253), with the images' rows folded onto their
    atoms: ``energies`` [N], ``forces`` [N, 3] and the same ``virial`` as
    :func:`~atomflux.evaluate.evaluate` on ``batch``, and the receiver virials ``flux_virials``
    [N, 3, 3] of :func:`~atomflux.evaluate.unfolded_flux_virials`.
    """
    n = len(batch.numbers)
    cluster, origin = unfold(batch, 0, float(potential.cutoff) + margin)
    cluster = owned_pairs(cluster, n, getattr(potential, "pair_receiver", None))
    step = halo_flux_step(potential, cluster, Halo(image_exchange(origin, n), n), virials=virials,
                          uncertainty=uncertainty)

    def fold(rows: torch.Tensor) -> torch.Tensor:
        return torch.zeros((n,) + tuple(rows.shape[1:]), dtype=rows.dtype, device=rows.device).index_add_(
            0, origin, rows)
    return Results(energy=step.energy, energies=step.energies[:n], forces=fold(step.forces), virial=step.virial,
                   virials=None if step.virials is None else fold(step.virials),
                   flux_virials=fold(step.flux_virials), outputs={k: v[:n] for k, v in step.outputs.items()},
                   energies_uncertainty=None if step.energies_uncertainty is None else step.energies_uncertainty[:n])


def halo_flux_step(potential: torch.nn.Module, batch: Batch, halo: Halo, *, virials: bool = False,
                   uncertainty: bool = False) -> Results:
    """A heat-flux force call of a layer-stack potential with the per-layer halo, from ONE forward pass.

    Everything a step with ``compute centroid/stress/atom`` needs, from the forward pass and the four
    backward passes (weights 1, x, y, z; :func:`~atomflux.evaluate.weighted_pair_gradients`) of the
    owned atoms' energies U_i over all ranks, collectively with the other ranks: the first backward
    pass is the energy gradient, so no separate force evaluation is needed. The receiver ("centroid")
    virials W̃_k = Σ_i (r_i − r_k) ⊗ ∂U_i/∂r_k (:func:`~atomflux.evaluate.receiver_virials`) come from
    the weighted passes, which move each ghost's cotangent into its owner's frame
    (:class:`HaloExchange`), so r_i − r_k is the real displacement even when the path from k to i
    crosses periodic images. Ghost rows are summed into their owners by LAMMPS.

    Parameters
    ----------
    potential
        The layer-stack potential (``refresh=``).
    batch
        The rank's cluster: owned atoms first, then ghosts (:func:`owned_pairs` applied), N atoms.
    halo
        This force call's halo.
    virials
        Also the per-atom (two-body split) virials, as :func:`~atomflux.evaluate.evaluate` gives them.
    uncertainty
        Also the owned atoms' energy σ (``energies_uncertainty``; ``outputs`` keeps the members or
        LLPR features for :func:`~atomflux.evaluate.energy_uncertainty_components`).

    Returns
    -------
    Results
        ``energy`` [1] (owned atoms), ``energies`` [N] (zero for ghosts), ``forces`` [N, 3] (eV/Å),
        ``virial`` [1, 3, 3], ``virials`` [N, 3, 3] where asked and ``flux_virials`` [N, 3, 3] (eV),
        all float64 and detached.
    """
    positions = batch.positions.detach().to(device="cpu", dtype=torch.float64).contiguous()
    owners = positions.clone()
    halo.exchange(owners, False)
    halo.shifts = positions - owners
    try:
        vectors = batch.pair_vectors().detach().requires_grad_(True)
        model_dtype = floating_dtype(potential, vectors.dtype)
        model_batch = batch if model_dtype == batch.dtype else batch.to(model_dtype)
        with torch.enable_grad():
            outputs = dict(potential(model_batch, vectors.to(model_dtype),
                                     **layer_arguments(potential, halo.refresh, halo.n_owned)))
            energy = outputs.pop("energy").to(vectors.dtype)[:halo.n_owned]

            def channel(k: int) -> None:
                halo.channel = None if k == 0 else k - 1
            gradients = weighted_pair_gradients(energy, batch, vectors, before_pass=channel)
    finally:
        halo.shifts, halo.channel = None, None
    sums = pair_gradient_sums(batch, gradients[0], stress=True, virials=virials)
    outputs = {k: v.detach() for k, v in outputs.items()}
    energies = torch.zeros(len(batch.numbers), dtype=vectors.dtype, device=vectors.device)
    energies[:halo.n_owned] = energy.detach()
    return Results(energy=energies.sum()[None], energies=energies, forces=sums.forces, virial=sums.virial,
                   virials=sums.virials, flux_virials=virials_of_weighted_gradients(batch, gradients),
                   outputs=outputs,
                   energies_uncertainty=atom_energy_uncertainty(potential, outputs, vectors.dtype) if uncertainty
                   else None)


class OwnedEnergies(torch.nn.Module):
    """A potential whose atoms from ``n_owned`` on (ghost atoms) have zero energy.

    The ghost atoms still pass messages, so the owned atoms' energies are
    exact when the ghost shell covers the interaction range; differentiating
    their sum puts forces on ghosts too.  Every other attribute is the
    wrapped potential's (cutoff, ``interaction_range``, uncertainty scales...).

    Parameters
    ----------
    potential
        The message-passing potential.
    n_owned
        Number of owned (LAMMPS local) atoms, which come first.
    refresh
        For a layer-stack potential with the per-layer halo: passed on to its
        ``forward`` (:meth:`Halo.refresh`); ``None`` for a full ghost shell.
    """

    #: a hand-derived gradient path of the wrapped potential would differentiate every atom's energy
    gradient_chunks = None

    def __init__(self, potential: torch.nn.Module, n_owned: int,
                 refresh: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.potential = potential
        self.n_owned = int(n_owned)
        self.refresh = refresh

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """The wrapped potential's outputs, ``energy`` [N] (eV) zero beyond the owned atoms."""
        extra = {} if self.refresh is None else layer_arguments(self.potential, self.refresh, self.n_owned)
        outputs = dict(self.potential(batch, vectors, **extra))
        energy = outputs["energy"]
        owned = torch.arange(len(energy), device=energy.device) < self.n_owned
        outputs["energy"] = torch.where(owned, energy, torch.zeros_like(energy))
        return outputs

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["potential"], name)
