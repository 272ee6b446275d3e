"""Calibration report of an uncertainty-capable model on reference frames, and the stress test."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..evaluate import evaluate, force_locality_term
from ..models.base import floating_dtype
from ..systems import Batch
from ..training.dataset import Frame, read_frames
from .calibration import (CalibrationReport, ZScoreStats, added_term_coefficient, calibration_plots,
                          reliability_diagram)
from .lastlayer import VOIGT

#: quantities of the reports and their units
UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "eV/Å³"}
#: below this, a predicted and a reference value are both symmetry zeros (e.g. forces on an isolated atom) and
#: carry no information (their σ may still be a calibrated noise floor)
SYMMETRY_ZERO = 1e-9


def errors_and_sigmas(potential, frames: Sequence[Frame]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Prediction errors and predicted σ: energies per atom, force components, stress (Voigt) components.

    Components whose predicted and reference values are both below
    :data:`SYMMETRY_ZERO` (zero by symmetry in model and reference alike) are
    left out.  Stress enters
    for 3-D periodic frames with a reference stress.
    """
    dtype = floating_dtype(potential)
    out: dict[str, tuple[list, list, list]] = {q: ([], [], []) for q in UNITS}
    for frame in frames:
        batch = Batch.from_atoms(frame.atoms, potential.cutoff, dtype=dtype)
        wants_forces = frame.forces is not None
        wants_stress = frame.stress is not None and bool(np.all(frame.atoms.pbc))
        res = evaluate(potential, batch, forces=wants_forces, stress=wants_stress,
                       uncertainty=True if wants_forces or wants_stress else "energy")
        n = len(frame.atoms)
        if frame.energy is not None:
            _add(out["energy"], [float(res.energy[0]) / n], [frame.energy / n], [float(res.energy_uncertainty[0]) / n])
        if wants_forces:
            _add(out["forces"], res.forces.numpy().ravel(), frame.forces.ravel(), res.forces_uncertainty.numpy().ravel())
        if wants_stress:
            _add(out["stress"], [res.stress[0, a, b].item() for a, b in VOIGT], [frame.stress[a, b] for a, b in VOIGT],
                 [res.stress_uncertainty[0, a, b].item() for a, b in VOIGT])
    result = {}
    for key, (err, sig, size) in out.items():
        if err:
            e, s = np.hstack(err), np.hstack(sig)
            informative = np.hstack(size) > SYMMETRY_ZERO
            if informative.any():
                result[key] = (e[informative], s[informative])
    return result


def _add(store: tuple[list, list, list], predicted, reference, sigma) -> None:
    """Append errors, σ and the larger magnitude of prediction and reference (to spot symmetry zeros)."""
    predicted, reference = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    store[0].append(predicted - reference)
    store[1].append(np.asarray(sigma, dtype=float))
    store[2].append(np.maximum(np.abs(predicted), np.abs(reference)))


def fit_force_locality(potential, frames: Sequence[Frame]) -> float:
    """Fit and set the coefficient c of the force σ term c σ_E,i / r_c on held-out frames.

    The term (applied by :func:`atomflux.evaluate.evaluate`, see its ``_with_locality``)
    says that an atom whose energy the model knows only to σ_E,i (eV) cannot know
    the energy's gradient over the cutoff r_c (Å) better either: small in the
    bulk, large where the atom's environment is new.  c is the NLL-optimal
    :func:`~atomflux.uncertainty.calibration.added_term_coefficient` over the
    frames' informative force components, on top of the forces' calibrated factor
    and noise floor; held-out frames off the training domain (surfaces,
    clusters, dimers...) are what fix it.  Sets ``uncertainty_locality_forces``
    and the metadata entry ``calibration.locality_forces``.

    Returns
    -------
    float
        c (dimensionless).
    """
    potential.__dict__.pop("uncertainty_locality_forces", None)
    dtype = floating_dtype(potential)
    errors, sigmas, terms = [], [], []
    for frame in frames:
        if frame.forces is None:
            continue
        res = evaluate(potential, Batch.from_atoms(frame.atoms, potential.cutoff, dtype=dtype), forces=True,
                       uncertainty=True)
        predicted = res.forces.numpy()
        informative = np.maximum(np.abs(predicted), np.abs(frame.forces)) > SYMMETRY_ZERO
        errors.append((predicted - frame.forces)[informative])
        sigmas.append(res.forces_uncertainty.numpy()[informative])
        term = force_locality_term(potential, res.energies_uncertainty).numpy()
        terms.append(np.broadcast_to(term, predicted.shape)[informative])
    if not errors:
        raise ValueError("fitting the force-locality term needs held-out frames with reference forces")
    coefficient = added_term_coefficient(np.hstack(errors), np.hstack(sigmas), np.hstack(terms))
    potential.uncertainty_locality_forces = coefficient
    potential.metadata.setdefault("uncertainty", {}).setdefault("calibration", {})["locality_forces"] = coefficient
    return coefficient


def calibration_report(potential, frames: Sequence[Frame], plot_prefix: str | Path | None = None,
                       title: str = "") -> list[CalibrationReport]:
    """Reports for energies (eV/atom), forces and stress components; plots when ``plot_prefix`` is given.

    The plots are ``<prefix>-reliability.png`` (observed vs expected coverage
    of every quantity), and per quantity ``<prefix>-<quantity>-error-vs-sigma.png``
    and ``<prefix>-<quantity>-zscores.png``.
    """
    data = errors_and_sigmas(potential, frames)
    reports = [CalibrationReport.from_errors(key, UNITS[key], err, sig) for key, (err, sig) in data.items()]
    if plot_prefix is not None:
        Path(plot_prefix).parent.mkdir(parents=True, exist_ok=True)
        reliability_diagram(data, f"{plot_prefix}-reliability.png", title)
        for key, (err, sig) in data.items():
            calibration_plots(err, sig, f"{plot_prefix}-{key}", f"{key} ({len(err)} values)", UNITS[key])
    return reports


def stress_test_report(potential, structures: dict[str, list], plot: str | Path | None = None) -> list[ZScoreStats]:
    """z-score statistics per stress-test category and quantity.

    Parameters
    ----------
    potential
        An uncertainty-capable potential.
    structures
        Category -> labelled Atoms (:func:`atomflux.reference_data.stress_test_dataset`).
    plot
        PNG path: |z| of every value per category and quantity, with the |z| = 3 line.
    """
    rows, zscores = [], {}
    for category, atoms_list in structures.items():
        for key, (err, sig) in errors_and_sigmas(potential, read_frames(atoms_list)).items():
            rows.append(ZScoreStats.from_errors(category, key, UNITS[key], err, sig))
            zscores[(category, key)] = np.abs(err) / np.maximum(sig, 1e-300)
    if plot is not None:
        _zscore_strip_plot(zscores, plot)
    return rows


def _zscore_strip_plot(zscores: dict[tuple[str, str], np.ndarray], path: str | Path) -> str:
    from ..plotting import pyplot, save_figure

    plt = pyplot()
    categories = list(dict.fromkeys(c for c, _ in zscores))
    quantities = [q for q in UNITS if any(k == q for _, k in zscores)]
    fig, ax = plt.subplots(figsize=(1.1 * len(categories) + 2, 4))
    rng = np.random.default_rng(0)
    for k, quantity in enumerate(quantities):
        offset = (k - (len(quantities) - 1) / 2) * 0.25
        for x, category in enumerate(categories):
            z = zscores.get((category, quantity))
            if z is None:
                continue
            jitter = x + offset + rng.uniform(-0.08, 0.08, len(z))
            ax.plot(jitter, np.clip(z, 1e-3, None), ".", ms=2, alpha=0.4, color=f"C{k}",
                    label=quantity if x == 0 else None)
    ax.axhline(3.0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    ax.set(ylabel="|error| / σ", title="stress test: |z| per category (honest: 90 % below the line)")
    ax.legend(markerscale=5, fontsize=8)
    return str(save_figure(fig, path))
