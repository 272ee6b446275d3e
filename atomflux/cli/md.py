"""Molecular dynamics: ``atomflux md`` (and ``--transport`` heat-flux runs).

Plain runs write files (``--trajectory``, ``--log``, with ``--max-uncertainty``
also ``<trajectory>.uncertainty.log`` and ``<trajectory>.extrapolation.extxyz``,
with ``--max-novelty`` ``<trajectory>.novelty.log`` and ``<trajectory>.novel.extxyz``)
and their record ``<trajectory>.json`` (settings, model fingerprint, version,
summary).  Files of another run are never overwritten: the command stops and
names the differences; ``--restart`` moves the old files aside.  The same
command again returns the finished run's summary.  Plain runs have no
checkpoints; ``--transport`` runs write a folder (``-o``) and resume.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import DefaultsRawDescriptionFormatter, non_negative, positive
from .model_options import DEFAULT_MODEL, add_model_options

DESCRIPTION = """\
Plain runs write --trajectory and --log (with --max-uncertainty also
<trajectory>.uncertainty.log and <trajectory>.extrapolation.extxyz, with
--max-novelty <trajectory>.novelty.log and <trajectory>.novel.extxyz) and the record
<trajectory>.json (settings, model fingerprint, version, summary). They have no
checkpoints: interrupted, the same command runs again from the start.

--transport runs write a folder (-o: run.json, flux.npz, production.traj,
checkpoints); interrupted, the same command resumes from the last checkpoint, and
more --steps extend a finished run. --replicas R runs R independent copies (seeds
--seed, --seed + 1, ...) together, one batched model evaluation per step: flux.npz
holds heat_flux [steps, R, 3], production.traj replica 0.

Outputs of another run (other structure, model or settings) are never overwritten
or mixed: the command stops and lists the differences; --restart moves the old
outputs aside (never deleted). The same command on a finished run reports it.
"""


def _cmd_md(args: argparse.Namespace) -> None:
    from ..md import check_md_settings
    from ..structure_files import read_structure

    thermostat = args.transport or args.ensemble in ("langevin", "npt")
    if args.transport and args.ensemble == "npt":
        raise ValueError("--transport runs are NVT then NVE; drop --ensemble npt (or --transport)")
    if args.ensemble != "npt" and (args.temperature_ramp or args.pressure != [0.0]):
        raise ValueError("--pressure and --temperature-ramp apply to --ensemble npt; add it")
    if args.replicas != 1 and not args.transport:
        raise ValueError("--replicas applies to --transport runs only; add --transport (or drop --replicas)")
    check_md_settings(temperature=args.temperature, thermostat=thermostat)
    atoms = read_structure(args.structure)
    if args.repeat:
        atoms = atoms * tuple(args.repeat)
    models = args.model or [DEFAULT_MODEL]
    if args.output is None:
        args.output = "npt-run" if args.ensemble == "npt" else "transport-run"
    if args.transport:
        _transport_md(atoms, models, args)
    elif args.ensemble == "npt":
        _npt_md(atoms, models, args)
    else:
        _plain_md(atoms, models, args)


def _plain_md(atoms, models: list[str], args: argparse.Namespace) -> None:
    from ..calculators import make_calculator
    from ..md import run_md
    from ..records import finish_run, fingerprint, model_record, open_run_files

    calc = make_calculator(models, uncertainty="energy", trust=args.trust_model, dtype=_precision(models, args))
    atoms.calc = calc
    atoms.get_potential_energy()  # unknown elements, overlapping atoms ...: refused before any file is written
    if args.max_uncertainty is not None and not getattr(calc, "uncertainty", False):
        raise ValueError(f"--max-uncertainty needs a model with uncertainty; {models[0]} has none "
                         "(give several --model options for a committee, or add LLPR: atomflux llpr)")
    if args.max_uncertainty is RECORDED:
        args.max_uncertainty = recorded_guard_threshold(calc, models)
        print(f"--max-uncertainty {args.max_uncertainty:.4g} eV/atom: the guard threshold recorded in {models[0]}")
    if args.max_novelty is not None:
        from ..uncertainty.novelty import novelty_of

        if len(models) != 1:
            raise ValueError("--max-novelty grades the descriptors of one model; give a single --model (a committee "
                             "has no single descriptor)")
        novelty_of(calc.potential, str(models[0]))
    trajectory, log = Path(args.trajectory), Path(args.log)
    record = trajectory.with_suffix(".json")
    guard_files = (trajectory.with_suffix(".uncertainty.log"), trajectory.with_suffix(".extrapolation.extxyz"))
    novelty_files = (trajectory.with_suffix(".novelty.log"), trajectory.with_suffix(".novel.extxyz"))
    outputs = [trajectory, log] + (list(guard_files) if args.max_uncertainty is not None else []) + \
        (list(novelty_files) if args.max_novelty is not None else [])
    if len({p.resolve() for p in outputs + [record]}) < len(outputs) + 1:
        raise ValueError(f"--trajectory {trajectory} and --log {log} name the same file; give two names")
    parameters = {"structure": fingerprint(atoms), "formula": atoms.get_chemical_formula(),
                  "temperature_K": args.temperature, "steps": args.steps, "timestep_fs": args.timestep,
                  "ensemble": args.ensemble, "seed": args.seed, "interval": args.interval,
                  "max_uncertainty": args.max_uncertainty, "on_extrapolation": args.on_extrapolation}
    if args.max_novelty is not None:  # absent otherwise: runs recorded before the option compare as before
        parameters["max_novelty"] = args.max_novelty
    old = open_run_files(record, outputs, "md", parameters, model_record(" ".join(map(str, models)), calc),
                         restart=args.restart)
    if old is not None and old.get("finished"):
        print(f"{trajectory} already holds this run (same structure, model and settings; finished "
              f"{old['finished']}); pass --restart to run it again. Its summary:")
        print(json.dumps(old.get("summary", {}), indent=2))
        return
    if old is not None:
        print(f"{trajectory} holds this run, interrupted; plain MD has no checkpoints: running it again from step 0")
        guard_files[1].unlink(missing_ok=True)  # appended to by the guard; the rerun writes the same frames again
        novelty_files[1].unlink(missing_ok=True)
    args.on_interrupt = lambda: (f"{trajectory} and {log} hold the steps done so far; plain MD cannot resume: the "
                                 "same command runs it again from the start (use --transport for resumable runs)")
    from ..uncertainty import UncertaintyGuard

    observers = ()
    if args.max_uncertainty is not None:
        observers += (UncertaintyGuard(atoms, args.max_uncertainty, action=args.on_extrapolation,
                                       logfile=guard_files[0], save=guard_files[1]),)
    if args.max_novelty is not None:
        observers += (UncertaintyGuard(atoms, args.max_novelty, quantity="novelty", action=args.on_extrapolation,
                                       logfile=novelty_files[0], save=novelty_files[1]),)
    try:
        summary = run_md(atoms, calc, temperature=args.temperature, steps=args.steps, timestep=args.timestep,
                         ensemble=args.ensemble, trajectory=trajectory, logfile=log, interval=args.interval,
                         seed=args.seed, observers=observers)
    finally:
        for guard in observers:
            guard.close()
    for guard in observers:
        summary["checks_above_max_novelty" if guard.quantity == "novelty" else "checks_above_max_uncertainty"] = \
            guard.n_exceeded
    finish_run(record, summary)
    summary["outputs"] = {"trajectory": str(trajectory), "log": str(log), "record": str(record)}
    print(json.dumps(summary, indent=2))


def recorded_guard_threshold(calc, models: list[str]) -> float:
    """The energy guard threshold (eV/atom) recorded in a distilled student's file: the largest energy σ per atom
    the validated student showed in its own MD at the conditions it was validated for."""
    if len(models) != 1:
        raise ValueError("--max-uncertainty without a number reads the threshold recorded in one distilled "
                         "student's file; with several --model options give the threshold (eV/atom)")
    metadata = getattr(getattr(calc, "potential", None), "metadata", None) or {}
    guard = (metadata.get("distillation") or {}).get("guard_thresholds")
    if not guard or guard.get("energy_eV_per_atom") is None:
        reason = ("was not validated (its distillation did not converge)" if metadata.get("distillation")
                  else "is not a distilled student (atomflux distill)")
        raise ValueError(f"--max-uncertainty without a number needs the guard threshold recorded in the model "
                         f"file, and {models[0]} has none: it {reason}; give the threshold in eV/atom")
    return float(guard["energy_eV_per_atom"])


def _npt_md(atoms, models: list[str], args: argparse.Namespace) -> None:
    from ..calculators import make_calculator
    from ..md_npt import ramp_temperatures, run_npt_ramp

    if args.max_uncertainty is not None:
        raise ValueError("--max-uncertainty applies to plain NVE/Langevin MD; check the structures of an NPT run "
                         "with a plain run or `atomflux calibrate`")
    if args.max_novelty is not None:
        raise ValueError(NOVELTY_PLAIN_ONLY)
    calc = make_calculator(models, uncertainty=False, trust=args.trust_model, dtype=_precision(models, args))
    temperatures = ramp_temperatures(args.temperature_ramp) if args.temperature_ramp else [args.temperature]
    args.on_interrupt = lambda: (f"{args.output} holds the temperatures finished so far (thermo.json); run the "
                                 "same command again to continue with the next one")
    thermo = run_npt_ramp(atoms, calc, args.output, temperatures, steps=args.steps,
                          pressure=args.pressure[0] if len(args.pressure) == 1 else args.pressure,
                          timestep=args.timestep, thermostat_time=args.thermostat_time,
                          barostat_time=args.barostat_time, stride=args.interval, seed=args.seed,
                          restart=args.restart, model_spec=" ".join(map(str, models)))
    for row in json.loads(thermo.read_text()):
        print(f"T = {row['temperature_K']:g} K: <T> = {row['mean_temperature_K']:.1f} K, "
              f"<P> = {row['mean_pressure_GPa']:.3f} GPa, <V> = {row['mean_volume']:.2f} Å³")
    print(f"trajectories {Path(args.output) / 'stage-*.traj'} (one per temperature); table {thermo}")


def _precision(models: list[str], args: argparse.Namespace) -> str | None:
    """Model arithmetic of --precision (see :func:`atomflux.io.md_dtype`)."""
    from ..io import md_dtype

    return md_dtype(args.precision, models)


def _transport_md(atoms, models: list[str], args: argparse.Namespace) -> None:
    from ..calculators import AtomfluxCalculator
    from ..md import run_transport_md, transport_status

    if len(models) != 1:
        raise ValueError("--transport records the heat flux of one model: give a single --model")
    if args.max_uncertainty is not None:
        raise ValueError("--max-uncertainty applies to plain MD only; transport runs use the model without "
                         "uncertainty (check the structures with `atomflux calibrate` or a plain run first)")
    if args.max_novelty is not None:
        raise ValueError(NOVELTY_PLAIN_ONLY)
    calc = AtomfluxCalculator(models[0], uncertainty=False, trust=args.trust_model, dtype=_precision(models, args))
    args.on_interrupt = lambda: (f"{transport_status(args.output)}; run the same command again to resume "
                                 "(it continues from the last checkpoint)")
    path = run_transport_md(atoms, calc, args.output, temperature=args.temperature,
                            equilibration_steps=args.equilibration, production_steps=args.steps,
                            timestep=args.timestep, stride=args.stride, checkpoint_interval=args.checkpoint,
                            seed=args.seed, restart=args.restart, model_spec=models[0], replicas=args.replicas)
    print(f"heat flux written to {path}; trajectory {Path(args.output) / 'production.traj'}; "
          f"record {Path(args.output) / 'run.json'}")


#: ``--max-uncertainty`` given without a number: use the threshold recorded in the model file (not a string,
#: which argparse would pass through the option's number type)
RECORDED = object()

#: the one line for --max-novelty with an NPT or transport run
NOVELTY_PLAIN_ONLY = ("--max-novelty applies to plain NVE/Langevin MD; check the structures of this run with a plain "
                      "run or `atomflux novelty MODEL TRAIN.extxyz -o OUT.pt --check STRUCTURES`")

#: ``--max-novelty`` given without a number (grade 1 = the farthest training atom; held-out snapshots of the
#: training kind reach ~1.3, a Cu3 island the model never saw ≥ 1.5: docs/benchmarks.md, bench_novelty)
DEFAULT_MAX_NOVELTY = 1.5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("md", help="ASE molecular dynamics with a model (--transport: heat-flux production run)",
                       description=DESCRIPTION, formatter_class=DefaultsRawDescriptionFormatter)
    p.add_argument("structure", help="any ASE-readable structure file (the last frame of a trajectory)")
    add_model_options(p, committee=True)
    p.add_argument("--repeat", type=positive(int), nargs=3, help="replicate the structure n1 n2 n3 times")
    p.add_argument("--temperature", type=non_negative(float), default=300.0,
                   help="K: initial temperature and thermostat target (> 0 with a thermostat)")
    p.add_argument("--steps", type=positive(int), default=1000, help="MD steps (production steps with --transport)")
    p.add_argument("--timestep", type=positive(float), default=2.0, help="fs")
    p.add_argument("--ensemble", choices=["nve", "langevin", "npt"], default="langevin",
                   help="NVE (velocity Verlet), NVT (Langevin), or NPT (MTK Nosé–Hoover chains, fully flexible "
                        "cell; writes a folder -o, see the NPT options)")
    p.add_argument("--trajectory", default="md.traj", help="ASE trajectory file (plain runs)")
    p.add_argument("--log", default="md.log", help="MD log file (plain runs)")
    p.add_argument("--interval", type=positive(int), default=10, help="write trajectory and log every N steps")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities, thermostat)")
    p.add_argument("--precision", choices=["auto", "float32", "float64", "native"], default="auto",
                   help="model arithmetic (energies, forces and stress are summed in float64 either way): auto = "
                        "float32 for atomflux models (~1.6x faster; deviation from float64 10^4x below the demo "
                        "models' own error, same NVE drift: docs/benchmarks.md), the model's own for third-party "
                        "specs; native = the model's own")
    p.add_argument("--max-uncertainty", type=positive(float), nargs="?", const=RECORDED,
                   help="eV/atom: energy uncertainty above which the run stops (or warns) and saves the frame; "
                        "without a number: the guard threshold recorded in a distilled student (atomflux distill)")
    p.add_argument("--max-novelty", type=positive(float), nargs="?", const=DEFAULT_MAX_NOVELTY, metavar="GRADE",
                   help="dimensionless: largest per-atom novelty grade (descriptor distance from the training atoms; "
                        "1 = the farthest training atom; held-out structures like the training ones reach ~1.3) "
                        "above which the run stops (or warns) and saves the frame; without a number: "
                        f"{DEFAULT_MAX_NOVELTY:g}. Needs a model with novelty data (atomflux train writes them; "
                        "atomflux novelty adds them, --check shows your held-out grades); sees environments that "
                        "every fit extrapolates alike, where σ stays small")
    p.add_argument("--on-extrapolation", choices=["stop", "warn"], default="stop",
                   help="what to do when --max-uncertainty or --max-novelty is exceeded (warn: rate-limited "
                        "warnings)")
    p.add_argument("--restart", action="store_true",
                   help="outputs of another run are in the way: move them aside (never deleted) and start over")
    npt = p.add_argument_group("NPT runs (--ensemble npt): one folder (-o) with a trajectory per temperature")
    npt.add_argument("--pressure", type=float, nargs="+", default=[0.0], metavar="GPa",
                     help="target pressure, GPa, compressive positive: one value (hydrostatic) or six "
                          "(xx yy zz yz xz xy, a pressure tensor as LAMMPS's fix npt pxx ... targets)")
    npt.add_argument("--barostat-time", type=positive(float), help="fs (default 1000 timesteps)")
    npt.add_argument("--thermostat-time", type=positive(float), help="fs (default 100 timesteps)")
    npt.add_argument("--temperature-ramp", metavar="T0:T1:dT",
                     help="K: run --steps steps at T0, T0±dT, ... T1 in turn (heating when T1 > T0, cooling when "
                          "T1 < T0), cell and velocities carried over; each finished temperature is a checkpoint "
                          "(rerun the same command to resume); trajectory frames every --interval steps")
    transport = p.add_argument_group("transport runs (--transport): NVT equilibration, then NVE recording the heat flux")
    transport.add_argument("--transport", action="store_true",
                           help="NVT equilibration, then NVE production recording the heat flux")
    transport.add_argument("--equilibration", type=non_negative(int), default=2000, help="NVT steps")
    transport.add_argument("--stride", type=positive(int), default=10, help="trajectory frame every N production steps")
    transport.add_argument("--checkpoint", type=positive(int), default=1000,
                           help="checkpoint every N steps (rerun the same command to resume)")
    transport.add_argument("--replicas", type=positive(int), default=1,
                           help="independent replicas (replica r with seed --seed + r) advanced together, one batched "
                                "model evaluation per step; flux.npz then holds [steps, replicas, 3] heat fluxes and "
                                "production.traj replica 0")
    transport.add_argument("-o", "--output",
                           help="output folder of --transport runs (run.json, flux.npz, production.traj, "
                                "checkpoints; default transport-run) and --ensemble npt runs (run.json, thermo.json, "
                                "stage-<k>.traj, checkpoint.traj; default npt-run)")
    p.set_defaults(func=_cmd_md)

