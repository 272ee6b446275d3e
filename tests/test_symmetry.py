"""Rotational quadratures, the averaged potential and its ASE calculator (issue 22).

Physics asserted: quadratures integrate polynomials of rotation-matrix entries
exactly up to their degree (textbook Haar moments: Weingarten values) and
spherical harmonics of rotated directions (SciPy's ``sph_harm_y``); the
average of a deliberately anisotropic Lennard-Jones model is invariant and
equals plain Lennard-Jones once the grid degree reaches the anisotropy degree;
forces and stress of the average are equivariant and are −∂E/∂r (finite
differences); averaging an invariant model changes nothing.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from scipy.special import sph_harm_y
from scipy.spatial.transform import Rotation

from atomflux import AtomfluxCalculator
from atomflux.evaluate import evaluate
from atomflux.io import load_model, save_model
from atomflux.models import LennardJones
from atomflux.symmetry import (AnisotropicLennardJones, AveragedPotential, RotationalAverage, rotation_grid,
                               split_average)
from atomflux.systems import Batch

FIXED_GRIDS = [("lebedev", order) for order in (1, 2, 3, 4, 5)] + [("legendre", order) for order in (1, 2, 3, 4, 5)]


def haar_moment(rows: tuple[int, ...], cols: tuple[int, ...]) -> float:
    """∫ Π_k R[rows_k, cols_k] dR over SO(3), Haar measure, for degree ≤ 4 (textbook values).

    Degree 1: 0.  Degree 2: δ δ / 3.  Degree 3: ε_{abc} ε_{def} / 6.  Degree 4: the O(3)
    Weingarten formula Σ_{pairings p, q} δ_p(rows) δ_q(cols) Wg(p, q) with Wg = 2/15 (p = q),
    −1/30 (p ≠ q) for d = 3 (Collins & Śniady 2006).
    """
    n = len(rows)
    if n == 1:
        return 0.0
    if n == 2:
        return float(rows[0] == rows[1] and cols[0] == cols[1]) / 3
    if n == 3:
        eps = np.zeros((3, 3, 3))
        for perm in itertools.permutations(range(3)):
            eps[perm] = np.linalg.det(np.eye(3)[list(perm)])
        return eps[rows] * eps[cols] / 6
    pairings = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    paired = [lambda idx, p=p: all(idx[a] == idx[b] for a, b in p) for p in pairings]
    return sum(paired[p](rows) * paired[q](cols) * (2 / 15 if p == q else -1 / 30)
               for p in range(3) for q in range(3))


def grid_moment(grid, rows, cols) -> float:
    return float(np.sum(grid.weights * np.prod([grid.rotations[:, r, c] for r, c in zip(rows, cols)], axis=0)))


@pytest.mark.parametrize("name,order", FIXED_GRIDS)
def test_grid_is_a_normalised_set_of_rotations(name, order):
    grid = rotation_grid(name, order)
    assert grid.weights.sum() == pytest.approx(1.0, abs=1e-14) and np.all(grid.weights > 0)
    eye = np.einsum("kab,kcb->kac", grid.rotations, grid.rotations)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-13)
    np.testing.assert_allclose(np.linalg.det(grid.rotations), 1.0, atol=1e-13)
    improper = rotation_grid(name, order, inversion=True)
    assert improper.size == 2 * grid.size and improper.weights.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(np.sort(np.linalg.det(improper.rotations)), [-1] * grid.size + [1] * grid.size,
                               atol=1e-13)


@pytest.mark.parametrize("name,order", FIXED_GRIDS)
def test_grid_integrates_polynomials_of_the_rotation_up_to_its_degree(name, order):
    """Monomials of degree n in the entries of R span the Wigner D^l with l ≤ n."""
    grid = rotation_grid(name, order)
    for degree in range(1, min(order, 4) + 1):
        for rows in itertools.product(range(3), repeat=degree):
            for cols in itertools.product(range(3), repeat=degree):
                assert grid_moment(grid, rows, cols) == pytest.approx(haar_moment(rows, cols), abs=1e-13), \
                    (name, order, rows, cols)


def test_inversion_grid_integrates_the_o3_moments():
    """Over O(3) the odd moments vanish (ε ε / 6 only averages to it over SO(3))."""
    grid = rotation_grid("lebedev", 3, inversion=True)
    assert grid_moment(grid, (0, 1, 2), (0, 1, 2)) == pytest.approx(0.0, abs=1e-14)
    assert rotation_grid("lebedev", 3).rotations.shape[0] == 24
    assert grid_moment(rotation_grid("lebedev", 3), (0, 1, 2), (0, 1, 2)) == pytest.approx(1 / 6, abs=1e-14)


@pytest.mark.parametrize("name,order", [("lebedev", 2), ("lebedev", 3), ("lebedev", 6), ("legendre", 3),
                                        ("legendre", 6)])
def test_grid_integrates_rotated_spherical_harmonics_exactly_to_its_degree_and_not_beyond(name, order):
    """Σ_k w_k Y_lm(R_k v) = δ_l0 / √(4π) for l ≤ L and any direction v (SciPy's Y_lm); some l > L fails."""
    grid = rotation_grid(name, order)
    directions = Rotation.random(4, random_state=1).apply([0.0, 0.0, 1.0])

    def worst_error(l: int) -> float:
        rotated = np.einsum("kab,vb->kva", grid.rotations, directions)
        theta, phi = np.arccos(np.clip(rotated[..., 2], -1, 1)), np.arctan2(rotated[..., 1], rotated[..., 0])
        exact = 1 / np.sqrt(4 * np.pi) if l == 0 else 0.0
        return max(abs(np.einsum("k,kv->v", grid.weights, sph_harm_y(l, m, theta, phi)) - exact).max()
                   for m in range(-l, l + 1))

    assert max(worst_error(l) for l in range(order + 1)) < 1e-13
    assert max(worst_error(l) for l in range(order + 1, order + 4)) > 1e-4  # exactness is the stated degree


def test_legendre_grid_sizes_are_those_of_ipi():
    """(L+1)²⌈(L+1)/2⌉ rotations; orders 2 and 4 are i-PI's legendre grids of 18 and 75 rotations."""
    assert [rotation_grid("legendre", L).size for L in (1, 2, 3, 4)] == [4, 18, 32, 75]
    assert rotation_grid("lebedev", 0).size == 1 and rotation_grid("random", 5).size == 5


@pytest.mark.parametrize("bad", [("spiral", 3), ("lebedev", -1), ("lebedev", 2.5), ("random", 0), ("lebedev", 99)])
def test_bad_grids_are_refused_with_one_line(bad):
    with pytest.raises(ValueError, match="grid|order"):
        rotation_grid(*bad)


def cluster(n: int = 13, seed: int = 0) -> Atoms:
    """A compact, slightly disordered isolated cluster of Ar-like atoms (nearest neighbours ≈ 2.6 Å)."""
    rng = np.random.default_rng(seed)
    fcc = bulk("Cu", "fcc", a=3.7).repeat((3, 3, 3))
    centre = fcc.positions[len(fcc) // 2]
    keep = np.argsort(np.linalg.norm(fcc.positions - centre, axis=1))[:n]
    atoms = Atoms("Cu" * n, positions=fcc.positions[keep] - centre + rng.normal(0, 0.05, (n, 3)))
    return atoms


def periodic_box(seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=seed)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0.02, 0, 1]]), scale_atoms=True)
    return atoms


def toy(degree: int = 2) -> AnisotropicLennardJones:
    return AnisotropicLennardJones(sigma=2.3, epsilon=0.2, cutoff=5.0, anisotropy=0.05, degree=degree,
                                   axis=(0.3, -0.2, 1.0), species=["Cu"])


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.cell = atoms.cell.array @ rotation.T
    return out


def results(calc, atoms: Atoms, stress: bool = False) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        out["stress"] = atoms.get_stress(voigt=False)
    out.update({k: v for k, v in calc.results.items() if k.endswith("_rot_std")})
    return out


@pytest.mark.parametrize("grid,order", [("lebedev", 2), ("legendre", 2), ("lebedev", 4)])
def test_average_of_anisotropic_toy_is_invariant_and_equals_lennard_jones(grid, order):
    """The P_2 term averages to exactly zero over a degree ≥ 2 grid: what is left is plain (smooth) LJ."""
    atoms = periodic_box()
    calc = RotationalAverage(toy(), order=order, grid=grid, dtype="float64")
    plain = AtomfluxCalculator(LennardJones(2.3, 0.2, 5.0, cutoff_mode="smooth", species=["Cu"]), dtype="float64")
    reference = results(plain, atoms, stress=True)
    bare = AtomfluxCalculator(toy(), dtype="float64")
    bare_energies = [results(bare, rotated(atoms, r))["energy"] for r in Rotation.random(3, random_state=9).as_matrix()]
    assert np.ptp(bare_energies) > 1e-4  # the anisotropy is there to remove
    for rotation in [np.eye(3)] + list(Rotation.random(3, random_state=2).as_matrix()):
        averaged = results(calc, rotated(atoms, rotation), stress=True)
        assert averaged["energy"] == pytest.approx(reference["energy"], abs=1e-10)
        np.testing.assert_allclose(averaged["forces"], reference["forces"] @ rotation.T, atol=1e-10)
        np.testing.assert_allclose(averaged["stress"], rotation @ reference["stress"] @ rotation.T, atol=1e-12)
    assert averaged["energy_rot_std"] > 1e-3 and averaged["forces_rot_std"].max() > 1e-3


def test_grid_below_the_anisotropy_degree_is_not_invariant():
    """A degree-4 anisotropy survives a degree-3 grid and is removed by a degree-4 one."""
    atoms = cluster()
    energies = {}
    for order in (3, 4):
        calc = RotationalAverage(toy(degree=4), order=order, dtype="float64")
        energies[order] = [results(calc, rotated(atoms, r))["energy"]
                           for r in Rotation.random(3, random_state=3).as_matrix()]
    assert np.ptp(energies[3]) > 1e-5
    assert np.ptp(energies[4]) < 1e-10


def test_averaged_forces_and_stress_are_derivatives_of_the_averaged_energy():
    """F = −∂E/∂r and S = (1/V) ∂E/∂ε (symmetric strain ε) by central differences, on a grid that does not
    remove the anisotropy (the energy of a non-invariant model also changes under antisymmetric strain, a
    rotation: ASE's stress is the symmetric part)."""
    atoms = periodic_box(seed=4)
    calc = RotationalAverage(toy(degree=4), order=2, grid="lebedev", dtype="float64")
    exact = results(calc, atoms, stress=True)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 2), (7, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(results(calc, moved)["energy"])
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(exact["forces"][atom, axis], abs=1e-7)
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * h / 2
            strain[b, a] += sign * h / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ strain.T, scale_atoms=True)
            energies.append(results(calc, strained)["energy"])
        derivative = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
        assert derivative == pytest.approx(exact["stress"][a, b], abs=1e-7)


def test_averaged_potential_goes_through_evaluate_like_the_calculator():
    """The model-spec path (AveragedPotential in evaluate) and the calculator's per-rotation path agree,
    and the potential's forces are −∂E/∂r of its own energy (finite differences)."""
    atoms = cluster(seed=5)
    potential = AveragedPotential(toy(degree=4), "lebedev:2").double()
    batch = Batch.from_atoms(atoms, potential.cutoff, torch.float64)
    res = evaluate(potential, batch, forces=True)
    calc = results(RotationalAverage(toy(degree=4), order=2, dtype="float64"), atoms)
    assert float(res.energy[0]) == pytest.approx(calc["energy"], abs=1e-12)
    np.testing.assert_allclose(res.forces.numpy(), calc["forces"], atol=1e-12)
    h, moved = 1e-5, []
    for sign in (1, -1):
        a = atoms.copy()
        a.positions[2, 1] += sign * h
        moved.append(float(evaluate(potential, Batch.from_atoms(a, potential.cutoff, torch.float64)).energy[0]))
    assert -(moved[0] - moved[1]) / (2 * h) == pytest.approx(float(res.forces[2, 1]), abs=1e-7)


def test_averaging_an_invariant_model_changes_nothing():
    """The demo model (exactly invariant): averaged results equal the bare ones, rotational spread ≈ 0."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=6)
    bare = results(AtomfluxCalculator("demo", dtype="float64"), atoms, stress=True)
    averaged = results(RotationalAverage("demo", order=3, dtype="float64"), atoms, stress=True)
    assert averaged["energy"] == pytest.approx(bare["energy"], abs=1e-10)
    np.testing.assert_allclose(averaged["forces"], bare["forces"], atol=1e-10)
    np.testing.assert_allclose(averaged["stress"], bare["stress"], atol=1e-10)
    assert averaged["energy_rot_std"] < 1e-10 and averaged["forces_rot_std"].max() < 1e-10
    assert averaged["stress_rot_std"].max() < 1e-10


def test_any_ase_calculator_is_averaged_one_call_per_rotation():
    """EMT (ASE's own, invariant) is unchanged by averaging and has no rotational spread."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=7)
    bare = results(EMT(), atoms, stress=True)
    calc = RotationalAverage(EMT(), order=2, grid="legendre")
    averaged = results(calc, atoms, stress=True)
    assert "EMT once per rotation" in calc.describe()
    assert averaged["energy"] == pytest.approx(bare["energy"], abs=1e-10)
    np.testing.assert_allclose(averaged["forces"], bare["forces"], atol=1e-10)
    np.testing.assert_allclose(averaged["stress"], bare["stress"], atol=1e-10)
    assert averaged["forces_rot_std"].max() < 1e-10


def test_uncertainties_and_per_atom_energies_are_averaged():
    """A shallow ensemble averaged: per-atom energies sum to the energy, uncertainties present and finite."""
    atoms = cluster(seed=8)
    calc = RotationalAverage("demo", order=2, dtype="float64")
    a = atoms.copy()
    a.calc = calc
    energy = a.get_potential_energy()
    assert a.get_potential_energies().sum() == pytest.approx(energy, abs=1e-10)
    bare = AtomfluxCalculator("demo", dtype="float64")
    b = atoms.copy()
    b.calc = bare
    b.get_potential_energy()
    if "energy_uncertainty" in bare.results:
        calc.calculate(a, ["energy", "energy_uncertainty", "forces_uncertainty"])
        assert calc.results["energy_uncertainty"] == pytest.approx(bare.results["energy_uncertainty"], rel=1e-8)


def test_model_spec_suffix_loads_the_average_everywhere(tmp_path):
    potential = load_model("demo@lebedev:2")
    assert isinstance(potential, AveragedPotential) and potential.grid().size == 18
    assert split_average("sevennet:7net-0@lebedev:3:inversion")[0] == "sevennet:7net-0"
    assert split_average("sevennet:7net-0") == ("sevennet:7net-0", None)
    assert split_average("mace:/models/run@v2.model") == ("mace:/models/run@v2.model", None)
    odd = tmp_path / "model@lebedev:2.pt"
    save_model(LennardJones(2.3, 0.2, 5.0, species=["Cu"]), odd)
    assert not isinstance(load_model(str(odd)), AveragedPotential)  # an existing file is never split
    from atomflux.calculators import make_calculator

    calc = make_calculator("demo@legendre:2")
    assert isinstance(calc, RotationalAverage) and calc.last_grid.size == 18
    for bad in ("demo@lebdev:3", "demo@lebedev:x", "@lebedev:3"):
        with pytest.raises(ValueError, match="MODEL@GRID"):
            load_model(bad)
    with pytest.raises(ValueError, match="already rotationally averaged"):
        AveragedPotential(potential)
    with pytest.raises(ValueError, match="not saved as such"):
        save_model(potential, tmp_path / "x.pt")
