"""Lattice vs MD thermal conductivity of Lennard-Jones argon: the validation study of issue 13.

One script, four stages per temperature:

1. **Lattice constant** from NPT MD (native LAMMPS ``lj/cut``, P = 0): the
   mean cubic-cell edge over the averaging window, with a block error.
2. **Heat flux** from NVE MD at that lattice constant: NVT equilibration,
   velocities rescaled so that the NVE energy is the NVT mean energy, then
   NVE with ``compute heat/flux`` written by ``fix ave/time`` (LAMMPS metal
   units, read by :func:`atomflux.analysis.flux_io.read_lammps_flux`).
   The production runs use LAMMPS's native ``lj/cut``; a short segment
   from the same state is rerun with ``pair_style atomflux`` and atomflux's
   own :class:`~atomflux.models.LennardJones` to show that both are the same
   model (energies, forces and heat flux step by step) and what the
   atomflux pair style would cost for the whole run.
3. **Green–Kubo κ** with atomflux's bandwidth-scan estimator
   (:func:`atomflux.analysis.conductivity.kappa_from_files`) and the
   ``atomflux compare`` report (:func:`atomflux.analysis.report.compare_report`)
   beside the lattice values.
4. **Lattice κ** (RTA and LBTE, classical statistics, 4×4×4 supercell of
   the primitive cell) with :func:`atomflux.lattice.thermal_conductivity`
   at the MD lattice constant, with ``on_cutoff_crossing="adapt"``; where
   the adaptation changed the displacement, RTA at the default 0.03 Å is
   also given (what a user would have got).

Writes ``results.json``, ``results.md``, ``kappa_vs_T.png`` and one
``compare-<T>K/`` report per temperature into the output folder; the big
files (flux, force sets) go to ``<output>/work/``.  The output folder is a
run record (:func:`atomflux.records.open_run`): rerunning the same command
resumes (finished MD stages and lattice results are reused); other
settings need another folder or ``--restart``.

Usage::

    python run.py                                  # the committed study (~15-25 min on 2 busy cores)
    python run.py --production-ps 500 -o quick     # a shorter study (larger GK error bars)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: LJ argon as in issue 13 (ε in eV, σ and r_c in Å, energy shifted at r_c) and the argon mass (amu)
SIGMA, EPSILON, CUTOFF, MASS = 3.405, 0.0103, 8.5, 39.948
#: the issue's table: mean NVE temperature (K) → lattice constant used (Å), GK best, RTA, LBTE (W/mK)
ISSUE_TABLE = {
    20.5: {"a": 5.3240, "gk": 1.22, "gk_error": 0.12, "rta": 1.33, "lbte": 1.83, "md_ps": 4000},
    37.9: {"a": 5.3797, "gk": 0.44, "gk_error": 0.03, "rta": 0.57, "lbte": 0.82, "md_ps": 4000,
           "rta_default_displacement": 0.13, "lbte_default_displacement": 0.22},
}
CELLS = 4                      # conventional fcc cells per edge: 4 × 4 × 4 × 4 = 256 atoms
N_ATOMS = 4 * CELLS**3
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--temperatures", type=float, nargs="+", default=sorted(ISSUE_TABLE),
                   help="target temperatures (K) of the NPT, NVT and NVE runs")
    p.add_argument("--timestep-fs", type=float, default=4.0, help="MD timestep (fs)")
    p.add_argument("--sample-every", type=int, default=2, help="write the heat flux every this many steps")
    p.add_argument("--npt-ps", type=float, default=100.0, help="NPT averaging window for the lattice constant (ps)")
    p.add_argument("--equilibration-ps", type=float, default=20.0,
                   help="equilibration before the NPT window and NVT before NVE (ps each)")
    p.add_argument("--production-ps", type=float, default=4000.0, help="NVE heat-flux run per temperature (ps)")
    p.add_argument("--runs", type=int, default=2,
                   help="independent runs per temperature (own seed, NPT and NVE each), combined by the GK estimator")
    p.add_argument("--seed", type=int, default=12345,
                   help="velocity seed (temperature k, run r uses seed + k + 1000 r)")
    p.add_argument("--mesh", type=int, default=11, help="q mesh (n × n × n) of the lattice κ")
    p.add_argument("--supercell", type=int, default=4, help="fc2/fc3 supercell (n × n × n primitive cells)")
    p.add_argument("--atomflux-check-steps", type=int, default=200,
                   help="NVE steps rerun with pair_style atomflux against lj/cut (0: skip)")
    p.add_argument("--processes", type=int, default=2,
                   help="MD runs of different temperatures in parallel (one LAMMPS process each)")
    p.add_argument("-o", "--output", type=Path, default=HERE / "results", help="output folder (a run record)")
    p.add_argument("--restart", action="store_true", help="move an existing output folder aside and start over")
    args = p.parse_args(argv)
    if any(t <= 0 for t in args.temperatures):
        p.error("temperatures must be positive")
    if min(args.timestep_fs, args.npt_ps, args.equilibration_ps, args.production_ps) <= 0 or args.sample_every < 1:
        p.error("timestep, run lengths and --sample-every must be positive")
    if args.processes < 1 or args.runs < 1:
        p.error("--processes and --runs must be ≥ 1")
    if args.mesh < 1 or args.supercell < 3:
        p.error("--mesh must be ≥ 1 and --supercell ≥ 3 (fc3 of fcc vanishes in 2×2×2)")
    return args


def steps(ps: float, timestep_fs: float) -> int:
    return max(1, int(round(1000.0 * ps / timestep_fs)))


# ---------------------------------------------------------------------------------------------- MD (LAMMPS)

def lammps_instance(log: Path | None = None):
    from atomflux.lammps_bridge.session import lammps_module

    return lammps_module().lammps(cmdargs=["-screen", "none", "-log", str(log) if log else "none"])


def native_pair() -> str:
    return f"pair_style lj/cut {CUTOFF}\npair_coeff * * {EPSILON} {SIGMA}\npair_modify shift yes"


def run_chunked(lmp, n_steps: int, label: str, chunk: int = 5000) -> None:
    """``run n_steps`` in chunks, with a progress bar (set-up once: ``pre no`` after the first chunk)."""
    from atomflux.progress import progress

    done = 0
    with progress(total=n_steps, desc=label, unit="step") as bar:
        while done < n_steps:
            n = min(chunk, n_steps - done)
            lmp.command(f"run {n}" + (" pre no post no" if done else " post no"))
            done += n
            bar.update(n)


def block_mean(values: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` contiguous block means."""
    means = np.array([b.mean() for b in np.array_split(np.asarray(values, float), blocks)])
    return float(values.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def read_columns(path: Path) -> np.ndarray:
    return np.loadtxt(path, comments="#", ndmin=2)


def md_stage(temperature: float, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """NPT → lattice constant; NVT at it; NVE with the heat flux.  Returns the stage record."""
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "md.json"
    if record_path.is_file():
        print(f"{temperature:g} K: MD already done ({record_path}), reused")
        return json.loads(record_path.read_text())
    dt_ps = args.timestep_fs / 1000.0
    t0 = time.perf_counter()
    lmp = lammps_instance(folder / "log.lammps")
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        atom_modify map array
        lattice fcc 5.30
        region box block 0 {CELLS} 0 {CELLS} 0 {CELLS}
        create_box 1 box
        create_atoms 1 box
        mass 1 {MASS}
        {native_pair()}
        neighbor 1.0 bin
        timestep {dt_ps}
        velocity all create {temperature} {seed} mom yes rot yes dist gaussian
        fix npt all npt temp {temperature} {temperature} {100 * dt_ps} iso 0.0 0.0 {1000 * dt_ps}
        variable a equal lx/{CELLS}
        variable T equal temp
        variable V equal vol
        variable E equal etotal
        thermo 1000
    """)
    run_chunked(lmp, steps(args.equilibration_ps, args.timestep_fs), f"{temperature:g} K NPT equilibration")
    lmp.command(f"fix npt_samples all ave/time 25 1 25 v_a v_T file {folder / 'npt.dat'}")
    run_chunked(lmp, steps(args.npt_ps, args.timestep_fs), f"{temperature:g} K NPT averaging")
    lmp.command("unfix npt_samples")
    npt = read_columns(folder / "npt.dat")
    a_mean, a_error = block_mean(npt[:, 1])
    t_npt = time.perf_counter() - t0

    # NVT at the mean lattice constant (the box scaled about its centre, atoms with it)
    lmp.command("unfix npt")
    lmp.command(f"change_box all x scale {a_mean / lmp.get_thermo('lx') * CELLS} "
                f"y scale {a_mean / lmp.get_thermo('ly') * CELLS} z scale {a_mean / lmp.get_thermo('lz') * CELLS} remap")
    lmp.command(f"fix nvt all nvt temp {temperature} {temperature} {100 * dt_ps}")
    lmp.command(f"fix nvt_samples all ave/time 25 1 25 v_E v_T file {folder / 'nvt.dat'}")
    run_chunked(lmp, steps(args.equilibration_ps, args.timestep_fs), f"{temperature:g} K NVT")
    lmp.command("unfix nvt_samples")
    lmp.command("unfix nvt")
    nvt = read_columns(folder / "nvt.dat")
    energy_target = float(nvt[len(nvt) // 2:, 1].mean())
    # NVE at the NVT mean energy: scale the velocities so that KE = <E>_NVT − PE (no energy fluctuation of the switch)
    lmp.command("run 0")
    kinetic, potential, now = lmp.get_thermo("ke"), lmp.get_thermo("pe"), lmp.get_thermo("temp")
    lmp.command(f"velocity all scale {now * max(energy_target - potential, 0.5 * kinetic) / kinetic}")
    lmp.command(f"write_data {folder / 'nve_start.data'} nocoeff")
    t_nvt = time.perf_counter() - t0 - t_npt

    n_production = steps(args.production_ps, args.timestep_fs)
    every = args.sample_every
    lmp.commands_string(f"""
        reset_timestep 0
        fix nve all nve
        compute ke all ke/atom
        compute pe all pe/atom
        compute stress all centroid/stress/atom NULL virial
        compute flux all heat/flux ke pe stress
        fix flux_out all ave/time {every} 1 {every} c_flux[1] c_flux[2] c_flux[3] v_T v_V file {folder / 'flux.dat'} format " %.12g"
        run 0
    """)
    e_start = lmp.get_thermo("etotal")
    run_chunked(lmp, n_production, f"{temperature:g} K NVE production", chunk=20000)
    e_end = lmp.get_thermo("etotal")
    lmp.close()
    t_nve = time.perf_counter() - t0 - t_npt - t_nvt
    record = {
        "target_temperature_K": temperature, "seed": seed,
        "lattice_constant_A": a_mean, "lattice_constant_error_A": a_error,
        "npt_mean_temperature_K": float(npt[:, 2].mean()),
        "nve_energy_drift_meV_per_atom": 1000.0 * (e_end - e_start) / N_ATOMS,
        "run_lengths_ps": {"npt_equilibration": args.equilibration_ps, "npt_averaging": args.npt_ps,
                           "nvt": args.equilibration_ps, "nve_production": n_production * dt_ps},
        "timestep_fs": args.timestep_fs, "flux_sampling_fs": every * args.timestep_fs,
        "nve_steps": n_production, "atoms": N_ATOMS,
        "wall_s": {"npt": t_npt, "nvt": t_nvt, "nve": t_nve},
        "ms_per_nve_step": 1000.0 * t_nve / n_production,
    }
    record_path.write_text(json.dumps(record, indent=2))
    return record


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for the independent runs of a temperature: mean lattice constant (error of the mean), sums of
    run lengths and wall times, the largest energy drift; the runs themselves under ``"runs"``."""
    a = np.array([r["lattice_constant_A"] for r in runs])
    errors = np.array([r["lattice_constant_error_A"] for r in runs])
    spread = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0
    first = runs[0]
    return {**{k: first[k] for k in ("target_temperature_K", "timestep_fs", "flux_sampling_fs", "atoms")},
            "lattice_constant_A": float(a.mean()),
            "lattice_constant_error_A": float(max(np.sqrt(np.sum(errors**2)) / len(a), spread)),
            "nve_energy_drift_meV_per_atom": max((r["nve_energy_drift_meV_per_atom"] for r in runs), key=abs),
            "n_runs": len(runs),
            "run_lengths_ps": {k: sum(r["run_lengths_ps"][k] for r in runs) for k in first["run_lengths_ps"]},
            "wall_s": {k: sum(r["wall_s"][k] for r in runs) for k in first["wall_s"]},
            "runs": runs}


# ------------------------------------------------------------------ the same model through pair_style atomflux

def atomflux_pair_check(data: Path, n_steps: int, folder: Path, timestep_fs: float) -> dict[str, Any]:
    """Rerun ``n_steps`` of NVE from ``data`` with lj/cut and with pair_style atomflux (atomflux's LennardJones).

    Returns the largest relative differences of the potential energy and heat
    flux over the steps, of the forces at the first step, and the cost per
    step of both (flux every step).
    """
    from atomflux.io import save_model
    from atomflux.lammps_bridge import start_lammps
    from atomflux.models import LennardJones

    folder.mkdir(parents=True, exist_ok=True)
    model = save_model(LennardJones(SIGMA, EPSILON, CUTOFF, cutoff_mode="shifted"), folder / "lj_argon.pt")
    pairs = {"lj/cut": native_pair(),
             "atomflux": f"pair_style atomflux precision float64\npair_coeff * * {model} Ar"}
    series, forces, cost = {}, {}, {}
    for name, pair in pairs.items():
        lmp = start_lammps(["-screen", "none", "-log", "none"]) if name == "atomflux" else lammps_instance()
        out = folder / f"{name.replace('/', '_')}.dat"
        lmp.commands_string(f"""
            units metal
            atom_style atomic
            atom_modify map array
            read_data {data}
            {pair}
            neighbor 1.0 bin
            timestep {timestep_fs / 1000.0}
            fix nve all nve
            compute ke all ke/atom
            compute pe all pe/atom
            compute stress all centroid/stress/atom NULL virial
            compute flux all heat/flux ke pe stress
            variable P equal pe
            fix out all ave/time 1 1 1 v_P c_flux[1] c_flux[2] c_flux[3] file {out} format " %.15g"
            thermo 0
            run 0
        """)
        forces[name] = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
        start = time.perf_counter()
        lmp.command(f"run {n_steps}")
        cost[name] = 1000.0 * (time.perf_counter() - start) / n_steps
        lmp.close()
        series[name] = read_columns(out)[:, 1:]
    ref, ours = series["lj/cut"], series["atomflux"]
    flux_scale = np.abs(ref[:, 1:]).max()
    return {"steps": n_steps,
            "max_relative_difference": {
                "potential_energy": float(np.abs(ours[:, 0] - ref[:, 0]).max() / np.abs(ref[:, 0]).max()),
                "heat_flux": float(np.abs(ours[:, 1:] - ref[:, 1:]).max() / flux_scale),
                "forces_first_step": float(np.abs(forces["atomflux"] - forces["lj/cut"]).max()
                                           / np.abs(forces["lj/cut"]).max())},
            "ms_per_step_with_flux_every_step": cost}


# -------------------------------------------------------------------------------------------- lattice side

def lattice_stage(temperature: float, a: float, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """RTA and LBTE κ (classical) at lattice constant ``a``.

    Writes the ``kappa-*.json`` that ``compare`` reads and the record ``lattice.json`` (reused when present).
    """
    from ase.build import bulk

    from atomflux.calculators import AtomfluxCalculator
    from atomflux.lattice import thermal_conductivity
    from atomflux.models import LennardJones

    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "lattice.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    calculator = AtomfluxCalculator(LennardJones(SIGMA, EPSILON, CUTOFF, cutoff_mode="shifted"))
    settings = dict(supercell=(args.supercell,) * 3, mesh=(args.mesh,) * 3, temperatures=(temperature,),
                    statistics="classical", workdir=folder / "work")
    record: dict[str, Any] = {}
    for method in ("rta", "lbte"):
        path = folder / f"kappa-{method}.json"
        start = time.perf_counter()
        result = thermal_conductivity(bulk("Ar", "fcc", a=a), calculator, method=method,
                                      on_cutoff_crossing="adapt", **settings)
        result.to_json(path)
        record[method] = float(result.isotropic()[0][0])
        record[f"{method}_wall_s"] = time.perf_counter() - start
        record["displacement_A"] = result.displacement
        record["lattice_warnings"] = list(result.warnings)
        record["limitations"] = result.limitations()
    if record["displacement_A"] < 0.03:
        # what the default displacement would have given (the cutoff crossing the issue found)
        for method in ("rta", "lbte"):
            path = folder / f"kappa-{method}-default-displacement.json"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = thermal_conductivity(bulk("Ar", "fcc", a=a), calculator, method=method,
                                              on_cutoff_crossing="warn", **settings)
            result.to_json(path)
            record[f"{method}_default_displacement"] = float(result.isotropic()[0][0])
    record_path.write_text(json.dumps(record, indent=2))
    return record


# ----------------------------------------------------------------------------------------------- Green–Kubo

def green_kubo_stage(fluxes: list[Path], lattice_folder: Path, out: Path, timestep_fs: float) -> dict[str, Any]:
    """GK κ of one temperature with atomflux's estimator, and the ``atomflux compare`` report beside RTA/LBTE."""
    from atomflux.analysis.conductivity import THZ_PER_INVERSE_FS, kappa_from_files
    from atomflux.analysis.report import compare_report

    start = time.perf_counter()
    lammps_options = dict(units="metal", timestep=timestep_fs / 1000.0)
    kappa = kappa_from_files(fluxes, **lammps_options)
    kappa.plot(out / "greenkubo.png")
    report = compare_report([lattice_folder / "kappa-rta.json", lattice_folder / "kappa-lbte.json"], fluxes, out,
                            md_atoms=N_ATOMS, **lammps_options)
    record = kappa.to_dict()
    record.pop("sources")
    record["plateau_from_THz"] = float(kappa.scan.plateau_bandwidth * THZ_PER_INVERSE_FS)
    record["summary"] = kappa.summary()
    record["compare_report"] = str(report.relative_to(out.parent))
    record["wall_s"] = time.perf_counter() - start
    return record


# ------------------------------------------------------------------------------------------------- results

def issue_row(temperature: float) -> dict[str, Any] | None:
    near = min(ISSUE_TABLE, key=lambda t: abs(t - temperature))
    return ISSUE_TABLE[near] if abs(near - temperature) < 1.0 else None


def write_results(output: Path, rows: list[dict[str, Any]], pair_check: dict[str, Any] | None,
                  args: argparse.Namespace, wall_s: float, reused: int = 0) -> None:
    from atomflux import __version__
    from atomflux.plotting import pyplot, save_figure

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (output / "results.json").write_text(json.dumps({
        "model": {"pair": "Lennard-Jones, energy shifted at r_c", "sigma_A": SIGMA, "epsilon_eV": EPSILON,
                  "cutoff_A": CUTOFF, "mass_amu": MASS, "atoms": N_ATOMS},
        "settings": settings, "temperatures": rows, "pair_style_atomflux_check": pair_check,
        "issue_table": {str(k): v for k, v in ISSUE_TABLE.items()},
        "wall_s_total": wall_s, "md_runs_reused": reused, "atomflux_version": __version__,
        "python": platform.python_version()},
        indent=2, default=str))

    def gk_text(gk: dict) -> str:
        if gk["converged"]:
            return f"{gk['kappa_W_per_mK']:.3g} ± {gk['error_W_per_mK']:.2g}"
        return f"≥ {gk['lower_bound_W_per_mK']:.3g} (unconverged)"

    lines = ["# LJ argon: Green–Kubo vs lattice RTA/LBTE (issue 13 validation)", "",
             f"Model: LJ argon, σ = {SIGMA} Å, ε = {EPSILON} eV, r_c = {CUTOFF} Å (energy shifted), {N_ATOMS} atoms. "
             "MD: native LAMMPS `lj/cut` + `compute heat/flux`; GK with `atomflux.analysis.conductivity` "
             "(bandwidth-scan plateau average, the `atomflux transport`/`compare` estimator). Lattice: "
             f"`atomflux.lattice.thermal_conductivity`, {args.supercell}×{args.supercell}×{args.supercell} supercell "
             f"of the primitive cell, {args.mesh}³ mesh, classical statistics, at the NPT lattice constant, "
             "`on_cutoff_crossing=\"adapt\"`.", "",
             "| T (K, NVE mean) | a (Å, NPT) | GK κ (W/mK) | plateau from F* (THz) | RTA | LBTE | "
             "RTA / LBTE at 0.03 Å | issue: a, GK, RTA, LBTE |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        md, gk, lat = row["md"], row["green_kubo"], row["lattice"]
        issue = issue_row(md["target_temperature_K"])
        issue_text = (f"{issue['a']:.4f}, {issue['gk']} ± {issue['gk_error']}, {issue['rta']}, {issue['lbte']}"
                      if issue else "—")
        default = (f"{lat['rta_default_displacement']:.3g} / {lat['lbte_default_displacement']:.3g}"
                   if "rta_default_displacement" in lat else "same (no cutoff crossing)")
        lines.append(f"| {gk['temperature_K']:.2f} "
                     f"| {md['lattice_constant_A']:.4f} ± {md['lattice_constant_error_A']:.4f} "
                     f"| {gk_text(gk)} | {gk['plateau_from_THz']:.3g} | {lat['rta']:.3g} | {lat['lbte']:.3g} "
                     f"| {default} | {issue_text} |")
    lines += ["", "Run lengths and cost per temperature (summed over its independent runs; GK combines the runs "
              "into one estimate):", "",
              "| T (K) | runs | NPT (ps, equil. + averaging) | NVT (ps) | NVE (ps) | dt (fs) | flux every (fs) | "
              "energy drift (meV/atom) | wall: MD (s) | GK (s) | lattice RTA + LBTE (s) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        md, gk, lat = row["md"], row["green_kubo"], row["lattice"]
        lengths, wall = md["run_lengths_ps"], md["wall_s"]
        lines.append(f"| {md['target_temperature_K']:g} | {md['n_runs']} "
                     f"| {lengths['npt_equilibration']:g} + {lengths['npt_averaging']:g} "
                     f"| {lengths['nvt']:g} | {lengths['nve_production']:g} | {md['timestep_fs']:g} "
                     f"| {md['flux_sampling_fs']:g} | {md['nve_energy_drift_meV_per_atom']:.2g} "
                     f"| {sum(wall.values()):.0f} | {gk['wall_s']:.0f} | {lat['rta_wall_s'] + lat['lbte_wall_s']:.0f} |")
    lines += ["", f"Wall time of this invocation {wall_s / 60:.1f} min ({platform.node() or 'this machine'}, shared, "
              "2 cores, two MD runs in parallel)"
              + (f"; {reused} MD run(s) were reused from an earlier invocation of the same command (their own wall "
                 "times are in the MD column)." if reused else ".")]
    if pair_check and "skipped" in pair_check:
        lines += ["", f"`pair_style atomflux` check skipped ({pair_check['skipped']})."]
    elif pair_check:
        diff, cost = pair_check["max_relative_difference"], pair_check["ms_per_step_with_flux_every_step"]
        lines += ["", f"**Same model through `pair_style atomflux`** ({pair_check['steps']} NVE steps from the "
                  f"{pair_check['temperature_K']:g} K start, atomflux `LennardJones`, float64): largest relative "
                  f"difference to `lj/cut` — potential energy {diff['potential_energy']:.1e}, heat flux "
                  f"{diff['heat_flux']:.1e}, forces (first step) {diff['forces_first_step']:.1e}. Cost with the flux "
                  f"every step: {cost['atomflux']:.2f} ms/step (atomflux) vs {cost['lj/cut']:.2f} ms/step (lj/cut), "
                  f"so the production runs use `lj/cut`."]
    lines += ["", "Per temperature, `compare-<T>K/comparison.md` is the `atomflux compare` report (GK bandwidth scan "
              "beside RTA and LBTE, lattice-constant check, what each method leaves out) and `greenkubo.png` the "
              "spectrum, scan and running integral.", "", "![κ(T)](kappa_vs_T.png)", ""]
    (output / "results.md").write_text("\n".join(lines))

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    temps = np.array([r["green_kubo"]["temperature_K"] for r in rows])
    for key, style, label in (("rta", "o-", "lattice RTA"), ("lbte", "s-", "lattice LBTE")):
        ax.plot(temps, [r["lattice"][key] for r in rows], style, label=f"{label} (this run)")
    for r, t in zip(rows, temps):
        gk = r["green_kubo"]
        if gk["converged"]:
            ax.errorbar(t, gk["kappa_W_per_mK"], yerr=gk["error_W_per_mK"], fmt="kD", capsize=4)
        else:
            ax.plot(t, gk["lower_bound_W_per_mK"], "^", color="C3", ms=9)
    ax.plot([], [], "kD", label="Green–Kubo (this run, ±1σ)")
    issue_t = sorted(ISSUE_TABLE)
    ax.errorbar(issue_t, [ISSUE_TABLE[t]["gk"] for t in issue_t], yerr=[ISSUE_TABLE[t]["gk_error"] for t in issue_t],
                fmt="x", color="0.5", capsize=3, label="issue 13: GK (4 ns)")
    ax.plot(issue_t, [ISSUE_TABLE[t]["rta"] for t in issue_t], "+", color="0.5", ms=10, label="issue 13: RTA")
    ax.plot(issue_t, [ISSUE_TABLE[t]["lbte"] for t in issue_t], "1", color="0.5", ms=10, label="issue 13: LBTE")
    ax.set(xlabel="temperature (K)", ylabel="κ (W/mK)", title="LJ argon: lattice vs Green–Kubo")
    ax.legend(fontsize=8)
    save_figure(fig, output / "kappa_vs_T.png")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from atomflux.records import finish_run, open_run

    args = parse_args(argv)
    output = args.output
    parameters = {k: v for k, v in vars(args).items() if k not in ("output", "restart", "processes")}
    if open_run(output, "examples/lj_argon_validation", parameters, restart=args.restart):
        print(f"resuming the run in {output}")
    work = output / "work"
    start = time.perf_counter()
    rows, pair_check = [], None
    jobs = [(t, args.seed + k + 1000 * r, args, work / f"md-{t:g}K-run{r}")
            for k, t in enumerate(args.temperatures) for r in range(args.runs)]
    reused = sum((job[3] / "md.json").is_file() for job in jobs)
    if args.processes > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.processes, len(jobs)), multiprocessing.get_context("spawn")) as pool:
            md_runs = list(pool.map(md_stage, *zip(*jobs)))
    else:
        md_runs = [md_stage(*job) for job in jobs]
    from atomflux.analysis.flux_io import read_lammps_flux

    for k, temperature in enumerate(args.temperatures):
        label = f"{temperature:g}K"
        runs = md_runs[k * args.runs:(k + 1) * args.runs]
        fluxes = [job[3] / "flux.dat" for job in jobs[k * args.runs:(k + 1) * args.runs]]
        md = combine_runs(runs)
        if k == 0 and args.atomflux_check_steps:
            from atomflux.lammps_bridge import PluginBuildError

            try:
                pair_check = atomflux_pair_check(jobs[0][3] / "nve_start.data", args.atomflux_check_steps,
                                                 work / "pair-check", args.timestep_fs)
                pair_check["temperature_K"] = temperature
            except PluginBuildError as error:  # no C++ compiler: the lj/cut study itself does not need the plugin
                pair_check = {"skipped": f"pair_style atomflux unavailable: {error}"}
                print(pair_check["skipped"])
        lattice_folder = output / f"lattice-{label}"
        # lattice at the NVE mean temperature of the runs (read from the flux files), at the mean NPT lattice constant
        mean_t = float(np.mean([read_lammps_flux(f, units="metal", timestep=args.timestep_fs / 1000.0).temperature
                                for f in fluxes]))
        lattice = lattice_stage(round(mean_t, 2), md["lattice_constant_A"], args, lattice_folder)
        gk = green_kubo_stage(fluxes, lattice_folder, output / f"compare-{label}",
                              args.timestep_fs)
        rows.append({"md": md, "lattice": lattice, "green_kubo": gk})
        print(f"{temperature:g} K: a = {md['lattice_constant_A']:.4f} Å; {gk['summary']}; "
              f"RTA {lattice['rta']:.3g}, LBTE {lattice['lbte']:.3g} W/mK", flush=True)
    wall = time.perf_counter() - start
    write_results(output, rows, pair_check, args, wall, reused)
    finish_run(output, {"wall_s": wall})
    print(f"written: {output / 'results.md'}, {output / 'results.json'}, {output / 'kappa_vs_T.png'}")
    return json.loads((output / "results.json").read_text())


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # one line for an ordinary mistake (a run folder of other settings, ...)
        sys.exit(f"run.py: error: {error}")
