"""The i-PI socket protocol, client side: connecting, reading messages, the state machine.

i-PI is the server; a driver connects over a UNIX socket (file
``<prefix><address>``, i-PI's default prefix ``/tmp/ipi_``) or TCP (host,
port).  Messages start with a 12-byte upper-case ASCII header padded with
spaces; numbers are native little-endian float64 / int32:

====================  =======================================================================
server sends          driver answers
====================  =======================================================================
``STATUS``            ``NEEDINIT`` (before INIT), ``HAVEDATA`` (result pending) or ``READY``
``INIT``              nothing; payload int32 bead index, int32 length L, L bytes (i-PI 3.3
                      appends ``batch_size:B`` when it batches structures)
``POSDATA``           nothing; payload 9 float64 cell h (lattice vectors as columns, C
                      order), 9 float64 inverse cell, int32 N, 3N float64 positions (bohr).
                      Batched (B > 1): int32 N, B × (h, h⁻¹), B × 3N positions
``GETFORCE``          ``FORCEREADY``, float64 energy, int32 N, 3N float64 forces, 9 float64
                      virial, int32 M, M bytes of extras: 12+8+4+24N+72+4+M bytes.
                      Batched: B energies, int32 N, B × 3N forces, B × 9 virials, then
                      B × (int32 length + bytes)
``EXIT``              closes
====================  =======================================================================

i-PI 3.3 fuses POSDATA and GETFORCE into one packet (``consolidate_messages``,
its default), with no STATUS in between: the client reads a byte stream and
answers whatever complete message arrives, so both forms work.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HEADER_LENGTH = 12
#: i-PI's default prefix of UNIX socket files (``i-pi -S PREFIX`` changes it)
DEFAULT_PREFIX = "/tmp/ipi_"


def header(word: str) -> bytes:
    """The 12-byte header of a message."""
    return word.upper().ljust(HEADER_LENGTH).encode()


STATUS, READY, HAVEDATA, NEEDINIT = header("STATUS"), header("READY"), header("HAVEDATA"), header("NEEDINIT")
INIT, POSDATA, GETFORCE, FORCEREADY, EXIT = (header("INIT"), header("POSDATA"), header("GETFORCE"),
                                             header("FORCEREADY"), header("EXIT"))


class IPIConnectionError(ValueError):
    """No i-PI server answered at the given address."""


class ProtocolError(ValueError):
    """The server sent something the protocol does not allow."""


class ServerGone(ConnectionError):
    """The server closed the connection (or it broke) in the middle of the protocol."""


@dataclass
class Request:
    """Structures i-PI asks for, as they arrive (atomic units, i-PI layout).

    Attributes
    ----------
    cells : ndarray [B, 3, 3]
        Cell matrices h, lattice vectors as columns, bohr.
    positions : ndarray [B, N, 3]
        Cartesian positions, bohr.
    """

    cells: np.ndarray
    positions: np.ndarray


@dataclass
class Reply:
    """What the driver sends back for a :class:`Request` (atomic units).

    Attributes
    ----------
    energies : ndarray [B]
        Potential energies, hartree.
    forces : ndarray [B, N, 3]
        Forces, hartree/bohr.
    virials : ndarray [B, 3, 3]
        Virials −V·σ, hartree (symmetric).
    extras : list of bytes, length B
        One extras string per structure (UTF-8 JSON).
    """

    energies: np.ndarray
    forces: np.ndarray
    virials: np.ndarray
    extras: list[bytes]


@dataclass
class Session:
    """How a conversation with i-PI went.

    Attributes
    ----------
    ended : str
        ``"exit"`` (i-PI sent EXIT) or ``"disconnected"`` (the connection closed without EXIT).
    messages : int
        Position messages answered.
    structures : int
        Structures evaluated (several per message in batched mode).
    batch_size : int
        Structures per message announced by i-PI's INIT (1 when not batched).
    """

    ended: str = "exit"
    messages: int = 0
    structures: int = 0
    batch_size: int = 1


def socket_path(address: str, prefix: str = DEFAULT_PREFIX) -> Path:
    """File of i-PI's UNIX socket ``address`` (as i-PI names it: prefix + address)."""
    return Path(f"{prefix}{address}")


def connect(address: str, port: int | None = None, prefix: str = DEFAULT_PREFIX, timeout: float = 60.0,
            abort: Callable[[], str | None] | None = None) -> socket.socket:
    """Connect to i-PI, retrying until it listens.

    Parameters
    ----------
    address
        UNIX socket name (``port=None``; the file is ``prefix + address``) or TCP host name.
    port
        TCP port; ``None`` for a UNIX socket.
    prefix
        Prefix of UNIX socket files (i-PI's ``-S`` option / ``sockets_prefix``).
    timeout
        Seconds to keep retrying.
    abort
        Called between retries; a returned string stops waiting with that reason
        (the runner uses it when i-PI has exited).

    Raises
    ------
    IPIConnectionError
        Nobody accepted the connection within ``timeout`` seconds.
    """
    where = f"TCP {address}:{port}" if port is not None else f"UNIX socket {socket_path(address, prefix)}"
    deadline = time.monotonic() + timeout
    while True:
        if port is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = str(socket_path(address, prefix))
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (address, int(port))
        try:
            sock.connect(target)
            return sock
        except OSError:
            sock.close()
        reason = abort() if abort is not None else None
        if reason:
            raise IPIConnectionError(f"no i-PI server at {where}: {reason}")
        if time.monotonic() >= deadline:
            raise IPIConnectionError(
                f"no i-PI server at {where} after {timeout:g} s: start i-PI first (i-pi input.xml) and make "
                f"its <ffsocket> match (mode='{'inet' if port is not None else 'unix'}', address "
                f"{address!r}{f', port {port}' if port is not None else ''})")
        time.sleep(0.2)


def disconnect(sock: socket.socket) -> None:
    """Close a connection without a reset: read what the server already sent, then shut down.

    Closing a socket with unread bytes (e.g. the GETFORCE fused to the last
    POSDATA) makes the kernel send a reset, which i-PI 3.3 does not survive
    while it waits for a reply; with the bytes read it sees an ordinary
    disconnection and hands the request to another driver.
    """
    try:
        sock.setblocking(False)
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Connection:
    """Exact reads and writes of protocol items over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes; :class:`ServerGone` if the stream ends first."""
        buffer = bytearray(size)
        view = memoryview(buffer)
        received = 0
        while received < size:
            try:
                count = self.sock.recv_into(view[received:], size - received)
            except (ConnectionResetError, BrokenPipeError) as err:
                raise ServerGone(str(err)) from None
            if count == 0:
                raise ServerGone("connection closed")
            received += count
        return bytes(buffer)

    def header(self) -> bytes:
        return self.recv_exact(HEADER_LENGTH)

    def int32(self) -> int:
        return int(np.frombuffer(self.recv_exact(4), dtype="<i4")[0])

    def float64(self, count: int) -> np.ndarray:
        return np.frombuffer(self.recv_exact(8 * count), dtype="<f8").copy()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as err:
            raise ServerGone(str(err)) from None


def parse_batch_size(init_string: str) -> int:
    """Structures per message announced in i-PI's INIT string (``batch_size:B``), 1 if absent."""
    match = re.search(r"batch_size\s*:\s*(\d+)", init_string)
    return max(1, int(match.group(1))) if match else 1


def read_positions(connection: Connection, batch_size: int) -> Request:
    """Payload of a POSDATA message (single or batched layout)."""
    if batch_size == 1:
        cell = connection.float64(9).reshape(1, 3, 3)
        connection.float64(9)                                   # inverse cell: not needed
        n_atoms = connection.int32()
        positions = connection.float64(3 * n_atoms).reshape(1, n_atoms, 3)
        return Request(cell, positions)
    n_atoms = connection.int32()
    cells = connection.float64(18 * batch_size).reshape(batch_size, 2, 3, 3)[:, 0]
    positions = connection.float64(3 * n_atoms * batch_size).reshape(batch_size, n_atoms, 3)
    return Request(np.ascontiguousarray(cells), positions)


def encode_reply(reply: Reply, batched: bool) -> bytes:
    """FORCEREADY message for ``reply`` in the single (one structure) or batched layout."""
    n_structures, n_atoms = reply.forces.shape[:2]
    energies = np.ascontiguousarray(reply.energies, dtype="<f8")
    forces = np.ascontiguousarray(reply.forces, dtype="<f8")
    virials = np.ascontiguousarray(reply.virials, dtype="<f8")
    extras = [e if e else b"\x00" for e in reply.extras]       # some servers mishandle empty extras
    if not batched:
        if n_structures != 1:
            raise ValueError(f"a single-structure reply carries one structure, not {n_structures}")
        return b"".join([FORCEREADY, energies.tobytes(), np.int32(n_atoms).tobytes(), forces.tobytes(),
                         virials.tobytes(), np.int32(len(extras[0])).tobytes(), extras[0]])
    parts = [FORCEREADY, energies.tobytes(), np.int32(n_atoms).tobytes(), forces.tobytes(), virials.tobytes()]
    for extra in extras:
        parts += [np.int32(len(extra)).tobytes(), extra]
    return b"".join(parts)


def serve(connection: Connection, compute: Callable[[Request], Reply],
          on_reply: Callable[[Session], None] | None = None) -> Session:
    """Answer i-PI until it sends EXIT or closes the connection.

    ``compute`` turns each POSDATA :class:`Request` into a :class:`Reply`
    (called when the positions arrive, so STATUS can then say HAVEDATA);
    ``on_reply`` is called after each reply is sent (progress).  A connection
    that closes is not an error: the returned session says
    ``ended="disconnected"``.

    Raises
    ------
    ProtocolError
        An unknown header, or GETFORCE with no positions received.
    """
    session = Session()
    initialised = False
    pending: Reply | None = None
    try:
        while True:
            word = connection.header()
            if word == STATUS:
                connection.send(NEEDINIT if not initialised else HAVEDATA if pending is not None else READY)
            elif word == INIT:
                connection.int32()                                  # bead index: not needed
                text = connection.recv_exact(connection.int32()).decode("utf-8", errors="replace")
                session.batch_size = parse_batch_size(text)
                initialised = True
            elif word == POSDATA:
                request = read_positions(connection, session.batch_size)
                pending = compute(request)
                session.messages += 1
                session.structures += len(request.positions)
            elif word == GETFORCE:
                if pending is None:
                    raise ProtocolError("i-PI asked for forces (GETFORCE) before sending positions (POSDATA)")
                connection.send(encode_reply(pending, batched=session.batch_size > 1))
                pending = None
                if on_reply is not None:
                    on_reply(session)
            elif word == EXIT:
                session.ended = "exit"
                return session
            else:
                raise ProtocolError(f"unexpected message {word!r} from the i-PI server")
    except ServerGone:
        session.ended = "disconnected"
        return session
