"""Long-range models against LAMMPS's own rigid-ion NaCl (born/coul/long + Ewald; born + coul/cut without a cell).

Default run (~20 s): atomflux's Ewald (torch-pme through ``evaluate``) against LAMMPS's Ewald on the
same fixed charges; the reference's own sanity (finite differences, refusals); a tiny long-range
model trained on LAMMPS-labelled ion pairs (charges, Coulomb tail).
Slow (~10-20 min): short-range and long-range models trained with ``atomflux train`` on the same
LAMMPS bulk data, compared beyond their cutoff (ion-pair and charged-cluster dissociation), and the
long-range model used as a user would: ASE, ``atomflux md`` NVE, ``pair_style atomflux``, phonons
and ``atomflux kappa`` against the same computations on LAMMPS's forces.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

pytest.importorskip("torchpme", reason="torch-pme is a test dependency (pip install 'atomflux[longrange]')")
from conftest import lammps_bridge_or_skip  # noqa: E402

lammps_bridge_or_skip()

from atomflux import evaluate  # noqa: E402
from atomflux.models.base import Potential  # noqa: E402
from atomflux.models.cutoffs import polynomial_cutoff  # noqa: E402
from atomflux.models.long_range_field import COULOMB_CONSTANT, LongRangeField  # noqa: E402
from atomflux.reference_data import NACL_BORN_MAYER, NACL_LATTICE, rigid_ion_nacl  # noqa: E402
from atomflux.systems import Batch  # noqa: E402

#: the rigid-ion model with the Born–Mayer repulsion switched off: LAMMPS's coul/long + Ewald only
COULOMB_ONLY = {pair: (0.0, rho, sigma) for pair, (_, rho, sigma) in NACL_BORN_MAYER.items()}
MADELUNG_ROCKSALT = 1.747565


class FixedCharges(Potential):
    """±1 e on Na/Cl in atomflux's long-range field plus the excluded pairs added back: the full
    Coulomb energy, through the production path (``LongRangeField`` + ``evaluate``'s strain autograd)."""

    long_range = True
    strictly_local = False

    def __init__(self, cutoff: float, accuracy: float, method: str) -> None:
        super().__init__(["Na", "Cl"], cutoff)
        self.field = LongRangeField(cutoff, (1,), accuracy, method)

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        q = torch.where(batch.numbers == 11, 1.0, -1.0).to(vectors.dtype)[:, None]
        r = vectors.norm(dim=1)
        near = r < self.cutoff
        i, j = batch.pairs[near, 0], batch.pairs[near, 1]
        excluded = 0.5 * COULOMB_CONSTANT * q[i, 0] * q[j, 0] * polynomial_cutoff(r[near], self.cutoff) / r[near]
        energy = (q * self.field.fields(batch, vectors, q)).sum(1).index_add(0, i, excluded)
        return {"energy": energy}


def _tail_error(predicted: np.ndarray, reference: np.ndarray) -> float:
    """RMS of (E - E_last) predicted minus reference: the shape of an energy curve, whatever its offset."""
    return float(np.sqrt(np.mean(((predicted - predicted[-1]) - (reference - reference[-1]))**2)))


def _rattled(seed: int = 0) -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
    deformation = np.eye(3) + 0.02 * rng.normal(size=(3, 3))
    atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)        # triclinic, LAMMPS re-orients it
    return atoms


#: LAMMPS's coul/long evaluates erfc by a polynomial (without tables, ``pair_modify table 0``, as the
#: reference runs it so that its forces are derivatives of its energy): relative energy errors of a few
#: 1e-7 that do not shrink with the k-space accuracy (Madelung 1.7475654 at 1e-8; exact 1.74756459)
LAMMPS_ENERGY_FLOOR = 1e-6


def test_atomflux_ewald_equals_lammps_ewald() -> None:
    """Two independent codes, the same charges: LAMMPS (coul/long + kspace ewald 1e-8) and atomflux's
    field (torch-pme, exclusion added back) agree on the Madelung energy of ideal NaCl (and both on
    the textbook constant) and on the energy, forces and stress of a rattled triclinic cell."""
    ideal = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True)
    rattled = _rattled()
    lammps = rigid_ion_nacl([ideal, rattled], repulsion=COULOMB_ONLY)
    model = FixedCharges(cutoff=4.5, accuracy=1e-8, method="ewald").double()
    madelung = {}
    for name, energy in (("lammps", lammps[0].get_potential_energy()),
                         ("atomflux", float(evaluate(model, Batch.from_atoms(ideal, 4.5), forces=False).energy[0]))):
        madelung[name] = -energy / (len(ideal) / 2) * (NACL_LATTICE / 2) / COULOMB_CONSTANT
    assert madelung["lammps"] == pytest.approx(MADELUNG_ROCKSALT, abs=1e-6)
    tolerance = LAMMPS_ENERGY_FLOOR
    assert madelung["atomflux"] == pytest.approx(madelung["lammps"], rel=tolerance)
    res = evaluate(model, Batch.from_atoms(rattled, 4.5), stress=True)
    reference = lammps[1]
    scale = np.abs(reference.get_forces()).max()
    print(f"Madelung {madelung}; rattled cell: ΔE = {float(res.energy[0]) - reference.get_potential_energy():.2e} eV, "
          f"max |ΔF| = {np.abs(res.forces.numpy() - reference.get_forces()).max():.2e} eV/Å (max |F| {scale:.2f}), "
          f"max |Δσ| = {np.abs(res.stress[0].numpy() - reference.get_stress(voigt=False)).max():.2e} eV/Å³")
    assert float(res.energy[0]) == pytest.approx(reference.get_potential_energy(), rel=tolerance)
    assert np.abs(res.forces.numpy() - reference.get_forces()).max() < 10 * tolerance * scale
    stress = reference.get_stress(voigt=False)
    assert np.abs(res.stress[0].numpy() - stress).max() < 5 * tolerance * np.abs(stress).max()


def test_rigid_ion_reference_forces_and_stress_are_derivatives() -> None:
    """The LAMMPS labels themselves: forces and stress are central differences of LAMMPS's energy
    (periodic: Ewald; open: direct sum), so the helper's unit, order and rotation handling is right."""
    atoms = _rattled(seed=1)
    cluster = Atoms("Na4Cl4", positions=bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True).positions
                    + np.random.default_rng(2).normal(scale=0.1, size=(8, 3)))
    h = 1e-4
    for structure in (atoms, cluster):
        labelled = rigid_ion_nacl([structure])[0]
        displaced = []
        for sign in (1, -1):
            moved = structure.copy()
            moved.positions[3, 1] += sign * h
            displaced.append(moved)
        plus, minus = (a.get_potential_energy() for a in rigid_ion_nacl(displaced))
        assert labelled.get_forces()[3, 1] == pytest.approx(-(plus - minus) / (2 * h), rel=1e-6, abs=1e-6)
    strained = []
    for sign in (1, -1):
        eps = np.zeros((3, 3))
        eps[0, 1] = eps[1, 0] = sign * h
        s = atoms.copy()
        s.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        strained.append(s)
    plus, minus = (a.get_potential_energy() for a in rigid_ion_nacl(strained))
    stress = rigid_ion_nacl([atoms])[0].get_stress(voigt=False)
    assert stress[0, 1] == pytest.approx((plus - minus) / (2 * h) / atoms.get_volume() / 2, rel=1e-5, abs=1e-8)



def test_rigid_ion_reference_refuses_what_it_cannot_label() -> None:
    """Other elements, slabs (mixed periodicity) and left-handed cells: one line each, naming the problem."""
    with pytest.raises(ValueError, match="knows Na and Cl only"):
        rigid_ion_nacl([bulk("Cu")])
    slab = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all directions or none"):
        rigid_ion_nacl([slab])
    mirrored = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True)
    mirrored.set_cell(mirrored.cell.array * [[1], [1], [-1]], scale_atoms=True)
    with pytest.raises(ValueError, match="right-handed cell"):
        rigid_ion_nacl([mirrored])


def test_tiny_long_range_model_learns_lammps_ion_pairs() -> None:
    """Default-run training on LAMMPS labels: Na–Cl pairs at 2.4–8 Å (born + coul/cut, no cell; Born–Mayer
    ending at the model's 3 Å cutoff).  The long-range model learns charges near ±1 e and follows LAMMPS's
    energy out to 14 Å."""
    from atomflux.training.dataset import read_frames
    from atomflux.training.trainer import TrainConfig, train

    def pairs(distances):
        return rigid_ion_nacl([Atoms("NaCl", positions=[[0, 0, 0], [r, 0, 0]]) for r in distances], born_cutoff=3.0)

    frames = read_frames(pairs(np.linspace(2.4, 8.0, 24)))
    held_out = pairs(np.linspace(6.0, 14.0, 12))
    config = TrainConfig(architecture="LongRangePotential", epochs=100, batch_size=8, learning_rate=3e-2, patience=100,
                         validation_fraction=0.0, progress=False, seed=0,
                         model={"cutoff": 3.0, "n_radial": 4, "n_channels": 2, "max_angular": 0, "hidden": [8]})
    model = train(frames, config).potential
    predicted = np.array([float(evaluate(model, Batch.from_atoms(a, model.cutoff), forces=False).energy[0])
                          for a in held_out])
    reference = np.array([a.get_potential_energy() for a in held_out])
    charges = evaluate(model, Batch.from_atoms(held_out[0], model.cutoff)).outputs["charges"][:, 0]
    error = _tail_error(predicted, reference)
    print(f"ion pairs: learned charges {charges.tolist()}, tail RMSE over 6-14 Å {error:.4f} eV "
          f"(reference varies by {reference[-1] - reference[0]:.2f} eV)")
    assert 0.85 < abs(float(charges[0])) < 1.15
    assert error < 0.1


# --- slow: models trained on LAMMPS's bulk data, used as a user would (CLI, ASE, MD, κ, LAMMPS) ---

#: model settings shared by both architectures (cutoff 5 Å = the reference's Born–Mayer cutoff)
TRAIN_OPTIONS = ["--cutoff", "5.0", "--hidden", "32", "32", "--channels", "4", "--max-angular", "2",
                 "--epochs", "80", "--lr", "1e-2", "--batch-size", "4", "--seed", "0"]
#: k-space accuracy of the long-range model (eV/Å for unit charges): Ewald for the 64-atom cells, 3× faster
#: to train than the PME that 1e-3 picks, and below the model's force error
LONG_RANGE_OPTIONS = ["--long-range-accuracy", "1e-2"]


@pytest.fixture(scope="module")
def nacl(tmp_path_factory):
    """LAMMPS-labelled bulk NaCl (train: 64 rattled, strained 2×2×2 cells; test: 16 others); a short-range
    and a long-range model trained on it with ``atomflux train`` (a subprocess, as a user), and a second
    long-range model trained on the same cells plus 24 Na⁺–Cl⁻ pairs at 2.4–8 Å."""
    import os
    import subprocess
    import sys

    from ase.io import write

    from atomflux.reference_data import rigid_ion_nacl_dataset

    folder = tmp_path_factory.mktemp("nacl")
    bulk_frames = rigid_ion_nacl_dataset(64, seed=0)
    write(folder / "train.extxyz", bulk_frames)
    pairs = rigid_ion_nacl([Atoms("NaCl", positions=[[0, 0, 0], [r, 0, 0]]) for r in np.linspace(2.4, 8.0, 24)])
    write(folder / "train-with-pairs.extxyz", bulk_frames + pairs)
    write(folder / "test.extxyz", rigid_ion_nacl_dataset(16, seed=1))
    write(folder / "cubic.extxyz", bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True))
    models = {}
    for name, architecture, data in (("short-range", "PowerSpectrumPotential", "train.extxyz"),
                                     ("long-range", "LongRangePotential", "train.extxyz"),
                                     ("long-range, bulk + ion pairs", "LongRangePotential", "train-with-pairs.extxyz")):
        models[name] = folder / f"model-{len(models)}.pt"
        subprocess.run([sys.executable, "-m", "atomflux.cli", "train", str(folder / data),
                        "--architecture", architecture, *TRAIN_OPTIONS,
                        *(LONG_RANGE_OPTIONS if architecture == "LongRangePotential" else []), "-o", str(models[name])],
                       check=True, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return folder, models


def _charged_cubes(gap: float) -> Atoms:
    """A 6 × 3 × 3 block of rock-salt sites cut into two 3 × 3 × 3 cubes, Na14Cl13 (+1 e) and Na13Cl14
    (-1 e), the second moved ``gap`` Å along x (0: the continuous crystal)."""
    step = NACL_LATTICE / 2
    sites = np.array([[i, j, k] for i in range(6) for j in range(3) for k in range(3)])
    positions = sites * step + np.where(sites[:, :1] >= 3, gap, 0.0) * [1, 0, 0]
    return Atoms(numbers=np.where(sites.sum(1) % 2 == 0, 11, 17), positions=positions)


@pytest.mark.slow
def test_long_range_model_follows_lammps_beyond_the_cutoff(nacl) -> None:
    """Both models are trained on the same LAMMPS bulk data; held out: bulk frames (in domain), an
    Na⁺–Cl⁻ ion pair pulled from 5.5 to 14 Å and two oppositely charged (NaCl)₁₃ cubes pulled apart by
    5.5–16 Å (non-periodic: the field's direct sum; LAMMPS: born + coul/cut).  A crystal cleaved at
    (100) would not do: its neutral, non-polar planes interact exponentially weakly beyond the cutoff.
    The short-range model is flat beyond its cutoff; the long-range model follows LAMMPS's 1/r tail
    with the charges it learned, which bulk data leave well below the formal ±1 e.  With ion pairs in
    its data (2.4–8 Å) the long-range model learns ±1 e on separated ions and follows the tail of the
    charged cubes, which it never saw."""
    from atomflux.io import load_model
    from atomflux.training.dataset import read_frames

    folder, paths = nacl
    test = read_frames(folder / "test.extxyz")
    pairs = [Atoms("NaCl", positions=[[0, 0, 0], [r, 0, 0]]) for r in np.linspace(5.5, 14.0, 18)]
    gaps = np.linspace(5.5, 16.0, 15)
    cubes = [_charged_cubes(g) for g in gaps]
    reference = {"pair": np.array([a.get_potential_energy() for a in rigid_ion_nacl(pairs)]),
                 "cubes": np.array([a.get_potential_energy() for a in rigid_ion_nacl(cubes)])}
    rows = {}
    for name, path in paths.items():
        model = load_model(path)
        energy = lambda a: float(evaluate(model, Batch.from_atoms(a, model.cutoff), forces=False).energy[0])  # noqa: E731
        e_err, f_err = [], []
        for frame in test:
            res = evaluate(model, Batch.from_atoms(frame.atoms, model.cutoff))
            e_err.append((float(res.energy[0]) - frame.energy) / len(frame.atoms))
            f_err.append(res.forces.numpy() - frame.forces)
        rows[name] = {"energy_rmse_meV_per_atom": 1e3 * float(np.sqrt(np.mean(np.square(e_err)))),
                              "force_rmse_eV_per_A": float(np.sqrt(np.mean(np.square(f_err)))),
                              "ion_pair_tail_rmse_eV": _tail_error(np.array([energy(a) for a in pairs]), reference["pair"]),
                              "cubes_tail_rmse_eV": _tail_error(np.array([energy(a) for a in cubes]), reference["cubes"])}
        if name.startswith("long-range"):
            charges = evaluate(model, Batch.from_atoms(test[0].atoms, model.cutoff)).outputs["charges"][:, 0].numpy()
            rows[name]["charges_bulk"] = [float(np.mean(charges[test[0].atoms.numbers == z])) for z in (11, 17)]
            rows[name]["charges_separated_ions"] = evaluate(
                model, Batch.from_atoms(pairs[-1], model.cutoff)).outputs["charges"][:, 0].tolist()
    print("\nreference tails (eV):", {k: float(v[0] - v[-1]) for k, v in reference.items()})
    for name, row in rows.items():
        print(name, row)
    short, long, with_pairs = rows["short-range"], rows["long-range"], rows["long-range, bulk + ion pairs"]
    assert max(row["force_rmse_eV_per_A"] for row in rows.values()) < 0.15
    # bulk data pin the charges only weakly (measured |q| ≈ 0.26 e, formal ±1): the long-range model
    # recovers part of the tail, the short-range one none of it
    assert abs(long["charges_bulk"][0]) > 0.1
    for tail in ("ion_pair_tail_rmse_eV", "cubes_tail_rmse_eV"):
        assert long[tail] < 0.95 * short[tail], (tail, rows)
    # separated charges in the data pin them: measured ±1.00 e, tails within 0.003 (pair) and 0.017 eV (cubes)
    assert all(0.85 < abs(q) < 1.15 for q in with_pairs["charges_separated_ions"])
    assert with_pairs["cubes_tail_rmse_eV"] < 0.05 and with_pairs["ion_pair_tail_rmse_eV"] < 0.05


@pytest.mark.slow
def test_trained_long_range_model_in_ase_md_and_lammps(nacl) -> None:
    """The trained long-range model as a user runs it: the ASE calculator (energy, forces, stress of a
    held-out frame), ``atomflux md --ensemble nve`` (total energy conserved), and ``pair_style atomflux``
    on one rank (energy, forces equal the calculator's; LAMMPS's own NVE conserves energy)."""
    from ase.io import read

    from atomflux.calculators import AtomfluxCalculator
    from atomflux.cli import main
    from atomflux.lammps_bridge import start_lammps

    folder, paths = nacl
    model = str(paths["long-range"])
    frame = read(folder / "test.extxyz", 0)
    atoms = frame.copy()
    atoms.calc = AtomfluxCalculator(model)
    assert np.abs(atoms.get_forces() - frame.get_forces()).max() < 0.5
    assert np.abs(atoms.get_stress() - frame.get_stress()).max() < 5e-3
    log = folder / "nve.log"
    assert main(["md", str(folder / "cubic.extxyz"), "--model", model, "--ensemble", "nve", "--repeat", "2", "2", "2",
                 "--temperature", "300", "--steps", "300", "--timestep", "2", "--interval", "10", "--seed", "1",
                 "--precision", "float64", "--trajectory", str(folder / "nve.traj"), "--log", str(log)]) == 0
    table = np.loadtxt(log, skiprows=1)          # time (ps), Etot/N, Epot/N, Ekin/N, T (K)
    drift = float(np.abs(table[:, 1] - table[0, 1]).max())
    print(f"\nNVE, 64 atoms, 300 × 2 fs: max |Etot - Etot(0)| = {1e3 * drift:.3f} meV/atom, "
          f"T {table[:, 4].min():.0f}-{table[:, 4].max():.0f} K")
    assert drift < 1e-3 and table[:, 4].max() > 50
    cubic = read(folder / "cubic.extxyz").repeat(2)
    cubic.rattle(0.05, seed=3)
    data = folder / "lammps.data"
    cubic.write(data, format="lammps-data", specorder=["Na", "Cl"], masses=True)
    lmp = start_lammps(["-log", "none", "-screen", "none"])
    lmp.commands_string(f"units metal\natom_style atomic\natom_modify map array\nread_data {data}\n"
                        f"pair_style atomflux precision float64\npair_coeff * * {model} Na Cl\n"
                        "thermo_style custom step pe etotal\nrun 0")
    cubic.calc = AtomfluxCalculator(model)
    assert lmp.get_thermo("pe") == pytest.approx(cubic.get_potential_energy(), rel=1e-10)
    forces = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
    assert np.abs(forces - cubic.get_forces()).max() < 1e-8
    lmp.commands_string("velocity all create 300 4 mom yes rot no\ntimestep 0.002\nfix nve all nve\n"
                        "variable e equal etotal\nrun 0")
    start = lmp.extract_variable("e")
    energies = []
    for _ in range(10):
        lmp.command("run 20")
        energies.append(lmp.extract_variable("e"))
    lmp.close()
    lammps_drift = max(abs(e - start) for e in energies) / len(cubic)
    print(f"LAMMPS NVE, 64 atoms, 200 × 2 fs: max |Etot - Etot(0)| = {1e3 * lammps_drift:.3f} meV/atom")
    assert lammps_drift < 1e-3


def _frequencies_at_special_points(result) -> dict[str, np.ndarray]:
    return {label: result.frequencies[int(np.argmin(np.abs(result.distances - x)))]
            for x, label in result.special_points if label in ("G", "X", "L")}


@pytest.mark.slow
def test_trained_long_range_model_phonons_and_kappa_against_lammps(nacl) -> None:
    """Harmonic frequencies at Γ, X, L (phonopy, 4 × 4 × 4 primitive supercell, no non-analytic
    correction: Γ is the TO frequency of both) and the lattice κ (phono3py RTA, ``atomflux kappa``)
    of the trained long-range model against the same computations on LAMMPS's rigid-ion forces."""
    import json

    from ase.io import write

    from atomflux.calculators import AtomfluxCalculator
    from atomflux.cli import main
    from atomflux.lattice import thermal_conductivity
    from atomflux.lattice.phonons import phonons
    from atomflux.reference_data import RigidIonNaCl

    folder, paths = nacl
    model = str(paths["long-range"])
    primitive = bulk("NaCl", "rocksalt", a=NACL_LATTICE)
    frequencies = {name: _frequencies_at_special_points(phonons(primitive, calc, supercell=(4, 4, 4), npoints=40,
                                                                progress=False))
                   for name, calc in (("model", AtomfluxCalculator(model)), ("lammps", RigidIonNaCl()))}
    print("\nfrequencies (THz):", {k: {p: np.round(f, 2).tolist() for p, f in v.items()} for k, v in frequencies.items()})
    for point in ("G", "X", "L"):   # measured: within 9 % (Γ TO 4.41 vs 4.14 THz)
        assert np.allclose(frequencies["model"][point], frequencies["lammps"][point], rtol=0.15, atol=0.05)
    write(folder / "primitive.extxyz", primitive)
    settings = ["--supercell", "3", "3", "3", "--mesh", "8", "8", "8", "--temperatures", "300"]
    assert main(["kappa", str(folder / "primitive.extxyz"), "--model", model, *settings, "--no-uncertainty",
                 "-o", str(folder / "kappa")]) == 0
    result = json.loads((folder / "kappa" / "kappa.json").read_text())
    kappa_model = result["kappa"]
    assert result["long_range"] and any("no non-analytic correction" in line for line in result["limitations"])
    reference = thermal_conductivity(primitive, RigidIonNaCl(), supercell=(3, 3, 3), mesh=(8, 8, 8),
                                     temperatures=(300,), uncertainty=False, progress=False)
    kappa_lammps = float(np.mean(reference.kappa[0, :3]))
    kappa_ours = float(np.mean(np.asarray(kappa_model)[0, :3]))
    print(f"κ(300 K), RTA, 3×3×3, mesh 8³: model {kappa_ours:.2f} W/mK, LAMMPS rigid ion {kappa_lammps:.2f} W/mK")
    assert 0.5 < kappa_ours / kappa_lammps < 2.0
