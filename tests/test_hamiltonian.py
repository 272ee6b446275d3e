"""Hamiltonian head: exact overlap, covariance, eigenvalue gradients, accuracy against pyscf."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from scipy.spatial.transform import Rotation

from atomflux.calculators import AtomfluxCalculator, HamiltonianCalculator
from atomflux.hamiltonian import HamiltonianModel
from atomflux.hamiltonian.basis import MinimalBasis
from atomflux.systems import Batch

pyscf = pytest.importorskip("pyscf", reason="pyscf (the [hamiltonian] extra) computes the reference levels")

from atomflux.hamiltonian.basis import sto3g_parameters  # noqa: E402
from atomflux.hamiltonian.data import HELD_OUT_MOLECULES, TRAINING_MOLECULES, generate  # noqa: E402
from atomflux.hamiltonian.train import level_errors  # noqa: E402

SPECIES = ["H", "C", "N", "O"]


@pytest.fixture(scope="module")
def random_hamiltonian() -> HamiltonianModel:
    """An untrained model with non-trivial weights: symmetry properties hold for any weights."""
    torch.manual_seed(1)
    model = HamiltonianModel(SPECIES, sto3g_parameters(SPECIES), hidden=(16,), pair_hidden=16).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def distorted(name: str, seed: int = 0):
    atoms = molecule(name)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_overlap_equals_pyscf():
    from pyscf import gto

    atoms = distorted("CH3OH")
    basis = MinimalBasis(sto3g_parameters(SPECIES))
    numbers = torch.as_tensor(atoms.numbers)
    mask = basis.slot_mask(numbers).flatten()
    ours = basis.overlap(torch.as_tensor(atoms.positions), numbers)[mask][:, mask].numpy()
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                basis="sto-3g", verbose=0)
    assert np.abs(ours - mol.intor("int1e_ovlp")).max() < 1e-12


def test_rotation_translation_invariance_and_covariance(random_hamiltonian):
    calc = HamiltonianCalculator(random_hamiltonian)
    atoms = distorted("CH3OH", seed=2)
    atoms.calc = calc
    levels, h, s = atoms.calc.get_eigenvalues(), atoms.calc.get_hamiltonian(), atoms.calc.get_overlap()
    rotation = Rotation.random(random_state=3).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([3.0, -1.0, 7.5])
    moved.calc = calc
    assert np.abs(moved.calc.get_eigenvalues() - levels).max() < 1e-8
    # H and S transform like the basis: s functions are scalars, (px, py, pz) a vector
    labels = calc.get_basis_labels(atoms)
    d = np.eye(len(labels))
    for k, label in enumerate(labels):
        if label.endswith("2px"):
            d[k:k + 3, k:k + 3] = rotation
    assert np.abs(moved.calc.get_hamiltonian() - d @ h @ d.T).max() < 1e-8 * np.abs(h).max()
    assert np.abs(moved.calc.get_overlap() - d @ s @ d.T).max() < 1e-12
    assert np.allclose(h, h.T) and np.all(np.linalg.eigvalsh(s) > 0)


def test_eigenvalue_gradients_match_finite_differences(random_hamiltonian):
    calc = HamiltonianCalculator(random_hamiltonian)
    atoms = distorted("H2O", seed=5)            # C1 after distortion: no degenerate levels
    gradients = calc.get_eigenvalue_gradients(atoms)
    assert np.isfinite(gradients).all()
    h = 1e-5
    numeric = np.zeros_like(gradients)
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, k] += h
            minus.positions[a, k] -= h
            numeric[:, a, k] = (_levels(calc, plus) - _levels(calc, minus)) / (2 * h)
    assert np.abs(gradients - numeric).max() < 1e-6 * max(1.0, np.abs(numeric).max())
    # translating the whole molecule changes nothing: gradients sum to zero over atoms
    assert np.abs(gradients.sum(1)).max() < 1e-9 * np.abs(gradients).max()


def _levels(calc, atoms):
    calc.calculate(atoms, ["eigenvalues"])
    return calc.results["eigenvalues"]


def test_batched_equals_single(random_hamiltonian):
    mols = [distorted(n, k) for k, n in enumerate(["H2O", "CH3OH", "NH3"])]
    cutoff = random_hamiltonian.cutoff
    together = random_hamiltonian.orbital_energies(Batch.from_atoms(mols, cutoff)).detach()
    for k, atoms in enumerate(mols):
        alone = random_hamiltonian.orbital_energies(Batch.from_atoms(atoms, cutoff)).detach()[0]
        n = random_hamiltonian.basis.n_orbitals(torch.as_tensor(atoms.numbers))
        assert torch.allclose(together[k, :n], alone[:n], atol=1e-10)


@pytest.fixture(scope="module")
def fresh_frames(tmp_path_factory):
    """Geometries never seen in training (a seed the shipped model's data did not use), with pyscf levels."""
    folder = tmp_path_factory.mktemp("ham")
    trained = generate(TRAINING_MOLECULES, 3, seed=101, cache=folder / "trained.json", progress=False)
    held_out = generate(HELD_OUT_MOLECULES, 3, seed=102, cache=folder / "held.json", progress=False)
    return trained, held_out


def test_shipped_model_reproduces_large_basis_levels(fresh_frames):
    calc = HamiltonianCalculator("demo-hamiltonian")
    assert calc.reference["method"] == "RHF" and calc.reference["basis"] == "cc-pvdz"
    pyscf.gto.M(atom="He 0 0 0", basis=calc.reference["basis"], verbose=0)   # names pyscf accepts
    trained, held_out = fresh_frames
    known = level_errors(calc.model, trained)
    assert known["occupied_mae_eV"] < OCCUPIED_MAE_TRAINED_EV
    assert known["occupied_mae_eV"] < 0.25 * known["minimal_basis_occupied_mae_eV"]
    unseen = level_errors(calc.model, held_out)
    assert unseen["occupied_mae_eV"] < OCCUPIED_MAE_HELD_OUT_EV
    assert unseen["occupied_mae_eV"] < 0.5 * unseen["minimal_basis_occupied_mae_eV"]


#: asserted accuracy of the shipped model (measured values are in the README)
OCCUPIED_MAE_TRAINED_EV = 0.1
OCCUPIED_MAE_HELD_OUT_EV = 1.2


def test_calculator_homo_lumo_as_a_user_would():
    atoms = molecule("H2O")
    atoms.calc = HamiltonianCalculator("demo-hamiltonian")
    homo, lumo = atoms.calc.get_homo_lumo()
    levels = atoms.calc.get_eigenvalues()
    assert atoms.calc.get_number_of_bands() == 7 == len(levels)
    assert homo == levels[4] and lumo == levels[5] and homo < lumo
    assert list(atoms.calc.get_occupation_numbers()) == [2, 2, 2, 2, 2, 0, 0]
    assert -14.5 < homo < -12.0          # RHF/cc-pVDZ HOMO of water: -13.5 eV


@pytest.mark.parametrize("make, message", [
    (lambda: (molecule("CH3"), {}), "open-shell"),
    (lambda: (molecule("H2O"), {"charge": 1}), "neutral closed-shell"),
    (lambda: (molecule("H2O"), {"multiplicity": 3}), "neutral closed-shell"),
    (lambda: (molecule("SiH4"), {}), "Si not known to this model"),
])
def test_bad_input_clear_errors(make, message):
    atoms, options = make()
    with pytest.raises(ValueError, match=message):
        atoms.calc = HamiltonianCalculator("demo-hamiltonian", **options)
        atoms.calc.get_eigenvalues()


def test_periodic_and_wrong_model_kind_refused():
    atoms = molecule("H2O", vacuum=3.0, pbc=True)
    atoms.calc = HamiltonianCalculator("demo-hamiltonian")
    with pytest.raises(ValueError, match="isolated molecules"):
        atoms.calc.get_eigenvalues()
    with pytest.raises(ValueError, match="not a Hamiltonian model"):
        HamiltonianCalculator("demo")
    with pytest.raises(ValueError, match="orbital energies, not the energy"):
        AtomfluxCalculator("demo-hamiltonian")


def test_cli_data_train_eval(tmp_path):
    from atomflux.cli import main
    from atomflux.io import read_metadata

    data, model, out = tmp_path / "data.json", tmp_path / "ham.pt", tmp_path / "eval"
    assert main(["hamiltonian", "data", "--molecules", "H2O", "NH3", "--per-molecule", "3", "-o", str(data)]) == 0
    assert main(["hamiltonian", "train", str(data), "--epochs", "30", "-o", str(model)]) == 0
    before = model.read_bytes()
    assert main(["hamiltonian", "train", str(data), "--epochs", "1", "-o", str(model)]) == 2  # kept, not overwritten
    assert model.read_bytes() == before
    reference = read_metadata(model)["reference"]
    assert reference["method"] == "RHF" and reference["basis"] == "cc-pvdz" and "occupied" in reference["levels"]
    assert main(["hamiltonian", "eval", str(model), str(data), "--molecule", "NH3", "--output-dir", str(out)]) == 0
    assert (out / "levels-parity.png").stat().st_size > 10_000 and (out / "levels-NH3.png").stat().st_size > 10_000
    assert main(["hamiltonian", "eval", str(model), str(data), "--molecule", "CH4", "--output-dir", str(out)]) == 2


@pytest.mark.slow
def test_training_recipe_reaches_the_stated_accuracy(tmp_path):
    """Train from scratch on fresh pyscf data (fewer geometries and epochs than the shipped model)."""
    from atomflux.hamiltonian.train import train_hamiltonian

    train = generate(TRAINING_MOLECULES, 30, seed=201, cache=tmp_path / "train.json", progress=False)
    validation = generate(TRAINING_MOLECULES, 4, seed=202, cache=tmp_path / "val.json", progress=False)
    result = train_hamiltonian(train, validation, epochs=600, progress=False)
    errors = level_errors(result.model, validation)
    assert errors["occupied_mae_eV"] < 0.15
    assert errors["occupied_mae_eV"] < 0.1 * errors["minimal_basis_occupied_mae_eV"]
    assert result.validation_loss[-1] < 0.05 * result.validation_loss[0]
