"""The README's worked adapter ("Bring your own model"), run as written on a toy message-passing network."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from atomflux import AtomfluxCalculator

from conftest import finite_difference_forces

README = Path(__file__).resolve().parents[1] / "README.md"


class ToyNet(torch.nn.Module):
    """Two message-passing layers with a 3 Å cosine cutoff; last linear layer ``readout``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(100, 8)
        self.radial = torch.nn.Linear(4, 8)
        self.readout = torch.nn.Linear(8, 1)

    def forward(self, z, edge_index, vectors):
        r = vectors.norm(dim=1, keepdim=True)
        smooth = 0.5 * (torch.cos(torch.pi * r / 3.0) + 1)
        basis = torch.cat([torch.exp(-r), torch.exp(-2 * r), r * torch.exp(-r), torch.exp(-r / 2)], 1) * smooth
        h = self.embed(z)
        for _ in range(2):
            messages = h[edge_index[1]] * self.radial(basis)
            h = torch.tanh(h + torch.zeros_like(h).index_add(0, edge_index[0], messages))
        return self.readout(h)


@pytest.fixture(scope="module")
def adapter_class():
    text = README.read_text()
    code = re.search(r"```python\n(import torch\n.*?class MyNetPotential.*?)\n\npotential = ", text, re.S).group(1)
    assert len(code.splitlines()) <= 40
    namespace: dict = {}
    exec(compile(code, "README adapter", "exec"), namespace)
    return namespace["MyNetPotential"]


def test_readme_adapter_forces_features_and_periodic_images(adapter_class):
    potential = adapter_class(ToyNet().double(), elements=[14], cutoff=3.0, n_layers=2)
    assert potential.interaction_range == 6.0 and not potential.strictly_local
    calc = AtomfluxCalculator(potential, dtype="float64")
    atoms = bulk("Si", "diamond", a=5.43)          # 2 atoms: the cell is smaller than the 6 Å interaction range
    atoms.rattle(0.1, seed=2)
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_forces(), finite_difference_forces(lambda a: calc.get_potential_energy(a),
                                                                            atoms), atol=1e-6)
    # message passing through cell shifts sees the same infinite crystal as an explicit 2x2x2 replica
    big = atoms * (2, 2, 2)
    big.calc = calc
    assert big.get_potential_energy() == pytest.approx(8 * atoms.get_potential_energy(), rel=1e-12)
    # features are the readout's input: energy = features · w + b
    batch = calc.batch(atoms)
    out = potential(batch, batch.pair_vectors())
    readout = potential.net.readout
    torch.testing.assert_close(out["features"] @ readout.weight.T[:, 0] + readout.bias, out["energy"])
