"""The Python side of ``pair_style atomflux``: model set-up and force calls.

The C++ plugin calls :func:`_setup` from ``pair_coeff`` and :func:`_compute`
from every force evaluation, through ``ctypes`` function pointers registered
by :func:`register`.  Structures here mirror ``AtomfluxSetup`` and
``AtomfluxCompute`` in ``pair_atomflux.cpp``.  Errors never propagate as
Python exceptions into C++: they are returned as messages that LAMMPS
raises as its own errors.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

from ..evaluate import energy_uncertainty_components, evaluate
from ..systems import MIN_DISTANCE, Batch
from ..uncertainty.propagation import n_members

MESSAGE_SIZE = 4096


class AtomfluxSetup(ctypes.Structure):
    _fields_ = [
        ("model", ctypes.c_char_p), ("elements", ctypes.c_char_p), ("options", ctypes.c_char_p),
        ("units", ctypes.c_char_p), ("ntypes", ctypes.c_int), ("rank", ctypes.c_int), ("nprocs", ctypes.c_int),
        ("cutoff", ctypes.c_double), ("n_components", ctypes.c_int), ("handle", ctypes.c_longlong),
        ("message", ctypes.c_char * MESSAGE_SIZE),
    ]


class AtomfluxCompute(ctypes.Structure):
    _fields_ = [
        ("handle", ctypes.c_longlong), ("nlocal", ctypes.c_int), ("nall", ctypes.c_int), ("npairs", ctypes.c_int),
        ("want_uncertainty", ctypes.c_int),
        ("x", ctypes.POINTER(ctypes.c_double)), ("type", ctypes.POINTER(ctypes.c_int)),
        ("tag", ctypes.POINTER(ctypes.c_int)), ("pairs", ctypes.POINTER(ctypes.c_int)),
        ("energy_atom", ctypes.POINTER(ctypes.c_double)), ("pair_gradient", ctypes.POINTER(ctypes.c_double)),
        ("uncertainty_atom", ctypes.POINTER(ctypes.c_double)), ("components", ctypes.POINTER(ctypes.c_double)),
        ("energy", ctypes.c_double), ("message", ctypes.c_char * MESSAGE_SIZE),
    ]


SETUP_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(AtomfluxSetup))
COMPUTE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(AtomfluxCompute))
RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_longlong)


@dataclass
class BridgedModel:
    """A loaded potential and the element of each LAMMPS type.

    Attributes
    ----------
    potential
        The atomflux potential.
    numbers_of_type : np.ndarray [ntypes + 1]
        Atomic number of each LAMMPS type (index 0 unused).
    dtype, device
        Where the model runs.
    """

    potential: torch.nn.Module
    numbers_of_type: np.ndarray
    dtype: torch.dtype
    device: torch.device

    @property
    def n_components(self) -> int:
        """Length of the uncertainty component vector (0 without uncertainty)."""
        if getattr(self.potential, "energy_variance", None) is not None:
            return int(self.potential.posterior()[1].shape[0])
        return n_members(self.potential)

    def compute(self, positions: np.ndarray, types: np.ndarray, pairs: np.ndarray, nlocal: int,
                want_uncertainty: bool) -> dict[str, np.ndarray | float]:
        """Energies of the local atoms and dE/dr of the pairs.

        Parameters
        ----------
        positions : [nall, 3] Å, local atoms first, then ghosts.
        types : [nall] LAMMPS types.
        pairs : [P, 2] (i local, j local or ghost) within the cutoff.
        nlocal : number of local atoms.
        want_uncertainty : also return per-atom σ and this rank's components.
        """
        # only the ghosts that are someone's neighbour enter the model
        ghosts = np.unique(pairs[:, 1][pairs[:, 1] >= nlocal])
        index = np.empty(len(positions), dtype=np.int64)
        index[:nlocal] = np.arange(nlocal)
        index[ghosts] = nlocal + np.arange(len(ghosts))
        atoms = np.concatenate([np.arange(nlocal), ghosts])
        n, n_pairs = len(atoms), len(pairs)
        batch = Batch(
            positions=torch.as_tensor(positions[atoms], dtype=self.dtype, device=self.device),
            numbers=torch.as_tensor(self.numbers_of_type[types[atoms]], dtype=torch.long, device=self.device),
            cell=torch.zeros((1, 3, 3), dtype=self.dtype, device=self.device),
            pbc=torch.zeros((1, 3), dtype=torch.bool, device=self.device),
            system=torch.zeros(n, dtype=torch.long, device=self.device),
            pairs=torch.as_tensor(np.stack([pairs[:, 0], index[pairs[:, 1]]], axis=1), device=self.device),
            shifts=torch.zeros((n_pairs, 3), dtype=self.dtype, device=self.device),
            cutoff=float(self.potential.cutoff),
        )
        results = evaluate(self.potential, batch, forces=False, energies=True, pair_gradients=True,
                           uncertainty="energy" if want_uncertainty else False)
        local_energies = results.energies[:nlocal]
        out: dict[str, np.ndarray | float] = {
            "energies": local_energies.double().cpu().numpy(),
            "pair_gradients": results.pair_gradients.double().cpu().numpy(),
            "energy": float(local_energies.sum()),
        }
        if want_uncertainty:
            out["uncertainty"] = results.energies_uncertainty[:nlocal].double().cpu().numpy()
            out["components"] = energy_uncertainty_components(
                self.potential, results.outputs, slice(0, nlocal)).double().cpu().numpy()
        return out


def check_geometry(positions: np.ndarray, pairs: np.ndarray, nlocal: int, ids: np.ndarray) -> None:
    """Raise ``ValueError`` naming LAMMPS atom IDs for NaN/inf positions or atoms closer than 0.3 Å."""
    bad = ~np.isfinite(positions[:nlocal]).all(axis=1)
    if bad.any():
        raise ValueError(f"NaN or inf positions for atom ID(s) {ids[:nlocal][bad][:10].tolist()}")
    if len(pairs):
        distances = np.linalg.norm(positions[pairs[:, 1]] - positions[pairs[:, 0]], axis=1)
        k = int(np.argmin(distances))
        if distances[k] < MIN_DISTANCE:
            i, j = ids[pairs[k, 0]], ids[pairs[k, 1]]
            raise ValueError(f"atoms with IDs {i} and {j} overlap: distance {distances[k]:.3g} Å < {MIN_DISTANCE} Å")


_models: dict[int, BridgedModel] = {}
_next_handle = [0]


def _write_message(structure: ctypes.Structure, text: str) -> None:
    """Copy ``text`` into the structure's ``message`` buffer (in place, for C++ to read)."""
    # LAMMPS formats error text with {fmt}: braces would be read as fields
    data = text.replace("{", "(").replace("}", ")").encode()[: MESSAGE_SIZE - 1]
    address = ctypes.addressof(structure) + type(structure).message.offset
    ctypes.memmove(address, data + b"\0", len(data) + 1)


def parse_options(options: str, nprocs: int) -> tuple[torch.dtype, torch.device]:
    """``pair_style atomflux [dtype float32|float64] [device cpu|cuda] [threads N]``."""
    words = options.split()
    if len(words) % 2:
        raise ValueError(f"pair_style atomflux options come in 'keyword value' pairs, got '{options}'")
    dtype, device, threads = torch.float64, torch.device("cpu"), None
    for key, value in zip(words[::2], words[1::2]):
        if key == "dtype":
            if value not in ("float32", "float64"):
                raise ValueError(f"pair_style atomflux dtype must be float32 or float64, got '{value}'")
            dtype = getattr(torch, value)
        elif key == "device":
            device = torch.device(value)
        elif key == "threads":
            threads = int(value)
        else:
            raise ValueError(f"unknown pair_style atomflux keyword '{key}' (known: dtype, device, threads)")
    if threads is None and nprocs > 1:  # one process per core is the MPI default: do not oversubscribe
        threads = max(1, (os.cpu_count() or 1) // nprocs)
    if threads is not None:
        torch.set_num_threads(threads)
    return dtype, device


def setup_model(model: str, elements: list[str], options: str, units: str, ntypes: int,
                nprocs: int = 1) -> BridgedModel:
    """Load ``model`` for LAMMPS types mapped to ``elements``; raise ``ValueError`` with a clear message."""
    from ..io import load_model
    from ..models.base import floating_dtype

    if units != "metal":
        raise ValueError(f"pair_style atomflux needs 'units metal' (eV, Å, ps); this input uses units {units}")
    if len(elements) != ntypes:
        raise ValueError(f"pair_coeff * * {model} needs one element per atom type: "
                         f"{ntypes} type(s) defined, {len(elements)} element(s) given")
    unknown = [e for e in elements if e not in atomic_numbers]
    if unknown:
        raise ValueError(f"pair_coeff: {', '.join(repr(e) for e in unknown)} is not a chemical element "
                         "(give one element symbol per atom type, e.g. Cu Ag)")
    dtype, device = parse_options(options, nprocs)
    # without an explicit 'dtype' option a model runs in its own dtype (float64 for atomflux models,
    # float32 for SevenNet); model specs (sevennet:7net-0, mace:PATH) are accepted like files
    explicit_dtype = "dtype" in options.split()[::2]
    potential = load_model(model, dtype=dtype if explicit_dtype else None, device=device)
    dtype = floating_dtype(potential) if not explicit_dtype else dtype
    if not getattr(potential, "predicts_energy", True):
        raise ValueError(f"pair_coeff * * {model}: a {type(potential).__name__} predicts orbital energies, "
                         "not the energy; pair_style atomflux needs an energy model")
    numbers = np.array([0] + [atomic_numbers[e] for e in elements], dtype=np.int64)
    try:
        potential.check_species(numbers[1:])
    except ValueError as error:
        raise ValueError(f"pair_coeff * * {model}: {error}") from None
    if not getattr(potential, "strictly_local", False):
        reach = getattr(potential, "interaction_range", None)
        reach = f" (message passing reaches {reach:g} Å)" if reach else ""
        raise ValueError(f"{type(potential).__name__} is not strictly local{reach}: an atom's energy depends on more "
                         "than its own neighbours, which pair_style atomflux's domain decomposition needs")
    return BridgedModel(potential, numbers, dtype, device)


def _setup(pointer: ctypes.POINTER(AtomfluxSetup)) -> int:
    setup = pointer.contents
    try:
        bridged = setup_model(setup.model.decode(), setup.elements.decode().split(), setup.options.decode(),
                              setup.units.decode(), setup.ntypes, setup.nprocs)
        handle = _next_handle[0]
        _next_handle[0] += 1
        _models[handle] = bridged
        setup.handle = handle
        setup.cutoff = float(bridged.potential.cutoff)
        setup.n_components = bridged.n_components
        return 0
    except Exception as error:  # noqa: BLE001 - every failure becomes a LAMMPS error message
        _write_message(setup, f"{type(error).__name__}: {error}" if not isinstance(error, ValueError)
                       else str(error))
        return 1


def _compute(pointer: ctypes.POINTER(AtomfluxCompute)) -> int:
    call = pointer.contents
    try:
        bridged = _models[call.handle]
        nlocal, nall, npairs = call.nlocal, call.nall, call.npairs
        if npairs == 0 and nlocal == 0:
            call.energy = 0.0
            return 0
        positions = np.ctypeslib.as_array(call.x, shape=(nall, 3))
        types = np.ctypeslib.as_array(call.type, shape=(nall,))
        pairs = (np.ctypeslib.as_array(call.pairs, shape=(npairs, 2)) if npairs
                 else np.zeros((0, 2), dtype=np.int32)).astype(np.int64)
        check_geometry(positions, pairs, nlocal, np.ctypeslib.as_array(call.tag, shape=(nall,)))
        want = bool(call.want_uncertainty)
        if want and bridged.n_components == 0:
            raise ValueError("compute atomflux/uncertainty: this model has no uncertainty; use a shallow ensemble "
                             "or add LLPR (atomflux llpr / atomflux ensemble)")
        out = bridged.compute(positions, types, pairs, nlocal, want)
        np.ctypeslib.as_array(call.energy_atom, shape=(max(nlocal, 1),))[:nlocal] = out["energies"]
        if npairs:
            np.ctypeslib.as_array(call.pair_gradient, shape=(npairs, 3))[:] = out["pair_gradients"]
        call.energy = out["energy"]
        if want:
            np.ctypeslib.as_array(call.uncertainty_atom, shape=(max(nlocal, 1),))[:nlocal] = out["uncertainty"]
            np.ctypeslib.as_array(call.components, shape=(bridged.n_components,))[:] = out["components"]
        return 0
    except Exception as error:  # noqa: BLE001
        _write_message(call, f"pair_style atomflux: {type(error).__name__}: {error}")
        return 1


def _release(handle: int) -> None:
    _models.pop(int(handle), None)


# the ctypes callbacks must stay alive as long as the library may call them
_CALLBACKS = (SETUP_FN(_setup), COMPUTE_FN(_compute), RELEASE_FN(_release))
_registered: set[str] = set()


def register(library: Path) -> None:
    """Point the loaded plugin library at this module's callbacks (once per process)."""
    key = str(Path(library).resolve())
    if key in _registered:
        return
    lib = ctypes.CDLL(key)
    lib.atomflux_set_callbacks(*_CALLBACKS)
    _registered.add(key)
