"""Model files: tensors for ``torch.load(weights_only=True)`` plus JSON metadata.

A model file is a torch zip archive holding one dictionary::

    {"format": "atomflux-model", "format_version": 1,
     "metadata": "<JSON text>", "state_dict": {name: Tensor}}

The metadata names the architecture and its hyper-parameters, species,
cutoff (Å), units, atomflux version, training-set fingerprint and metrics, and
(where present) uncertainty calibration.  A model with novelty data (the
training atoms' descriptor statistics, :mod:`atomflux.uncertainty.novelty`)
adds ``"novelty": {name: Tensor}`` to the dictionary and ``"novelty"`` to the
metadata.  Loading never unpickles code: a
file that needs more than tensors, strings and plain containers is refused.

Wherever a model is accepted, a *model spec* may name a third-party model
instead (``"sevennet:7net-0"``, ``"mace:PATH"``, ``"chgnet:0.3.0"``, see
:mod:`atomflux.foreign`).  A model file may refer to such a base by its spec
(an LLPR fitted on SevenNet-0 stores ``{"base": {"spec": "sevennet:7net-0"}}``
and only its own tensors), so it stays a tensors-and-JSON file.

Any model name or spec may end in an averaging suffix, ``MODEL@GRID:ORDER``
(``"demo@lebedev:3"``): the model is then loaded averaged over that
rotational quadrature (:class:`~atomflux.symmetry.AveragedPotential`, see
:mod:`atomflux.symmetry.spec`).
"""

from __future__ import annotations

import json
import pickle
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import torch

from . import __version__
from .foreign import ForeignPotential, is_spec, load_spec
from .models import ARCHITECTURES, Potential
from .symmetry.potential import AveragedPotential
from .symmetry.spec import split_average
from .uncertainty.llpr import LLPR
from .uncertainty.novelty import Novelty, attach_novelty, carried_novelty, descriptor_digest, descriptor_model

FORMAT = "atomflux-model"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å³"}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def architectures() -> dict[str, type[Potential]]:
    """Every architecture a model file may name (models and uncertainty wrappers)."""
    from .hamiltonian.model import HamiltonianModel

    return {**ARCHITECTURES, LLPR.architecture: LLPR, HamiltonianModel.architecture: HamiltonianModel}


def shipped_models() -> dict[str, Path]:
    """Names and paths of the models that ship with the package."""
    folder = resources.files("atomflux") / "data"
    return {p.name[:-3]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".pt")}


def save_model(potential: Potential, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``potential`` and its metadata to ``path``.

    Parameters
    ----------
    potential
        Any registered architecture (see :data:`atomflux.models.ARCHITECTURES`).
    path
        Output file (conventionally ``*.pt``).
    metadata
        Extra JSON-serialisable entries (training metrics, uncertainty...);
        merged over the potential's own ``metadata`` attribute, if any.
    """
    if isinstance(potential, AveragedPotential):
        raise ValueError(f"a rotationally averaged model is not saved as such: save its base model "
                         f"(potential.base) and load it as 'FILE@{potential.average}'")
    if isinstance(potential, ForeignPotential):
        raise ValueError(f"{type(potential).__name__} is a third-party model: refer to it by its spec "
                         f"{potential.spec!r} wherever a model is accepted (there is nothing to save)")
    if potential.architecture not in architectures():
        raise ValueError(f"cannot save architecture {type(potential).__name__!r}: not registered in atomflux.models "
                         "(a third-party model wrapped by hand cannot be saved; load it by spec, e.g. "
                         "'sevennet:7net-0', or register its class in atomflux.models.ARCHITECTURES)")
    try:
        config = potential.config()
    except NotImplementedError as err:
        raise ValueError(f"cannot save {type(potential).__name__}: {err}") from None
    meta = dict(getattr(potential, "metadata", {}) or {})
    meta.update(metadata or {})
    meta.update({
        "architecture": potential.architecture,
        "config": config,
        "species": potential.species,
        "cutoff": potential.cutoff,
        "units": UNITS,
        "atomflux_version": __version__,
    })
    referenced = _referenced_prefixes(config)
    state = {k: v.detach().cpu().clone() for k, v in potential.state_dict().items() if not k.startswith(referenced)}
    archive = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state}
    meta.pop("novelty", None)  # a loaded model's: written again below only while it still fits the descriptor
    novelty = _current_novelty(potential)
    if novelty is not None:
        archive["novelty"] = {k: v.detach().cpu().clone() for k, v in novelty.tensors().items()}
        meta["novelty"] = novelty.metadata()
    archive["metadata"] = json.dumps(meta, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(archive, tmp)
    tmp.replace(path)
    potential.metadata = meta
    return path


def _current_novelty(potential: Potential) -> Novelty | None:
    """The novelty data of ``potential`` (its own, or its LLPR base's) if they still match the model's descriptor;
    a one-line warning (and ``None``) when the descriptor changed since they were fitted (fine-tuning)."""
    novelty = carried_novelty(potential)
    if novelty is None or novelty.digest == descriptor_digest(potential):
        return novelty
    warnings.warn("the model's descriptor changed since its novelty data were fitted: they are not saved; refit "
                  "them: atomflux novelty MODEL TRAIN.extxyz -o OUT.pt", RuntimeWarning, stacklevel=3)
    return None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata dictionary of a model file (safe: tensors are not used)."""
    return json.loads(_read_archive(Path(path))["metadata"])


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float32``, ``"float32"``, ``torch.float64``, ``"float64"`` or ``None`` (the model's own dtype)."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype must be float32 or float64 (or None for the model's own dtype), got {dtype!r}")


#: the MD precision choices (``atomflux md --precision``, ``pair_style atomflux precision``)
PRECISIONS = ("auto", "float32", "float64", "native")


def md_dtype(precision: str, models: Sequence[str | Path]) -> str | None:
    """The dtype MD runs ``models`` in for a precision choice (energies, forces and
    virials are summed in float64 either way).

    ``"auto"``: float32 for atomflux models (validated against float64: the
    deviation is 10^4x below the demo models' own error and the NVE drift is
    the same, docs/benchmarks.md), the model's own for third-party model
    specs; ``"native"``: the model's own (``None``); ``"float32"`` /
    ``"float64"``: that one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return None if precision == "native" else precision
    return None if any(is_spec(str(m)) for m in models) else "float32"


def native_dtypes(potential: torch.nn.Module) -> tuple[torch.dtype, ...]:
    """Dtypes a potential runs in, its native one first: float64 and float32 for atomflux models;
    third-party models (also inside LLPR) declare theirs."""
    for module in potential.modules():  # a third-party model anywhere inside (an LLPR's base, ...)
        if isinstance(module, ForeignPotential):
            return module.dtypes
    return (torch.float64, torch.float32)


def place(potential: torch.nn.Module, dtype: torch.dtype | str | None = None,
          device: str | torch.device = "cpu") -> torch.nn.Module:
    """``potential`` in ``dtype`` (``None``: its native dtype) on ``device``, in eval mode.

    Raises ``ValueError`` for a dtype the model cannot run in (SevenNet's
    e3nn code, for example, works only in float32).
    """
    allowed = native_dtypes(potential)
    dtype = parse_dtype(dtype) or allowed[0]
    if dtype not in allowed:
        names = " or ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{type(potential).__name__} runs only in {names}; "
                         f"leave dtype unset (its native dtype) or pass dtype='{str(allowed[0]).removeprefix('torch.')}'")
    return potential.to(dtype=dtype, device=device).eval()


def load_model(name_or_path: str | Path, dtype: torch.dtype | str | None = None,
               device: str | torch.device = "cpu", trust: bool = False) -> Potential:
    """Load a model file, a model shipped with the package by name (e.g. ``"demo"``),
    or a third-party model by spec (``"sevennet:7net-0"``, ``"mace:PATH"``); any of them with an
    averaging suffix (``"demo@lebedev:3"``) gives its rotational average.

    The returned potential has ``.species`` (chemical symbols), ``.cutoff``
    (Å) and ``.metadata`` (dict), and is in eval mode.

    Parameters
    ----------
    name_or_path
        File path, shipped name or model spec (see :mod:`atomflux.foreign`),
        optionally with ``@GRID:ORDER`` (see :mod:`atomflux.symmetry.spec`).
    dtype
        ``"float32"``/``"float64"`` (or the torch dtypes); ``None``: float64 for
        atomflux models, the native dtype of a third-party model.
    device
        Torch device.
    trust
        Load a third-party pickle checkpoint that is not shipped inside its
        own package (only for files whose origin you trust: unpickling can run code).

    Raises
    ------
    FileNotFoundError
        If neither a file nor a shipped model of that name exists.
    ValueError
        If the file is not a valid atomflux model, would need to run code to
        load (pickled objects are refused unless trusted), names a
        calculator-level model (CHGNet), the dtype does not suit the model, or
        the averaging suffix is not understood.
    ImportError
        A model spec whose package is not installed (the message names the extra).
    """
    base, average = split_average(name_or_path)
    if average is not None:
        potential = AveragedPotential(load_model(base, dtype, device, trust), average)
        potential.metadata = {**potential.metadata, "spec": str(name_or_path)}
        return place(potential, dtype, device)
    if is_spec(name_or_path):
        potential = _foreign_potential(str(name_or_path), trust)
        potential.metadata = {"spec": str(name_or_path)}
        return place(potential, dtype, device)
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_models()
        if str(name_or_path) in shipped:
            path = shipped[str(name_or_path)]
        else:
            raise FileNotFoundError(
                f"no model file {str(name_or_path)!r}, and no shipped model of that name "
                f"(shipped: {', '.join(sorted(shipped)) or 'none'}; third-party models by spec: "
                "sevennet:NAME, mace:PATH, chgnet:NAME)")
    archive = _read_archive(path)
    try:
        meta = json.loads(archive["metadata"])
        cls = architectures()[meta["architecture"]]
        config = dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: invalid atomflux metadata ({err})") from None
    referenced = _referenced_prefixes(config)
    if referenced:
        config["base"] = _foreign_potential(config["base"]["spec"], trust)
    try:
        potential = cls(**config)
        if not referenced:  # stored float64 weights are loaded as they are, not rounded through float32
            potential = potential.to(torch.float64)
        missing, unexpected = potential.load_state_dict(archive["state_dict"], strict=False)
        missing = [k for k in missing if not k.startswith(referenced)] if referenced else missing
        if missing or unexpected:
            raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: tensors do not match architecture {meta['architecture']}: {err}") from None
    potential.metadata = meta
    calibration = meta.get("uncertainty", {}).get("calibration", {})
    for key, attribute in (("scale", "uncertainty_scale"), ("scale_forces", "uncertainty_scale_forces"),
                           ("scale_stress", "uncertainty_scale_stress"), ("floor_forces", "uncertainty_floor_forces"),
                           ("floor_stress", "uncertainty_floor_stress"),
                           ("locality_forces", "uncertainty_locality_forces")):
        if calibration.get(key) is not None:
            setattr(potential, attribute, float(calibration[key]))
    potential = place(potential, dtype, device)
    if "novelty" in archive:
        try:
            stored = Novelty.from_stored(descriptor_model(potential).species, archive["novelty"],
                                         meta.get("novelty", {}))
            attach_novelty(potential, stored)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return potential


def _foreign_potential(spec: str, trust: bool) -> ForeignPotential:
    model = load_spec(spec, trust)
    if not isinstance(model, ForeignPotential):
        raise ValueError(f"{spec} is available as an ASE calculator only (no torch-level adapter); use it where "
                         "any ASE calculator is accepted: atomflux md/kappa --model, Committee, or "
                         "atomflux.calculators.make_calculator")
    return model


def _referenced_prefixes(config: dict[str, Any]) -> tuple[str, ...]:
    """State-dict prefixes of sub-models stored by spec, not copied: ``("base.",)`` or ``()``."""
    base = config.get("base")
    return ("base.",) if isinstance(base, dict) and "spec" in base else ()


def _read_archive(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no model file {str(path)!r}")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":  # torch.save writes zip archives
            raise ValueError(f"{path}: not a readable atomflux model file (not a torch archive); model files are written "
                             "by `atomflux train` or atomflux.save_model")
    try:
        archive = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: refused to load — the file holds pickled objects, not only tensors and JSON like an "
            f"atomflux model file, and unpickling can run code; a third-party checkpoint loads by spec "
            f"('sevennet:PATH', 'mace:PATH', 'chgnet:PATH') with trust=True (CLI: --trust-model) "
            f"if you trust where it came from") from None
    except Exception as err:  # torch raises many types for a non-archive file
        raise ValueError(f"{path}: not a readable atomflux model file ({err})") from None
    if not isinstance(archive, dict) or archive.get("format") != FORMAT:
        raise ValueError(f"{path}: not an atomflux model file (no '{FORMAT}' header)")
    if archive.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer atomflux (format {archive['format_version']}); upgrade atomflux")
    return archive
