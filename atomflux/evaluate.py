"""The one autograd path from per-atom energies to forces, stress and virials.

Every front end (ASE, LAMMPS, phonopy, training) calls :func:`evaluate`; no
other module differentiates a potential.  With ``g_p = ∂E/∂r_p`` the
gradient of the total energy with respect to pair vector ``r_p = r_j - r_i
(+ shift)``:

- forces:          F_i = Σ_{p: i_p = i} g_p - Σ_{p: j_p = i} g_p          (eV/Å)
- virial:          W = -Σ_p g_p ⊗ r_p                                    (eV)
- stress (ASE):    σ = -W / V = (1/V) ∂E/∂ε                              (eV/Å³)
- per-atom virial: W_i = -½ Σ_{p ∋ i} g_p ⊗ r_p, so Σ_i W_i = W          (eV)
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
    """

    energy: torch.Tensor
    energies: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    virial: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    virials: torch.Tensor | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


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
    create_graph
        Keep the graph of the derivatives (for training on forces/stress).

    Returns
    -------
    Results
    """
    cutoff = getattr(potential, "cutoff", None)
    if cutoff is not None and batch.cutoff + 1e-12 < cutoff:
        raise ValueError(f"batch built with cutoff {batch.cutoff} Å < potential cutoff {cutoff} Å")
    need_grad = forces or stress or virials
    vectors = batch.pair_vectors()
    if need_grad and not vectors.requires_grad:
        vectors = vectors.detach().requires_grad_(True)
    with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
        outputs = dict(potential(batch, vectors))
        atom_energy = outputs.pop("energy")
        results = Results(energy=sum_per_system(atom_energy, batch), outputs=outputs)
        if energies:
            results.energies = atom_energy
        if not need_grad:
            return _detached(results) if not create_graph else results
        (grad,) = torch.autograd.grad(atom_energy.sum(), vectors, create_graph=create_graph,
                                      allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(vectors)
    if forces:
        results.forces = forces_from_pair_gradient(grad, batch)
    if stress or virials:
        pair_virial = -grad[:, :, None] * vectors[:, None, :]            # [P, 3, 3]
        if not create_graph:
            pair_virial = pair_virial.detach()
        if stress:
            owner = batch.system[batch.pairs[:, 0]]
            total = torch.zeros((batch.n_systems, 3, 3), dtype=grad.dtype, device=grad.device)
            total = total.index_add(0, owner, pair_virial)
            volume = batch.volumes()
            periodic = batch.pbc.all(dim=1) & (volume > 0)
            safe = torch.where(periodic, volume, torch.ones_like(volume))
            results.virial = total
            results.stress = torch.where(periodic[:, None, None], -total / safe[:, None, None],
                                         torch.full_like(total, float("nan")))
        if virials:
            half = 0.5 * pair_virial
            per_atom = torch.zeros((len(batch.numbers), 3, 3), dtype=grad.dtype, device=grad.device)
            results.virials = per_atom.index_add(0, batch.pairs[:, 0], half).index_add(0, batch.pairs[:, 1], half)
    return results if create_graph else _detached(results)


def _detached(results: Results) -> Results:
    """Results cut from the autograd graph (the default outside training)."""
    for name in ("energy", "energies", "forces", "virial", "stress", "virials"):
        value = getattr(results, name)
        if value is not None:
            setattr(results, name, value.detach())
    results.outputs = {k: v.detach() for k, v in results.outputs.items()}
    return results
