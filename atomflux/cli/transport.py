"""MD transport analysis: ``atomflux transport`` and the lattice-vs-MD report ``atomflux compare``.

Each analysis writes its own result (``greenkubo.json``/``.png``,
``diffusion.json``, ``structure-dynamics.png``) claimed with
:func:`atomflux.records.claim_result`: a result of other inputs already in
the folder is kept and the new one gets a suffix (``greenkubo-2.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .arguments import positive


def at_least(minimum: int):
    """Type for whole numbers ≥ ``minimum``."""
    whole = positive(int)

    def parse(text: str) -> int:
        value = whole(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {text}")
        return value

    parse.__name__ = f"whole number ≥ {minimum}"
    return parse


def _lammps_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"units": args.lammps_units, "timestep": args.timestep, "volume": args.volume,
            "temperature": args.flux_temperature, "columns": args.columns,
            "per_volume": True if args.per_volume else None}


def _write_result(folder: Path, stem: str, inputs: dict[str, Any], result: dict[str, Any]) -> str:
    from ..records import claim_result

    name = claim_result(folder, stem, inputs)
    (folder / f"{name}.json").write_text(json.dumps({"inputs": inputs, "result": result}, indent=2, default=str))
    return name


def _green_kubo(args: argparse.Namespace, out: Path) -> None:
    from ..analysis.conductivity import THZ_PER_INVERSE_FS, kappa_from_files
    from ..analysis.flux_io import file_record

    options = _lammps_options(args)
    max_f = None if args.max_frequency is None else args.max_frequency / THZ_PER_INVERSE_FS
    kappa = kappa_from_files(args.flux, cutoff=args.cutoff, max_frequency=max_f, **options)
    scan = kappa.scan
    print(f"κ against the bandwidth F* (P = {scan.cutoff}; the weight says where the plateau starts):")
    print(f"  {'F* (THz)':>10s}  {'κ (W/mK)':>20s}  weight")
    for f, k, e, w in zip(scan.bandwidths, scan.estimates, scan.errors, scan.weights):
        print(f"  {f * THZ_PER_INVERSE_FS:10.4g}  {k:10.4g} ± {e:<8.2g}  {w:6.3f}")
    inputs = {"flux": [file_record(f) for f in args.flux], "cutoff": args.cutoff,
              "max_frequency_THz": args.max_frequency, **{k: v for k, v in options.items() if v is not None}}
    name = _write_result(out, "greenkubo", inputs, {**kappa.to_dict(), "provenance": kappa.provenance})
    kappa.plot(out / f"{name}.png")
    print(kappa.summary())
    print(f"written: {out / (name + '.json')}, {out / (name + '.png')}")


def _estimate_line(label: str, estimate, unit: str) -> str:
    reason = estimate.unresolved()
    text = f"{label} = {estimate.value:.4g} ± {estimate.error:.2g} {unit}"
    return f"{text} ({reason})" if reason else text


def _diffusion(args: argparse.Namespace, out: Path) -> None:
    from ..analysis import diffusion
    from ..analysis.flux_io import file_record
    from ..plotting import pyplot, save_figure

    traj = diffusion.read_trajectory(args.trajectory, dt=args.dt, format=args.format, type_symbols=args.types)
    charges = None
    if args.charges:
        try:
            charges = {k: float(v) for k, v in (item.split("=") for item in args.charges)}
        except ValueError:
            raise ValueError(f"charges must look like Li=1 S=-2, got {' '.join(args.charges)}") from None
        if args.temperature is None:
            raise ValueError("--charges needs --temperature (K) for the conductivity")
    diff = diffusion.tracer_diffusion(traj, n_blocks=args.blocks)
    result: dict[str, Any] = {"diffusion_cm2_per_s": {}}
    for s, est in diff.items():
        print(_estimate_line(f"tracer D({s})", est, "cm²/s"))
        result["diffusion_cm2_per_s"][s] = {"value": est.value, "error": est.error, "note": est.unresolved()}
    if charges is not None:
        sigma = diffusion.ionic_conductivity(traj, charges, args.temperature, n_blocks=args.blocks)
        print(_estimate_line("ionic conductivity, collective", sigma.collective, "S/m"))
        print(_estimate_line("ionic conductivity, Nernst–Einstein", sigma.nernst_einstein, "S/m"))
        print(sigma.haven_note or f"Haven ratio {sigma.haven_ratio:.3g}")
        result["conductivity_S_per_m"] = {
            "collective": sigma.collective.value, "collective_error": sigma.collective.error,
            "nernst_einstein": sigma.nernst_einstein.value, "nernst_einstein_error": sigma.nernst_einstein.error,
            "haven_ratio": None if sigma.haven_note else sigma.haven_ratio, "note": sigma.haven_note}
    inputs = {"trajectory": file_record(args.trajectory), "dt_fs": args.dt, "format": args.format,
              "types": args.types, "charges": charges, "temperature_K": args.temperature, "blocks": args.blocks}
    name = _write_result(out, "diffusion", inputs, result)
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    r, g = diffusion.radial_distribution(traj, every=max(1, len(traj.positions) // 50))
    ax1.plot(r, g)
    ax1.set(xlabel="r (Å)", ylabel="g(r)", title="radial distribution")
    f, dos = diffusion.vibrational_dos(traj)
    ax2.plot(f, dos)
    ax2.set(xlabel="frequency (THz)", ylabel="VDOS (1/THz)", title="vibrational density of states")
    plot = out / name.replace("diffusion", "structure-dynamics", 1)
    save_figure(fig, plot.with_suffix(".png"))
    print(f"written: {out / (name + '.json')}, {plot.with_suffix('.png')}")


def _cmd_transport(args: argparse.Namespace) -> None:
    if not args.flux and not args.trajectory:
        raise ValueError("give --flux (heat-flux files) and/or --trajectory (positions)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.flux:
        _green_kubo(args, out)
    if args.trajectory:
        _diffusion(args, out)


def _cmd_compare(args: argparse.Namespace) -> None:
    from ..analysis.conductivity import THZ_PER_INVERSE_FS
    from ..analysis.report import compare_report

    max_f = None if args.max_frequency is None else args.max_frequency / THZ_PER_INVERSE_FS
    path = compare_report(args.lattice, args.md, args.output_dir, max_frequency=max_f, cutoff=args.cutoff,
                          md_atoms=args.atoms, **_lammps_options(args))
    print(Path(path).read_text())
    print(f"report written to {path}")


def _add_flux_options(p: argparse.ArgumentParser) -> None:
    from ..analysis.bandwidth import DEFAULT_CUTOFF

    p.add_argument("--cutoff", type=positive(int), default=DEFAULT_CUTOFF,
                   help="P: cepstral coefficients kept at every bandwidth F* of the scan")
    p.add_argument("--max-frequency", type=positive(float),
                   help="THz: largest bandwidth F* of the scan (default: the whole spectrum)")
    lammps = p.add_argument_group("LAMMPS heat/flux files (fix ave/time or fix print of compute heat/flux)")
    lammps.add_argument("--lammps-units", choices=["metal", "real"], help="the run's LAMMPS units (default: metal)")
    lammps.add_argument("--timestep", type=positive(float),
                        help="the run's timestep in LAMMPS time units (metal: ps, real: fs), "
                             "when the file has step numbers")
    lammps.add_argument("--volume", type=positive(float), help="Å³, when the file has no volume column")
    lammps.add_argument("--flux-temperature", type=positive(float), help="K, when the file has no temperature column")
    lammps.add_argument("--columns", nargs=4, metavar=("STEP", "JX", "JY", "JZ"),
                        help="names or 1-based numbers of the step (or time) and Jx, Jy, Jz columns "
                             "(default: the c_ID[1..3] columns of the header)")
    lammps.add_argument("--per-volume", action="store_true",
                        help="the columns hold J/V (e.g. c_flux[1]/vol), not compute heat/flux itself")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transport", help="Green–Kubo κ from heat-flux files; diffusion/conductivity from a trajectory")
    p.add_argument("--flux", nargs="+",
                   help="heat-flux files of independent runs at one temperature: flux.npz from "
                        "`atomflux md --transport`, or LAMMPS compute heat/flux output")
    p.add_argument("--trajectory", help="ASE traj, extxyz or LAMMPS dump")
    p.add_argument("--format", help="ASE format name, e.g. lammps-dump-text")
    p.add_argument("--types", nargs="+", help="LAMMPS dumps: chemical symbols of types 1, 2, ...")
    p.add_argument("--dt", type=positive(float), default=20.0, help="time between trajectory frames, fs")
    p.add_argument("--charges", nargs="+", help="formal charges, e.g. Li=1 S=-2 (enables conductivity)")
    p.add_argument("--temperature", type=positive(float), help="K, for the conductivity (needed with --charges)")
    p.add_argument("--blocks", type=at_least(2), default=5, help="blocks for the diffusion error bars")
    _add_flux_options(p)
    p.add_argument("--output-dir", default="transport-output", help="output folder")
    p.set_defaults(func=_cmd_transport)

    p = sub.add_parser("compare", help="report: lattice κ (RTA, LBTE) beside Green–Kubo κ at each MD temperature")
    p.add_argument("--lattice", nargs="+", required=True,
                   help="kappa.json files from `atomflux kappa` (e.g. --method rta and --method lbte)")
    p.add_argument("--md", nargs="+", required=True,
                   help="heat-flux files (flux.npz or LAMMPS heat/flux output); runs at the same "
                        "temperature are combined")
    p.add_argument("--atoms", type=positive(int), help="atoms in the MD cell (to check the lattice constant against the "
                                             "lattice result's; read from flux.npz when it records it)")
    _add_flux_options(p)
    p.add_argument("--output-dir", default="comparison", help="output folder")
    p.set_defaults(func=_cmd_compare)
