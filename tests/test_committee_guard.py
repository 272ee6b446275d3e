"""Issue 18 (e) with a committee: does the spread of independently trained models stop MD of a Cu3 island
that none of them saw?  The last-layer variants (LLPR, shallow ensemble of one model) are
``test_calibration.py::test_force_guard_stops_a_cluster_the_model_never_saw_evaporating``; the numbers
behind both are ``benchmarks/bench_committee_guard.py``."""

import numpy as np
import pytest
from ase.calculators.emt import EMT

from atomflux.calculators import AtomfluxCalculator, Committee
from atomflux.training import Frame, train
from atomflux.uncertainty import UncertaintyGuard
from test_calibration import (assert_guard_stays_quiet_for_the_island_in_place, assert_guard_stops_the_leaving_island,
                              cluster_free_config, cluster_free_frames)

#: committee members: training seed (initialisation, validation split, batch order) and bootstrap resample
N_MEMBERS = 5


def bootstrap_member(frames: list[Frame], seed: int):
    """A cluster-free model trained with ``seed`` on a bootstrap resample (drawn with ``seed``) of ``frames``."""
    resample = np.random.default_rng(seed).integers(0, len(frames), len(frames))
    return train([frames[i] for i in resample], cluster_free_config(seed=seed)).potential


def largest_per_atom_sigma(calculator: Committee, frames: list[Frame]) -> float:
    """The guard's force quantity (largest per-atom norm of the members' force spread, eV/Å) over ``frames``."""
    largest = 0.0
    for frame in frames:
        atoms = frame.atoms.copy()
        atoms.calc = calculator
        largest = max(largest, UncertaintyGuard(atoms, threshold=np.inf, quantity="forces").current())
    return largest


@pytest.fixture(scope="module")
def cluster_free_committee(one_torch_thread):
    """A committee of :data:`N_MEMBERS` cluster-free Cu models (each ~5 s of one core), its in-domain force RMSE
    (eV/Å) and its largest in-domain per-atom force σ (eV/Å), both on the 16 held-out structures."""
    frames, held_out = cluster_free_frames()
    committee = Committee([AtomfluxCalculator(bootstrap_member(frames, seed)) for seed in range(N_MEMBERS)])
    errors = []
    for frame in held_out:
        atoms = frame.atoms.copy()
        atoms.calc = committee
        errors.append(atoms.get_forces() - frame.forces)
    rmse = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))
    return committee, rmse, largest_per_atom_sigma(committee, held_out)


COMMITTEE_XFAIL = ("issue 18 not met by a committee either: 5 cluster-free Cu models (seeds and bootstrap resamples; "
                   "force RMSE of their mean 0.054 eV/Å in domain) all predict small forces on the Cu3 3 Å above "
                   "the surface (0.06-0.21 eV/Å; EMT: 2.3 eV/Å, the bonds contract), so they agree: the detached "
                   "island's force σ is 0.12-0.24 eV/Å while its error is 1.6-2.6 eV/Å, below the guard's threshold "
                   "(2× the largest in-domain σ: 0.51; in place 0.14). 3-10 members differing in seed, data, width, "
                   "depth or cutoff agree as well (docs/benchmarks.md, bench_committee_guard): the error is a bias "
                   "all fits share, not a spread")


@pytest.mark.slow  # training 5 small models and two 150-step MD runs of the committee: ~20 s of one core
@pytest.mark.xfail(strict=True, raises=pytest.fail.Exception, reason=COMMITTEE_XFAIL)
def test_committee_force_guard_stops_a_cluster_none_of_its_members_saw(cluster_free_committee, tmp_path):
    """The guard (quantity="forces", threshold 2× the committee's largest in-domain per-atom force σ) stops NVE
    MD of a Cu3 island kicked off a Cu(111) surface by a committee of models trained without any cluster; at the
    stop the island is detached and the committee's force error on it against EMT is ≥ 10× its in-domain force
    RMSE (so stopping was right); the same guard stays quiet for the island vibrating in place."""
    committee, in_domain_rmse, largest_sigma = cluster_free_committee
    threshold = 2 * largest_sigma
    stopped, n_slab = assert_guard_stops_the_leaving_island(committee, threshold, tmp_path)
    stopped.calc = committee
    predicted = stopped.get_forces()
    stopped.calc = EMT()
    error = np.linalg.norm(predicted - stopped.get_forces(), axis=1)[n_slab:].max()
    assert error > 10 * in_domain_rmse, (error, in_domain_rmse)
    assert_guard_stays_quiet_for_the_island_in_place(committee, threshold, tmp_path)


def test_committee_force_sigma_is_the_guards_per_atom_norm_of_the_member_spread():
    """The guard reads a committee's force σ as it reads an ensemble's: the per-atom norm of the members'
    population standard deviation (ddof = 0) of each force component, largest over atoms; here for EMT and a
    Lennard-Jones member, against numpy on the forces of each calculator alone."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=3)
    members = [EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=6.0)]
    forces = np.array([members[0].get_forces(atoms), members[1].get_forces(atoms)])
    expected = np.linalg.norm(forces.std(0), axis=1).max()
    atoms.calc = Committee(members)
    assert expected > 0.1  # eV/Å: the members disagree
    assert UncertaintyGuard(atoms, threshold=1.0, quantity="forces").current() == pytest.approx(expected, rel=1e-12)
