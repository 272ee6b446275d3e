"""MACE (``mace-torch``) models behind the atomflux Potential contract.

MACE builds its edge vectors as ``positions[receiver] - positions[sender] +
shifts``.  The adapter passes atomflux's pairs as ``edge_index = (i, j)`` with
all positions zero and ``shifts = r_ij``, so MACE's vectors *are* atomflux's
pair vectors and :func:`atomflux.evaluate` differentiates with respect to them
(MACE's own force/stress code is not run).  The model runs in its own dtype.

MACE is a layer stack: ``forward(..., refresh=, owned=)`` runs mace-torch's own
LAMMPS path (``lammps_mliap``): only the first ``owned`` atoms get node updates,
and in every interaction after the first the senders' features (after its
``linear_up``) are padded with ghost rows and refreshed by ``refresh(features)``,
which is how ``pair_style atomflux`` exchanges ghost atoms' features between
layers on several MPI ranks (the per-layer halo of
:mod:`atomflux.lammps_bridge.whole_system`) and how one rank's heat-flux step
runs on a cluster of images without updating the images.

mace-torch 0.3.16 pins e3nn 0.4.4, which cannot share an environment with
sevenn (e3nn 0.6): install ``atomflux[mace]`` in an environment of its own.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

import torch
from ase.data import chemical_symbols

from ..systems import Batch
from . import ForeignPotential, check_trusted, require


def import_mace():
    """Import mace-torch without leaving its process-wide ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` behind
    (mace sets it on import for e3nn 0.4.4; left set, it would make every later ``torch.load``
    without an explicit ``weights_only`` unpickle)."""
    before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    try:
        return require("mace", "mace"), require("mace.modules", "mace")
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = before


class MacePotential(ForeignPotential):
    """A mace-torch ``MACE`` or ``ScaleShiftMACE`` model as an atomflux potential.

    Parameters
    ----------
    model
        The mace-torch model (single head).
    spec
        Model spec that reloads it (``"mace:PATH"``), or ``None`` for an object.

    Outputs: ``energy`` [N] (eV, MACE's node energies), ``features`` [N, F]:
    the input of the last linear layer of the last readout, times the
    interaction-energy scale of a ``ScaleShiftMACE``.
    """

    #: ``forward`` takes ``refresh=`` (node features between interaction layers)
    layer_stack = True
    #: ``forward`` also takes ``owned=`` and updates only those atoms' nodes (ghosts' features come from ``refresh``)
    skips_ghost_updates = True
    #: the atom of a pair (i, j) that receives its message: j (edge_index = (i, j) is (sender, receiver))
    pair_receiver = 1

    def __init__(self, model: torch.nn.Module, spec: str | None = None) -> None:
        if len(getattr(model, "heads", ["Default"])) != 1:
            raise ValueError(f"multi-head MACE models ({', '.join(model.heads)}) are not supported by the "
                             "atomflux adapter; use mace-torch's MACECalculator(head=...) directly")
        numbers = [int(z) for z in model.atomic_numbers]
        cutoff = float(model.r_max)
        layers = int(model.num_interactions)
        super().__init__([chemical_symbols[z] for z in numbers], cutoff, layers * cutoff, spec or "")
        native = next(model.parameters()).dtype
        self.dtypes = (native, torch.float64 if native == torch.float32 else torch.float32)
        self.n_layers = layers
        self.model = model.eval()
        linears = [m for m in model.readouts[-1].modules() if type(m).__name__ == "Linear"]
        linears[-1].register_forward_pre_hook(self._keep_readout_input)
        self._readout_input: torch.Tensor | None = None
        later = list(model.interactions)[1:]
        for interaction in later:      # mace-torch's hook for LAMMPS's exchange, on this adapter's copy
            interaction.handle_lammps = self._exchange_senders
        self._refresh: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._sender_widths = [int(interaction.linear_up.irreps_out.dim) for interaction in later]
        self._feature_width = int(linears[-1].irreps_in.dim)
        #: widest senders' features of an interaction after the first (float values per atom)
        self.halo_width = max(self._sender_widths, default=0)

    def _keep_readout_input(self, module: torch.nn.Module, args: tuple) -> None:
        self._readout_input = args[0]

    def _exchange_senders(self, node_feats: torch.Tensor, lammps_class: Any, lammps_natoms: tuple[int, int],
                          first_layer: bool) -> torch.Tensor:
        """The owned atoms' features [owned, F] with zero ghost rows appended, refreshed (ghosts from owners)."""
        if lammps_class is None or first_layer:
            return node_feats
        ghosts = node_feats.new_zeros((lammps_natoms[1], node_feats.shape[1]))
        return self._refresh(torch.cat([node_feats, ghosts]))

    def _exchanges_only(self, n_atoms: int, vectors: torch.Tensor,
                        refresh: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        """A rank that owns no atom (mace-torch cannot update zero nodes): zero energies and features, through
        the same exchanges as the other ranks' interactions make, forward and backward (they are collective)."""
        link = 0.0 * vectors.sum()
        for width in self._sender_widths:
            senders = torch.zeros((n_atoms, width), dtype=vectors.dtype, device=vectors.device) + link
            link = 0.0 * refresh(senders).sum()
        zeros = torch.zeros((n_atoms, self._feature_width + 1), dtype=vectors.dtype, device=vectors.device) + link
        return {"energy": zeros[:, 0], "features": zeros[:, 1:]}

    def config(self) -> dict[str, Any]:
        if not self.spec:
            raise NotImplementedError("this MACE model was given as an object, so no file can refer to it; "
                                      "load it by spec ('mace:PATH')")
        return super().config()

    def forward(self, batch: Batch, vectors: torch.Tensor,
                refresh: Callable[[torch.Tensor], torch.Tensor] | None = None,
                owned: int | None = None) -> dict[str, torch.Tensor]:
        """Per-atom energies and features.

        With ``refresh`` (node features [N, F] → [N, F]) only the first ``owned`` atoms get node
        updates and energies (the others are ghosts: zero energy and features), and the senders'
        features of each interaction after the first are refreshed.
        """
        index = self.species_index(batch.numbers)
        node_attrs = torch.nn.functional.one_hot(index, len(self.species)).to(vectors.dtype)
        n_atoms = len(batch.numbers)
        if refresh is None:
            counts = torch.bincount(batch.system, minlength=batch.n_systems)
            data = {"node_attrs": node_attrs,
                    "positions": torch.zeros((n_atoms, 3), dtype=vectors.dtype, device=vectors.device),
                    "edge_index": batch.pairs.T, "shifts": vectors, "unit_shifts": batch.shifts, "cell": batch.cell,
                    "batch": batch.system, "ptr": torch.cat([counts.new_zeros(1), counts.cumsum(0)])}
            lammps, owned = False, n_atoms
        elif owned is None:
            raise ValueError("MacePotential: refresh= needs owned= (the number of owned atoms, which come first)")
        elif owned == 0:
            return self._exchanges_only(n_atoms, vectors, refresh)
        else:   # mace-torch's LAMMPS path: vectors as they are, node updates of the owned atoms only
            data = {"node_attrs": node_attrs, "vectors": vectors, "edge_index": batch.pairs.T,
                    "batch": torch.zeros(owned, dtype=torch.long, device=vectors.device),
                    "lammps_class": refresh, "natoms": (owned, n_atoms - owned)}
            lammps = True
        self._refresh = refresh
        try:
            out = self.model(data, compute_force=False, lammps_mliap=lammps)
        finally:
            self._refresh = None
        features, self._readout_input = self._readout_input, None
        scale_shift = getattr(self.model, "scale_shift", None)
        if scale_shift is not None:
            features = features * torch.atleast_1d(scale_shift.scale)[0]
        energy = out["node_energy"].to(vectors.dtype)
        if owned < n_atoms:
            energy = torch.cat([energy, energy.new_zeros(n_atoms - owned)])
            features = torch.cat([features, features.new_zeros((n_atoms - owned, features.shape[1]))])
        return {"energy": energy, "features": features}


def load_mace(path: str, trust: bool = False) -> MacePotential:
    """``"mace:PATH"``: a model file written by mace-torch (a pickle: needs ``trust``)."""
    mace, _ = import_mace()
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"no MACE model file {path!r}")
    check_trusted(file, mace, trust, f"mace:{path}")
    model = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "readouts"):
        raise ValueError(f"{path} does not hold a mace-torch model (got {type(model).__name__})")
    return MacePotential(model, spec=f"mace:{path}")


def mace_from_object(model: Any) -> MacePotential:
    """Adapter for a ``MACECalculator`` (its first model) or a mace-torch model (a copy: the original is untouched)."""
    module = model.models[0] if hasattr(model, "models") else model
    if not hasattr(module, "readouts"):
        raise ValueError(f"cannot adapt {type(model).__name__}: expected a MACECalculator or a mace-torch model")
    return MacePotential(copy.deepcopy(module))
