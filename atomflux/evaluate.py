"""The one autograd path from per-atom energies to forces, stress and virials.

Every front end (ASE, LAMMPS, phonopy, training) calls :func:`evaluate`; no
other module differentiates a potential.  With ``g_p = ∂E/∂r_p`` the
gradient of the total energy with respect to pair vector ``r_p = r_j - r_i
(+ shift)``:

- forces:          F_i = Σ_{p: i_p = i} g_p - Σ_{p: j_p = i} g_p          (eV/Å)
- virial:          W = -Σ_p g_p ⊗ r_p                                    (eV)
- stress (ASE):    σ = -W / V = (1/V) ∂E/∂ε                              (eV/Å³)
- per-atom virial: W_i = -½ Σ_{p ∋ i} g_p ⊗ r_p, so Σ_i W_i = W          (eV)

Heat flux (``velocities=...``, Å/fs): for potentials whose atomic energy e_i
depends only on the pairs that start at i (``strictly_local = True``: all
atomflux models), the potential part of J = d/dt Σ_i r_i e_i is

    J_pot = -Σ_p r_p (g_p · v_{j_p})                                     (eV·Å/fs)

= Σ_j W̃_j v_j with the "receiver" per-atom virials W̃_j = -Σ_{p: j_p = j}
r_p ⊗ g_p (``flux_virials``, eV), which needs no absolute positions, so it holds in periodic cells with any
number of images (it is the unfolded-system formula of Langer et al., PRB
108, L100302 (2023), specialised to pair-vector locality); the convective
part is Σ_i e_i v_i with e_i = U_i + ½ m_i v_i².  For a pair potential this
is exactly the pairwise Irving–Kirkwood/Hardy flux.

Semi-local potentials (message passing: ``strictly_local = False`` with an
``interaction_range`` R = layers × cutoff) get the unfolded-system formula
itself (:func:`unfolded_flux_virials`): the atoms of the cell and their
images within R form a non-periodic cluster in which the cell atoms'
energies U_i are those of the crystal, and

    W̃_k = Σ_{i ∈ cell} (r_i - r_k) ⊗ ∂U_i/∂r_k = ∂(Σ_i r_i U_i)/∂r_k - r_k ⊗ ∂U/∂r_k

over the cluster atoms k, folded onto the atoms they are images of (an
image moves with its atom's velocity): four backward passes, no Jacobian.
When only the flux vector is wanted (``velocities=`` without
``flux_virials=True``: MD), :func:`unfolded_heat_flux` contracts with the
velocities first,

    J_pot = Σ_{i ∈ cell} r_i dU_i/dt − Σ_k r_k (∂U/∂r_k · v_k),

dU_i/dt from one forward-mode (Jacobian-vector) pass along the velocities and
∂U/∂r_k from one backward pass, on only the part of the cluster that the
model's message passing reaches (:func:`~atomflux.systems.unfold` with
``hops``).  Both terms change by c Σ_i dU_i/dt − c Σ_k ∂U/∂r_k · v_k = 0
under a shift r → r + c of the origin.

Long-range potentials (``long_range = True``: learned charges in Ewald/PME
fields, :mod:`atomflux.models.long_range`) depend on absolute positions and
on the cell, not on pair vectors alone: their forces and stress come from
one backward pass through strained positions and cell
(:func:`strained_batch`; F = -∂E/∂x, W = -(∂E/∂ε)ᵀ).  What is refused for
them, with one line: pair gradients, per-atom virials (the k-space energy
Σ_k |S(k)|² ĝ(k)/2V, S(k) = Σ_j q_j e^{ik·r_j}, has no unique split over
atoms or pairs) and the heat flux.  Their Green–Kubo flux J = d/dt Σ_i r_i e_i
with e_i = e_i^SR + q_i Ṽ_i would need, beyond the pair terms, the energy
current of the reciprocal-space sum (a Σ_k over ∂ĝ/∂k ⊗ k terms of the
structure factors, as in the Ewald heat flux of molecular force fields) and
the motion of the charges themselves (q_i depends on the neighbours through
the short-range features); atomflux does not implement it.

Uncertainty (``uncertainty=True``) goes through the same path: a potential
that returns ``energy_ensemble`` [N, M] (a shallow ensemble, or LLPR
posterior samples of the last layer) gets each member's forces and stress
from one batched backward pass, and the spread of the members, times the
potential's calibrated ``uncertainty_scale``, is the uncertainty (forces and
stress σ carry their own factors ``uncertainty_scale_forces`` /
``uncertainty_scale_stress`` where calibrated, and a noise floor τ added in
quadrature, ``uncertainty_floor_forces`` / ``uncertainty_floor_stress``: the
predictive σ' = √(α²σ² + τ²); an atom's force σ is at least c σ_E,i / r_c,
its energy σ over the cutoff, where ``uncertainty_locality_forces`` = c is
calibrated; the members' forces and stress stay the derivatives of their
energies).  A
potential with an ``energy_variance(features_sum)`` method (LLPR) gives the
energy variance in closed form instead of from samples.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch.autograd import forward_ad

from .memory import check_evaluation
from .models.base import GradientChunk, floating_dtype, n_members, no_uncertainty_message
from .systems import Batch, unfold


@dataclass
class Results:
    """What :func:`evaluate` computed; ``None`` where not asked for.

    Attributes
    ----------
    energy : Tensor [S]
        Total energy per system, eV.
    energies : Tensor [N] or None
        Per-atom energies, eV.
    forces : Tensor [N, 3] or None
        Forces, eV/Å.
    virial : Tensor [S, 3, 3] or None
        Virial ``-Σ_p g_p ⊗ r_p``, eV.
    stress : Tensor [S, 3, 3] or None
        Stress ``-W/V`` in eV/Å³, ASE sign convention (NaN for a system
        without a 3-D cell).
    virials : Tensor [N, 3, 3] or None
        Per-atom virials, eV; they sum to ``virial`` per system.
    outputs : dict
        Other per-atom outputs of the potential (``features``,
        ``energy_ensemble`` ...), unchanged.
    energy_uncertainty : Tensor [S] or None
        One standard deviation of the energy, eV (``uncertainty=True``).
    energies_uncertainty : Tensor [N] or None
        Per-atom (local) energy uncertainty, eV.
    forces_uncertainty : Tensor [N, 3] or None
        eV/Å, per component.
    stress_uncertainty : Tensor [S, 3, 3] or None
        eV/Å³.
    energy_ensemble : Tensor [S, M] or None
        Members' total energies, eV (spread scaled by the calibration).
    forces_ensemble : Tensor [M, N, 3] or None
    stress_ensemble : Tensor [M, S, 3, 3] or None
    flux_virials : Tensor [N, 3, 3] or None
        W̃_j = -Σ_{p: j_p = j} r_p ⊗ g_p (eV): J_pot = Σ_j W̃_j v_j for any velocities.
    heat_flux : Tensor [S, 3] or None
        Total heat flux Σ_i e_i v_i + J_pot, eV·Å/fs (not divided by volume).
    heat_flux_potential : Tensor [S, 3] or None
        The potential part J_pot alone.
    pair_gradients : Tensor [P, 3] or None
        ∂E/∂r_p per pair, eV/Å.
    """

    energy: torch.Tensor
    energies: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    virial: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    virials: torch.Tensor | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    energy_uncertainty: torch.Tensor | None = None
    energies_uncertainty: torch.Tensor | None = None
    forces_uncertainty: torch.Tensor | None = None
    stress_uncertainty: torch.Tensor | None = None
    energy_ensemble: torch.Tensor | None = None
    forces_ensemble: torch.Tensor | None = None
    stress_ensemble: torch.Tensor | None = None
    flux_virials: torch.Tensor | None = None
    heat_flux: torch.Tensor | None = None
    heat_flux_potential: torch.Tensor | None = None
    pair_gradients: torch.Tensor | None = None


def sum_per_system(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Sum per-atom values [N, ...] into per-system values [S, ...]."""
    out = torch.zeros((batch.n_systems,) + tuple(values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add(0, batch.system, values)


def forces_from_pair_gradient(grad: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Forces [N, 3] from ∂E/∂r_p [P, 3]."""
    forces = torch.zeros_like(batch.positions)
    return forces.index_add(0, batch.pairs[:, 0], grad).index_add(0, batch.pairs[:, 1], -grad)


#: working memory of one chunk of centre atoms on the hand-derived path (bytes): small enough for the
#: per-pair arrays to stay in cache, see benchmarks/bench_evaluate.py
CHUNK_BYTES = 2**27


def evaluate(
    potential: torch.nn.Module,
    batch: Batch,
    *,
    forces: bool = True,
    stress: bool = False,
    energies: bool = False,
    virials: bool = False,
    uncertainty: bool | str = False,
    velocities: torch.Tensor | None = None,
    masses: torch.Tensor | None = None,
    flux_virials: bool = False,
    pair_gradients: bool = False,
    create_graph: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> Results:
    """Evaluate a potential on a batch; compute only what is asked for.

    Parameters
    ----------
    potential
        A :class:`~atomflux.models.Potential` (returns per-atom ``energy``).
        It runs in its own floating type; pair vectors are formed, and
        energies, forces, stress and virials are accumulated, in the batch's
        type (a float32 model on a float64 batch: float32 compute, float64
        accumulation).
    batch
        The systems, with neighbour pairs built for at least ``potential.cutoff``.
    forces, stress, energies, virials
        Which derived quantities to return (energy is always returned).
    uncertainty
        ``True`` (or ``"full"``): also return uncertainties and ensemble
        members of the energy and of whichever of forces/stress are asked
        for (one batched backward pass over the members).  ``"energy"``:
        energy uncertainties only (no extra backward pass).  Needs a
        potential with ``energy_ensemble`` output (shallow ensemble or LLPR).
    velocities, masses
        Velocities [N, 3] in Å/fs and masses [N] in amu: also return the heat
        flux (eV·Å/fs).  Needs a potential with ``strictly_local = True`` or
        an ``interaction_range`` (Å; then through the unfolded system: the
        flux vector alone by :func:`unfolded_heat_flux`, unless
        ``flux_virials=True`` asks for the per-atom receiver virials too).
    flux_virials
        Also return the receiver virials W̃_j [N, 3, 3] (eV), J_pot = Σ_j W̃_j v_j.
    pair_gradients
        Also return ``g_p = ∂E/∂r_p`` [P, 3] (eV/Å), for front ends that
        accumulate forces themselves (the LAMMPS bridge).
    create_graph
        Keep the graph of the derivatives (for training on forces/stress);
        always goes through autograd.
    chunk_bytes
        Working memory of one chunk of centre atoms for potentials with a
        hand-derived gradient path (:meth:`~atomflux.models.Potential.gradient_chunks`):
        peak memory is then the batch, the results and one chunk.

    Returns
    -------
    Results
    """
    cutoff = getattr(potential, "cutoff", None)
    if cutoff is not None and batch.cutoff + 1e-12 < cutoff:
        raise ValueError(f"batch built with cutoff {batch.cutoff} Å < potential cutoff {cutoff} Å")
    if uncertainty not in (False, True, "full", "energy"):
        raise ValueError(f"uncertainty must be False, True, 'full' or 'energy', got {uncertainty!r}")
    flux_vector_only = velocities is not None and not flux_virials
    flux_virials = flux_virials or velocities is not None
    if getattr(potential, "long_range", False):
        return _evaluate_long_range(potential, batch, forces=forces, stress=stress, energies=energies,
                                    virials=virials, uncertainty=uncertainty, flux_virials=flux_virials,
                                    pair_gradients=pair_gradients, create_graph=create_graph)
    unfolded_flux = flux_virials and not getattr(potential, "strictly_local", False)
    if unfolded_flux and getattr(potential, "interaction_range", None) is None:
        raise ValueError(f"heat flux needs a potential whose atomic energies depend only on their own pairs "
                         f"(strictly_local = True) or one that declares its interaction_range (Å, layers × "
                         f"cutoff for message passing); {type(potential).__name__} declares neither")
    if velocities is not None:
        if masses is None or velocities.shape != batch.positions.shape:
            raise ValueError("heat flux needs velocities [N, 3] (Å/fs) and masses [N] (amu)")
    pair_flux = flux_virials and not unfolded_flux
    need_grad = forces or stress or virials or pair_flux or pair_gradients
    member_grads = bool(uncertainty in (True, "full") and (forces or stress))
    vectors = batch.pair_vectors()
    model_dtype = floating_dtype(potential, vectors.dtype)
    model_vectors = vectors.to(model_dtype)
    model_batch = batch if model_dtype == batch.dtype else batch.to(model_dtype)  # what the potential sees
    chunks = None
    fast_path = getattr(potential, "gradient_chunks", None)
    if fast_path is not None and not create_graph:
        chunks = fast_path(model_batch, model_vectors.detach(), gradients=need_grad, members=member_grads,
                           max_bytes=chunk_bytes)
    check_evaluation(len(batch.numbers), len(vectors), n_members=n_members(potential) if member_grads else 0,
                     n_features=int(getattr(potential, "n_features", 0)), chunked=chunks is not None,
                     chunk_bytes=chunk_bytes, itemsize=vectors.element_size())
    if chunks is None:
        chunks = [_autograd_chunk(potential, model_batch, model_vectors, need_grad, member_grads, create_graph)]
    total = _Totals(batch, vectors.detach() if not create_graph else vectors, stress=stress, virials=virials,
                    flux_virials=pair_flux, pair_gradients=pair_gradients, forces=forces)
    for chunk in chunks:
        total.add(chunk)
    total.finish()
    outputs = total.outputs
    atom_energy = outputs.pop("energy").to(vectors.dtype)
    results = Results(energy=sum_per_system(atom_energy, batch), outputs=outputs)
    if energies or velocities is not None:
        results.energies = atom_energy
    if uncertainty:
        members = outputs.get("energy_ensemble")
        if members is None:
            raise ValueError(no_uncertainty_message(potential))
    if need_grad:
        if pair_gradients:
            results.pair_gradients = (total.pair_gradients if total.pair_gradients is not None
                                      else torch.zeros_like(vectors))
        results.forces = total.forces if forces else None
        if stress:
            results.virial, results.stress = total.virial, _stress(total.virial, batch)
        results.virials = total.virials
        results.flux_virials = total.flux_virials
    if unfolded_flux and not flux_vector_only:
        results.flux_virials = unfolded_flux_virials(potential, batch)
    if uncertainty:
        _add_uncertainty(results, potential, batch, members.to(vectors.dtype), total, forces, stress)
    if unfolded_flux and flux_vector_only:
        results.heat_flux_potential = unfolded_heat_flux(potential, batch, velocities)
        results.heat_flux = convective_heat_flux(results.energies.detach(), velocities, masses, batch
                                                 ) + results.heat_flux_potential
    elif velocities is not None:
        results.heat_flux, results.heat_flux_potential = heat_flux(
            results.energies.detach(), results.flux_virials, velocities, masses, batch)
    return results if create_graph else _detached(results)


def strained_batch(batch: Batch, requires_grad: bool = True) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """``batch`` with positions x (1 + ε) and cells h (1 + ε) for a zero strain ε [S, 3, 3].

    Returns the strained batch and the two leaves, positions [N, 3] and ε: for an
    energy E of the strained batch, F = -∂E/∂x and the virial W = -(∂E/∂ε)ᵀ
    (σ = -W/V = (1/V) ∂E/∂ε), whatever way E depends on positions and cell.
    """
    positions = batch.positions.detach().requires_grad_(requires_grad)
    strain = torch.zeros((batch.n_systems, 3, 3), dtype=batch.dtype, device=batch.device,
                         requires_grad=requires_grad)
    deformation = torch.eye(3, dtype=batch.dtype, device=batch.device) + strain
    strained = replace(batch, positions=torch.einsum("na,nab->nb", positions, deformation[batch.system]),
                       cell=batch.cell @ deformation)
    return strained, positions, strain


#: why per-atom virials, pair gradients and the heat flux are refused for long-range models
LONG_RANGE_REFUSAL = ("{what} of a long-range model (Ewald/PME charges) is not defined by pair gradients: its energy "
                      "depends on positions and cell beyond the cutoff, so the Green–Kubo flux would need the "
                      "reciprocal-space (Ewald) energy-current term, which atomflux does not implement; use a "
                      "short-range model for per-atom virials and heat flux")


def _evaluate_long_range(potential: torch.nn.Module, batch: Batch, *, forces: bool, stress: bool, energies: bool,
                         virials: bool, uncertainty: bool | str, flux_virials: bool, pair_gradients: bool,
                         create_graph: bool) -> Results:
    """:func:`evaluate` for a potential whose energy depends on positions and cell directly (``long_range``).

    The pair vectors are formed from strained positions x (1 + ε) and cell
    h (1 + ε) (ε [S, 3, 3] zero), so one backward pass gives forces
    F = -∂E/∂x and virial W = -(∂E/∂ε)ᵀ, through the real-space pairs, the
    charges and the k-space sums (including their cell dependence) alike;
    stress σ = -W/V as for every potential.  Members of an ensemble (or LLPR
    samples) get theirs from one batched backward pass.
    """
    for asked, what in ((virials, "the per-atom virial"), (flux_virials, "the heat flux"),
                        (pair_gradients, "the pair gradient ∂E/∂r_ij")):
        if asked:
            raise ValueError(LONG_RANGE_REFUSAL.format(what=what))
    need_grad = forces or stress
    member_grads = bool(uncertainty in (True, "full") and need_grad)
    with torch.set_grad_enabled(need_grad or create_graph or torch.is_grad_enabled()):
        strained, positions, strain = strained_batch(batch, need_grad)
        vectors = strained.pair_vectors()
        model_dtype = floating_dtype(potential, vectors.dtype)
        model_batch = strained if model_dtype == batch.dtype else strained.to(model_dtype)
        outputs = dict(potential(model_batch, vectors.to(model_dtype)))
        atom_energy = outputs.pop("energy").to(batch.dtype)
        results = Results(energy=sum_per_system(atom_energy, batch), outputs=outputs)
        if energies:
            results.energies = atom_energy
        members = outputs.get("energy_ensemble")
        if uncertainty and members is None:
            raise ValueError(no_uncertainty_message(potential))
        total = _Totals(batch, vectors.detach(), forces=False, stress=False, virials=False, flux_virials=False,
                        pair_gradients=False)
        if need_grad:
            inputs = [positions, strain]
            grads = torch.autograd.grad(atom_energy.sum(), inputs, create_graph=create_graph,
                                        retain_graph=member_grads or create_graph, allow_unused=True)
            grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
            results.forces = -grads[0] if forces else None
            if stress:
                results.virial = -grads[1].transpose(1, 2)
                results.stress = _stress(results.virial, batch)
            if member_grads:
                system_members = sum_per_system(members.to(batch.dtype), batch).sum(0)        # [M]
                eye = torch.eye(len(system_members), dtype=batch.dtype, device=batch.device)
                member_pos, member_strain = torch.autograd.grad(system_members, inputs, grad_outputs=eye,
                                                                is_grads_batched=True, create_graph=create_graph,
                                                                allow_unused=True)
                total.set_members(-member_pos, -member_strain.transpose(2, 3))
    if uncertainty:
        _add_uncertainty(results, potential, batch, members.to(batch.dtype), total, forces, stress)
    return results if create_graph else _detached(results)


def pair_gradient_sums(batch: Batch, pair_gradients: torch.Tensor, *, stress: bool = False, virials: bool = False,
                       flux_virials: bool = False) -> Results:
    """Forces and the requested virials from pair gradients kept from an earlier :func:`evaluate`.

    Parameters
    ----------
    batch
        The batch of that evaluation.
    pair_gradients
        Its ``pair_gradients`` [P, 3] (eV/Å).

    Returns
    -------
    Results
        ``forces``, and ``virial``/``stress``, ``virials``, ``flux_virials`` where asked
        (``energy`` is not known here and is NaN).
    """
    total = _Totals(batch, batch.pair_vectors(), forces=True, stress=stress, virials=virials,
                    flux_virials=flux_virials, pair_gradients=False)
    total.add(GradientChunk(atoms=slice(None), pairs=slice(None), outputs={}, energy_gradient=pair_gradients))
    nan = torch.full((batch.n_systems,), float("nan"), dtype=pair_gradients.dtype, device=pair_gradients.device)
    results = Results(energy=nan, forces=total.forces, virials=total.virials, flux_virials=total.flux_virials)
    if stress:
        results.virial, results.stress = total.virial, _stress(total.virial, batch)
    return results


def unfolded_flux_virials(potential: torch.nn.Module, batch: Batch, reach: float | None = None) -> torch.Tensor:
    """Receiver virials W̃ [N, 3, 3] (eV) of the heat flux through the unfolded system.

    For any potential whose atomic energies reach at most ``reach`` Å
    (default: its ``interaction_range``): the exact J_pot = Σ_j W̃_j v_j of a
    message-passing model (see the module docstring).  For a strictly local
    potential it equals the pair form of :func:`evaluate` (``flux_virials``).

    Parameters
    ----------
    potential
        A :class:`~atomflux.models.Potential`.
    batch
        The systems (periodic or not).
    reach
        Interaction range in Å; ``None``: ``potential.interaction_range``.

    Returns
    -------
    Tensor [N, 3, 3] in the batch's dtype, eV.
    """
    reach = float(getattr(potential, "interaction_range") if reach is None else reach)
    out = torch.zeros((len(batch.numbers), 3, 3), dtype=batch.dtype, device=batch.device)
    for system in range(batch.n_systems):
        cluster, origin = unfold(batch, system, reach)
        own = batch.system == system
        n = int(own.sum())
        vectors = cluster.pair_vectors().detach().requires_grad_(True)
        model_dtype = floating_dtype(potential, vectors.dtype)
        model_cluster = cluster if model_dtype == cluster.dtype else cluster.to(model_dtype)
        with torch.enable_grad():
            energy = potential(model_cluster, vectors.to(model_dtype))["energy"].to(vectors.dtype)[:n]
            receiver = receiver_virials(energy, cluster, vectors)
        out[own] = torch.zeros((n, 3, 3), dtype=out.dtype, device=out.device).index_add(0, origin, receiver)
    return out


def receiver_virials(energy: torch.Tensor, batch: Batch, vectors: torch.Tensor,
                     before_pass: Callable[[int], None] | None = None) -> torch.Tensor:
    """W̃_k = Σ_i (r_i − r_k) ⊗ ∂U_i/∂r_k [N, 3, 3] (eV) for every atom k of a one-system ``batch``.

    Parameters
    ----------
    energy : Tensor [n]
        Atomic energies U_i of the batch's first n atoms (the ones whose energies count), computed
        from ``vectors`` with the graph kept.
    batch
        The system (a non-periodic cluster: positions are where the atoms are).
    vectors : Tensor [P, 3]
        The pair vectors the energies were computed from (requires grad).
    before_pass
        Called with 0, 1, 2, 3 before the backward passes of the weights 1, x, y, z (the per-layer
        halo of LAMMPS switches its exchange's cotangent channel there).

    Returns
    -------
    Tensor [N, 3, 3]
        Index [k, a, b] = ∂(Σ_i r_i^a U_i)/∂r_k^b − r_k^a ∂U/∂r_k^b, detached.
    """
    return virials_of_weighted_gradients(batch, weighted_pair_gradients(energy, batch, vectors, before_pass))


def weighted_pair_gradients(energy: torch.Tensor, batch: Batch, vectors: torch.Tensor,
                            before_pass: Callable[[int], None] | None = None) -> torch.Tensor:
    """∂(Σ_i w_i U_i)/∂r_p [4, P, 3] (eV/Å, detached) for the weights w = 1, x, y, z: four backward passes.

    The first is the ordinary energy gradient (forces, virial: :func:`pair_gradient_sums`); all four
    give the receiver virials (:func:`virials_of_weighted_gradients`). Arguments as for
    :func:`receiver_virials`.
    """
    position = batch.positions[:len(energy)]
    weights = [torch.ones_like(energy)] + [position[:, a] for a in range(3)]
    gradients = torch.zeros((4,) + tuple(vectors.shape), dtype=batch.dtype, device=vectors.device)
    for k, weight in enumerate(weights):
        if before_pass is not None:
            before_pass(k)
        (grad,) = torch.autograd.grad((energy * weight).sum(), vectors, retain_graph=k < 3, allow_unused=True)
        if grad is not None:
            gradients[k] = grad.detach()
    return gradients


def virials_of_weighted_gradients(batch: Batch, gradients: torch.Tensor) -> torch.Tensor:
    """Receiver virials W̃ [N, 3, 3] (eV) from the :func:`weighted_pair_gradients` [4, P, 3] of ``batch``."""
    derivatives = [-forces_from_pair_gradient(g, batch) for g in gradients]        # ∂(Σ_i w_i U_i)/∂r_k [N, 3]
    moment = torch.stack(derivatives[1:], dim=1)                                   # [N, a, b]
    return (moment - batch.positions[:, :, None] * derivatives[0][:, None, :]).detach()


def unfolded_heat_flux(potential: torch.nn.Module, batch: Batch, velocities: torch.Tensor,
                       reach: float | None = None) -> torch.Tensor:
    """Potential part J_pot [S, 3] (eV·Å/fs) of the heat flux of a semi-local potential, for given velocities.

    The same J_pot = Σ_k W̃_k v_k as :func:`unfolded_flux_virials`, without
    forming W̃: on the cluster of each system's atoms and the images that
    ``ceil(reach / cutoff)`` rounds of message passing reach
    (:func:`~atomflux.systems.unfold` with ``hops``), with the images moving
    at their atoms' velocities,

        J_pot = Σ_{i ∈ cell} r_i dU_i/dt − Σ_k r_k (∂U/∂r_k · v_k),   U = Σ_{i ∈ cell} U_i,

    dU_i/dt = Σ_k ∂U_i/∂r_k · v_k from one forward-mode pass (the
    Jacobian-vector product along the pair-vector rates v_j − v_i) and
    ∂U/∂r_k from one backward pass; positions are taken from the cell's
    centroid (J_pot does not depend on the origin).  The sum rule
    Σ_i dU_i/dt = Σ_k ∂U/∂r_k · v_k is checked; a model whose operations have
    no forward-mode derivative (or that breaks the rule) gets the
    per-atom path of :func:`unfolded_flux_virials` instead.

    Parameters
    ----------
    potential
        A :class:`~atomflux.models.Potential` whose atomic energies reach at
        most ``reach`` Å along its pairs (message passing).
    batch
        The systems (periodic or not).
    velocities
        Tensor [N, 3], Å/fs.
    reach
        Interaction range in Å; ``None``: ``potential.interaction_range``.

    Returns
    -------
    Tensor [S, 3] in the batch's dtype, eV·Å/fs (not divided by the volume).
    """
    reach = float(getattr(potential, "interaction_range") if reach is None else reach)
    hops = max(1, math.ceil(reach / float(potential.cutoff) - 1e-9))
    out = torch.zeros((batch.n_systems, 3), dtype=batch.dtype, device=batch.device)
    per_atom = None   # the per-atom path's flux virials of the whole batch, computed once if a system needs them
    for system in range(batch.n_systems):
        own = batch.system == system
        cluster, origin = unfold(batch, system, reach, hops=hops)
        n = int(own.sum())
        v = velocities[own].to(batch.dtype)[origin]                                   # images move with their atoms
        vectors = cluster.pair_vectors().detach()
        model_dtype = floating_dtype(potential, vectors.dtype)
        model_cluster = cluster if model_dtype == cluster.dtype else cluster.to(model_dtype)
        rates = _energy_rates(potential, model_cluster, vectors, v[cluster.pairs[:, 1]] - v[cluster.pairs[:, 0]])
        vectors.requires_grad_(True)
        with torch.enable_grad():
            energy = potential(model_cluster, vectors.to(model_dtype))["energy"].to(vectors.dtype)[:n]
            (grad,) = torch.autograd.grad(energy.sum(), vectors, allow_unused=True)
        grad = torch.zeros_like(vectors) if grad is None else grad
        energy_gradient = -forces_from_pair_gradient(grad, cluster)                  # ∂U/∂r_k [Nc, 3]
        power = (energy_gradient * v).sum(1)                                          # ∂U/∂r_k · v_k
        if rates is None or not _sum_rule_holds(rates[:n], power, model_dtype):
            per_atom = unfolded_flux_virials(potential, batch, reach) if per_atom is None else per_atom
            out[system] = torch.einsum("nab,nb->a", per_atom[own], v[:n])
            continue
        position = cluster.positions - cluster.positions[:n].mean(0)
        out[system] = (position[:n] * rates[:n, None]).sum(0) - (position * power[:, None]).sum(0)
    return out


def _energy_rates(potential: torch.nn.Module, batch: Batch, vectors: torch.Tensor,
                  rates: torch.Tensor) -> torch.Tensor | None:
    """dU_i/dt [N] of the atomic energies when the pair vectors [P, 3] change at ``rates`` [P, 3] (Å/fs):
    one forward-mode pass; ``None`` where the model has an operation without a forward-mode derivative."""
    model_dtype = floating_dtype(potential, vectors.dtype)
    try:
        with forward_ad.dual_level(), torch.no_grad():
            dual = forward_ad.make_dual(vectors.detach(), rates.to(vectors.dtype))
            energy = potential(batch, dual.to(model_dtype))["energy"]
            tangent = forward_ad.unpack_dual(energy).tangent
    except NotImplementedError:
        return None
    return torch.zeros(len(energy), dtype=vectors.dtype) if tangent is None else tangent.to(vectors.dtype)


def _sum_rule_holds(rates: torch.Tensor, power: torch.Tensor, model_dtype: torch.dtype) -> bool:
    """Σ_i dU_i/dt (forward mode) = Σ_k ∂U/∂r_k · v_k (reverse mode), to the model's precision."""
    scale = float(rates.abs().sum() + power.abs().sum())
    tolerance = 1e-3 if model_dtype == torch.float32 else 1e-9
    return abs(float(rates.sum() - power.sum())) <= tolerance * scale + 1e-300


def _autograd_chunk(potential: torch.nn.Module, batch: Batch, vectors: torch.Tensor, need_grad: bool,
                    member_grads: bool, create_graph: bool) -> GradientChunk:
    """The whole batch as one chunk, differentiated by autograd."""
    if need_grad and not vectors.requires_grad:
        vectors = vectors.detach().requires_grad_(True)
    with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
        outputs = dict(potential(batch, vectors))
        chunk = GradientChunk(atoms=slice(None), pairs=slice(None), outputs=outputs)
        members = outputs.get("energy_ensemble") if member_grads else None
        if member_grads and members is None:
            raise ValueError(no_uncertainty_message(potential))
        if need_grad:
            (grad,) = torch.autograd.grad(outputs["energy"].sum(), vectors, create_graph=create_graph,
                                          retain_graph=members is not None or create_graph, allow_unused=True)
            chunk.energy_gradient = torch.zeros_like(vectors) if grad is None else grad
            if members is not None:
                chunk.member_gradients = _member_gradients(members, vectors, create_graph)
    return chunk


class _Totals:
    """Per-atom outputs and the sums over pairs (forces, virials, members), chunk by chunk."""

    def __init__(self, batch: Batch, vectors: torch.Tensor, *, forces: bool, stress: bool, virials: bool,
                 flux_virials: bool, pair_gradients: bool) -> None:
        self.batch, self.vectors = batch, vectors
        self.want_forces, self.want_stress, self.want_virials, self.want_flux = forces, stress, virials, flux_virials
        self.want_pair_gradients = pair_gradients
        self.pieces: dict[str, list[torch.Tensor]] = {}
        n, dtype, device = len(batch.numbers), vectors.dtype, vectors.device
        zeros = functools.partial(torch.zeros, dtype=dtype, device=device)
        self.forces = zeros((n, 3)) if forces else None
        self.virial = zeros((batch.n_systems, 3, 3)) if stress else None
        self.virials = zeros((n, 3, 3)) if virials else None
        self.flux_virials = zeros((n, 3, 3)) if flux_virials else None
        self.pair_gradients = None  # the whole-batch gradient, or filled chunk by chunk
        self._member_forces = self._member_virial = None     # [N, 3, M], [S, 3, 3, M]
        self._energy_from_members = False

    @property
    def outputs(self) -> dict[str, torch.Tensor]:
        """Per-atom outputs of all chunks so far, concatenated."""
        return {k: v[0] if len(v) == 1 else torch.cat(v) for k, v in self.pieces.items()}

    def add(self, chunk: GradientChunk) -> None:
        for name, value in chunk.outputs.items():
            self.pieces.setdefault(name, []).append(value)
        if chunk.energy_gradient is None:
            return
        pairs = self.batch.pairs[chunk.pairs]
        i, j = pairs[:, 0], pairs[:, 1]
        r = self.vectors[chunk.pairs]
        if chunk.member_gradients is not None:
            self._add_members(chunk.member_gradients, r, i, j)
        # forces and virial of an energy that is the members' mean: the mean of the members' sums, taken in finish()
        self._energy_from_members = (chunk.energy_is_member_mean and chunk.member_gradients is not None
                                     and not (self.want_virials or self.want_flux or self.want_pair_gradients))
        if self._energy_from_members:
            return
        grad = chunk.energy_gradient.to(r.dtype)
        if self.want_forces:
            self.forces.index_add_(0, i, grad).index_add_(0, j, grad, alpha=-1)
        if self.want_stress:
            self.virial = self.virial + self._system_sums(-grad[None], r, i)[0]
        if self.want_virials:
            half = -0.5 * grad[:, :, None] * r[:, None, :]                                   # [p, 3, 3]
            self.virials.index_add_(0, i, half).index_add_(0, j, half)
        if self.want_flux:  # receiver virials -r_p ⊗ g_p
            self.flux_virials.index_add_(0, j, -r.detach()[:, :, None] * grad.detach()[:, None, :])
        if self.want_pair_gradients:
            if isinstance(chunk.pairs, slice) and chunk.pairs == slice(None):
                self.pair_gradients = grad
            else:  # hand-derived chunks carry no graph: fill in place
                if self.pair_gradients is None:
                    self.pair_gradients = torch.zeros_like(self.vectors)
                self.pair_gradients[chunk.pairs] = grad

    def finish(self) -> None:
        """After the last chunk: the energy's forces and virial as the members' mean, where the chunks said so."""
        if self._energy_from_members:
            if self.want_forces:
                self.forces = self._member_forces.mean(2)
            if self.want_stress:
                self.virial = self._member_virial.mean(3)

    def _add_members(self, gradients: torch.Tensor, r: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> None:
        """Sum members' pair gradients [M, p, 3] into their forces and virials."""
        # members last ([p, 3, M], the layout of the hand-derived backward): the sums over pairs
        # index whole contiguous rows
        member = gradients.to(r.dtype).permute(1, 2, 0)
        if self._member_forces is None:
            shape = (len(self.batch.numbers), 3, member.shape[2])
            self._member_forces = torch.zeros(shape, dtype=r.dtype, device=r.device)
            self._member_virial = torch.zeros((self.batch.n_systems, 3, 3, member.shape[2]), dtype=r.dtype,
                                              device=r.device)
        # in place: an accumulator copied per chunk would cost O(atoms × chunks)
        self._member_forces.index_add_(0, i, member).index_add_(0, j, member, alpha=-1)
        if self.want_stress:
            self._member_virial = self._member_virial - self._member_system_sums(member, r, i)

    @property
    def member_forces(self) -> torch.Tensor | None:
        """Members' forces [M, N, 3] (eV/Å), ``None`` without member gradients."""
        return None if self._member_forces is None else self._member_forces.permute(2, 0, 1)

    @property
    def member_virial(self) -> torch.Tensor | None:
        """Members' virials [M, S, 3, 3] (eV), ``None`` without member gradients."""
        return None if self._member_virial is None else self._member_virial.permute(3, 0, 1, 2)

    def set_members(self, forces: torch.Tensor, virial: torch.Tensor) -> None:
        """Members' forces [M, N, 3] (eV/Å) and virials [M, S, 3, 3] (eV) from elsewhere (whole-system autograd)."""
        self._member_forces, self._member_virial = forces.permute(1, 2, 0), virial.permute(1, 2, 3, 0)

    def _member_system_sums(self, grads: torch.Tensor, r: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Σ_p g_p ⊗ r_p per system and member, [S, 3, 3, M], for member gradients [p, 3, M] of pairs
        starting at atoms i."""
        if self.batch.n_systems == 1:  # one matrix product: [3, p] @ [p, 3M]
            n_members = grads.shape[2]
            return (r.T @ grads.reshape(len(r), 3 * n_members)).view(3, 3, n_members).transpose(0, 1)[None]
        outer = grads[:, :, None, :] * r[:, None, :, None]
        zeros = torch.zeros((self.batch.n_systems,) + tuple(outer.shape[1:]), dtype=r.dtype, device=r.device)
        return zeros.index_add(0, self.batch.system[i], outer)

    def _system_sums(self, grads: torch.Tensor, r: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Σ_p g_p ⊗ r_p per system, [B, S, 3, 3], for gradients [B, p, 3] of pairs starting at atoms i."""
        if self.batch.n_systems == 1:
            return torch.einsum("bpa,pc->bac", grads, r)[:, None]
        outer = grads[:, :, :, None] * r[None, :, None, :]
        zeros = torch.zeros((len(grads), self.batch.n_systems, 3, 3), dtype=r.dtype, device=r.device)
        return zeros.index_add(1, self.batch.system[i], outer)


def _member_gradients(members: torch.Tensor, vectors: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """∂E_m/∂r_p for every member m in one batched backward pass, Tensor [M, P, 3]."""
    n_members = members.shape[1]
    totals = members.sum(0)
    eye = torch.eye(n_members, dtype=totals.dtype, device=totals.device)
    (grads,) = torch.autograd.grad(totals, vectors, grad_outputs=eye, is_grads_batched=True,
                                   create_graph=create_graph, allow_unused=True)
    return torch.zeros((n_members,) + vectors.shape, dtype=vectors.dtype) if grads is None else grads


def _stress(virial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Stress −W/V [..., S, 3, 3] (eV/Å³) from virials [..., S, 3, 3]; NaN without a 3-D periodic cell."""
    volume = batch.volumes()
    periodic = batch.pbc.all(dim=1) & (volume > 0)
    safe = torch.where(periodic, volume, torch.ones_like(volume))
    return torch.where(periodic[:, None, None], -virial / safe[:, None, None], torch.full_like(virial, float("nan")))


#: ½ m v² with m in amu and v in Å/fs, in eV
AMU_A2_PER_FS2_IN_EV = 103.642696


def heat_flux(energies: torch.Tensor, flux_virials: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
              batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Total and potential heat flux [S, 3] (eV·Å/fs) from potential energies [N] (eV),
    receiver virials [N, 3, 3] (eV), velocities [N, 3] (Å/fs) and masses [N] (amu)."""
    v = velocities.to(flux_virials.dtype)
    potential_part = sum_per_system(torch.einsum("nab,nb->na", flux_virials, v), batch)
    return convective_heat_flux(energies, v, masses, batch) + potential_part, potential_part


def convective_heat_flux(energies: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
                         batch: Batch) -> torch.Tensor:
    """Convective heat flux Σ_i (U_i + ½ m_i v_i²) v_i [S, 3] (eV·Å/fs) from potential energies [N] (eV),
    velocities [N, 3] (Å/fs) and masses [N] (amu)."""
    v = velocities.to(energies.dtype)
    kinetic = 0.5 * AMU_A2_PER_FS2_IN_EV * masses.to(v.dtype) * (v**2).sum(1)
    return sum_per_system((energies + kinetic)[:, None] * v, batch)


def _spread(members: torch.Tensor, mean: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Members pulled away from ``mean`` by the calibration ``scale``, and their std (member axis 0)."""
    deviations = scale * (members - members.mean(0, keepdim=True))
    return mean.unsqueeze(0) + deviations, deviations.square().mean(0).sqrt()


def _add_uncertainty(results: Results, potential: torch.nn.Module, batch: Batch, members: torch.Tensor,
                     totals: _Totals, forces: bool, stress: bool) -> None:
    scale = float(getattr(potential, "uncertainty_scale", 1.0))
    system_members = sum_per_system(members, batch).T                      # [M, S]
    ensemble, sigma = _spread(system_members, results.energy, scale)
    results.energy_ensemble = ensemble.T
    variance = getattr(potential, "energy_variance", None)
    if variance is not None:  # LLPR: closed form instead of the sampled spread
        results.energy_uncertainty = variance(sum_per_system(results.outputs["llpr_features"], batch)).sqrt()
    else:
        results.energy_uncertainty = sigma
    results.energies_uncertainty = atom_energy_uncertainty(potential, results.outputs, members.dtype)
    if totals.member_forces is None:
        return
    # members stay potentials (forces = -∇ of their energies, energy scale); the reported σ of forces and
    # stress carries their own calibration factors
    if forces:
        results.forces_ensemble, sigma = _spread(totals.member_forces, results.forces, scale)
        results.forces_uncertainty = _with_locality(
            _with_floor(sigma * _factor(potential, "forces", scale), potential, "forces"), potential,
            results.energies_uncertainty)
    if stress:
        results.stress_ensemble, sigma = _spread(_stress(totals.member_virial, batch), results.stress, scale)
        results.stress_uncertainty = _with_floor(sigma * _factor(potential, "stress", scale), potential, "stress")


def atom_energy_uncertainty(potential: torch.nn.Module, outputs: dict[str, torch.Tensor],
                            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-atom (local) energy σ [N] (eV) from a potential's outputs: the LLPR closed form, or the
    calibrated spread of the shallow ensemble's member energies ``energy_ensemble`` [N, M] taken in ``dtype``."""
    variance = getattr(potential, "energy_variance", None)
    if variance is not None:
        return variance(outputs["llpr_features"]).sqrt()
    if "energy_ensemble" not in outputs:
        raise ValueError(no_uncertainty_message(potential))
    members = outputs["energy_ensemble"].to(dtype)
    return _spread(members.T, members.mean(1), float(getattr(potential, "uncertainty_scale", 1.0)))[1]


def _factor(potential: torch.nn.Module, quantity: str, scale: float) -> float:
    """σ of ``quantity`` relative to the members' spread at the energy ``scale``: uncertainty_scale_<quantity>/scale."""
    own = getattr(potential, f"uncertainty_scale_{quantity}", None)
    return 1.0 if own is None or scale == 0 else float(own) / scale


def _with_floor(sigma: torch.Tensor, potential: torch.nn.Module, quantity: str) -> torch.Tensor:
    """√(σ² + τ²) with the calibrated noise floor τ = ``uncertainty_floor_<quantity>`` (same unit as σ), where set."""
    floor = getattr(potential, f"uncertainty_floor_{quantity}", None)
    return sigma if not floor else torch.sqrt(sigma**2 + float(floor) ** 2)


def _with_locality(sigma: torch.Tensor, potential: torch.nn.Module, atom_sigma: torch.Tensor) -> torch.Tensor:
    """Force σ [N, 3] of an atom at least its energy σ over the cutoff: √(σ² + (c σ_E,i / r_c)²), eV/Å.

    An atom whose energy the model cannot pin to better than σ_E,i (eV) cannot know its
    energy's gradient over the cutoff length r_c (Å) better than ~σ_E,i / r_c either; the
    coefficient c = ``uncertainty_locality_forces`` (metadata ``calibration.locality_forces``,
    fitted by :func:`atomflux.uncertainty.report.fit_force_locality`) is absent or 0 for models
    calibrated without it.
    """
    coefficient = getattr(potential, "uncertainty_locality_forces", None)
    if not coefficient:
        return sigma
    term = float(coefficient) * force_locality_term(potential, atom_sigma.to(sigma.dtype))
    return torch.sqrt(sigma**2 + term**2)


def force_locality_term(potential: torch.nn.Module, atom_sigma: torch.Tensor) -> torch.Tensor:
    """σ_E,i / r_c [N, 1] (eV/Å) from per-atom energy σ [N] (eV): the force σ term before its coefficient."""
    return atom_sigma[:, None] / float(potential.cutoff)


def energy_uncertainty_components(potential: torch.nn.Module, outputs: dict[str, torch.Tensor],
                                  atoms: torch.Tensor | slice) -> torch.Tensor:
    """Vector u [K] of a group of atoms such that the energy uncertainty of any
    union of disjoint groups is ``|Σ_groups u|`` (eV).

    This lets each MPI rank of the LAMMPS bridge reduce its own atoms: the
    ranks only need to add their vectors.  For a shallow ensemble u is the
    centred member energies times ``scale/√M`` (so ``|u|`` is the calibrated
    population standard deviation, as in :func:`evaluate`); for LLPR it is
    ``Lᵀφ`` with ``LLᵀ = Σ`` the last-layer posterior, so ``|u|² = φᵀΣφ``.

    Parameters
    ----------
    potential
        A shallow ensemble or an LLPR-wrapped potential.
    outputs
        ``Results.outputs`` of :func:`evaluate` on the atoms.
    atoms
        Which atoms belong to the group (index tensor, mask or slice).
    """
    if getattr(potential, "energy_variance", None) is not None:
        _, cholesky = potential.posterior()
        return cholesky.T @ outputs["llpr_features"][atoms].sum(0)
    if "energy_ensemble" not in outputs:
        raise ValueError(no_uncertainty_message(potential))
    members = outputs["energy_ensemble"][atoms].sum(0)
    scale = float(getattr(potential, "uncertainty_scale", 1.0))
    return scale * (members - members.mean()) / len(members) ** 0.5


def _detached(results: Results) -> Results:
    """Results cut from the autograd graph (the default outside training)."""
    for name in ("energy", "energies", "forces", "virial", "stress", "virials", "energy_uncertainty",
                 "energies_uncertainty", "forces_uncertainty", "stress_uncertainty", "energy_ensemble",
                 "forces_ensemble", "stress_ensemble", "heat_flux", "heat_flux_potential", "flux_virials", "pair_gradients"):
        value = getattr(results, name)
        if value is not None:
            setattr(results, name, value.detach())
    results.outputs = {k: v.detach() for k, v in results.outputs.items()}
    return results
