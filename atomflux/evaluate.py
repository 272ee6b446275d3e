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

Uncertainty (``uncertainty=True``) goes through the same path: a potential
that returns ``energy_ensemble`` [N, M] (a shallow ensemble, or LLPR
posterior samples of the last layer) gets each member's forces and stress
from one batched backward pass, and the spread of the members, times the
potential's calibrated ``uncertainty_scale``, is the uncertainty.  A
potential with an ``energy_variance(features_sum)`` method (LLPR) gives the
energy variance in closed form instead of from samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .systems import Batch


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
) -> Results:
    """Evaluate a potential on a batch; compute only what is asked for.

    Parameters
    ----------
    potential
        A :class:`~atomflux.models.Potential` (returns per-atom ``energy``).
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
        flux (eV·Å/fs).  Needs a potential with ``strictly_local = True``.
    pair_gradients
        Also return ``g_p = ∂E/∂r_p`` [P, 3] (eV/Å), for front ends that
        accumulate forces themselves (the LAMMPS bridge).
    create_graph
        Keep the graph of the derivatives (for training on forces/stress).

    Returns
    -------
    Results
    """
    cutoff = getattr(potential, "cutoff", None)
    if cutoff is not None and batch.cutoff + 1e-12 < cutoff:
        raise ValueError(f"batch built with cutoff {batch.cutoff} Å < potential cutoff {cutoff} Å")
    if uncertainty not in (False, True, "full", "energy"):
        raise ValueError(f"uncertainty must be False, True, 'full' or 'energy', got {uncertainty!r}")
    flux_virials = flux_virials or velocities is not None
    if flux_virials:
        if not getattr(potential, "strictly_local", False):
            raise ValueError(f"heat flux needs a potential whose atomic energies depend only on their own pairs "
                             f"(strictly_local = True); {type(potential).__name__} does not declare it")
    if velocities is not None:
        if masses is None or velocities.shape != batch.positions.shape:
            raise ValueError("heat flux needs velocities [N, 3] (Å/fs) and masses [N] (amu)")
    need_grad = forces or stress or virials or flux_virials or pair_gradients
    vectors = batch.pair_vectors()
    if need_grad and not vectors.requires_grad:
        vectors = vectors.detach().requires_grad_(True)
    with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
        outputs = dict(potential(batch, vectors))
        atom_energy = outputs.pop("energy")
        results = Results(energy=sum_per_system(atom_energy, batch), outputs=outputs)
        if energies or velocities is not None:
            results.energies = atom_energy
        members = outputs.get("energy_ensemble") if uncertainty else None
        if uncertainty and members is None:
            raise ValueError(f"{type(potential).__name__} has no uncertainty: make it a shallow ensemble or "
                             "add LLPR (atomflux.uncertainty)")
        grad = member_grads = None
        if need_grad:
            (grad,) = torch.autograd.grad(atom_energy.sum(), vectors, create_graph=create_graph,
                                          retain_graph=members is not None or create_graph, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(vectors)
            if members is not None and uncertainty in (True, "full"):
                member_grads = _member_gradients(members, vectors, create_graph)
    if pair_gradients:
        results.pair_gradients = grad
    if forces:
        results.forces = forces_from_pair_gradient(grad, batch)
    if stress or virials:
        pair_virial = -grad[:, :, None] * vectors[:, None, :]            # [P, 3, 3]
        if not create_graph:
            pair_virial = pair_virial.detach()
        if stress:
            results.virial, results.stress = _virial_and_stress(pair_virial, batch)
        if virials:
            half = 0.5 * pair_virial
            per_atom = torch.zeros((len(batch.numbers), 3, 3), dtype=grad.dtype, device=grad.device)
            results.virials = per_atom.index_add(0, batch.pairs[:, 0], half).index_add(0, batch.pairs[:, 1], half)
    if members is not None:
        _add_uncertainty(results, potential, batch, members, member_grads, vectors, forces, stress)
    if flux_virials:
        receiver = -vectors.detach()[:, :, None] * grad.detach()[:, None, :]       # r_p ⊗ g_p, [P, 3, 3]
        results.flux_virials = torch.zeros((len(batch.numbers), 3, 3), dtype=grad.dtype,
                                           device=grad.device).index_add(0, batch.pairs[:, 1], receiver)
    if velocities is not None:
        results.heat_flux, results.heat_flux_potential = heat_flux(
            results.energies.detach(), results.flux_virials, velocities, masses, batch)
    return results if create_graph else _detached(results)


#: ½ m v² with m in amu and v in Å/fs, in eV
AMU_A2_PER_FS2_IN_EV = 103.642696


def heat_flux(energies: torch.Tensor, flux_virials: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
              batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Total and potential heat flux [S, 3] (eV·Å/fs) from potential energies [N] (eV),
    receiver virials [N, 3, 3] (eV), velocities [N, 3] (Å/fs) and masses [N] (amu)."""
    v = velocities.to(flux_virials.dtype)
    potential_part = sum_per_system(torch.einsum("nab,nb->na", flux_virials, v), batch)
    kinetic = 0.5 * AMU_A2_PER_FS2_IN_EV * masses.to(v.dtype) * (v**2).sum(1)
    convective = sum_per_system((energies + kinetic)[:, None] * v, batch)
    return convective + potential_part, potential_part


def _member_gradients(members: torch.Tensor, vectors: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """∂E_m/∂r_p for every member m in one batched backward pass, Tensor [M, P, 3]."""
    n_members = members.shape[1]
    totals = members.sum(0)
    eye = torch.eye(n_members, dtype=totals.dtype, device=totals.device)
    (grads,) = torch.autograd.grad(totals, vectors, grad_outputs=eye, is_grads_batched=True,
                                   create_graph=create_graph, allow_unused=True)
    return torch.zeros((n_members,) + vectors.shape, dtype=vectors.dtype) if grads is None else grads


def _virial_and_stress(pair_virial: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-system virial [S, 3, 3] (eV) and stress (eV/Å³, NaN without a 3-D periodic cell)."""
    owner = batch.system[batch.pairs[:, 0]]
    total = torch.zeros((batch.n_systems, 3, 3), dtype=pair_virial.dtype, device=pair_virial.device)
    total = total.index_add(0, owner, pair_virial)
    volume = batch.volumes()
    periodic = batch.pbc.all(dim=1) & (volume > 0)
    safe = torch.where(periodic, volume, torch.ones_like(volume))
    stress = torch.where(periodic[:, None, None], -total / safe[:, None, None], torch.full_like(total, float("nan")))
    return total, stress


def _spread(members: torch.Tensor, mean: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Members pulled away from ``mean`` by the calibration ``scale``, and their std (member axis 0)."""
    scaled = mean.unsqueeze(0) + scale * (members - members.mean(0, keepdim=True))
    return scaled, scale * members.std(0, unbiased=False)


def _add_uncertainty(results: Results, potential: torch.nn.Module, batch: Batch, members: torch.Tensor,
                     member_grads: torch.Tensor | None, vectors: torch.Tensor, forces: bool, stress: bool) -> None:
    scale = float(getattr(potential, "uncertainty_scale", 1.0))
    system_members = sum_per_system(members, batch).T                      # [M, S]
    ensemble, sigma = _spread(system_members, results.energy, scale)
    results.energy_ensemble = ensemble.T
    variance = getattr(potential, "energy_variance", None)
    if variance is not None:  # LLPR: closed form instead of the sampled spread
        phi = results.outputs["llpr_features"]
        results.energy_uncertainty = variance(sum_per_system(phi, batch)).sqrt()
        results.energies_uncertainty = variance(phi).sqrt()
    else:
        results.energy_uncertainty = sigma
        _, results.energies_uncertainty = _spread(members.T, members.mean(1), scale)
    if member_grads is None:
        return
    if forces:
        member_forces = torch.stack([forces_from_pair_gradient(g, batch) for g in member_grads])
        results.forces_ensemble, results.forces_uncertainty = _spread(
            member_forces, results.forces, float(getattr(potential, "uncertainty_scale_forces", scale)))
    if stress:
        member_stress = torch.stack([_virial_and_stress(-g[:, :, None] * vectors[:, None, :], batch)[1]
                                     for g in member_grads])
        results.stress_ensemble, results.stress_uncertainty = _spread(
            member_stress, results.stress, float(getattr(potential, "uncertainty_scale_stress", scale)))


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
        raise ValueError(f"{type(potential).__name__} has no uncertainty: make it a shallow ensemble or "
                         "add LLPR (atomflux.uncertainty)")
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
