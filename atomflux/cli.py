"""The ``atomflux`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> None:
    from .io import save_model
    from .training import TrainConfig, read_frames, train
    from .training.trainer import report

    frames = read_frames(args.data)
    model = {"cutoff": args.cutoff, "hidden": args.hidden, "n_channels": args.channels,
             "max_angular": args.max_angular}
    cfg = TrainConfig(energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                      stress_weight=args.stress_weight, learning_rate=args.lr, epochs=args.epochs,
                      batch_size=args.batch_size, patience=args.patience,
                      validation_fraction=args.validation_fraction, seed=args.seed, model=model)
    result = train(frames, cfg)
    print(report(result))
    save_model(result.potential, args.output)
    print(f"model written to {args.output}")


def _cmd_eval(args: argparse.Namespace) -> None:
    from .io import load_model
    from .plotting import parity_plot
    from .training import predict_frames, read_frames
    from .training.metrics import format_metrics

    potential = load_model(args.model)
    frames = read_frames(args.data)
    pred = predict_frames(potential, frames)
    metrics = pred.metrics()
    print(f"{len(frames)} structures from {args.data}:")
    print(format_metrics(metrics))
    parity_plot(pred.reference, pred.predicted, args.plot, title=f"{args.model} on {Path(args.data).name}")
    print(f"parity plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))


def _cmd_md(args: argparse.Namespace) -> None:
    import ase.io

    from .calculators import AtomfluxCalculator
    from .md import run_md

    atoms = ase.io.read(args.structure)
    if args.repeat:
        atoms = atoms * tuple(args.repeat)
    if args.transport:
        _transport_md(atoms, args)
        return
    calc = AtomfluxCalculator(args.model, uncertainty="energy")
    observers = ()
    if args.max_uncertainty is not None:
        from .uncertainty import UncertaintyGuard

        if not calc.uncertainty:
            raise ValueError(f"--max-uncertainty needs a model with uncertainty; {args.model} has none")
        observers = (UncertaintyGuard(atoms, args.max_uncertainty, action=args.on_extrapolation,
                                      logfile=Path(args.log).with_suffix(".uncertainty.log"),
                                      save=Path(args.trajectory).with_suffix(".extrapolation.extxyz")),)
    summary = run_md(atoms, calc, temperature=args.temperature, steps=args.steps, timestep=args.timestep,
                     ensemble=args.ensemble, trajectory=args.trajectory, logfile=args.log, interval=args.interval,
                     seed=args.seed, observers=observers)
    print(json.dumps(summary, indent=2))


def _transport_md(atoms, args: argparse.Namespace) -> None:
    from .calculators import AtomfluxCalculator
    from .md import run_transport_md

    path = run_transport_md(atoms, AtomfluxCalculator(args.model, uncertainty=False), args.output,
                            temperature=args.temperature, equilibration_steps=args.equilibration,
                            production_steps=args.steps, timestep=args.timestep, stride=args.stride,
                            checkpoint_interval=args.checkpoint, seed=args.seed)
    print(f"heat flux written to {path}; trajectory {Path(args.output) / 'production.traj'}")


def _cmd_transport(args: argparse.Namespace) -> None:
    from .analysis import diffusion
    from .analysis.greenkubo import kappa_from_flux_file
    from .plotting import pyplot, save_figure

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    if args.flux:
        from .analysis.greenkubo import max_frequency_scan

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
    from .analysis.report import compare_report

    max_f = None if args.max_frequency is None else args.max_frequency / 1000.0
    path = compare_report(args.lattice, args.md, args.output_dir, max_frequency=max_f)
    print(Path(path).read_text())
    print(f"report written to {path}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output, quick=args.quick, model=args.model)


def _split_for_calibration(train_path: str, validation_path: str | None, seed: int):
    from .training import read_frames
    from .training.trainer import split_frames

    frames = read_frames(train_path)
    if validation_path:
        return frames, read_frames(validation_path)
    train_frames, validation = split_frames(frames, 0.2, seed)
    print(f"no --validation file: calibrating on {len(validation)} of {len(frames)} structures held out")
    return train_frames, validation


def _cmd_llpr(args: argparse.Namespace) -> None:
    from .io import load_model, save_model
    from .systems import Batch
    from .uncertainty import add_llpr

    base = load_model(args.model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    batches = [Batch.from_atoms(f.atoms, base.cutoff) for f in train_frames]
    val_batches = [Batch.from_atoms(f.atoms, base.cutoff) for f in validation]
    model = add_llpr(base, batches, val_batches, [f.energy for f in validation], n_samples=args.samples)
    save_model(model, args.output)
    print(f"LLPR from {len(batches)} structures, calibration {model.metadata['uncertainty']['calibration']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_ensemble(args: argparse.Namespace) -> None:
    from .io import load_model, save_model
    from .systems import Batch
    from .uncertainty import fit_shallow_ensemble

    base = load_model(args.model)
    train_frames, validation = _split_for_calibration(args.data, args.validation, args.seed)
    model = fit_shallow_ensemble(
        base, [Batch.from_atoms(f.atoms, base.cutoff) for f in train_frames], [f.energy for f in train_frames],
        [Batch.from_atoms(f.atoms, base.cutoff) for f in validation], [f.energy for f in validation],
        n_members=args.members, loss=args.loss, seed=args.seed)
    save_model(model, args.output)
    print(f"shallow ensemble: {model.metadata['uncertainty']}")
    print(f"model with uncertainty written to {args.output}")


def _cmd_calibrate(args: argparse.Namespace) -> None:
    from .io import load_model
    from .training import read_frames
    from .uncertainty.report import calibration_report

    model = load_model(args.model)
    frames = read_frames(args.data)
    reports = calibration_report(model, frames, args.plots)
    print(f"calibration of {args.model} on {len(frames)} structures from {args.data}:")
    for report in reports:
        print(report.line())
    print(f"plots: {args.plots}-*-error-vs-sigma.png, {args.plots}-*-zscores.png")
    if args.json:
        from dataclasses import asdict

        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2))


def _cmd_kappa(args: argparse.Namespace) -> None:
    import ase.io

    from .calculators import AtomfluxCalculator
    from .lattice import phonons, thermal_conductivity

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atoms = ase.io.read(args.structure)
    calc = AtomfluxCalculator(args.model)
    result = thermal_conductivity(atoms, calc, supercell=tuple(args.supercell), mesh=tuple(args.mesh),
                                  temperatures=tuple(args.temperatures), method=args.method,
                                  statistics=args.statistics, displacement=args.displacement, relax=args.relax,
                                  cutoff_pair_distance=args.pair_cutoff,
                                  workdir=out / "phono3py", uncertainty=not args.no_uncertainty)
    print(result.table())
    result.to_json(out / "kappa.json")
    result.plot(out / "kappa.png")
    bands = phonons(atoms, calc, supercell=tuple(args.supercell))
    bands.plot(out / "dispersion.png")
    print(f"written: {out / 'kappa.json'}, {out / 'kappa.png'}, {out / 'dispersion.png'}, force sets in {out / 'phono3py'}")


LAMMPS_HELP = """\
atomflux lammps in.lammps [LAMMPS options, e.g. -var T 300 -log log.lammps]
    run a LAMMPS input script with pair_style atomflux and compute
    atomflux/uncertainty available (also under mpiexec -n N)
atomflux lammps export-pair-python MODEL [-o module.py]
    pair_style python module for a pairwise model (LennardJones, Morse)
atomflux lammps export-table MODEL [-o model.table] [--points N]
    pair_style table file for a pairwise model
"""


def _cmd_lammps(args: argparse.Namespace) -> None:
    words = list(args.arguments)
    if not words or words[0] in ("-h", "--help"):
        print(LAMMPS_HELP)
        return
    if words[0] in ("export-pair-python", "export-table"):
        _lammps_export(words[0], words[1:])
        return
    from .lammps_bridge import PluginBuildError, run_script

    script, lammps_args = words[0], words[1:]
    try:
        lmp = run_script(script, args=lammps_args)
    except (FileNotFoundError, ImportError, PluginBuildError):
        raise
    except Exception as error:  # LAMMPS raises plain Exception with its error text
        raise ValueError(f"LAMMPS stopped with an error: {str(error).strip()}") from None
    lmp.close()
    lmp.finalize()


def _lammps_export(kind: str, words: list[str]) -> None:
    from .lammps_bridge import export_pair_python, export_table

    parser = argparse.ArgumentParser(prog=f"atomflux lammps {kind}")
    parser.add_argument("model", help="model file (or shipped name) of a pair potential")
    parser.add_argument("-o", "--output", help="file to write")
    if kind == "export-table":
        parser.add_argument("--points", type=int, default=5000, help="grid points in r")
    args = parser.parse_args(words)
    stem = Path(args.model).stem
    if kind == "export-pair-python":
        output = args.output or f"atomflux_{stem}.py".replace("-", "_")
        commands = export_pair_python(args.model, output)
    else:
        output = args.output or f"{stem}.table"
        commands = export_table(args.model, output, n_points=args.points)
    print(f"wrote {output}; use it with:\n{commands}")


def _cmd_hamiltonian(args: argparse.Namespace) -> None:
    from .hamiltonian import data as hdata

    if args.action == "data":
        frames = hdata.generate(args.molecules, args.per_molecule, seed=args.seed,
                                reference={"method": args.method, "basis": args.basis}, n_virtual=args.virtual,
                                cache=args.output)
        print(f"{len(frames)} geometries of {', '.join(args.molecules)} ({args.method}/{args.basis} levels, "
              f"STO-3G baseline) written to {args.output}")
    elif args.action == "train":
        from .hamiltonian.train import alignment_text, level_errors, train_hamiltonian
        from .io import save_model

        frames = hdata.read_frames(args.data)
        validation = hdata.read_frames(args.validation) if args.validation else []
        reference = hdata.reference_of(args.data)
        result = train_hamiltonian(frames, validation, epochs=args.epochs, learning_rate=args.lr, seed=args.seed)
        metrics = level_errors(result.model, validation or frames)
        metrics.pop("levels")
        reference["levels"] = alignment_text(reference["n_virtual"])
        save_model(result.model, args.output, metadata={
            "reference": reference, "training_molecules": sorted({f.name for f in frames}),
            "metrics": metrics, "description": f"Hamiltonian head trained on {len(frames)} geometries"})
        print(_level_table(metrics, "validation" if validation else "training"))
        print(f"model written to {args.output}")
    else:
        _hamiltonian_eval(args)


def _level_table(metrics: dict, label: str) -> str:
    lines = [f"orbital-energy errors on the {label} set (MAE, eV): model | plain STO-3G RHF",
             "| molecule | occupied | HOMO | LUMO | STO-3G occupied | STO-3G HOMO | STO-3G LUMO |",
             "|---|---|---|---|---|---|---|"]
    for name, m in list(metrics["per_molecule"].items()) + [("all", metrics)]:
        lines.append(f"| {name} | {m['occupied_mae_eV']:.3f} | {m['homo_mae_eV']:.3f} | {m['lumo_mae_eV']:.3f} | "
                     f"{m['minimal_basis_occupied_mae_eV']:.3f} | {m['minimal_basis_homo_mae_eV']:.3f} | "
                     f"{m['minimal_basis_lumo_mae_eV']:.3f} |")
    return "\n".join(lines)


def _hamiltonian_eval(args: argparse.Namespace) -> None:
    from .calculators import HamiltonianCalculator
    from .hamiltonian import data as hdata
    from .hamiltonian.plots import level_diagram, level_parity_plot
    from .hamiltonian.train import level_errors

    calc = HamiltonianCalculator(args.model)
    frames = hdata.read_frames(args.data)
    metrics = level_errors(calc.model, frames)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    level_parity_plot(metrics, out / "levels-parity.png", title=f"{args.model} on {Path(args.data).name}")
    names = [f.name for f in frames]
    name = args.molecule or names[0]
    if name not in names:
        raise ValueError(f"no molecule {name!r} in {args.data} (it has {', '.join(sorted(set(names)))})")
    k = names.index(name)
    level_diagram(frames[k], metrics["levels"][k]["predicted"], out / f"levels-{name}.png",
                  title=f"{name} (held-out geometry): STO-3G vs model vs {calc.reference.get('method', '')}/"
                        f"{calc.reference.get('basis', '')}")
    print(_level_table(metrics, Path(args.data).name))
    metrics.pop("levels")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"plots: {out / 'levels-parity.png'}, {out / f'levels-{name}.png'}; metrics: {out / 'metrics.json'}")


def _uncertainty_fit_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command taking a trained model, its training data and a calibration set."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("model")
    p.add_argument("data", help="training structures (extxyz)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--validation", help="structures to calibrate on (default: hold out 20 %% of data)")
    p.add_argument("--seed", type=int, default=0)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atomflux", description="ML interatomic potentials with uncertainty.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a potential on an extxyz file")
    p.add_argument("data", help="extxyz (or any ASE-readable) file with energies/forces/stress")
    p.add_argument("-o", "--output", default="model.pt")
    p.add_argument("--cutoff", type=float, default=4.5, help="Å")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--max-angular", type=int, default=3)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--patience", type=int, default=40, help="epochs without validation improvement before stopping")
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--forces-weight", type=float, default=10.0)
    p.add_argument("--stress-weight", type=float, default=100.0)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="errors of a model on an extxyz file, with a parity plot")
    p.add_argument("model", help="model file or shipped model name")
    p.add_argument("data")
    p.add_argument("--plot", default="parity.png")
    p.add_argument("--json", help="also write the metrics (eV units) to this JSON file")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("md", help="ASE molecular dynamics with a model (--transport: heat-flux production run)")
    p.add_argument("structure", help="any ASE-readable structure file")
    p.add_argument("--model", default="demo")
    p.add_argument("--repeat", type=int, nargs=3)
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (production steps with --transport)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs")
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="langevin")
    p.add_argument("--trajectory", default="md.traj")
    p.add_argument("--log", default="md.log")
    p.add_argument("--interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-uncertainty", type=float,
                   help="eV/atom: energy uncertainty above which the run stops (or warns) and saves the frame")
    p.add_argument("--on-extrapolation", choices=["stop", "warn"], default="stop")
    transport = p.add_argument_group("transport runs (--transport): NVT equilibration, then NVE recording the heat flux")
    transport.add_argument("--transport", action="store_true")
    transport.add_argument("--equilibration", type=int, default=2000, help="NVT steps")
    transport.add_argument("--stride", type=int, default=10, help="trajectory frame every N production steps")
    transport.add_argument("--checkpoint", type=int, default=1000, help="checkpoint every N steps (rerun to resume)")
    transport.add_argument("-o", "--output", default="transport-run", help="output folder")
    p.set_defaults(func=_cmd_md)

    p = _uncertainty_fit_parser(sub, "llpr", "add calibrated LLPR uncertainty to a trained model")
    p.add_argument("--samples", type=int, default=16, help="posterior samples for force/stress uncertainty")
    p.set_defaults(func=_cmd_llpr)

    p = _uncertainty_fit_parser(sub, "ensemble", "make a trained model a calibrated shallow ensemble")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--loss", choices=["nll", "crps"], default="nll")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("calibrate", help="calibration report of a model's uncertainty on held-out data")
    p.add_argument("model")
    p.add_argument("data", help="held-out structures with reference energies/forces (extxyz)")
    p.add_argument("--plots", default="calibration", help="prefix of the PNG plots")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("kappa", help="lattice thermal conductivity with phono3py (κ ± model uncertainty)")
    p.add_argument("structure", help="unit cell, any ASE-readable file")
    p.add_argument("--model", default="demo")
    p.add_argument("--supercell", type=int, nargs=3, default=[3, 3, 3])
    p.add_argument("--mesh", type=int, nargs=3, default=[11, 11, 11])
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0], help="K")
    p.add_argument("--method", choices=["rta", "lbte"], default="rta")
    p.add_argument("--statistics", choices=["quantum", "classical"], default="quantum")
    p.add_argument("--displacement", type=float, default=0.03, help="Å")
    p.add_argument("--relax", action="store_true", help="relax positions and cell first")
    p.add_argument("--pair-cutoff", type=float, help="Å: skip fc3 displacement pairs farther apart (fewer supercells)")
    p.add_argument("--no-uncertainty", action="store_true", help="skip the per-member κ")
    p.add_argument("--output-dir", default="kappa-output")
    p.set_defaults(func=_cmd_kappa)

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
    p.add_argument("--output-dir", default="transport-output")
    p.set_defaults(func=_cmd_transport)

    p = sub.add_parser("compare", help="report: lattice κ(T) beside Green–Kubo κ(T)")
    p.add_argument("--lattice", required=True, help="kappa.json from `atomflux kappa`")
    p.add_argument("--md", nargs="+", required=True, help="flux.npz files (one per temperature)")
    p.add_argument("--max-frequency", type=float, help="THz: analyse the flux spectra below this")
    p.add_argument("--output-dir", default="comparison")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("lammps", help="run a LAMMPS input with pair_style atomflux; export pair models",
                       description=LAMMPS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       add_help=False)
    p.add_argument("arguments", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_lammps)

    p = sub.add_parser("hamiltonian", help="Hamiltonian head: make pyscf data, train, evaluate (orbital energies)")
    hsub = p.add_subparsers(dest="action", required=True)
    q = hsub.add_parser("data", help="large-basis MO energies + STO-3G baseline for distorted molecules (pyscf)")
    q.add_argument("--molecules", nargs="+", default=["H2O", "NH3", "CH4", "C2H4", "CH3OH"],
                   help="ASE g2 names of closed-shell molecules")
    q.add_argument("--per-molecule", type=int, default=40, help="distorted geometries per molecule")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--method", default="RHF", help="RHF or a DFT functional pyscf knows (e.g. PBE0)")
    q.add_argument("--basis", default="cc-pvdz", help="reference basis (pyscf name)")
    q.add_argument("--virtual", type=int, default=1, help="virtual levels to fit besides the occupied ones")
    q.add_argument("-o", "--output", default="hamiltonian-data.json")
    q = hsub.add_parser("train", help="train a Hamiltonian model on a data file")
    q.add_argument("data")
    q.add_argument("--validation", help="held-out data file (model selection and the reported errors)")
    q.add_argument("--epochs", type=int, default=1500)
    q.add_argument("--lr", type=float, default=1e-2)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-o", "--output", default="hamiltonian.pt")
    q = hsub.add_parser("eval", help="errors on a data file, level parity plot and level diagram")
    q.add_argument("model")
    q.add_argument("data")
    q.add_argument("--molecule", help="molecule of the level diagram (default: the first in the file)")
    q.add_argument("--output-dir", default="hamiltonian-eval")
    p.set_defaults(func=_cmd_hamiltonian)

    p = sub.add_parser("demo", help="end-to-end demonstration on the shipped model")
    p.add_argument("--output", default="demo-output")
    p.add_argument("--model", default="demo")
    p.add_argument("--quick", action="store_true", help="smaller, faster run (for tests)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .lammps_bridge.plugin import PluginBuildError
    from .uncertainty.guard import ExtrapolationError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ImportError, PluginBuildError) as err:
        print(f"atomflux {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ExtrapolationError as err:
        print(f"atomflux {args.command}: stopped: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
