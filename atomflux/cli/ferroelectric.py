"""``atomflux ferroelectric``: local dipoles, order parameters, T_c and hysteresis from NPT ramp folders."""

from __future__ import annotations

import argparse
import json

from .arguments import DefaultsRawDescriptionFormatter, non_negative, positive

DESCRIPTION = """\
Reads folders written by `atomflux md --ensemble npt --temperature-ramp T0:T1:dT`
(one folder per size and direction: heating when T1 > T0, cooling otherwise).
For every frame: the local dipole of each B-centred cell (8 A corners x 1/8,
6 X faces x 1/2) from Born charges (--born, P in uC/cm^2), or without --born the
descriptor proxy (l = 1 neighbour density around B, cutoff 3.0 A, width 0.5 A;
units A^3). Per temperature: <P>, <|P|>, chi = N(<P^2> - <|P|>^2)/T, the Binder
cumulant U4 = 1 - <|P|^4>/(3<|P|^2>^2) (block-jackknife errors), the phase
(cubic/tetragonal/orthorhombic/rhombohedral from the sorted |P| components above
--phase-threshold), correlation lengths along/across the polar axis (supercells
of >= 4 cells per side). Over sizes: T_c from the chi peaks and the Binder
crossings; heating vs cooling: the hysteresis.

Local-dipole maps: for each run and temperature (--map-temperatures), the
local dipoles of the LAST frame there (instantaneous, not time-averaged: an
average would wash out the disordered dipoles of the cubic phase), in
--map-layers evenly spaced layers of cells normal to the lattice axis closest
to the mean polarization: in-plane p as arrows, out-of-plane p as colour.

Writes <output>/ferroelectric.csv, .json (T_c, hysteresis), .png (P, chi, U4 vs T),
ferroelectric-maps/<size>-<direction>-<T>K.png; results of other inputs are
kept (ferroelectric-2 ...).
"""


def _born(text: str) -> dict[str, float]:
    charges = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            charges[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"Born charges are SPECIES=Z,... (e.g. Ba=2.77,Ti=6.26,O=-3.01), "
                                             f"got {text!r}") from None
    return charges


def _cmd_ferroelectric(args: argparse.Namespace) -> None:
    from ..analysis.ferroelectric_report import analyse_ramp, unanalysed_temperatures, write_report

    species = tuple(args.species)
    threshold = args.phase_threshold
    if threshold is None and args.born is not None:
        threshold = 5.0
    if args.map_temperatures is not None:
        missing = unanalysed_temperatures(args.runs, args.map_temperatures, args.temperature_window)
        if missing:
            raise ValueError(f"no run has analysed {', '.join(f'{t:g}' for t in missing)} K (a finished temperature "
                             "inside --temperature-window); give --map-temperatures from the ramps' temperatures")
    map_temperatures = () if args.map_layers == 0 else args.map_temperatures
    ramps = [analyse_ramp(folder, species, args.born, discard=args.discard, blocks=args.blocks, threshold=threshold,
                         window=args.temperature_window, map_temperatures=map_temperatures)
             for folder in args.runs]
    units = "uC/cm^2" if args.born is not None else "A^3 (descriptor proxy)"
    inputs = {"runs": [str(r) for r in args.runs], "species": species, "born": args.born, "discard": args.discard,
              "blocks": args.blocks, "phase_threshold": threshold,
              "temperature_window_K": args.temperature_window, "map_temperatures_K": args.map_temperatures,
              "map_layers": args.map_layers}
    paths = write_report(ramps, args.output, inputs, units, map_layers=args.map_layers)
    for ramp in ramps:
        for row in ramp.rows:
            print(f"{ramp.size} {ramp.direction} T = {row['temperature_K']:g} K: <|P|> = {row['mean_abs']:.4g} "
                  f"± {row['mean_abs_err']:.2g} {units}, chi = {row['susceptibility']:.3g}, "
                  f"U4 = {row['binder']:.3f}" + (f", {row['phase']}" if "phase" in row else ""))
    summary = json.loads(paths["summary"].read_text())
    for direction in ("heating", "cooling"):
        if direction in summary:
            entry = summary[direction]
            peaks = ", ".join(f"{size} {t:.0f} K" for size, t in entry["susceptibility_peaks_K"].items())
            binder = (f"{entry['binder_estimate_K']:.0f} K" if entry["binder_estimate_K"] is not None
                      else f"none ({entry['binder_note']})")
            print(f"T_c ({direction}): chi peaks {peaks}; Binder crossing {binder}")
    print(f"written {', '.join(str(p) for p in paths.values())}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ferroelectric", help="local dipoles, polarization order parameters, T_c from NPT ramps",
                       description=DESCRIPTION, formatter_class=DefaultsRawDescriptionFormatter)
    p.add_argument("runs", nargs="+", help="folders of `atomflux md --ensemble npt --temperature-ramp` runs")
    p.add_argument("--species", nargs=3, default=["Ba", "Ti", "O"], metavar=("A", "B", "X"),
                   help="A (corner), B (cell centre) and X (face) species of the ABX3 perovskite")
    p.add_argument("--born", type=_born,
                   help="Born effective charges SPECIES=Z,... in e (nominal BaTiO3: Ba=2.77,Ti=6.26,O=-3.01); "
                        "they must sum to zero per formula unit; without it: the descriptor proxy")
    p.add_argument("--phase-threshold", type=positive(float),
                   help="a polarization component counts as polar above this (P's units; default 5 uC/cm^2 with "
                        "--born, no phase assignment for the descriptor proxy unless given)")
    p.add_argument("--discard", type=non_negative(int), default=0,
                   help="frames dropped at the start of each temperature (equilibration)")
    p.add_argument("--temperature-window", type=non_negative(float), nargs=2, metavar=("TMIN", "TMAX"),
                   help="K: analyse only the temperatures inside [TMIN, TMAX] (e.g. leave out those where the model "
                        "left its validated range); default: every finished temperature")
    p.add_argument("--map-temperatures", type=non_negative(float), nargs="+", metavar="T",
                   help="K: draw local-dipole maps (last frame) at these temperatures only; default: every analysed "
                        "temperature of every run")
    p.add_argument("--map-layers", type=non_negative(int), default=3,
                   help="layers of cells per map (evenly spaced along the axis closest to the mean polarization); "
                        "0: no maps")
    p.add_argument("--blocks", type=positive(int), default=5, help="blocks for the jackknife errors")
    p.add_argument("-o", "--output", default="ferroelectric", help="output folder")
    p.set_defaults(func=_cmd_ferroelectric)
