"""The i-PI driver: structures from i-PI → one batched ``evaluate`` call → energies, forces, virials.

i-PI sends positions and cells only; the elements (and, optionally, the
periodicity) come from a template structure, checked against the atom count
of every message.  Every message — one structure, or all the beads i-PI's
``<batch_size>`` groups together — is answered with a single
:func:`~atomflux.evaluate.evaluate` call on one :class:`~atomflux.systems.Batch`.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms

from ..calculators.ase_calculator import resolve_potential
from ..evaluate import evaluate
from ..io import native_dtypes, parse_dtype
from ..models import Potential
from ..systems import MIN_DISTANCE, Batch
from .committee import committee_extras
from .protocol import DEFAULT_PREFIX, Connection, Reply, Request, Session, connect, disconnect, serve
from .units import cell_to_ase, energy_to_hartree, forces_to_atomic, positions_to_angstrom

#: extras of a model without uncertainty (valid JSON, so i-PI's parser is happy)
NO_EXTRAS = b"{}"


@dataclass
class DriverSummary:
    """What a driver did.

    Attributes
    ----------
    ended : str
        ``"exit"`` (i-PI sent EXIT) or ``"disconnected"`` (i-PI went away without it).
    messages, structures : int
        Position messages answered and structures evaluated.
    batch_size : int
        Structures per message (i-PI's ``<batch_size>``).
    model_seconds : float
        Wall time spent building batches and evaluating the model, s.
    total_seconds : float
        Wall time connected to i-PI, s.
    """

    ended: str
    messages: int
    structures: int
    batch_size: int
    model_seconds: float
    total_seconds: float

    def describe(self) -> str:
        """One line for the log."""
        how = "i-PI sent EXIT" if self.ended == "exit" else "i-PI closed the connection without EXIT"
        per = 1000 * self.model_seconds / max(self.structures, 1)
        return (f"{how} after {self.messages} messages ({self.structures} structures, batch size "
                f"{self.batch_size}); model {per:.1f} ms per structure, {self.total_seconds:.1f} s connected")


def read_template(structure: str | Path | Atoms | Sequence[str]) -> tuple[Atoms, str]:
    """Template atoms (elements, periodicity) and a label for messages.

    ``structure`` is an ASE-readable file, an ``Atoms`` object, or a list of
    chemical symbols (one per atom, in i-PI's order).
    """
    if isinstance(structure, Atoms):
        return structure.copy(), f"the structure {structure.get_chemical_formula()}"
    if isinstance(structure, (str, Path)):
        import ase.io

        path = Path(structure)
        if not path.is_file():
            raise FileNotFoundError(f"no structure file {str(path)!r} (it gives the element of each atom i-PI moves)")
        return ase.io.read(path), f"--structure {path}"
    symbols = list(structure)
    try:
        return Atoms(symbols), f"the {len(symbols)} given elements"
    except (KeyError, ValueError):
        bad = next(s for s in symbols if not _is_element(s))
        raise ValueError(f"{bad!r} is not a chemical element: give element symbols (e.g. 'Cu'), "
                         "one per atom in i-PI's order") from None


def _is_element(symbol: str) -> bool:
    from ase.data import atomic_numbers

    return symbol in atomic_numbers


class IPIDriver:
    """Answers i-PI's force requests with an atomflux potential.

    Parameters
    ----------
    model
        Anything a model spec takes (model file, shipped name such as ``"demo"``,
        or a :class:`~atomflux.models.Potential`).
    structure
        Elements of the atoms i-PI moves, in i-PI's order: an ASE-readable
        file, ``Atoms``, or a list of symbols.  Its periodicity is used when
        it has any; otherwise each structure is periodic in 3-D when i-PI's
        cell has a volume and non-periodic when i-PI's cell is zero.
    uncertainty
        For uncertainty-capable models: ``"full"`` (default) sends the
        committee (member energies, forces, virials) and the energy σ in the
        extras; ``"energy"`` member energies and σ only (no extra backward
        pass); ``False`` nothing.  Ignored (nothing sent) for models without
        uncertainty.
    pbc
        Periodicity along the three cell vectors, overriding the rule above.
    dtype
        ``None`` (default): the model's own dtype (float64 for atomflux
        models, float32 for SevenNet); or ``"float32"``/``"float64"``.
    device
        Torch device of the model.
    trust
        Load a third-party checkpoint that is a pickle from outside its own
        package (only for files you trust).
    min_distance
        Atoms closer than this (Å) stop the driver with ``ValueError``.
    """

    def __init__(self, model: str | Path | Potential, structure: str | Path | Atoms | Sequence[str], *,
                 uncertainty: str | bool = "full", pbc: Sequence[bool] | None = None,
                 dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu",
                 min_distance: float = MIN_DISTANCE, trust: bool = False) -> None:
        from ..uncertainty.propagation import n_members

        if uncertainty not in ("full", "energy", False):
            raise ValueError(f"uncertainty must be 'full', 'energy' or False, got {uncertainty!r}")
        self.potential = resolve_potential(model, dtype, device, trust).eval()
        self.template, self.label = read_template(structure)
        self.potential.check_species(self.template.numbers)
        self.pbc = None if pbc is None else np.array([bool(p) for p in pbc])
        if self.pbc is not None and self.pbc.shape != (3,):
            raise ValueError(f"pbc takes three booleans (one per cell vector), got {list(pbc)}")
        if self.pbc is None and self.template.pbc.any():
            self.pbc = np.array(self.template.pbc, dtype=bool)
        self.uncertainty = uncertainty if n_members(self.potential) else False
        self.dtype = parse_dtype(dtype) or native_dtypes(self.potential)[0]
        self.device, self.min_distance = device, float(min_distance)
        self.model_seconds = 0.0

    @property
    def n_atoms(self) -> int:
        return len(self.template)

    def compute(self, request: Request) -> Reply:
        """Energies, forces, virials and extras (atomic units) for the structures of one message."""
        start = time.perf_counter()
        n_atoms = request.positions.shape[1]
        if n_atoms != self.n_atoms:
            raise ValueError(f"i-PI sends {n_atoms} atoms but {self.label} has {self.n_atoms}: give the "
                             "structure i-PI was started from (same atoms, same order)")
        cells = cell_to_ase(request.cells)
        positions = positions_to_angstrom(request.positions)
        unique, inverse = _unique_structures(cells, positions)  # i-PI pads short batches with repeats
        systems = [self._atoms(cells[k], positions[k]) for k in unique]
        batch = Batch.from_atoms(systems, self.potential.cutoff, self.dtype, self.device, self.min_distance)
        res = evaluate(self.potential, batch, forces=True, stress=True, uncertainty=self.uncertainty)
        energies = res.energy.detach().cpu().numpy().astype(np.float64)
        forces = res.forces.detach().cpu().numpy().astype(np.float64).reshape(len(systems), n_atoms, 3)
        virial = res.virial.detach().cpu().numpy().astype(np.float64)
        virial = 0.5 * (virial + virial.transpose(0, 2, 1))    # i-PI keeps only the upper triangle
        if self.uncertainty:
            periodic = np.array([bool(a.pbc.all()) for a in systems])
            volumes = np.array([a.get_volume() if p else 0.0 for a, p in zip(systems, periodic)])
            extras = committee_extras(res, virial, volumes, periodic, n_atoms)
        else:
            extras = [NO_EXTRAS] * len(systems)
        self.model_seconds += time.perf_counter() - start
        return Reply(energies=energy_to_hartree(energies[inverse]), forces=forces_to_atomic(forces[inverse]),
                     virials=energy_to_hartree(virial[inverse]), extras=[extras[k] for k in inverse])

    def _atoms(self, cell: np.ndarray, positions: np.ndarray) -> Atoms:
        atoms = Atoms(numbers=self.template.numbers, positions=positions, cell=cell)
        if self.pbc is not None:
            atoms.pbc = self.pbc
        else:
            atoms.pbc = abs(np.linalg.det(cell)) > 1e-6
        return atoms

    def serve(self, sock: socket.socket, on_reply: Callable[[Session], None] | None = None) -> DriverSummary:
        """Answer i-PI on a connected socket until EXIT or disconnection (the caller closes the socket)."""
        start = time.perf_counter()
        self.model_seconds = 0.0
        session = serve(Connection(sock), self.compute, on_reply)
        return DriverSummary(ended=session.ended, messages=session.messages, structures=session.structures,
                             batch_size=session.batch_size, model_seconds=self.model_seconds,
                             total_seconds=time.perf_counter() - start)


def _unique_structures(cells: np.ndarray, positions: np.ndarray) -> tuple[list[int], list[int]]:
    """Indices of the distinct structures, and for each structure the index of its distinct copy."""
    seen: dict[bytes, int] = {}
    unique, inverse = [], []
    for k in range(len(positions)):
        key = cells[k].tobytes() + positions[k].tobytes()
        if key not in seen:
            seen[key] = len(unique)
            unique.append(k)
        inverse.append(seen[key])
    return unique, inverse


def run_driver(model: str | Path | Potential, structure: str | Path | Atoms | Sequence[str], *,
               address: str = "localhost", port: int | None = None, socket_prefix: str = DEFAULT_PREFIX,
               uncertainty: str | bool = "full", pbc: Sequence[bool] | None = None,
               connect_timeout: float = 60.0, dtype: torch.dtype | str | None = None,
               device: str | torch.device = "cpu", min_distance: float = MIN_DISTANCE,
               trust: bool = False) -> DriverSummary:
    """Connect to a running i-PI and answer its force requests until it sends EXIT.

    Parameters
    ----------
    model, structure, uncertainty, pbc, dtype, device, min_distance, trust
        See :class:`IPIDriver`.
    address
        The ``<address>`` of i-PI's ``<ffsocket>``: the UNIX socket name
        (file ``socket_prefix + address``) or, with ``port``, the TCP host.
    port
        TCP port (``<ffsocket mode='inet'>``); ``None`` for a UNIX socket.
    socket_prefix
        Prefix of UNIX socket files (i-PI's default ``/tmp/ipi_``; ``i-pi -S``).
    connect_timeout
        Seconds to wait for i-PI to listen before giving up (s).

    Returns
    -------
    DriverSummary
        ``ended="disconnected"`` when i-PI went away without EXIT: the driver
        then returns normally (i-PI keeps its own RESTART file).

    Raises
    ------
    ValueError
        Unknown element, atom-count mismatch, unreadable input, no server.
    """
    driver = IPIDriver(model, structure, uncertainty=uncertainty, pbc=pbc, dtype=dtype, device=device,
                       min_distance=min_distance, trust=trust)
    sock = connect(address, port, socket_prefix, timeout=connect_timeout)
    try:
        return driver.serve(sock)
    finally:
        disconnect(sock)
