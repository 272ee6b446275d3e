"""MD transport analysis: ``atomflux transport`` and the lattice-vs-MD report ``atomflux compare``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_transport(args: argparse.Namespace) -> None:
    from ..analysis import diffusion
    from ..analysis.greenkubo import kappa_from_flux_file
    from ..plotting import pyplot, save_figure

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    if args.flux:
        from ..analysis.greenkubo import max_frequency_scan

        print("κ against the analysed bandwidth F* (look for a plateau; none means the run is too short):")
        for f_star, k in max_frequency_scan(args.flux):
            label = "whole spectrum" if f_star is None else f"F* = {1000 * f_star:g} THz"
            print(f"  {label:>16s}: {k.value:.4g} ± {k.error:.2g} W/mK (P* = {k.cepstral.cutoff})")
        max_f = None if args.max_frequency is None else args.max_frequency / 1000.0
        kappa = kappa_from_flux_file(args.flux, max_frequency=max_f)
        kappa.plot(out / "greenkubo.png")
        print(f"Green–Kubo κ at {kappa.temperature:.1f} K: {kappa.value:.4g} ± {kappa.error:.2g} W/mK "
              f"(cepstral, P* = {kappa.cepstral.cutoff}{', multicomponent' if kappa.multicomponent else ''}; "
              f"plot {out / 'greenkubo.png'})")
        summary["kappa_W_per_mK"] = {"value": kappa.value, "error": kappa.error, "temperature_K": kappa.temperature}
    if args.trajectory:
        traj = diffusion.read_trajectory(args.trajectory, dt=args.dt, format=args.format, type_symbols=args.types)
        diff = diffusion.tracer_diffusion(traj, n_blocks=args.blocks)
        for s, est in diff.items():
            print(f"tracer D({s}) = {est.value:.4g} ± {est.error:.2g} cm²/s")
        summary["diffusion_cm2_per_s"] = {s: {"value": e.value, "error": e.error} for s, e in diff.items()}
        if args.charges:
            charges = {k: float(v) for k, v in (item.split("=") for item in args.charges)}
            sigma = diffusion.ionic_conductivity(traj, charges, args.temperature, n_blocks=args.blocks)
            print(f"ionic conductivity: collective {sigma.collective.value:.4g} ± {sigma.collective.error:.2g} S/m, "
                  f"Nernst–Einstein {sigma.nernst_einstein.value:.4g} ± {sigma.nernst_einstein.error:.2g} S/m, "
                  f"Haven ratio {sigma.haven_ratio:.3g}")
            summary["conductivity_S_per_m"] = {"collective": sigma.collective.value,
                                               "collective_error": sigma.collective.error,
                                               "nernst_einstein": sigma.nernst_einstein.value,
                                               "haven_ratio": sigma.haven_ratio}
        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        r, g = diffusion.radial_distribution(traj, every=max(1, len(traj.positions) // 50))
        ax1.plot(r, g)
        ax1.set(xlabel="r (Å)", ylabel="g(r)", title="radial distribution")
        f, dos = diffusion.vibrational_dos(traj)
        ax2.plot(f, dos)
        ax2.set(xlabel="frequency (THz)", ylabel="VDOS (1/THz)", title="vibrational density of states")
        save_figure(fig, out / "structure-dynamics.png")
    (out / "transport.json").write_text(json.dumps(summary, indent=2))
    print(f"summary written to {out / 'transport.json'}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from ..analysis.report import compare_report

    max_f = None if args.max_frequency is None else args.max_frequency / 1000.0
    path = compare_report(args.lattice, args.md, args.output_dir, max_frequency=max_f)
    print(Path(path).read_text())
    print(f"report written to {path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transport", help="Green–Kubo κ from a flux file; diffusion/conductivity from a trajectory")
    p.add_argument("--flux", help="flux.npz written by `atomflux md --transport`")
    p.add_argument("--trajectory", help="ASE traj, extxyz or LAMMPS dump")
    p.add_argument("--format", help="ASE format name, e.g. lammps-dump-text")
    p.add_argument("--types", nargs="+", help="LAMMPS dumps: chemical symbols of types 1, 2, ...")
    p.add_argument("--dt", type=float, default=20.0, help="time between trajectory frames, fs")
    p.add_argument("--charges", nargs="+", help="formal charges, e.g. Li=1 S=-2 (enables conductivity)")
    p.add_argument("--temperature", type=float, default=300.0, help="K, for the conductivity")
    p.add_argument("--blocks", type=int, default=5, help="blocks for the error bars")
    p.add_argument("--max-frequency", type=float, help="THz: analyse the flux spectrum below this")
    p.add_argument("--output-dir", default="transport-output", help="output folder")
    p.set_defaults(func=_cmd_transport)

    p = sub.add_parser("compare", help="report: lattice κ(T) beside Green–Kubo κ(T)")
    p.add_argument("--lattice", required=True, help="kappa.json from `atomflux kappa`")
    p.add_argument("--md", nargs="+", required=True, help="flux.npz files (one per temperature)")
    p.add_argument("--max-frequency", type=float, help="THz: analyse the flux spectra below this")
    p.add_argument("--output-dir", default="comparison", help="output folder")
    p.set_defaults(func=_cmd_compare)
