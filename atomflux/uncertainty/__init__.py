"""Uncertainty for any atomflux potential: shallow ensembles, LLPR, calibration, propagation, novelty."""

from .calibration import CalibrationReport, coverage, gaussian_nll, miscalibration_area, optimal_scale
from .ensemble import fit_shallow_ensemble
from .guard import ExtrapolationError, UncertaintyGuard
from .llpr import LLPR, add_llpr
from .novelty import Novelty, fit_novelty, novelty_grades
from .propagation import EnsembleMember, Propagated, members, propagate

__all__ = ["CalibrationReport", "EnsembleMember", "ExtrapolationError", "LLPR", "Novelty", "Propagated",
           "UncertaintyGuard", "add_llpr", "coverage", "fit_novelty", "fit_shallow_ensemble", "gaussian_nll", "members",
           "miscalibration_area", "novelty_grades", "optimal_scale", "propagate"]
