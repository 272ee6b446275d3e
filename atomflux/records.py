"""Long runs are records: what produced an output folder, checked before resuming into it.

Every long-running command writes ``run.json`` into its output folder::

    {"command": "md --transport", "parameters": {...}, "model": {"spec": ..., "fingerprint": ...},
     "atomflux_version": "...", "created": "...", "info": {...}}

``parameters`` are the settings that change the numbers (temperature,
timestep, seed, structure fingerprint ...); ``info`` holds the others
(checkpoint interval, progress) and is not compared.  Running again into the
same folder resumes only when command, parameters and model fingerprint are
identical; otherwise :class:`RunMismatch` lists the differences and offers
``restart`` (the old folder is moved aside, never deleted) or another folder.

Analysis results that share a folder never overwrite each other:
:func:`claim_result` returns the stem under which a result may be written, a
new one (``name-2``, ``name-3`` ...) when the existing file came from other
inputs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

RECORD_FILE = "run.json"


class RunMismatch(ValueError):
    """An output folder holds a run with other parameters (or another model)."""


def fingerprint(obj: Any) -> str:
    """Short SHA-256 of a model, structure or any JSON-able value (16 hex digits).

    - ``torch.nn.Module``: its class, ``config()`` when it has one, and every
      tensor of its state dict (names, shapes, dtypes and bytes);
    - ``ase.Atoms``: numbers, positions, cell and periodicity;
    - an ASE calculator: its class and ``parameters``;
    - anything else: its canonical JSON text.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:16]


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    import torch
    from ase import Atoms

    if isinstance(obj, torch.nn.Module):
        h.update(type(obj).__name__.encode())
        config = getattr(obj, "config", None)
        if callable(config):
            try:
                h.update(_canonical(config()).encode())
            except NotImplementedError:
                pass
        for name, tensor in sorted(obj.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, Atoms):
        h.update(np.ascontiguousarray(obj.numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(obj.positions, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(obj.cell.array, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(obj.pbc, dtype=bool).tobytes())
    elif hasattr(obj, "get_potential_energy") or hasattr(obj, "calculate"):  # an ASE calculator
        potential = getattr(obj, "potential", None)
        if potential is not None:
            _feed(h, potential)
        else:
            h.update(type(obj).__name__.encode())
            h.update(_canonical(getattr(obj, "parameters", {})).encode())
    else:
        h.update(_canonical(obj).encode())


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _normalised(value: Any) -> Any:
    """JSON round trip, so that tuples/lists and numpy scalars compare as they will be read back."""
    return json.loads(_canonical(value))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable ``key: old → new`` lines for the keys whose values differ."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(not set)"), new.get(key, "(not set)")
        if a != b:
            lines.append(f"{key}: {a} → {b}")
    return lines


def open_run(folder: str | Path, command: str, parameters: dict[str, Any], model: dict[str, Any] | None = None,
             info: dict[str, Any] | None = None, restart: bool = False) -> bool:
    """Create ``folder`` for a new run, or check that it holds the same run; return True when resuming.

    Parameters
    ----------
    folder
        Output folder of the run.
    command
        What kind of run it is (e.g. ``"md --transport"``); a folder is never shared by two kinds.
    parameters
        Every setting that changes the numbers (JSON-able); compared on resume.
    model
        ``{"spec": ..., "fingerprint": ...}`` of the model (see :func:`fingerprint`); compared on resume.
    info
        Other settings, recorded but not compared.
    restart
        Move an existing run aside (``<folder>.old-<time>``) and start over.

    Raises
    ------
    RunMismatch
        The folder holds another run (other command, parameters or model), or
        files that no atomflux run recorded.
    """
    from . import __version__

    folder = Path(folder)
    record_path = folder / RECORD_FILE
    new = {"command": command, "parameters": _normalised(parameters), "model": _normalised(model)}
    if folder.exists() and any(folder.iterdir()):
        if restart:
            aside = folder.with_name(f"{folder.name}.old-{datetime.datetime.now():%Y%m%d-%H%M%S}")
            folder.rename(aside)
            print(f"previous run moved to {aside}")
        elif not record_path.is_file():
            raise RunMismatch(f"{folder} already holds files that no atomflux run recorded; "
                              "choose another output folder (or pass --restart to move them aside)")
        else:
            old = json.loads(record_path.read_text())
            lines = []
            if old.get("command") != command:
                lines.append(f"command: {old.get('command')} → {command}")
            lines += differences(old.get("parameters", {}), new["parameters"])
            if (old.get("model") or {}).get("fingerprint") != (model or {}).get("fingerprint"):
                lines.append(f"model: {(old.get('model') or {}).get('spec')} "
                             f"({(old.get('model') or {}).get('fingerprint')}) → "
                             f"{(model or {}).get('spec')} ({(model or {}).get('fingerprint')})")
            if lines:
                raise RunMismatch(f"{folder} holds a different run ({'; '.join(lines)}); to keep it, write to "
                                  "another folder (-o); to start over, pass --restart (the old run is moved "
                                  "aside, not deleted)")
            return True
    folder.mkdir(parents=True, exist_ok=True)
    record = {**new, "atomflux_version": __version__,
              "created": datetime.datetime.now().isoformat(timespec="seconds"), "info": _normalised(info or {})}
    tmp = record_path.with_name(RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False))
    tmp.replace(record_path)
    return False


def model_record(spec: str | Path | None, model: Any) -> dict[str, Any]:
    """``{"spec": ..., "fingerprint": ...}`` for :func:`open_run` (``model``: potential or calculator)."""
    return {"spec": None if spec is None else str(spec), "fingerprint": fingerprint(model)}


def claim_result(folder: str | Path, stem: str, inputs: dict[str, Any], suffix: str = ".json") -> str:
    """The stem under which a result with these ``inputs`` may be written in ``folder``.

    ``<stem><suffix>`` is reused when absent or when it records the same
    ``inputs`` (its JSON has an ``"inputs"`` entry equal to them); otherwise
    the first free ``<stem>-2``, ``<stem>-3`` ... is returned, so a result of
    other inputs is never overwritten.  Write ``inputs`` into the result's JSON.
    """
    folder = Path(folder)
    wanted = _normalised(inputs)
    candidate, k = stem, 1
    while True:
        path = folder / f"{candidate}{suffix}"
        if not path.exists():
            return candidate
        try:
            if json.loads(path.read_text()).get("inputs") == wanted:
                return candidate
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
        k += 1
        candidate = f"{stem}-{k}"
