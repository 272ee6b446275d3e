"""A small two-layer MACE for fcc Cu, fitted in a minute to ASE's EMT, for the heat-flux examples.

Writes ``small-mace-cu.model`` (a mace-torch pickle: load it with ``pair_style atomflux trust yes``
or ``--model mace:small-mace-cu.model --trust-model``) and ``cu.cif`` (the primitive cell at
a = 3.59 Å, EMT's lattice constant).
Not a production model: it stands in for your own MACE file in ``in.heat_flux_mace``.

    .venv-mace/bin/python examples/lammps/small_mace_cu.py [--epochs 60]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT


def small_mace(seed: int = 0) -> torch.nn.Module:
    """A two-layer ScaleShiftMACE for Cu (r_max 4 Å, 8x0e+8x1o, float64), random weights."""
    from atomflux.foreign.mace import import_mace

    _, modules = import_mace()
    from e3nn import o3

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(seed)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=1, hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([0.0]), avg_num_neighbors=40.0,
        atomic_numbers=[29], correlation=2, gate=torch.nn.functional.silu, atomic_inter_scale=1.0,
        atomic_inter_shift=0.0)
    torch.set_default_dtype(previous)
    return model


def training_set(n_structures: int, seed: int = 0) -> list:
    """Rattled (0.05–0.15 Å), strained (±2 %) 32-atom fcc Cu cells labelled by EMT."""
    rng = np.random.default_rng(seed)
    structures = []
    for _ in range(n_structures):
        atoms = bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.uniform(-1, 1, (3, 3))), scale_atoms=True)
        atoms.positions += rng.uniform(0.05, 0.15) * rng.standard_normal(atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["energy"], atoms.arrays["forces"] = atoms.get_potential_energy(), atoms.get_forces()
        structures.append(atoms)
    return structures


def fit(epochs: int) -> torch.nn.Module:
    """Adam on per-atom energies and forces of :func:`training_set`; prints the RMS errors."""
    from atomflux import Batch
    from atomflux.evaluate import forces_from_pair_gradient
    from atomflux.foreign.mace import mace_from_object

    potential = mace_from_object(small_mace()).train()
    structures = training_set(12)
    batches = [Batch.from_atoms(a, potential.cutoff) for a in structures]
    optimizer = torch.optim.Adam(potential.parameters(), lr=5e-3)
    for epoch in range(epochs):
        energy_se = force_se = 0.0
        for atoms, batch in zip(structures, batches):
            vectors = batch.pair_vectors().detach().requires_grad_(True)
            energies = potential(batch, vectors)["energy"]
            (gradient,) = torch.autograd.grad(energies.sum(), vectors, create_graph=True)
            forces = forces_from_pair_gradient(gradient, batch)
            energy_error = (energies.sum() - atoms.info["energy"]) / len(atoms)
            force_error = forces - torch.tensor(atoms.arrays["forces"])
            loss = 100 * energy_error**2 + (force_error**2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            energy_se += float(energy_error.detach()) ** 2
            force_se += float((force_error.detach() ** 2).mean())
        if epoch % 10 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch}: energy RMSE {1e3 * np.sqrt(energy_se / len(batches)):.1f} meV/atom, "
                  f"force RMSE {np.sqrt(force_se / len(batches)):.3f} eV/Å", flush=True)
    return potential.model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="passes over the 12 training cells (default: 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.save(fit(args.epochs), "small-mace-cu.model")
    bulk("Cu", "fcc", a=3.59).write("cu.cif")
    print("wrote small-mace-cu.model and cu.cif")


if __name__ == "__main__":
    main()
