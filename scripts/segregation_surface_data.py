"""Does more surface data fix a compressed model's segregation energies?  (issue 20, five EMT metals)

Trains the 4-pseudo-element model of ``tests/test_segregation_emt5.py`` (Ni, Cu, Pd, Ag, Au) with the
surface categories of ``reference_data.alloy_surface_dataset`` (slabs, surface vacancies) ``--surface-factor``
times larger than the bulk ones, and prints the single-swap segregation energy (bulk → surface layer of
Cu(111)) of each solute from the model and from ASE's EMT.  The model is not kept.

    python scripts/segregation_surface_data.py [--surface-factor 2] [--output seg-surface-data.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from ase.build import fcc111
from ase.calculators.emt import EMT

from atomflux.analysis.segregation import assign_layers, layer_segregation_energies
from atomflux.reference_data import FCC_LATTICE, SURFACE_CATEGORIES, alloy_surface_dataset
from atomflux.training import TrainConfig, read_frames, train

METALS = ("Ni", "Cu", "Pd", "Ag", "Au")
SOLUTES = ("Ni", "Pd", "Ag", "Au")
SURFACE = ("surface", "surface_vacancy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surface-factor", type=int, default=2, help="surface data per bulk datum")
    parser.add_argument("--per-category", type=int, default=48, help="snapshots per bulk category")
    parser.add_argument("--output", default="seg-surface-data.json", help="JSON with the energies")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = alloy_surface_dataset(METALS, per_category=args.per_category * args.surface_factor, snapshots=3, seed=0)
    chosen = [atoms for category in SURFACE_CATEGORIES
              for atoms in (data[category] if category in SURFACE else data[category][:args.per_category])]
    config = TrainConfig(epochs=200, batch_size=8, learning_rate=3e-3, energy_weight=10.0, patience=30,
                         progress=False, model={"n_pseudo": 4, "hidden": [32, 32]})
    model = train(read_frames(chosen), config).potential
    slab = fcc111("Cu", size=(3, 3, 5), a=FCC_LATTICE["Cu"], vacuum=7.0)
    layers = assign_layers(slab)
    result = {"surface_factor": args.surface_factor, "per_category": args.per_category, "solutes": {}}
    for solute in SOLUTES:
        reference = layer_segregation_energies(slab, EMT(), solute, "Cu", layers)
        ours = layer_segregation_energies(slab, model, solute, "Cu", layers)
        result["solutes"][solute] = {"emt_eV": reference.tolist(), "model_eV": ours.tolist()}
        print(f"{solute}: E_seg surface EMT {reference[0]:+.3f} model {ours[0]:+.3f} eV "
              f"(difference {ours[0] - reference[0]:+.3f})")
    print(f"largest difference {max(np.abs(np.subtract(v['model_eV'], v['emt_eV'])).max() for v in result['solutes'].values()):.3f} eV")
    with open(args.output, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
