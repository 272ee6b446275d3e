"""atomflux: machine-learning interatomic potentials with uncertainty, in ASE and LAMMPS.

Public API
----------
``load_model(name_or_path)``      a potential from a model file, a shipped name ("demo") or a
                                  third-party model spec ("sevennet:7net-0", "mace:PATH")
``save_model(potential, path)``   write a safe model file (tensors + JSON metadata)
``Batch.from_atoms(atoms, cutoff)``  systems as tensors with neighbour pairs
``evaluate(potential, batch, ...)``  energy, forces, stress, virials (the one autograd path)
``AtomfluxCalculator(model)``     ASE calculator
``models``                        LennardJones, Morse, PowerSpectrumPotential

Further front ends: ``atomflux.calculators.Committee`` (mean ± spread of any ASE calculators),
``atomflux.calculators.HamiltonianCalculator`` (orbital energies,
``"demo-hamiltonian"``), ``atomflux.lammps_bridge`` (``pair_style atomflux``,
``start_lammps``, pair-potential exports).

Units: eV, Å, eV/Å, eV/Å³ (stress, ASE sign convention), fs, K.
"""

__version__ = "0.1.0"

from .calculators import AtomfluxCalculator
from .evaluate import Results, evaluate
from .io import load_model, save_model
from .systems import Batch

__all__ = ["AtomfluxCalculator", "Batch", "Results", "evaluate", "load_model", "save_model", "__version__"]
