"""Approximately invariant models: rotational averaging, symmetry-breaking diagnostics, augmentation.

Models that are rotation invariant only approximately (atomflux's
``UnconstrainedPotential``, PET, ORB ...) can be measured and corrected:

``RotationalAverage(model_or_calculator, order=3, grid="lebedev", inversion=False)``
    ASE calculator: the model averaged over a rotational quadrature (all
    rotated copies in one batched ``evaluate`` call for atomflux models, one
    call per rotation for any other ASE calculator), with ``energy_rot_std``,
    ``forces_rot_std``, ``stress_rot_std``.
``AveragedPotential(potential, "lebedev:3")``
    The same average as an atomflux potential, for every front end; what a
    model spec with the suffix ``@lebedev:3`` loads (:mod:`.spec`).
``rotation_grid(grid, order, inversion)``
    The quadratures (:mod:`.quadrature`).
``symmetry_report(model, sets)``, ``plot_report``
    Diagnostics behind ``atomflux symmetry`` (:mod:`.diagnostics`).
``randomly_rotated``
    Training augmentation (``TrainConfig(augment=True)``).
``AnisotropicLennardJones``
    A deliberately anisotropic toy potential (:mod:`.toy`).

Multiple time stepping with the averaged model as the slow force is
:class:`atomflux.mts.MultipleTimeStepVerlet`.
"""

from importlib import import_module
from typing import Any

from .potential import AveragedPotential
from .quadrature import GRIDS, RotationGrid, rotation_grid
from .spec import AverageSpec, split_average

#: names loaded on first use (they import the calculators, which import this package)
_LAZY = {"RotationalAverage": ".average", "average_calculator": ".average", "symmetry_report": ".diagnostics",
         "plot_report": ".diagnostics", "NVESettings": ".diagnostics", "randomly_rotated": ".augment",
         "AnisotropicLennardJones": ".toy"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnisotropicLennardJones", "AverageSpec", "AveragedPotential", "GRIDS", "NVESettings", "RotationGrid",
           "RotationalAverage", "average_calculator", "plot_report", "randomly_rotated", "rotation_grid",
           "split_average", "symmetry_report"]
