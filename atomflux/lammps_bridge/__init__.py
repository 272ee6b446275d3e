"""LAMMPS bridges for atomflux models.

- ``pair_style atomflux`` (many-body, MPI, per-atom energies and virials) and
  ``compute atomflux/uncertainty`` (energy uncertainty as a global scalar and
  per atom): a C++ plugin compiled on first use and cached per LAMMPS
  version (:mod:`.plugin`), calling the model through Python callbacks
  (:mod:`.callbacks`).  Start LAMMPS with :func:`start_lammps` or run a
  script with :func:`run_script` / ``atomflux lammps in.lammps``.
  Message-passing models (SevenNet, MACE) get whole systems (:mod:`.whole_system`):
  the periodic box on one MPI rank, a ghost shell of their whole reach on several.
- ``pair_style python`` and ``pair_style table`` exports for pairwise
  models (:mod:`.pair_export`).

Input script::

    units metal
    ...
    pair_style atomflux                 # [precision auto|float32|float64|native] [device cuda] [threads N] [trust yes]
    pair_coeff * * demo Cu Au           # model file or shipped name, one element per type
    compute unc all atomflux/uncertainty
    thermo_style custom step temp pe c_unc
    variable u equal c_unc
    fix stop all halt 10 v_u > 0.2 error continue

``precision`` is ``atomflux md --precision``: ``auto`` (default) computes
atomflux models in float32 and third-party model specs in their own dtype;
pair vectors, energies and pair gradients pass in float64 and LAMMPS sums
forces, energy and virials in float64 (``dtype float32|float64`` is the
same as ``precision``).
"""

from .pair_export import export_pair_python, export_table
from .plugin import PluginBuildError, build_plugin
from .session import run_script, start_lammps

__all__ = ["start_lammps", "run_script", "build_plugin", "PluginBuildError", "export_pair_python", "export_table"]
