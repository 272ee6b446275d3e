"""Order-parameter statistics and T_c on a model with a known answer: the 2-D Ising model (Onsager)."""

import numpy as np
import pytest

from atomflux.analysis.transitions import (assign_phase, critical_temperature, crossings, hysteresis,
                                           order_statistics, peak)

ONSAGER_TC = 2.0 / np.log(1.0 + np.sqrt(2.0))  # J/k_B


def ising_magnetisation(size: int, temperatures: np.ndarray, sweeps: int, burn_in: int, seed: int) -> np.ndarray:
    """[sweeps, n_T] magnetisation per spin of L×L Ising models (J = 1, k_B = 1), one chain per temperature.

    Checkerboard Metropolis, every temperature advanced at once (written here,
    independent of the code under test).
    """
    rng = np.random.default_rng(seed)
    spins = np.ones((len(temperatures), size, size))
    beta = (1.0 / temperatures)[:, None, None]
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    colours = [(x + y) % 2 == c for c in (0, 1)]
    samples = np.empty((sweeps, len(temperatures)))
    for sweep in range(burn_in + sweeps):
        for colour in colours:
            field = (np.roll(spins, 1, 1) + np.roll(spins, -1, 1) + np.roll(spins, 1, 2) + np.roll(spins, -1, 2))
            flip = (rng.random(spins.shape) < np.exp(-2.0 * beta * spins * field)) & colour
            spins[flip] *= -1
        if sweep >= burn_in:
            samples[sweep - burn_in] = spins.mean(axis=(1, 2))
    return samples


def test_binder_crossing_of_three_sizes_finds_onsager_tc():
    temperatures = np.linspace(2.0, 2.9, 13)
    scans = {}
    for size, sweeps in ((6, 6000), (10, 8000), (16, 12000)):
        m = ising_magnetisation(size, temperatures, sweeps, burn_in=1000, seed=size)
        scans[f"L{size}"] = [order_statistics(m[:, k], t, size * size, blocks=20) for k, t in enumerate(temperatures)]
    result = critical_temperature(scans)
    print("Binder crossings", result.binder_crossings, "chi peaks", result.susceptibility_peaks)
    assert abs(result.binder_estimate / ONSAGER_TC - 1) < 0.05
    for label, crossing in result.binder_crossings.items():
        assert any(abs(c / ONSAGER_TC - 1) < 0.05 for c in crossing), label
    # sizes on different grids are compared at the temperatures they share
    thinned = critical_temperature({"L10": scans["L10"], "L16": scans["L16"][::2]})
    assert any(abs(c / ONSAGER_TC - 1) < 0.05 for c in thinned.binder_crossings["L10/L16"]), thinned
    with pytest.raises(ValueError, match="fewer than two temperatures"):
        critical_temperature({"L6": scans["L6"][:2], "L10": scans["L10"][2:4]})
    # χ peaks of small sizes sit above T_c and move towards it as L grows (T_c(L) − T_c ∝ 1/L)
    peaks = [result.susceptibility_peaks[k] for k in ("L6", "L10", "L16")]
    assert peaks[0] > peaks[2] > ONSAGER_TC * 0.98
    # ordered limit of U₄ is 2/3, disordered 0 (scalar order parameter)
    low, high = scans["L16"][0], scans["L16"][-1]
    assert low.binder[0] == pytest.approx(2 / 3, abs=0.01) and high.binder[0] < 0.35
    assert low.mean_abs[0] > 0.9 and low.mean_abs[1] < 0.01


def test_moments_and_errors_of_gaussian_series():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(40000, 3))  # disordered 3-component order parameter: U₄ = 1 − 5/9
    stats = order_statistics(p, temperature=2.0, n_units=10)
    assert stats.binder[0] == pytest.approx(4 / 9, abs=3 * stats.binder[1]) and stats.binder[1] < 0.01
    # ⟨|P|⟩ of a 3-D unit Gaussian is 2√(2/π); ⟨|P|²⟩ = 3
    assert stats.mean_abs[0] == pytest.approx(2 * np.sqrt(2 / np.pi), abs=4 * stats.mean_abs[1])
    assert stats.susceptibility[0] == pytest.approx(10 * (3 - 8 / np.pi) / 2.0, abs=4 * stats.susceptibility[1])
    with pytest.raises(ValueError, match="blocks"):
        order_statistics(p[:5], 1.0, 10, blocks=10)


def test_phase_assignment_from_components():
    rng = np.random.default_rng(2)
    noise = rng.normal(scale=1.0, size=(500, 3))
    cases = {"cubic": [0, 0, 0], "tetragonal": [0, 0, 25], "orthorhombic": [18, 0, -18],
             "rhombohedral": [-15, 15, 15]}
    for phase, p in cases.items():
        flips = rng.choice([-1, 1], size=(500, 1))  # domain flips do not cancel the components
        assert assign_phase(flips * np.array(p, float) + noise, threshold=5.0)[0] == phase


def test_peak_crossings_and_hysteresis_helpers():
    t = np.linspace(0, 10, 11)
    assert peak(t, -(t - 4.3) ** 2) == pytest.approx(4.3)
    assert crossings(t, t, 5.5 * np.ones_like(t)) == [pytest.approx(5.5)]
    # with errors: a clear crossing is kept; curves touching within their errors are not crossings
    u_small, u_large = 2 / 3 - 0.05 * np.tanh(t - 5), 2 / 3 - 0.05 * np.tanh(2 * (t - 5))
    error = np.full_like(t, 0.002)
    assert crossings(t, u_small, u_large, error, error) == [pytest.approx(5.0)]
    saturated = 2 / 3 + np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1]) * 1e-4   # both at 2/3, noise ± 1e-4
    assert len(crossings(t, saturated, np.full_like(t, 2 / 3))) == 10                # the bare sign changes
    assert crossings(t, saturated, np.full_like(t, 2 / 3), np.full_like(t, 1e-3), np.full_like(t, 1e-3)) == []
    fine = np.linspace(0, 10, 201)
    heating = (fine, 1 / (1 + np.exp((fine - 6.2) * 5)))  # ⟨|P|⟩ lost at 6.2 on heating, regained at 3.8
    cooling = (fine[::-1], 1 / (1 + np.exp((fine[::-1] - 3.8) * 5)))
    loop = hysteresis(heating, cooling)
    assert loop["T_heating"] == pytest.approx(6.2, abs=0.03) and loop["T_cooling"] == pytest.approx(3.8, abs=0.03)
    assert loop["width"] == pytest.approx(2.4, abs=0.05) and loop["loop_area"] == pytest.approx(2.4, abs=0.01)
