"""Third-party potentials as atomflux models: model specs, adapters and trust.

A *model spec* names a pre-trained or user-trained third-party model::

    "sevennet:7net-0"        a checkpoint shipped inside the ``sevenn`` wheel (by its sevenn name)
    "sevennet:PATH"          a SevenNet checkpoint file (a pickle: needs ``trust=True``)
    "mace:PATH"              a model file written by mace-torch (a pickle: needs ``trust=True``)
    "chgnet:0.3.0"           a model shipped inside the ``chgnet`` wheel (calculator level only)

SevenNet and MACE get torch-level adapters (:class:`ForeignPotential`): they
implement the :class:`~atomflux.models.Potential` contract, so every atomflux
path (``evaluate``, the ASE calculator, LLPR, batched force sets) works with
them.  CHGNet is used through its own ASE calculator.

Safety: third-party checkpoints are pickles, which can run code when loaded.
They are loaded by their own package's loader, and only when the file lies
inside that installed package (the weights shipped in its wheel) or the user
says explicitly that it is trusted (``trust=True``, CLI ``--trust-model``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..models.base import Potential

#: spec prefix → (Python package, atomflux extra that installs it)
PACKAGES = {"sevennet": ("sevenn", "sevennet"), "mace": ("mace", "mace"), "chgnet": ("chgnet", "chgnet")}
#: spec kinds without a torch-level adapter: their package's own ASE calculator is used
CALCULATOR_LEVEL = ("chgnet",)


class ForeignPotential(Potential):
    """A third-party torch model behind atomflux's :class:`~atomflux.models.Potential` contract.

    Subclasses map a :class:`~atomflux.systems.Batch` and the pair vectors
    ``r_ij = r_j - r_i`` (Å, Tensor [P, 3]) onto the wrapped model's own graph
    and return per-atom ``energy`` [N] (eV) and ``features`` [N, F] (the input
    of the last linear readout, any per-species scale folded in, so that the
    energy is linear in them up to a per-species constant).

    Attributes
    ----------
    spec : str
        The model spec that reloads this model (stored in LLPR files).
    interaction_range : float
        How far (Å) an atom's energy reaches: message-passing layers × cutoff.
    dtypes : tuple of torch.dtype
        The dtypes the wrapped model runs in; the first is its native one.
    """

    strictly_local = False
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)

    def __init__(self, species: list[str], cutoff: float, interaction_range: float, spec: str) -> None:
        super().__init__(species, cutoff)
        self.interaction_range = float(interaction_range)
        self.spec = str(spec)

    def config(self) -> dict[str, Any]:
        """``{"spec": ...}``: third-party models are stored by reference, never copied into atomflux files."""
        return {"spec": self.spec}


def require(package: str, extra: str) -> ModuleType:
    """Import a third-party package, or raise ``ImportError`` naming the extra that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f"this model needs the '{package}' package ({err.msg}); install it with "
                          f"pip install 'atomflux[{extra}]'") from None


def is_spec(model: object) -> bool:
    """True for strings of the form ``"sevennet:..."``, ``"mace:..."``, ``"chgnet:..."``."""
    return isinstance(model, str) and model.split(":", 1)[0] in PACKAGES and ":" in model


def split_spec(spec: str) -> tuple[str, str]:
    """``"sevennet:7net-0"`` → ``("sevennet", "7net-0")``, with a clear error for an empty name."""
    kind, _, name = spec.partition(":")
    if kind not in PACKAGES or not name:
        raise ValueError(f"model spec {spec!r} should be one of {', '.join(k + ':NAME' for k in PACKAGES)}")
    return kind, name


def check_trusted(path: Path, package: ModuleType, trust: bool, spec: str) -> None:
    """Refuse a pickle ``path`` unless it lies inside the installed ``package`` or ``trust`` is set."""
    if trust:
        return
    root = Path(package.__file__).resolve().parent
    if root in path.resolve().parents:
        return
    raise ValueError(f"refused to load {spec!r}: {path} is a pickle outside the installed {package.__name__} "
                     f"package, and loading a pickle can run arbitrary code; if you trust where it came from, "
                     f"pass trust=True (CLI: --trust-model)")


def load_spec(spec: str, trust: bool = False) -> Any:
    """The model a spec names: a :class:`ForeignPotential`, or an ASE calculator (calculator-level models).

    Raises
    ------
    ValueError
        Unknown spec, unknown shipped name, or an untrusted pickle.
    ImportError
        The package is not installed (the message names the extra).
    FileNotFoundError
        A checkpoint path that does not exist.
    """
    kind, name = split_spec(spec)
    if kind == "sevennet":
        from .sevennet import load_sevennet

        return load_sevennet(name, trust)
    if kind == "mace":
        from .mace import load_mace

        return load_mace(name, trust)
    from .chgnet import chgnet_calculator

    return chgnet_calculator(name, trust)


def potential_from_object(model: Any) -> ForeignPotential | None:
    """An adapter for a third-party torch model or ASE calculator object, or ``None`` if none fits.

    Recognised: SevenNet's ``AtomGraphSequential`` and ``SevenNetCalculator``;
    mace-torch models and ``MACECalculator``.
    """
    module = type(model).__module__.split(".")[0]
    if module == "sevenn":
        from .sevennet import sevennet_from_object

        return sevennet_from_object(model)
    if module == "mace":
        from .mace import mace_from_object

        return mace_from_object(model)
    return None
