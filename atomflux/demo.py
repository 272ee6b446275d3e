"""The end-to-end demonstration behind ``atomflux demo`` / ``make demo``."""

from __future__ import annotations

import json
from pathlib import Path

from ase.build import bulk

from .calculators import AtomfluxCalculator
from .io import load_model
from .md import run_md
from .plotting import parity_plot
from .reference_data import emt_dataset
from .training import predict_frames, read_frames
from .training.metrics import format_metrics


def demo_system(repeat: int = 3):
    """The demo structure: fcc Cu (a = 3.60 Å) with 25 % Au on random sites, 4·repeat³ atoms."""
    import numpy as np

    atoms = bulk("Cu", "fcc", a=3.60, cubic=True) * (repeat, repeat, repeat)
    rng = np.random.default_rng(7)
    gold = rng.choice(len(atoms), size=len(atoms) // 4, replace=False)
    atoms.symbols[gold] = "Au"
    atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)
    return atoms


def run_demo(output: str | Path = "demo-output", quick: bool = False, model: str = "demo",
             restart: bool = False) -> dict:
    """The main job: check the shipped model, MD, lattice κ, Green–Kubo κ, the comparison report,
    the same model inside LAMMPS, orbital energies from the Hamiltonian head, and the model
    driving i-PI with its uncertainty as i-PI's committee.

    Writes into ``output``: ``summary.json``, ``parity.png``, ``md.traj``/``md.log``,
    ``kappa.json``/``kappa.png`` (lattice), ``md-<T>K/flux.npz`` (heat flux) and
    ``comparison/comparison.{md,png}``, ``lammps/`` (log, dump), ``orbitals-ethanol.png`` and
    ``ipi/`` (i-PI's outputs); returns the summary.  ``output`` is a run folder (see
    :mod:`atomflux.records`): a demo of another model or size is refused there unless ``restart``.
    """
    from .records import finish_run, model_record, open_run

    out = Path(output)
    potential = load_model(model)
    missing = {"Cu", "Au"} - set(potential.species) if potential.species is not None else set()
    if missing:
        raise ValueError(f"the demo simulates Cu and Au; model {model!r} knows {', '.join(potential.species)} "
                         f"(not {', '.join(sorted(missing))}): use --model demo or a model trained on Cu and Au")
    open_run(out, "demo", {"quick": quick}, model_record(model, potential), restart=restart)
    print(f"[1/8] loaded model {model!r}: {potential.architecture}, species {potential.species}, "
          f"cutoff {potential.cutoff} Å")
    print("      " + potential.metadata.get("description", ""))
    frames = read_frames(emt_dataset(n_trajectories=4 if quick else 12, snapshots=4, seed=12345))
    predictions = predict_frames(potential, frames)
    metrics = predictions.metrics()
    parity_plot(predictions.reference, predictions.predicted, out / "parity.png",
                title=f"{model} model vs EMT, {len(frames)} fresh structures")
    print(f"[2/8] errors against EMT on {len(frames)} unseen structures (parity plot: {out / 'parity.png'}):")
    print(format_metrics(metrics))
    atoms = demo_system(2 if quick else 3)
    steps = 100 if quick else 500
    md = run_md(atoms, AtomfluxCalculator(potential, uncertainty="energy"), temperature=600.0, steps=steps, timestep=2.0,
                ensemble="nve", trajectory=out / "md.traj", logfile=out / "md.log", interval=10)
    print(f"[3/8] NVE MD of {atoms.get_chemical_formula()} ({len(atoms)} atoms) from 600 K, {steps} × 2 fs: "
          f"mean T {md['mean_temperature_K']:.0f} K, energy drift {1000 * md['energy_drift_eV_per_atom']:.3f} meV/atom, "
          f"{1000 * md['seconds_per_step']:.1f} ms/step (trajectory: {out / 'md.traj'})")
    from .analysis.report import compare_report
    from .lattice import thermal_conductivity
    from .md import run_transport_md

    temperatures = (300.0,) if quick else (300.0, 600.0)
    copper = bulk("Cu", "fcc", a=3.6)
    kappa = thermal_conductivity(copper, AtomfluxCalculator(potential), supercell=(3, 3, 3),
                                 mesh=(5, 5, 5) if quick else (11, 11, 11), temperatures=temperatures,
                                 statistics="classical", relax=True, workdir=out / "kappa")
    kappa.to_json(out / "kappa.json")
    kappa.plot(out / "kappa.png")
    print(f"[4/8] lattice thermal conductivity of fcc Cu (phonons only, phono3py RTA, classical statistics "
          f"to match classical MD; model ± 1σ; plot {out / 'kappa.png'}):")
    print(kappa.table())
    flux_files = []
    for t in temperatures:
        cell = bulk("Cu", "fcc", a=3.62 * (1 + 2e-5 * (t - 300)), cubic=True) * ((2, 2, 2) if quick else (3, 3, 3))
        flux_files.append(run_transport_md(
            cell, AtomfluxCalculator(potential, uncertainty=False), out / f"md-{t:.0f}K", temperature=t,
            equilibration_steps=200 if quick else 1000, production_steps=1500 if quick else 6000, timestep=4.0,
            stride=50, checkpoint_interval=500))
    # the bandwidth scan goes down to the resolution these short runs allow and says when it is not enough
    report = compare_report(out / "kappa.json", flux_files, out / "comparison")
    print(f"[5/8] Green–Kubo κ from NVE MD of Cu with the same model vs the lattice result ({report}):")
    print("\n".join(line for line in report.read_text().splitlines() if line.startswith("|")))
    print("      (a 108-atom cell and 24 ps of NVE are far from converged for a crystal: the Green–Kubo "
          "value is a lower bound here; see README, 'Transport from molecular dynamics')")
    summary_lammps = _lammps_step(out, quick)
    summary_orbitals = _hamiltonian_step(out)
    summary_ipi = _ipi_step(out, potential, model)
    iso, iso_std = kappa.isotropic()
    summary = {"model": model, "test_metrics_vs_emt": metrics, "md": md,
               "kappa_lattice_classical_W_per_mK": {"temperatures_K": kappa.temperatures.tolist(), "mean": iso.tolist(),
                                                    "std": None if iso_std is None else iso_std.tolist()},
               "kappa_md": json.loads((out / "comparison" / "comparison.json").read_text())["md"],
               "lammps": summary_lammps, "orbitals": summary_orbitals, "ipi": summary_ipi}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    finish_run(out, {"summary": "summary.json"})
    print(f"summary written to {out / 'summary.json'}")
    return summary


LAMMPS_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lammps" / "in.nvt_uncertainty"


def _lammps_step(out: Path, quick: bool) -> dict:
    """Run the NVT example through pair_style atomflux with the uncertainty compute."""
    import os
    import time

    if not LAMMPS_EXAMPLE.exists():
        print("[6/8] LAMMPS: examples/lammps not found (not a source checkout); skipped")
        return {}
    from .lammps_bridge import start_lammps

    folder = out / "lammps"
    folder.mkdir(exist_ok=True)
    steps = 100 if quick else 200
    here = Path.cwd()
    os.chdir(folder)  # the example writes its dump into the current folder
    try:
        lmp = start_lammps(["-log", "log.lammps", "-screen", "none", "-var", "steps", str(steps)])
        start = time.perf_counter()
        lmp.file(str(LAMMPS_EXAMPLE))
        seconds = time.perf_counter() - start
        result = {"steps": int(lmp.extract_global("ntimestep")), "atoms": int(lmp.get_natoms()),
                  "temperature_K": lmp.get_thermo("temp"), "energy_uncertainty_eV": lmp.extract_compute("unc", 0, 0),
                  "seconds_per_step": seconds / steps}
        lmp.close()
    finally:
        os.chdir(here)
    print(f"[6/8] LAMMPS NVT ({LAMMPS_EXAMPLE.name}) with pair_style atomflux: {result['atoms']} atoms, "
          f"{result['steps']} steps at {result['temperature_K']:.0f} K, energy uncertainty inside LAMMPS "
          f"c_unc = {result['energy_uncertainty_eV']:.3f} eV ({1000 * result['energy_uncertainty_eV'] / result['atoms']:.1f} "
          f"meV/atom; fix halt at 20 meV/atom), {1000 * result['seconds_per_step']:.0f} ms/step (log: {folder / 'log.lammps'})")
    return result


def _hamiltonian_step(out: Path) -> dict:
    """Orbital energies of ethanol (a molecule kept out of training) vs RHF/cc-pVDZ computed now with pyscf."""
    from ase.build import molecule

    from .calculators import HamiltonianCalculator
    from .hamiltonian.data import compute_frame
    from .hamiltonian.plots import level_diagram

    atoms = molecule("CH3CH2OH")
    atoms.calc = HamiltonianCalculator("demo-hamiltonian")
    predicted = atoms.calc.get_eigenvalues()
    homo, lumo = atoms.calc.get_homo_lumo()
    frame = compute_frame("CH3CH2OH", atoms, atoms.calc.reference, n_virtual=1)
    n_occ = frame.n_occupied
    mae = float(abs(predicted[:n_occ] - frame.levels[:n_occ]).mean())
    mae_minimal = float(abs(frame.minimal_levels[:n_occ] - frame.levels[:n_occ]).mean())
    level_diagram(frame, predicted[: len(frame.levels)], out / "orbitals-ethanol.png",
                  title="ethanol (not in training): STO-3G vs model vs RHF/cc-pVDZ")
    print(f"[7/8] orbital energies of ethanol (not in the training set) from the Hamiltonian head vs "
          f"RHF/cc-pVDZ (pyscf, computed now): HOMO {homo:.2f} vs {frame.levels[n_occ - 1]:.2f} eV, "
          f"LUMO {lumo:.2f} vs {frame.levels[n_occ]:.2f} eV; occupied-level MAE {mae:.2f} eV "
          f"(plain STO-3G RHF: {mae_minimal:.2f} eV); diagram {out / 'orbitals-ethanol.png'}")
    return {"homo_eV": homo, "lumo_eV": lumo, "reference_homo_eV": float(frame.levels[n_occ - 1]),
            "reference_lumo_eV": float(frame.levels[n_occ]), "occupied_mae_eV": mae,
            "minimal_basis_occupied_mae_eV": mae_minimal}


IPI_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ipi" / "committee.xml"


def _ipi_step(out: Path, potential, model: str) -> dict:
    """i-PI NVT driven by the model, which hands i-PI its calibrated ensemble as a committee."""
    import importlib.util

    import ase.io

    if not IPI_EXAMPLE.exists() or importlib.util.find_spec("ipi") is None:
        print("[8/8] i-PI: examples/ipi or the ipi package not found (pip install 'atomflux[ipi]'); skipped")
        return {}
    from .ipi import run_ipi
    from .ipi.units import HARTREE_PER_EV

    run = run_ipi(IPI_EXAMPLE, potential, output=out / "ipi", progress=False)
    blocks = (run.folder / "committee.sigma_0").read_text().split("#EXTRAS")[1:]
    sigma_ev = [float(block.split("\n", 1)[1]) / HARTREE_PER_EV for block in blocks]
    start = ase.io.read(IPI_EXAMPLE.parent / "cuau.extxyz")
    start.calc = AtomfluxCalculator(potential, uncertainty="energy")
    start.get_potential_energy()
    calculator_sigma = start.calc.results["energy_uncertainty"]
    n = len(start)
    driver = run.driver
    result = {"atoms": n, "steps": driver.messages - 1 if driver else None,
              "committee_uncertainty_eV": sigma_ev, "calculator_sigma_start_eV": calculator_sigma,
              "seconds_per_step": driver.total_seconds / max(driver.messages, 1) if driver else None}
    timing = f", {1000 * result['seconds_per_step']:.0f} ms/step" if driver else ""
    print(f"[8/8] i-PI NVT at 900 K ({IPI_EXAMPLE.name}) driven by {model!r} over its socket, the model's ensemble "
          f"as i-PI's <ffcommittee>: {n} atoms{timing}; i-PI's committee_uncertainty {1000 * min(sigma_ev) / n:.1f}–"
          f"{1000 * max(sigma_ev) / n:.1f} meV/atom (at step 0 {sigma_ev[0]:.4f} eV = the calculator's σ "
          f"{calculator_sigma:.4f} eV); outputs in {run.folder}")
    return result
