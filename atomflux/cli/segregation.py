"""Surface segregation: ``atomflux segregation slab.extxyz --model ... --temperature 800``.

Swap Monte Carlo on the slab (optionally hybrid with MD or relaxation) in a
resumable run folder, then the per-layer concentration profile of every
element with block-averaged errors (and, with ``--model-error``, the spread
of runs with each ensemble member), surface enrichment, single-swap
segregation energies and the Langmuir–McLean comparison: ``profile.txt``,
``profile.json``, ``profile.png`` in the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import DefaultsRawDescriptionFormatter, non_negative, positive
from .model_options import DEFAULT_MODEL, add_trust_option

DESCRIPTION = """\
Canonical swap Monte Carlo (fixed composition, Metropolis swaps of unlike atoms)
on a slab at --temperature, then per-layer concentrations of every element.

Layers are found along the surface normal (the non-periodic cell vector, or the
periodic one crossed by vacuum). A sweep is one swap attempt per swappable atom;
the first --equilibration sweeps are discarded, the rest are sampled every
--sample-every sweeps, and errors come from --blocks consecutive blocks.
With --model-error, the same chain is run again with every ensemble member /
LLPR sample of the model (M times the cost): the spread of their profiles is the
model's error bar, reported next to the statistical one.

With --temperatures T1 T2 ... (increasing), one chain runs at each temperature
and neighbouring temperatures exchange configurations every --exchange-every
sweeps (replica exchange: Metropolis on (1/kT_i - 1/kT_j)(E_i - E_j)); the
exchange acceptance of each pair and the profile at every temperature are
reported (profile-<T>K.png per temperature).

The folder (-o) holds run.json, state.npz (samples, checkpoint), profile.txt,
profile.json, profile.png; members/ with --model-error. Interrupted, the same
command resumes; more --sweeps extend a finished run; a folder holding another
run is never overwritten (--restart moves it aside).
"""


def _cmd_segregation(args: argparse.Namespace) -> None:
    import numpy as np

    from ..analysis.segregation import assign_layers
    from ..calculators import make_calculator
    from ..records import model_record
    from ..sampling.run import HybridSettings, run_swap_mc
    from ..structure_files import read_structure

    if args.equilibration >= args.sweeps:
        raise ValueError(f"--equilibration ({args.equilibration}) must be smaller than --sweeps ({args.sweeps}): "
                         "nothing would be left to sample")
    hybrid = HybridSettings(md_every=args.md_every, md_steps=args.md_steps, timestep=args.timestep,
                            relax_every=args.relax_every, fmax=args.fmax)
    hybrid.check()
    atoms = read_structure(args.structure)
    layers = assign_layers(atoms, separation=args.layer_separation)
    region = _region(args.swap_layers, layers) if args.swap_layers else None
    model_spec = args.model or DEFAULT_MODEL
    calc = make_calculator(model_spec, uncertainty=False, trust=args.trust_model, dtype="float64")
    atoms.calc = calc
    atoms.get_potential_energy()  # unknown elements, overlapping atoms ...: refused before the folder is made
    atoms.calc = None
    members = _members(calc, model_spec) if args.model_error else []
    output = Path(args.output)
    temperatures = args.temperatures or [args.temperature]
    settings = dict(temperature=temperatures if len(temperatures) > 1 else temperatures[0], sweeps=args.sweeps,
                    seed=args.seed, region=region, batch_size=args.batch_size, sample_every=args.sample_every,
                    checkpoint_every=args.checkpoint, exchange_every=args.exchange_every, hybrid=hybrid)
    args.on_interrupt = lambda: (f"{output} holds the checkpoint; run the same command again to resume")
    run = run_swap_mc(atoms, calc, output, model=model_record(model_spec, calc), restart=args.restart, **settings)
    member_runs = []
    for k, (name, member) in enumerate(members):
        member_runs.append(run_swap_mc(atoms, member, output / "members" / f"member-{k}",
                                       model=model_record(name, member), restart=args.restart,
                                       label=f"member {k + 1}/{len(members)}", **settings))
    keep = lambda r: r.numbers[np.asarray(r.sweeps) > args.equilibration]  # noqa: E731
    by_temperature = lambda r: getattr(r, "replicas", [r])  # noqa: E731
    exchange = None
    if len(temperatures) > 1:
        exchange = {"pairs_K": [[float(a), float(b)] for a, b in zip(temperatures[:-1], temperatures[1:])],
                    "attempted": run.exchange_attempted.tolist(), "accepted": run.exchange_accepted.tolist(),
                    "acceptance": run.exchange_acceptance.tolist()}
        print("replica exchange acceptance: " + ", ".join(
            f"{a:g}-{b:g} K {rate:.3f} ({n} tries)" for (a, b), rate, n in
            zip(exchange["pairs_K"], run.exchange_acceptance, run.exchange_attempted)))
    for k, temperature in enumerate(temperatures):
        at_t = by_temperature(run)[k]
        print(f"swap Monte Carlo at {temperature:g} K: {at_t.attempted} attempts, acceptance {at_t.acceptance:.3f}")
    _report(atoms, layers, [keep(r) for r in by_temperature(run)],
            [[keep(by_temperature(m)[k]) for m in member_runs] or None for k in range(len(temperatures))],
            temperatures, exchange, calc, args, output)


def _region(spec: str, layers) -> list[int]:
    """Atom indices of the layers in ``spec`` ("0,1,-1": layer indices, negative from the top)."""
    import numpy as np

    try:
        wanted = [int(word) for word in spec.split(",") if word.strip()]
    except ValueError:
        raise ValueError(f"--swap-layers takes comma-separated layer indices (0 = bottom, -1 = top), got {spec!r}") \
            from None
    n = layers.n_layers
    bad = [k for k in wanted if not -n <= k < n]
    if bad or not wanted:
        raise ValueError(f"--swap-layers {spec!r}: the slab has {n} layers (indices 0..{n - 1} or -{n}..-1)")
    chosen = sorted({k % n for k in wanted})
    return np.flatnonzero(np.isin(layers.index, chosen)).tolist()


def _members(calc, spec: str) -> list:
    """(name, calculator) of every ensemble member / LLPR sample of the model."""
    from ..calculators import AtomfluxCalculator
    from ..uncertainty.propagation import members

    potential = getattr(calc, "potential", None)
    if potential is None:
        raise ValueError(f"--model-error needs an atomflux model with an ensemble or LLPR; {spec} is a "
                         f"{type(calc).__name__} (make one with atomflux ensemble / atomflux llpr)")
    return [(f"{spec} member {k}", AtomfluxCalculator(member, uncertainty=False, dtype="float64"))
            for k, member in enumerate(members(potential))]


def _report(atoms, layers, numbers, member_numbers, temperatures, exchange, calc, args: argparse.Namespace,
            output: Path) -> None:
    """Profile table, JSON and plot of every temperature (``numbers``, ``member_numbers``: one entry each)."""
    from ..records import claim_result, write_atomically

    inputs = {"equilibration_sweeps": args.equilibration, "blocks": args.blocks, "bulk_depth": args.bulk_depth,
              "layer_separation": args.layer_separation, "samples": int(len(numbers[0])),
              "members": 0 if member_numbers[0] is None else len(member_numbers[0])}
    stem = claim_result(output, "profile", inputs)
    sections, summaries = [], []
    for k, temperature in enumerate(temperatures):
        profile, text, summary = _profile_at(atoms, layers, numbers[k], member_numbers[k], temperature, calc, args)
        several = len(temperatures) > 1
        sections.append((f"== {temperature:g} K ==\n" if several else "") + text)
        summaries.append(summary)
        plot = output / (f"{stem}-{temperature:g}K.png" if several else f"{stem}.png")
        profile.plot(plot, title=f"{atoms.get_chemical_formula()} at {temperature:g} K")
    if exchange is None:
        result = {"inputs": inputs, **summaries[0]}
    else:
        result = {"inputs": inputs, "replica_exchange": exchange, "temperatures": summaries}
        sections.insert(0, "replica exchange acceptance per neighbouring pair of temperatures: " + ", ".join(
            f"{a:g}-{b:g} K: {rate:.3f} ({accepted}/{attempted})" for (a, b), rate, accepted, attempted in
            zip(exchange["pairs_K"], exchange["acceptance"], exchange["accepted"], exchange["attempted"])))
    text = "\n\n".join(sections)
    write_atomically(output / f"{stem}.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2)))
    write_atomically(output / f"{stem}.txt", lambda tmp: tmp.write_text(text + "\n"))
    print(text)
    print(f"written: {output / stem}.txt, .json, " + (".png" if exchange is None else
                                                      f"-<T>K.png ({len(temperatures)} temperatures)"))


def _profile_at(atoms, layers, numbers, member_numbers, temperature: float, calc, args: argparse.Namespace):
    """The profile at one temperature: (ConcentrationProfile, table text, JSON-able summary)."""
    import numpy as np

    from ..analysis.segregation import (concentration_profile, langmuir_mclean_energy, langmuir_mclean_surface,
                                        layer_segregation_energies)

    profile = concentration_profile(numbers, layers, np.unique(atoms.numbers), n_blocks=args.blocks,
                                    member_numbers=member_numbers)
    summary = profile.to_dict()
    lines = [profile.table()]
    if (layers.depth >= args.bulk_depth).any():
        host = profile.elements[int(np.argmax(np.bincount(atoms.numbers, minlength=120)[np.unique(atoms.numbers)]))]
        rows = [f"\nsurface (outermost layers) vs bulk (layers >= {args.bulk_depth} deep), host {host}; "
                "E_seg single swap (bulk -> surface, at the input positions) and from Langmuir–McLean on the profile:",
                f"{'element':>7} {'c_surface':>17} {'c_bulk':>17} {'enrichment':>17} {'E_seg swap/eV':>13} "
                f"{'E_seg LM/eV':>17} {'c_s LM(E_swap)':>14}"]
        summary["enrichment"] = []
        for item in profile.enrichment(bulk_depth=args.bulk_depth):
            entry = vars(item).copy()
            row = (f"{item.element:>7} {item.surface:8.4f} ± {item.surface_error:.4f} {item.bulk:8.4f} ± "
                   f"{item.bulk_error:.4f} {item.enrichment:+8.4f} ± {item.enrichment_error:.4f}")
            if item.model_error is not None:
                row += f" (model ± {item.model_error:.4f})"
            if item.element != host:
                energies = layer_segregation_energies(atoms, calc, item.element, host, layers)
                e_swap = float((energies[0] + energies[-1]) / 2)
                entry["segregation_energy_single_swap_eV"] = e_swap
                entry["layer_segregation_energies_eV"] = energies.tolist()
                predicted = float(langmuir_mclean_surface(item.bulk, e_swap, temperature)) \
                    if 0 < item.bulk < 1 else float("nan")
                entry["surface_langmuir_mclean_from_single_swap"] = predicted
                row += f" {e_swap:13.4f}"
                if 0 < item.surface < 1 and 0 < item.bulk < 1:
                    e_lm, de_lm = langmuir_mclean_energy(item.surface, item.bulk, temperature,
                                                         item.surface_error, item.bulk_error)
                    entry["segregation_energy_langmuir_mclean_eV"] = [e_lm, de_lm]
                    row += f" {e_lm:8.4f} ± {de_lm:.4f}"
                else:
                    row += f" {'(c = 0 or 1)':>17}"
                row += f" {predicted:14.4f}"
            summary["enrichment"].append(entry)
            rows.append(row)
        lines += rows
    return profile, "\n".join(lines), {"temperature_K": temperature, **summary}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segregation", help="swap Monte Carlo on a slab: per-layer concentration profiles",
                       description=DESCRIPTION, formatter_class=DefaultsRawDescriptionFormatter)
    p.add_argument("structure", help="the slab: any ASE-readable file (the last frame of a trajectory)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model file, shipped name (demo) or third-party model spec; strictly local atomflux models "
                        "get the local batched swap energies, others one energy call per trial")
    add_trust_option(p)
    temperature = p.add_mutually_exclusive_group()
    temperature.add_argument("--temperature", type=positive(float), default=800.0, help="K")
    temperature.add_argument("--temperatures", type=positive(float), nargs="+", metavar="T",
                             help="K, two or more in increasing order: replica exchange, one chain per temperature, "
                                  "neighbouring temperatures exchange configurations every --exchange-every sweeps "
                                  "(profile and exchange acceptance reported per temperature)")
    p.add_argument("--exchange-every", type=positive(int), default=1,
                   help="sweeps between replica exchanges (with --temperatures)")
    p.add_argument("--sweeps", type=positive(int), default=200,
                   help="sweeps in total (one swap attempt per swappable atom each); more extend a finished run")
    p.add_argument("--equilibration", type=non_negative(int), default=50, help="first sweeps not sampled")
    p.add_argument("--sample-every", type=positive(int), default=1, help="sweeps between samples")
    p.add_argument("--blocks", type=positive(int), default=10, help="blocks of the statistical error")
    p.add_argument("--bulk-depth", type=positive(int), default=2,
                   help="layers at least this deep below the nearer surface count as bulk (surface = depth 0)")
    p.add_argument("--swap-layers", metavar="LIST",
                   help="only atoms of these layers swap: comma-separated indices, 0 = bottom, -1 = top "
                        "(e.g. --swap-layers=-1,-2,-3 for the three top layers; write = before a leading minus) (default: all atoms)")
    p.add_argument("--layer-separation", type=positive(float),
                   help="Å: height gap that starts a new layer (default: the natural break of the height gaps)")
    p.add_argument("--seed", type=int, default=0, help="random seed (swaps, MD velocities and thermostat)")
    p.add_argument("--batch-size", type=positive(int), default=4,
                   help="trial swaps per energy call (the Markov chain is the same for any value; at high acceptance most of a large batch goes stale: docs/benchmarks.md)")
    p.add_argument("--model-error", action="store_true",
                   help="also run the chain with every ensemble member / LLPR sample: their spread is the model error")
    hybrid = p.add_argument_group("hybrid MC/MD (atoms move between sweeps; off by default)")
    hybrid.add_argument("--md-every", type=non_negative(int), default=0,
                        help="sweeps between Langevin MD segments at --temperature (0: none)")
    hybrid.add_argument("--md-steps", type=positive(int), default=20, help="MD steps per segment")
    hybrid.add_argument("--timestep", type=positive(float), default=2.0, help="fs")
    hybrid.add_argument("--relax-every", type=non_negative(int), default=0,
                        help="sweeps between FIRE relaxations (0: none)")
    hybrid.add_argument("--fmax", type=positive(float), default=0.05, help="eV/Å: relaxation force criterion")
    p.add_argument("--checkpoint", type=positive(int), default=10,
                   help="sweeps between checkpoints (a multiple of --sample-every)")
    p.add_argument("-o", "--output", default="segregation-run", help="run folder")
    p.add_argument("--restart", action="store_true",
                   help="the folder holds another run: move it aside (never deleted) and start over")
    p.set_defaults(func=_cmd_segregation)
