"""The Python side of ``pair_style atomflux``: model set-up and force calls.

The C++ plugin calls :func:`_setup` from ``pair_coeff`` and :func:`_compute`
from every force evaluation, through ``ctypes`` function pointers registered
by :func:`register`.  Structures here mirror ``AtomfluxSetup`` and
``AtomfluxCompute`` in ``pair_atomflux.cpp``.  Errors never propagate as
Python exceptions into C++: they are returned as messages that LAMMPS
raises as its own errors.

A force call costs little Python work: the plugin has already filtered the
pairs to the model cutoff, computed their vectors (ghost atoms included, so
no cell shifts), checked for overlapping atoms and replaced every ghost
neighbour by a stand-in atom of its type; its buffers live across steps, and
the tensors here are views of them (no copies).  The results go back as
pointers into the result tensors, kept alive until the next call.

A message-passing model (not strictly local) is called through
:func:`_compute_system` instead, with whole systems: the local atoms in the
periodic box on one MPI rank; on several, the local atoms and a ghost shell
of one cutoff with node features exchanged between layers (a layer-stack
model: the per-layer halo, through the plugin's ``atomflux_exchange``), or a
ghost shell of its whole interaction range (:mod:`.whole_system`).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

from ..evaluate import energy_uncertainty_components, evaluate
from ..heap import keep_freed_memory
from ..systems import MIN_DISTANCE, Batch
from ..uncertainty.propagation import n_members
from .whole_system import Halo, OwnedEnergies, halo_flux_step, owned_pairs, periodic_flux_step, system_batch

MESSAGE_SIZE = 4096
INT64_P = ctypes.POINTER(ctypes.c_int64)
DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class AtomfluxSetup(ctypes.Structure):
    _fields_ = [
        ("model", ctypes.c_char_p), ("elements", ctypes.c_char_p), ("options", ctypes.c_char_p),
        ("units", ctypes.c_char_p), ("ntypes", ctypes.c_int), ("rank", ctypes.c_int), ("nprocs", ctypes.c_int),
        ("numbers_of_type", INT64_P), ("cutoff", ctypes.c_double), ("min_distance", ctypes.c_double),
        ("pairwise", ctypes.c_int), ("n_components", ctypes.c_int), ("whole_system", ctypes.c_int),
        ("interaction_range", ctypes.c_double), ("halo", ctypes.c_int), ("halo_width", ctypes.c_int),
        ("handle", ctypes.c_longlong),
        ("message", ctypes.c_char * MESSAGE_SIZE),
    ]


class AtomfluxCompute(ctypes.Structure):
    _fields_ = [
        ("handle", ctypes.c_longlong), ("nlocal", ctypes.c_int), ("natoms", ctypes.c_int), ("npairs", ctypes.c_int),
        ("want_uncertainty", ctypes.c_int), ("atom_capacity", ctypes.c_longlong),
        ("pair_capacity", ctypes.c_longlong),
        ("numbers", INT64_P), ("pairs", INT64_P), ("vectors", DOUBLE_P),
        ("uncertainty_atom", DOUBLE_P), ("components", DOUBLE_P),
        ("energy_atom", ctypes.c_void_p), ("pair_gradient", ctypes.c_void_p),
        ("message", ctypes.c_char * MESSAGE_SIZE),
    ]


class AtomfluxSystem(ctypes.Structure):
    _fields_ = [
        ("handle", ctypes.c_longlong), ("nlocal", ctypes.c_int), ("natoms", ctypes.c_int),
        ("periodic", ctypes.c_int * 3), ("cell", ctypes.c_double * 9), ("origin", ctypes.c_double * 3),
        ("want_virials", ctypes.c_int), ("want_centroid", ctypes.c_int), ("want_uncertainty", ctypes.c_int),
        ("positions", DOUBLE_P), ("numbers", INT64_P), ("ids", INT64_P),
        ("uncertainty_atom", DOUBLE_P), ("components", DOUBLE_P),
        ("energy_atom", ctypes.c_void_p), ("forces", ctypes.c_void_p), ("virial", ctypes.c_void_p),
        ("virials", ctypes.c_void_p), ("centroid", ctypes.c_void_p), ("pair", ctypes.c_void_p),
        ("message", ctypes.c_char * MESSAGE_SIZE),
    ]


SETUP_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(AtomfluxSetup))
COMPUTE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(AtomfluxCompute))
SYSTEM_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(AtomfluxSystem))
RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_longlong)


@dataclass(frozen=True)
class LammpsBatch(Batch):
    """One LAMMPS rank's atoms as a :class:`~atomflux.systems.Batch`.

    Atoms ``0 .. nlocal-1`` are the rank's local atoms; after them come one
    stand-in atom per LAMMPS type, the second atom of every pair whose
    neighbour is a ghost of that type.  A strictly local potential needs only
    the pair vectors and the species at both ends, so this is exact, and the
    model evaluates no ghost atoms.  (On steps that need per-atom energies of a
    ``pairwise`` potential, each pair is instead its own atom, followed by the
    stand-ins: its energy is half the pair term.)  Pair vectors come from LAMMPS
    (ghost positions included: no cell shifts); positions are NaN, since
    potentials see positions only through the pair vectors.
    """

    vectors: torch.Tensor | None = None

    def pair_vectors(self, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The pair vectors LAMMPS computed, Å, Tensor [P, 3]."""
        if positions is not None:
            raise ValueError("a LammpsBatch has its pair vectors from LAMMPS; other positions cannot be applied")
        return self.vectors

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> "LammpsBatch":
        """Copy in ``dtype`` on ``device``; the NaN positions and zero shifts stay broadcast views."""
        dtype = dtype or self.dtype
        def broadcast(t: torch.Tensor) -> torch.Tensor:
            return t[:1].to(device=device, dtype=dtype).expand_as(t)
        return replace(self, positions=broadcast(self.positions), shifts=broadcast(self.shifts),
                       cell=self.cell.to(device=device, dtype=dtype), numbers=self.numbers.to(device=device),
                       pbc=self.pbc.to(device=device), system=self.system.to(device=device),
                       pairs=self.pairs.to(device=device), vectors=self.vectors.to(device=device, dtype=dtype))


def _as_tensor(pointer, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor viewing ``shape`` items of C++ memory (no copy)."""
    return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=shape))


class _View:
    """A tensor view of one of the plugin's buffers with rows of ``width`` items,
    rebuilt only when the buffer moves (when it grows)."""

    def __init__(self, width: int) -> None:
        self.width, self.key, self.tensor = width, None, None

    def get(self, pointer, capacity: int, rows: int) -> torch.Tensor:
        """The first ``rows`` rows of the buffer at ``pointer`` holding ``capacity`` rows."""
        key = (ctypes.cast(pointer, ctypes.c_void_p).value, capacity)
        if key != self.key:
            self.tensor = _as_tensor(pointer, (capacity, self.width) if self.width > 1 else (capacity,))
            self.key = key
        return self.tensor[:rows]


@dataclass
class BridgedModel:
    """A loaded potential and the element of each LAMMPS type.

    Attributes
    ----------
    potential
        The atomflux potential.
    numbers_of_type : np.ndarray [ntypes + 1]
        Atomic number of each LAMMPS type (index 0 unused).
    device
        Where the model runs (in its own dtype; pair vectors, energies and
        gradients stay float64, as LAMMPS gives and takes them).
    whole_system
        The potential is not strictly local (message passing): it is called
        with whole systems (:meth:`compute_system`), not pairs.
    halo
        Several MPI ranks and a layer-stack potential: a ghost shell of one
        cutoff, node features exchanged between layers.
    """

    potential: torch.nn.Module
    numbers_of_type: np.ndarray
    device: torch.device
    whole_system: bool = False
    halo: bool = False
    _views: dict[str, _View] = field(
        default_factory=lambda: {"numbers": _View(1), "pairs": _View(2), "vectors": _View(3)}, repr=False)
    _constants: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _returned: tuple[torch.Tensor, ...] = field(default=(), repr=False)

    @property
    def layer_stack(self) -> bool:
        """The potential exposes its message-passing layers (``forward(..., refresh=)``)."""
        return bool(getattr(self.potential, "layer_stack", False))

    @property
    def n_components(self) -> int:
        """Length of the uncertainty component vector (0 without uncertainty)."""
        if getattr(self.potential, "energy_variance", None) is not None:
            return int(self.potential.posterior()[1].shape[0])
        return n_members(self.potential)

    def batch(self, numbers: torch.Tensor, pairs: torch.Tensor, vectors: torch.Tensor) -> LammpsBatch:
        """The :class:`LammpsBatch` of atomic numbers [N], pairs [P, 2] and pair vectors [P, 3] (Å, float64:
        a float32 model computes in float32 and :func:`~atomflux.evaluate` accumulates in float64)."""
        n, n_pairs = len(numbers), len(pairs)
        if self._constants.get("system") is None or len(self._constants["system"]) < n:
            self._constants.update(
                system=torch.zeros(2 * n, dtype=torch.long, device=self.device),
                nan=torch.full((1, 3), float("nan"), dtype=torch.float64, device=self.device),
                zero=torch.zeros((1, 3), dtype=torch.float64, device=self.device),
                cell=torch.zeros((1, 3, 3), dtype=torch.float64, device=self.device),
                pbc=torch.zeros((1, 3), dtype=torch.bool, device=self.device))
        c = self._constants
        return LammpsBatch(
            positions=c["nan"].expand(n, 3), numbers=numbers.to(self.device), cell=c["cell"], pbc=c["pbc"],
            system=c["system"][:n], pairs=pairs.to(self.device), shifts=c["zero"].expand(n_pairs, 3),
            cutoff=float(self.potential.cutoff), vectors=vectors.to(device=self.device))

    def compute(self, call: AtomfluxCompute) -> None:
        """Evaluate the model on one force call's atoms and pairs; point ``call`` at the results.

        Reads ``numbers`` [natoms], ``pairs`` [npairs, 2] and ``vectors``
        [npairs, 3] (Å) from the plugin's buffers; sets ``energy_atom``
        ([natoms], eV) and ``pair_gradient`` ([npairs, 3], dE/dr_ij in eV/Å)
        to float64 tensors kept alive until the next call; with
        ``want_uncertainty`` writes the local atoms' energy σ (eV) and this
        rank's uncertainty components into the plugin's buffers.
        """
        nlocal, want = call.nlocal, bool(call.want_uncertainty)
        views = self._views
        batch = self.batch(views["numbers"].get(call.numbers, call.atom_capacity, call.natoms),
                           views["pairs"].get(call.pairs, call.pair_capacity, call.npairs),
                           views["vectors"].get(call.vectors, call.pair_capacity, call.npairs))
        results = evaluate(self.potential, batch, forces=False, energies=True, pair_gradients=True,
                           uncertainty="energy" if want else False)
        energies = results.energies.to(device="cpu", dtype=torch.float64).contiguous()
        gradients = results.pair_gradients.to(device="cpu", dtype=torch.float64).contiguous()
        self._returned = (energies, gradients)
        call.energy_atom = energies.data_ptr()
        call.pair_gradient = gradients.data_ptr()
        if want:
            _as_tensor(call.uncertainty_atom, (nlocal,)).copy_(results.energies_uncertainty[:nlocal])
            components = energy_uncertainty_components(self.potential, results.outputs, slice(0, nlocal))
            _as_tensor(call.components, (len(components),)).copy_(components)

    def compute_system(self, call: AtomfluxSystem) -> None:
        """Evaluate a message-passing model on one rank's whole system; point ``call`` at the results.

        Reads ``natoms`` positions (Å), atomic numbers and IDs, the box and its
        periodicity; the first ``nlocal`` atoms are LAMMPS's local atoms, the
        others (several MPI ranks) the ghost shell, whose energies do not count
        (with the per-layer halo: one cutoff deep, the ghosts' node features
        exchanged between layers, collectively with the other ranks).
        Sets ``energy_atom`` [natoms] (eV), ``forces`` [natoms, 3] (eV/Å),
        ``virial`` [3, 3] (W = -Σ g ⊗ r, eV) and, when asked, ``virials``
        (per-atom, two-body split) and ``centroid`` (heat-flux receiver
        virials W̃: for a layer stack the whole step from one pass through a halo of one cutoff,
        :func:`~.whole_system.halo_flux_step` / :func:`~.whole_system.periodic_flux_step`;
        otherwise :func:`~atomflux.evaluate.unfolded_flux_virials`), both
        [natoms, 3, 3] eV, as float64 tensors kept alive until the next call.
        """
        n, nlocal, want = call.natoms, call.nlocal, bool(call.want_uncertainty)
        # a rank without atoms (several ranks: it still takes part in every layer's exchange) gets no positions
        positions = np.ctypeslib.as_array(call.positions, shape=(n, 3)) if n else np.zeros((0, 3))
        batch = system_batch(positions,
                             np.ctypeslib.as_array(call.numbers, shape=(n,)), np.reshape(call.cell[:], (3, 3)),
                             np.array(call.origin[:]), np.array(call.periodic[:], dtype=bool),
                             float(self.potential.cutoff), np.ctypeslib.as_array(call.ids, shape=(n,)),
                             device=self.device)
        halo = Halo(_exchange_through(call.pair, n), nlocal) if self.halo else None
        if halo:
            batch = owned_pairs(batch, nlocal, getattr(self.potential, "pair_receiver", None))
        # a heat-flux step of a layer stack: everything from one pass through a halo of one cutoff (several
        # ranks: LAMMPS's; one rank: images of the periodic box), never the unfolded system of the whole reach
        if call.want_centroid and (halo is not None or (n == nlocal and self.layer_stack)):
            options = {"virials": bool(call.want_virials), "uncertainty": want}
            results = (halo_flux_step(self.potential, batch, halo, **options) if halo
                       else periodic_flux_step(self.potential, batch, **options))
        else:
            model = (OwnedEnergies(self.potential, nlocal, halo.refresh) if halo
                     else self.potential if n == nlocal else OwnedEnergies(self.potential, nlocal))
            results = evaluate(model, batch, forces=True, stress=True, energies=True,
                               virials=bool(call.want_virials), flux_virials=bool(call.want_centroid),
                               uncertainty="energy" if want else False)

        def out(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().to(device="cpu", dtype=torch.float64).contiguous()

        returned = [out(results.energies), out(results.forces), out(results.virial[0])]
        call.energy_atom, call.forces, call.virial = (t.data_ptr() for t in returned)
        if call.want_virials:
            returned.append(out(results.virials))
            call.virials = returned[-1].data_ptr()
        if call.want_centroid:
            returned.append(out(results.flux_virials))
            call.centroid = returned[-1].data_ptr()
        self._returned = tuple(returned)
        if want:
            _as_tensor(call.uncertainty_atom, (nlocal,)).copy_(results.energies_uncertainty[:nlocal])
            components = energy_uncertainty_components(self.potential, results.outputs, slice(0, nlocal))
            _as_tensor(call.components, (len(components),)).copy_(components)


_models: dict[int, BridgedModel] = {}
_next_handle = [0]


def _write_message(structure: ctypes.Structure, text: str) -> None:
    """Copy ``text`` into the structure's ``message`` buffer (in place, for C++ to read)."""
    # LAMMPS formats error text with {fmt}: braces would be read as fields
    data = text.replace("{", "(").replace("}", ")").encode()[: MESSAGE_SIZE - 1]
    address = ctypes.addressof(structure) + type(structure).message.offset
    ctypes.memmove(address, data + b"\0", len(data) + 1)


def parse_options(options: str, nprocs: int) -> tuple[str, torch.device, bool, str]:
    """``pair_style atomflux [precision auto|float32|float64|native] [device cpu|cuda] [threads N] [trust yes|no]
    [halo auto|yes|no]``: the precision choice (``dtype float32|float64`` is the same as ``precision``), the
    device, whether a third-party pickle checkpoint (``mace:PATH``, ``sevennet:PATH``) may be loaded
    (``trust yes``: only for files whose origin you trust, unpickling can run code), and the multi-rank mode
    of a message-passing model (``halo auto``: the per-layer halo where the model exposes its layers, else
    the full ghost shell; ``yes``: the halo or an error; ``no``: the full ghost shell)."""
    from ..io import PRECISIONS

    words = options.split()
    if len(words) % 2:
        raise ValueError(f"pair_style atomflux options come in 'keyword value' pairs, got '{options}'")
    precision, device, threads, trust, halo = "auto", torch.device("cpu"), None, False, "auto"
    for key, value in zip(words[::2], words[1::2]):
        if key in ("precision", "dtype"):
            allowed = PRECISIONS if key == "precision" else ("float32", "float64")
            if value not in allowed:
                raise ValueError(f"pair_style atomflux {key} must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                                 f"got '{value}'")
            precision = value
        elif key == "device":
            device = torch.device(value)
        elif key == "threads":
            threads = int(value)
        elif key == "trust":
            if value not in ("yes", "no"):
                raise ValueError(f"pair_style atomflux trust must be yes or no, got '{value}'")
            trust = value == "yes"
        elif key == "halo":
            if value not in ("auto", "yes", "no"):
                raise ValueError(f"pair_style atomflux halo must be auto, yes or no, got '{value}'")
            halo = value
        else:
            raise ValueError(f"unknown pair_style atomflux keyword '{key}' "
                             "(known: precision, device, threads, trust, halo)")
    if threads is None and nprocs > 1:  # one process per core is the MPI default: do not oversubscribe
        threads = max(1, (os.cpu_count() or 1) // nprocs)
    if threads is not None:
        torch.set_num_threads(threads)
    return precision, device, trust, halo


def setup_model(model: str, elements: list[str], options: str, units: str, ntypes: int,
                nprocs: int = 1) -> BridgedModel:
    """Load ``model`` for LAMMPS types mapped to ``elements``; raise ``ValueError`` with a clear message."""
    from ..io import load_model, md_dtype

    if units != "metal":
        raise ValueError(f"pair_style atomflux needs 'units metal' (eV, Å, ps); this input uses units {units}")
    if len(elements) != ntypes:
        raise ValueError(f"pair_coeff * * {model} needs one element per atom type: "
                         f"{ntypes} type(s) defined, {len(elements)} element(s) given")
    unknown = [e for e in elements if e not in atomic_numbers]
    if unknown:
        raise ValueError(f"pair_coeff: {', '.join(repr(e) for e in unknown)} is not a chemical element "
                         "(give one element symbol per atom type, e.g. Cu Ag)")
    precision, device, trust, halo_option = parse_options(options, nprocs)
    # precision auto (the default, as in `atomflux md`): float32 for atomflux models, the model's own
    # dtype for model specs (sevennet:7net-0, mace:PATH); float64 accumulation either way
    try:
        potential = load_model(model, dtype=md_dtype(precision, [model]), device=device, trust=trust)
    except ValueError as error:  # an untrusted pickle: name the pair_style keyword, not the Python argument
        raise ValueError(str(error).replace("pass trust=True (CLI: --trust-model)",
                                            "add `trust yes` to pair_style atomflux")) from None
    if not getattr(potential, "predicts_energy", True):
        raise ValueError(f"pair_coeff * * {model}: a {type(potential).__name__} predicts orbital energies, "
                         "not the energy; pair_style atomflux needs an energy model")
    numbers = np.array([0] + [atomic_numbers[e] for e in elements], dtype=np.int64)
    try:
        potential.check_species(numbers[1:])
    except ValueError as error:
        raise ValueError(f"pair_coeff * * {model}: {error}") from None
    # message passing: whole systems (periodic box on one rank, ghost shell of the reach on several)
    whole_system = not getattr(potential, "strictly_local", False)
    if getattr(potential, "long_range", False) and nprocs > 1:
        raise ValueError(f"{type(potential).__name__} is a long-range model (Ewald/PME sums over the whole periodic "
                         f"box), which no ghost shell reproduces on {nprocs} MPI ranks; run LAMMPS on one rank")
    if whole_system and nprocs > 1 and getattr(potential, "interaction_range", None) is None:
        raise ValueError(f"{type(potential).__name__} is not strictly local and declares no interaction_range "
                         f"(Å, layers × cutoff), so the ghost shell its energies need on {nprocs} MPI ranks is "
                         "unknown; run on one MPI rank (exact periodic message passing), or give the potential "
                         "an interaction_range")
    layer_stack = bool(getattr(potential, "layer_stack", False))
    if halo_option == "yes" and whole_system and not layer_stack:
        raise ValueError(f"pair_style atomflux halo yes: {type(potential).__name__} does not expose its "
                         "message-passing layers (layer_stack), so ghost features cannot be exchanged between layers; "
                         "use `halo auto` (a ghost shell of the whole reach, with comm_modify cutoff) or one MPI rank")
    halo = whole_system and nprocs > 1 and layer_stack and halo_option != "no"
    keep_freed_memory()
    return BridgedModel(potential, numbers, device, whole_system=whole_system, halo=halo)


def _setup(pointer: ctypes.POINTER(AtomfluxSetup)) -> int:
    setup = pointer.contents
    try:
        bridged = setup_model(setup.model.decode(), setup.elements.decode().split(), setup.options.decode(),
                              setup.units.decode(), setup.ntypes, setup.nprocs)
        handle = _next_handle[0]
        _next_handle[0] += 1
        _models[handle] = bridged
        setup.handle = handle
        _as_tensor(setup.numbers_of_type, (setup.ntypes + 1,))[:] = torch.from_numpy(bridged.numbers_of_type)
        setup.cutoff = float(bridged.potential.cutoff)
        setup.min_distance = MIN_DISTANCE
        setup.pairwise = (bool(getattr(bridged.potential, "pairwise", False)) and bridged.n_components == 0
                          and not bridged.whole_system)
        setup.n_components = bridged.n_components
        setup.whole_system = bridged.whole_system
        setup.interaction_range = float(getattr(bridged.potential, "interaction_range", 0.0) or 0.0)
        setup.halo = bridged.halo
        setup.halo_width = int(getattr(bridged.potential, "halo_width", 0)) if bridged.halo else 0
        return 0
    except Exception as error:  # noqa: BLE001 - every failure becomes a LAMMPS error message
        _write_message(setup, f"{type(error).__name__}: {error}" if not isinstance(error, ValueError)
                       else str(error))
        return 1


def _compute(pointer: ctypes.POINTER(AtomfluxCompute)) -> int:
    call = pointer.contents
    try:
        _models[call.handle].compute(call)
        return 0
    except Exception as error:  # noqa: BLE001
        _write_message(call, f"pair_style atomflux: {type(error).__name__}: {error}")
        return 1


def _compute_system(pointer: ctypes.POINTER(AtomfluxSystem)) -> int:
    call = pointer.contents
    try:
        _models[call.handle].compute_system(call)
        return 0
    except ValueError as error:
        _write_message(call, f"pair_style atomflux: {error}")
        return 1
    except Exception as error:  # noqa: BLE001
        _write_message(call, f"pair_style atomflux: {type(error).__name__}: {error}")
        return 1


def _exchange_through(pair: int, n_atoms: int):
    """``exchange(data, reverse)`` for :class:`~.whole_system.HaloExchange`: the plugin's
    ``atomflux_exchange`` on the pair style at address ``pair``, for float64 data [n_atoms, width]."""
    function = _library[0].atomflux_exchange

    def exchange(data: torch.Tensor, reverse: bool) -> None:
        if data.dtype != torch.float64 or data.dim() != 2 or len(data) != n_atoms or not data.is_contiguous():
            raise ValueError(f"halo exchange needs contiguous float64 [{n_atoms}, width], got "
                             f"{data.dtype} {tuple(data.shape)}")
        if data.shape[1]:
            function(ctypes.c_void_p(pair), ctypes.c_void_p(data.data_ptr()), int(data.shape[1]), int(reverse))

    return exchange


def _release(handle: int) -> None:
    _models.pop(int(handle), None)


# the ctypes callbacks must stay alive as long as the library may call them
_CALLBACKS = (SETUP_FN(_setup), COMPUTE_FN(_compute), SYSTEM_FN(_compute_system), RELEASE_FN(_release))
_registered: set[str] = set()
_library: list[ctypes.CDLL] = []   # the loaded plugin, whose atomflux_exchange the per-layer halo calls


def register(library: Path) -> None:
    """Point the loaded plugin library at this module's callbacks (once per process)."""
    key = str(Path(library).resolve())
    if key in _registered:
        return
    lib = ctypes.CDLL(key)
    lib.atomflux_set_callbacks(*_CALLBACKS)
    lib.atomflux_exchange.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.atomflux_exchange.restype = None
    _library[:] = [lib]
    _registered.add(key)
