"""Committee extras for i-PI: a model's ensemble as the members of an ``<ffcommittee>``.

With ``<ffcommittee ...><parse_json>true</parse_json>`` a single driver
carries a whole committee in its extras string (JSON, atomic units)::

    {"committee_pot": [M energies, Ha],
     "committee_force": [M lists of 3N, Ha/bohr],
     "committee_virial": [M lists of 9, Ha],
     "energy_uncertainty": σ in Ha}

i-PI then prints ``committee_uncertainty`` = the standard deviation with
``ddof=1`` of its rescaled members x̄ + α(x − x̄) (``<alpha>``, default 1),
whereas atomflux's calibrated energy σ is the *population* standard
deviation of the raw members times the calibration scale s (shallow
ensembles), or LLPR's closed form.  The members sent are therefore

    x_m(sent) = x̄ + c (x_m − x̄),   c = σ / std_ddof1(x_m)

with x_m atomflux's calibrated members (``Results.energy_ensemble``), so
that with α = 1 i-PI's committee_uncertainty **equals** the calculator's
``energy_uncertainty``.  For a shallow ensemble of M members
c = √((M − 1)/M): relative to the raw, uncalibrated members the factor is
s·√((M − 1)/M) — the α one would give i-PI for raw members.  Setting α ≠ 1
in i-PI scales the printed uncertainty to α·σ.  The same c rescales the
forces and virials of the members; their mean (what i-PI integrates) is the
model's prediction.  Member virials come from the member stresses (−V·σ_m),
so they are sent for periodic cells only (i-PI then falls back to the mean
virial, which a cluster in a fixed cell never uses).
"""

from __future__ import annotations

import json

import numpy as np

from ..evaluate import Results
from .units import energy_to_hartree, forces_to_atomic


def committee_factor(energy_members: np.ndarray, energy_sigma: np.ndarray) -> np.ndarray:
    """c per structure such that ``std(x̄ + c(x − x̄), ddof=1) = σ``.

    Parameters
    ----------
    energy_members : ndarray [S, M]
        Calibrated member energies, eV.
    energy_sigma : ndarray [S]
        Calibrated energy uncertainty, eV.
    """
    spread = np.asarray(energy_members).std(axis=1, ddof=1)
    return np.where(spread > 0, np.asarray(energy_sigma) / np.where(spread > 0, spread, 1.0), 1.0)


def committee_extras(results: Results, virials: np.ndarray, volumes: np.ndarray,
                     periodic: np.ndarray, n_atoms: int) -> list[bytes]:
    """One JSON extras string per structure of ``results`` (atomic units).

    Parameters
    ----------
    results
        From ``evaluate(..., stress=True, uncertainty=...)`` on S structures of
        ``n_atoms`` atoms each.
    virials : ndarray [S, 3, 3]
        The symmetric virials sent to i-PI, eV.
    volumes : ndarray [S]
        Cell volumes, Å³.
    periodic : ndarray [S] of bool
        Which structures are periodic in 3-D (member virials only for those).
    n_atoms
        Atoms per structure.
    """
    energy = results.energy.detach().cpu().numpy().astype(np.float64)
    members = results.energy_ensemble.detach().cpu().numpy().astype(np.float64)          # [S, M]
    sigma = results.energy_uncertainty.detach().cpu().numpy().astype(np.float64)
    factor = committee_factor(members, sigma)
    pots = energy[:, None] + factor[:, None] * (members - energy[:, None])
    n_structures, n_members = members.shape
    forces = stress = None
    if results.forces_ensemble is not None:
        mean = results.forces.detach().cpu().numpy().astype(np.float64).reshape(n_structures, 1, n_atoms, 3)
        each = results.forces_ensemble.detach().cpu().numpy().astype(np.float64)       # [M, S·N, 3]
        each = each.reshape(n_members, n_structures, n_atoms, 3).transpose(1, 0, 2, 3)
        forces = mean + factor[:, None, None, None] * (each - mean)                   # [S, M, N, 3]
    if results.stress_ensemble is not None:
        stress = results.stress_ensemble.detach().cpu().numpy().astype(np.float64).transpose(1, 0, 2, 3)
    out = []
    for s in range(n_structures):
        extras = {"committee_pot": energy_to_hartree(pots[s]).tolist()}
        if forces is not None:
            extras["committee_force"] = forces_to_atomic(forces[s]).reshape(n_members, 3 * n_atoms).tolist()
        if stress is not None and periodic[s]:
            member_virials = -volumes[s] * stress[s]
            member_virials = 0.5 * (member_virials + member_virials.transpose(0, 2, 1))
            sent = virials[s] + factor[s] * (member_virials - virials[s])
            extras["committee_virial"] = energy_to_hartree(sent).reshape(n_members, 9).tolist()
        extras["energy_uncertainty"] = float(energy_to_hartree(sigma[s]))
        out.append(json.dumps(extras).encode())
    return out
