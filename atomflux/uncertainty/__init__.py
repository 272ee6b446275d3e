"""Uncertainty for any atomflux potential: shallow ensembles, LLPR, calibration, propagation."""

from .calibration import CalibrationReport, coverage, gaussian_nll, miscalibration_area, optimal_scale
from .ensemble import fit_shallow_ensemble
from .guard import ExtrapolationError, UncertaintyGuard
from .llpr import LLPR, add_llpr
from .propagation import EnsembleMember, Propagated, members, propagate

__all__ = ["CalibrationReport", "EnsembleMember", "ExtrapolationError", "LLPR", "Propagated", "UncertaintyGuard",
           "add_llpr", "coverage", "fit_shallow_ensemble", "gaussian_nll", "members", "miscalibration_area",
           "optimal_scale", "propagate"]
