"""SevenNet (``sevenn``) models behind the atomflux Potential contract.

SevenNet's graph is atomflux's: its edge ``(i, j)`` carries
``edge_vec = r_j - r_i (+ cell shift)`` and messages flow from j to i, so
atomflux's full pair list and pair vectors are fed in unchanged and
:func:`atomflux.evaluate` differentiates the energy with respect to them
(SevenNet's own force/stress head is not run).  The model runs in float32,
its native dtype (its one-hot embedding is always float32).

SevenNet is a layer stack (``{k}_self_connection_intro`` ... ``{k}_equivariant_gate``
for each interaction k): ``forward(..., refresh=)`` replaces the node features
entering every interaction after the first by ``refresh(features)``, which is
how ``pair_style atomflux`` exchanges ghost atoms' features between layers on
several MPI ranks (the per-layer halo of :mod:`atomflux.lammps_bridge.whole_system`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import torch
from ase.data import chemical_symbols

from ..systems import Batch
from . import ForeignPotential, check_trusted, require

#: checkpoints shipped inside the sevenn wheel: spec name → attribute of ``sevenn._const``
SHIPPED = {"7net-0": "SEVENNET_0_11Jul2024", "7net-0_11jul2024": "SEVENNET_0_11Jul2024",
           "7net-0_22may2024": "SEVENNET_0_22May2024", "7net-l3i5": "SEVENNET_l3i5", "7net-mf-0": "SEVENNET_MF_0"}


class SevenNetPotential(ForeignPotential):
    """A SevenNet ``AtomGraphSequential`` as an atomflux potential.

    Parameters
    ----------
    model
        The SevenNet model (its force/stress output module is skipped).
    spec
        Model spec that reloads it (``"sevennet:7net-0"``), or ``None`` for an
        object given directly (such a model cannot be referenced from a file).

    Outputs: ``energy`` [N] (eV), ``features`` [N, F]: the input of the last
    readout ``reduce_hidden_to_energy`` times the per-species energy scale, so
    that ``energy = features @ w + shift[species]``.
    """

    #: ``forward`` takes ``refresh=`` (node features between interaction layers)
    layer_stack = True
    #: the atom of a pair (i, j) that receives its message: i (edge_vec = r_j − r_i, messages flow j → i)
    pair_receiver = 0

    def __init__(self, model: torch.nn.Module, spec: str | None = None) -> None:
        if getattr(model, "modal_map", None):
            raise ValueError(f"multi-fidelity SevenNet models ({', '.join(model.modal_map)}) are not supported by "
                             "the atomflux adapter; use SevenNetCalculator(..., modal=...) directly")
        type_map = dict(model.type_map)
        species = [chemical_symbols[z] for z in sorted(type_map, key=type_map.get)]
        layers = sum(1 for m in model.modules() if type(m).__name__ == "IrrepsConvolution")
        super().__init__(species, float(model.cutoff), layers * float(model.cutoff), spec or "")
        self.n_layers = layers
        model.set_is_batch_data(True)
        self.model = model.eval()
        self._energy_modules = self._modules_up_to_atomic_energy()
        self._refresh_before, self.halo_width = self._interaction_inputs()

    def _modules_up_to_atomic_energy(self) -> list[tuple[str, torch.nn.Module]]:
        names = list(self.model._modules)
        if "rescale_atomic_energy" not in names or "reduce_hidden_to_energy" not in names:
            raise ValueError("this SevenNet model has no 'reduce_hidden_to_energy' and 'rescale_atomic_energy' "
                             "modules; the atomflux adapter knows only SevenNet's E(3)-equivariant energy models")
        stop = names.index("rescale_atomic_energy")
        return [(n, self.model._modules[n]) for n in names[:stop + 1]]

    def _interaction_inputs(self) -> tuple[set[str], int]:
        """Names of the first module of every interaction after the first (where node features enter it),
        and the widest of those features (float values per atom)."""
        from e3nn.o3 import Irreps

        firsts: dict[int, tuple[str, torch.nn.Module]] = {}
        for name, module in self._energy_modules:
            layer = name.split("_", 1)[0]
            if layer.isdigit():
                firsts.setdefault(int(layer), (name, module))
        widths = [Irreps(str(getattr(module, "irreps_in", getattr(module, "irreps_x", "")))).dim
                  for k, (_, module) in firsts.items() if k > 0]
        return {name for k, (name, _) in firsts.items() if k > 0}, max(widths, default=0)

    def config(self) -> dict[str, Any]:
        if not self.spec:
            raise NotImplementedError("this SevenNet model was given as an object, so no file can refer to it; "
                             "load it by spec (e.g. 'sevennet:7net-0' or 'sevennet:PATH')")
        return super().config()

    def forward(self, batch: Batch, vectors: torch.Tensor,
                refresh: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-atom energies and features; ``refresh`` (node features [N, F] → [N, F]) is applied to the
        features entering each interaction after the first."""
        import sevenn._keys as KEY

        numbers = batch.numbers
        data: dict[str, Any] = {KEY.ATOMIC_NUMBERS: numbers, KEY.NODE_FEATURE: numbers,
                                KEY.EDGE_IDX: batch.pairs.T, KEY.EDGE_VEC: vectors, KEY.BATCH: batch.system}
        data = self.model._preprocess(data)
        hidden = None
        for name, module in self._energy_modules:
            if refresh is not None and name in self._refresh_before:
                data[KEY.NODE_FEATURE] = refresh(data[KEY.NODE_FEATURE])
            if name == "reduce_hidden_to_energy":
                hidden = data[module.key_input]
            data = module(data)
        rescale = self.model._modules["rescale_atomic_energy"]
        scale = rescale.scale[data[rescale.key_indices]]
        return {"energy": data[rescale.key_output].squeeze(-1), "features": hidden * scale[:, None]}


def checkpoint_path(name: str) -> Path:
    """Path of a SevenNet checkpoint: a name shipped in the sevenn wheel or a file path."""
    sevenn = require("sevenn", "sevennet")
    from sevenn import _const

    key = name.lower().replace("sevennet-", "7net-")
    if key in SHIPPED:
        path = Path(getattr(_const, SHIPPED[key]))
        if not path.is_file():
            raise FileNotFoundError(f"sevenn {sevenn.__version__} does not ship {name!r} in its wheel ({path})")
        return path
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise FileNotFoundError(f"no SevenNet checkpoint {name!r}: neither a file nor a checkpoint shipped in the "
                            f"sevenn wheel ({', '.join(SHIPPED)}); others would need a download")


def load_sevennet(name: str, trust: bool = False) -> SevenNetPotential:
    """``"sevennet:NAME"``: a shipped checkpoint by name, or a checkpoint file (needs ``trust``)."""
    sevenn = require("sevenn", "sevennet")
    import sevenn.util

    path = checkpoint_path(name)
    check_trusted(path, sevenn, trust, f"sevennet:{name}")
    model = sevenn.util.load_checkpoint(str(path)).build_model()
    return SevenNetPotential(model, spec=f"sevennet:{name}")


def sevennet_from_object(model: Any) -> SevenNetPotential:
    """Adapter for a ``SevenNetCalculator`` or an ``AtomGraphSequential`` (a copy: the original is untouched)."""
    module = getattr(model, "model", model)
    if type(module).__name__ != "AtomGraphSequential":
        raise ValueError(f"cannot adapt {type(model).__name__}: expected a SevenNetCalculator or AtomGraphSequential")
    return SevenNetPotential(copy.deepcopy(module))
