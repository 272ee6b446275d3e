"""Third-party models (SevenNet-0, CHGNet) through atomflux, checked against their own calculators.

sevenn and chgnet ship their weights in their wheels and are in the ``test``
extra; where they are missing, these tests skip and say why.
"""

import shutil
import sys
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from atomflux import AtomfluxCalculator, Batch, evaluate, load_model, save_model
from atomflux.calculators import Committee, make_calculator
from atomflux.uncertainty import LLPR, ExtrapolationError, UncertaintyGuard

warnings.filterwarnings("ignore", module="sevenn")
sevenn = pytest.importorskip("sevenn", reason="sevenn is not installed: pip install 'atomflux[sevennet]'")
chgnet = pytest.importorskip("chgnet", reason="chgnet is not installed: pip install 'atomflux[chgnet]'")
from chgnet.model.dynamics import CHGNetCalculator  # noqa: E402
from sevenn.calculator import SevenNetCalculator  # noqa: E402

READOUT = "model.reduce_hidden_to_energy.linear"


def strained_si(repeat=(2, 1, 1), seed=0) -> "Atoms":  # noqa: F821
    """Rattled Si in a strained triclinic cell far smaller than SevenNet-0's 25 Å interaction range."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Si", "diamond", a=5.43) * repeat
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def sevennet_reference():
    return SevenNetCalculator("7net-0", device="cpu")


@pytest.fixture(scope="module")
def sevennet():
    return AtomfluxCalculator("sevennet:7net-0")


@pytest.fixture(scope="module")
def chgnet_calculator():
    return make_calculator("chgnet:0.3.0")


def results(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def assert_close(ours, theirs, rtol=1e-5):
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        assert np.abs(a - b).max() <= rtol * np.abs(b).max()


def test_sevennet_spec_equals_sevennet_calculator(sevennet, sevennet_reference):
    atoms = strained_si()
    assert sevennet.dtype == torch.float32
    assert sevennet.potential.interaction_range == pytest.approx(25.0)
    assert not sevennet.potential.strictly_local
    assert_close(results(sevennet, atoms), results(sevennet_reference, atoms))
    # the calculator object itself is adapted too, and keeps working on its own afterwards
    assert_close(results(AtomfluxCalculator(sevennet_reference), atoms), results(sevennet_reference, atoms))
    assert_close(results(sevennet_reference, strained_si(seed=1)), results(sevennet, strained_si(seed=1)))


def test_sevennet_features_are_the_scaled_readout_input(sevennet):
    """energy_i = readout(features_i / scale_s) * scale_s + shift_s with SevenNet's own modules, two species."""
    atoms = strained_si(repeat=(1, 1, 1))
    atoms.symbols[1] = "C"
    batch = Batch.from_atoms(atoms, sevennet.potential.cutoff, dtype=torch.float32)  # the model's own dtype
    out = sevennet.potential(batch, batch.pair_vectors())
    model = sevennet.potential.model
    index = model.z_to_onehot_tensor[batch.numbers]
    scale, shift = model.rescale_atomic_energy.scale[index], model.rescale_atomic_energy.shift[index]
    readout = model.reduce_hidden_to_energy.linear(out["features"] / scale[:, None]).squeeze(-1)
    torch.testing.assert_close(readout * scale + shift, out["energy"], rtol=1e-6, atol=1e-6)


def test_sevennet_refuses_float64_and_cannot_be_saved(sevennet, tmp_path):
    with pytest.raises(ValueError, match="runs only in float32"):
        AtomfluxCalculator("sevennet:7net-0", dtype="float64")
    with pytest.raises(ValueError, match="spec 'sevennet:7net-0'"):
        save_model(sevennet.potential, tmp_path / "x.pt")


def test_llpr_hook_equals_explicit_features_and_file_round_trip(sevennet, tmp_path):
    base = sevennet.potential
    train = [Batch.from_atoms(strained_si(seed=k), base.cutoff, dtype=torch.float32) for k in range(8)]
    explicit = LLPR(base, n_samples=4).fit(train)
    hooked = LLPR(base, n_samples=4, last_layer=READOUT).fit(train)
    # with the same (negligible) regulariser, σ = α √(φᵀC⁻¹φ) does not depend on the feature scale
    for model in (explicit, hooked):
        model.regulariser.fill_(1e-7 * float(torch.linalg.eigvalsh(model.covariance.double()).max()))
        model._invalidate()
    test = Batch.from_atoms(strained_si(seed=99), base.cutoff, dtype=torch.float32)
    scale = float(base.model.rescale_atomic_energy.scale[base.model.type_map[14]])
    phi_explicit = evaluate(explicit, test, forces=False).outputs["llpr_features"]
    phi_hooked = evaluate(hooked, test, forces=False).outputs["llpr_features"]
    torch.testing.assert_close(phi_hooked[:, :-1] * scale, phi_explicit[:, :-1], rtol=1e-6, atol=1e-6)
    sigma = [float(evaluate(m, test, forces=False, uncertainty="energy").energy_uncertainty[0])
             for m in (explicit, hooked)]
    assert sigma[1] == pytest.approx(sigma[0], rel=0.05)
    # saved as an atomflux file that refers to SevenNet-0 by spec: small, tensors only, same σ after reloading
    path = save_model(hooked, tmp_path / "si-llpr.pt")
    archive = torch.load(path, weights_only=True)
    assert not any(k.startswith("base.") for k in archive["state_dict"])
    assert '"spec": "sevennet:7net-0"' in archive["metadata"]
    reloaded = load_model(path)
    full = evaluate(hooked, test, forces=True, uncertainty=True)
    again = evaluate(reloaded, test, forces=True, uncertainty=True)
    assert torch.equal(full.energy_uncertainty, again.energy_uncertainty)
    torch.testing.assert_close(full.forces_uncertainty, again.forces_uncertainty, rtol=1e-5, atol=1e-6)


def test_chgnet_spec_is_chgnets_own_calculator(chgnet_calculator):
    atoms = strained_si()
    assert_close(results(chgnet_calculator, atoms), results(CHGNetCalculator(use_device="cpu"), atoms))
    with pytest.raises(ValueError, match="ASE calculator only"):
        load_model("chgnet:0.3.0")
    with pytest.raises(ValueError, match="Committee"):
        AtomfluxCalculator(chgnet_calculator)


def test_committee_mean_members_and_spread(sevennet, chgnet_calculator):
    atoms = strained_si()
    members = [results(c, atoms) for c in (sevennet, chgnet_calculator)]
    committee = Committee([sevennet, chgnet_calculator])
    a = atoms.copy()
    a.calc = committee
    energy, forces, stress = a.get_potential_energy(), a.get_forces(), a.get_stress()
    r = committee.results
    for k, (mean, name) in enumerate(((energy, "energy"), (forces, "forces"), (stress, "stress"))):
        values = np.array([m[k] for m in members])
        np.testing.assert_allclose(mean, values.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r[f"{name}_ensemble"], values, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r[f"{name}_uncertainty"], np.abs(values[0] - values[1]) / 2, rtol=1e-9, atol=1e-12)
    assert r["forces_ensemble"].shape == (2, len(atoms), 3)
    assert committee.names == ["sevennet:7net-0", "chgnet:0.3.0"]


def test_guard_stops_on_committee_spread(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    committee = Committee([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=6.0)])
    atoms.calc = committee
    spread = abs(EMT().get_potential_energy(atoms) - LennardJones(sigma=2.3, epsilon=0.4, rc=6.0)
                 .get_potential_energy(atoms)) / 2
    guard = UncertaintyGuard(atoms, threshold=10 * spread / len(atoms), save=tmp_path / "x.extxyz")
    guard()
    assert guard.history[0] == pytest.approx(spread / len(atoms), rel=1e-12)
    with pytest.raises(ExtrapolationError):
        UncertaintyGuard(atoms, threshold=0.5 * spread / len(atoms), save=tmp_path / "y.extxyz")()
    with pytest.raises(ValueError, match="no energy uncertainty"):
        atoms.calc = EMT()
        guard()


def test_untrusted_pickle_refused_trusted_accepted(tmp_path):
    from sevenn import _const

    copy = tmp_path / "checkpoint.pth"
    shutil.copy(_const.SEVENNET_0_11Jul2024, copy)
    for model in (f"sevennet:{copy}", str(copy)):
        with pytest.raises(ValueError, match="trust=True.*--trust-model"):
            load_model(model)
    chg = tmp_path / "chgnet.pth.tar"
    shutil.copy(next((__import__("pathlib").Path(chgnet.__file__).parent / "pretrained" / "0.3.0").glob("*.tar")), chg)
    with pytest.raises(ValueError, match="trust=True"):
        make_calculator(f"chgnet:{chg}")
    atoms = strained_si()
    assert_close(results(make_calculator(f"chgnet:{chg}", trust=True), atoms), results(CHGNetCalculator(use_device="cpu"), atoms))


def test_missing_extra_is_named_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mace", None)
    with pytest.raises(ImportError) as info:
        load_model("mace:model.model")
    assert "pip install 'atomflux[mace]'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_model("sevennet:7net-omat")


def test_lammps_pair_coeff_takes_the_spec_as_a_whole_system_model():
    """SevenNet is message passing: pair_style atomflux hands it whole systems (test_lammps_message_passing.py)."""
    from atomflux.lammps_bridge.callbacks import setup_model

    bridged = setup_model("sevennet:7net-0", ["Si"], "", "metal", 1)
    assert bridged.whole_system and bridged.potential.interaction_range == pytest.approx(25.0)
