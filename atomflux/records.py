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

import atexit
import contextlib
import datetime
import hashlib
import json
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RECORD_FILE = "run.json"


class RunMismatch(ValueError):
    """An output folder holds a run with other parameters (or another model)."""


def fingerprint(obj: Any) -> str:
    """Short SHA-256 of a model, structure or any JSON-able value (16 hex digits).

    - ``torch.nn.Module``: its class, ``config()`` when it has one, and every
      tensor of its state dict (names, shapes, dtypes and bytes);
    - ``ase.Atoms``: numbers, positions, cell and periodicity;
    - an ASE calculator: its potential, the members of a committee, or else its class and ``parameters``;
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
        members = getattr(obj, "calculators", None)  # a Committee: every member
        if potential is not None:
            _feed(h, potential)
        elif isinstance(members, (list, tuple)):
            h.update(type(obj).__name__.encode())
            for member in members:
                _feed(h, member)
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


def run_record(command: str, parameters: dict[str, Any], model: dict[str, Any] | None = None,
               info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a run as :func:`open_run` writes it (also embedded in results as provenance)."""
    from . import __version__

    return {"command": command, "parameters": _normalised(parameters), "model": _normalised(model),
            "atomflux_version": __version__, "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "info": _normalised(info or {})}


def mismatches(old: dict[str, Any], command: str, parameters: dict[str, Any],
               model: dict[str, Any] | None = None) -> list[str]:
    """What differs between a stored record and a new run: ``key: old → new`` lines (empty: same run)."""
    lines = []
    if old.get("command") != command:
        lines.append(f"command: {old.get('command')} → {command}")
    lines += differences(old.get("parameters", {}), _normalised(parameters))
    old_model = old.get("model") or {}
    if old_model.get("fingerprint") != (model or {}).get("fingerprint"):
        lines.append(f"model: {old_model.get('spec')} ({old_model.get('fingerprint')}) → "
                     f"{(model or {}).get('spec')} ({(model or {}).get('fingerprint')})")
    return lines


def move_aside(path: str | Path) -> Path:
    """Rename a file or folder to ``<name>.old-<time>`` (a free name), never deleting; return the new path.

    Files keep their suffix last (``md.traj`` → ``md.old-20250101-120000.traj``) so
    that tools still recognise their format.
    """
    path = Path(path)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem, suffix = (path.name, "") if path.is_dir() else (path.stem, path.suffix)
    k = 1
    while True:
        aside = path.with_name(f"{stem}.old-{stamp}{'' if k == 1 else f'-{k}'}{suffix}")
        if not aside.exists():
            path.rename(aside)
            return aside
        k += 1


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
    folder = Path(folder)
    record_path = folder / RECORD_FILE
    if folder.exists() and not folder.is_dir():
        raise RunMismatch(f"{folder} is a file, not a folder; choose another output folder")
    check_output_path(record_path)
    if (folder / ".lock").is_file():
        _lock(folder)  # refuses while another process runs here (before anything is compared or moved)
    if folder.exists() and any(p.name != ".lock" for p in folder.iterdir()):
        if restart:
            print(f"previous run moved to {move_aside(folder)}")
        elif not record_path.is_file():
            raise RunMismatch(f"{folder} already holds files that no atomflux run recorded; "
                              "choose another output folder (or pass --restart to move them aside)")
        else:
            lines = mismatches(read_run(folder), command, parameters, model)
            if lines:
                raise RunMismatch(f"{folder} holds a different run ({'; '.join(lines)}); to keep it, write to "
                                  "another folder (-o); to start over, pass --restart (the old run is moved "
                                  "aside, not deleted)")
            _lock(folder)
            return True
    folder.mkdir(parents=True, exist_ok=True)
    _lock(folder)
    _write_json(record_path, run_record(command, parameters, model, info))
    return False


#: lock files held by this process, by folder (released by :func:`finish_run` or when the process ends)
_LOCKS: dict[Path, Any] = {}


@atexit.register
def _release_locks() -> None:
    for handle in _LOCKS.values():
        handle.close()
    _LOCKS.clear()


def _lock(folder: Path) -> None:
    """Hold ``folder/.lock`` for the rest of this process; refuse when another process holds it.

    Two processes writing into one run folder would interleave their steps.
    The lock is an OS file lock (``flock``), so a crashed run leaves no stale lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no protection against concurrent runs
        return
    key = folder.resolve()
    if key in _LOCKS:  # this process ran here before (sequential runs in one session)
        _LOCKS.pop(key).close()
    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunMismatch(f"another process is running in {folder} right now; wait for it to end, or write to "
                          "another folder (-o)") from None
    _LOCKS[key] = handle


def read_run(folder: str | Path) -> dict[str, Any]:
    """The record (``run.json``) of the run in ``folder``.

    Raises
    ------
    RunMismatch
        ``run.json`` is missing or unreadable.
    """
    path = Path(folder) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunMismatch(f"{folder} holds no {RECORD_FILE}: not an atomflux run folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunMismatch(f"{path} is damaged ({err}); move the folder aside or pass --restart") from None
    if not isinstance(record, dict):
        raise RunMismatch(f"{path} is not an atomflux run record; move the folder aside or pass --restart")
    return record


def finish_run(target: str | Path, summary: dict[str, Any] | None = None) -> None:
    """Mark a run finished (``"finished"``: time, ``"summary"``: the headline results).

    ``target`` is a run folder (its ``run.json``) or the record file of a
    file-writing run (see :func:`open_run_files`).
    """
    path = Path(target) if Path(target).is_file() else Path(target) / RECORD_FILE
    record = read_run(path.parent) if path.name == RECORD_FILE else json.loads(path.read_text())
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    record["summary"] = _normalised(summary or {})
    _write_json(path, record)
    handle = _LOCKS.pop(path.parent.resolve(), None) if path.name == RECORD_FILE else None
    if handle is not None:
        handle.close()


def check_output_path(path: str | Path, keep_existing: bool = False) -> None:
    """Raise ``ValueError`` when ``path`` cannot be written as a file: it is a folder, or a parent is a file;
    with ``keep_existing``, also when the file exists (a result that must not be overwritten)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if keep_existing and path.exists():
        raise ValueError(f"{path} already exists and is kept; give another -o, or move it away to write it again")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            break


def open_run_files(record: str | Path, outputs: list[str | Path], command: str, parameters: dict[str, Any],
                   model: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
                   restart: bool = False) -> dict[str, Any] | None:
    """:func:`open_run` for a run that writes files (``md.traj``, ``md.log`` ...) rather than a folder.

    Parameters
    ----------
    record
        JSON file receiving the run's record (e.g. ``md.json`` beside ``md.traj``).
    outputs
        Every file the run writes.
    command, parameters, model, info, restart
        As for :func:`open_run`; ``restart`` moves existing outputs aside
        (``md.traj`` → ``md.old-<time>.traj``).

    Returns
    -------
    The stored record when these files hold the same run (finished when it has
    a ``"finished"`` entry), None for a new run (the record is then written).

    Raises
    ------
    RunMismatch
        Some outputs exist and come from another run, or from no recorded run;
        or an output path is a folder.
    """
    record = Path(record)
    paths = [Path(p) for p in outputs] + [record]
    for path in paths:
        check_output_path(path)
    existing = [p for p in paths if p.exists()]
    if existing and restart:
        print("previous run moved aside: " + ", ".join(f"{p} → {move_aside(p).name}" for p in existing))
    elif existing:
        names = ", ".join(str(p) for p in existing)
        advice = ("to keep them, write elsewhere; to replace them, pass --restart (the old files are moved aside, "
                  "not deleted)")
        if not record.is_file():
            raise RunMismatch(f"{names} already {'exist' if len(existing) > 1 else 'exists'} and no atomflux run "
                              f"recorded {'them' if len(existing) > 1 else 'it'}; {advice}")
        try:
            old = json.loads(record.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunMismatch(f"{record} is damaged ({err}); {advice}") from None
        lines = mismatches(old, command, parameters, model)
        if lines:
            raise RunMismatch(f"{names} hold a different run ({'; '.join(lines)}); {advice}")
        return old
    record.parent.mkdir(parents=True, exist_ok=True)
    _write_json(record, run_record(command, parameters, model, info))
    return None


def update_info(folder: str | Path, **info: Any) -> None:
    """Record settings that do not change the numbers (e.g. a longer run asked for) in ``run.json``."""
    record = read_run(folder)
    record["info"] = {**record.get("info", {}), **_normalised(info)}
    _write_json(Path(folder) / RECORD_FILE, record)


def write_atomically(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path``.

    An interruption leaves either the old file or the new one, never half of one.
    ``tmp_path`` keeps the suffix of ``path`` (some writers choose the format from it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block ends, so that a checkpoint is never half written.

    A signal that arrives inside the block is delivered to its previous
    handler when the block ends (Ctrl-C: ``KeyboardInterrupt``).  Outside the
    main thread (where signals cannot be handled) the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for s in held:
            signal.signal(s, previous[s])
    for signum in received[:1]:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def _write_json(path: Path, value: Any) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False)))


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
