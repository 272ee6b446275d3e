"""Model files: tensors for ``torch.load(weights_only=True)`` plus JSON metadata.

A model file is a torch zip archive holding one dictionary::

    {"format": "atomflux-model", "format_version": 1,
     "metadata": "<JSON text>", "state_dict": {name: Tensor}}

The metadata names the architecture and its hyper-parameters, species,
cutoff (Å), units, atomflux version, training-set fingerprint and metrics, and
(where present) uncertainty calibration.  Loading never unpickles code: a
file that needs more than tensors, strings and plain containers is refused.
"""

from __future__ import annotations

import json
import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .models import ARCHITECTURES, Potential
from .uncertainty.llpr import LLPR

FORMAT = "atomflux-model"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å³"}


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
    if potential.architecture not in architectures():
        raise ValueError(f"cannot save architecture {type(potential).__name__!r}: not registered in atomflux.models")
    meta = dict(getattr(potential, "metadata", {}) or {})
    meta.update(metadata or {})
    meta.update({
        "architecture": potential.architecture,
        "config": potential.config(),
        "species": potential.species,
        "cutoff": potential.cutoff,
        "units": UNITS,
        "atomflux_version": __version__,
    })
    state = {k: v.detach().cpu().clone() for k, v in potential.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION,
                "metadata": json.dumps(meta, sort_keys=True), "state_dict": state}, tmp)
    tmp.replace(path)
    potential.metadata = meta
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata dictionary of a model file (safe: tensors are not used)."""
    return json.loads(_read_archive(Path(path))["metadata"])


def load_model(name_or_path: str | Path, dtype: torch.dtype = torch.float64,
               device: str | torch.device = "cpu") -> Potential:
    """Load a model file, or a model shipped with the package by name (e.g. ``"demo"``).

    The returned potential has ``.species`` (chemical symbols), ``.cutoff``
    (Å) and ``.metadata`` (dict), and is in eval mode.

    Raises
    ------
    FileNotFoundError
        If neither a file nor a shipped model of that name exists.
    ValueError
        If the file is not a valid atomflux model, or would need to run code
        to load (pickled objects are refused).
    """
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_models()
        if str(name_or_path) in shipped:
            path = shipped[str(name_or_path)]
        else:
            raise FileNotFoundError(
                f"no model file {str(name_or_path)!r}, and no shipped model of that name "
                f"(shipped: {', '.join(sorted(shipped)) or 'none'})")
    archive = _read_archive(path)
    try:
        meta = json.loads(archive["metadata"])
        cls = architectures()[meta["architecture"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: invalid atomflux metadata ({err})") from None
    try:
        potential = cls(**meta["config"])
        potential.load_state_dict(archive["state_dict"], strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: tensors do not match architecture {meta['architecture']}: {err}") from None
    potential.metadata = meta
    calibration = meta.get("uncertainty", {}).get("calibration", {})
    for key, attribute in (("scale", "uncertainty_scale"), ("scale_forces", "uncertainty_scale_forces"),
                           ("scale_stress", "uncertainty_scale_stress")):
        if calibration.get(key) is not None:
            setattr(potential, attribute, float(calibration[key]))
    return potential.to(dtype=dtype, device=device).eval()


def _read_archive(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no model file {str(path)!r}")
    try:
        archive = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused to load — the file contains objects other than tensors "
            f"(a pickle that could run code); atomflux model files hold only tensors and JSON. "
            f"Detail: {str(err).splitlines()[0]}") from None
    except Exception as err:  # torch raises many types for a non-archive file
        raise ValueError(f"{path}: not a readable atomflux model file ({err})") from None
    if not isinstance(archive, dict) or archive.get("format") != FORMAT:
        raise ValueError(f"{path}: not an atomflux model file (no '{FORMAT}' header)")
    if archive.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer atomflux (format {archive['format_version']}); upgrade atomflux")
    return archive
