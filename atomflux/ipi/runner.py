"""One command for i-PI and the driver together: ``atomflux ipi run input.xml --model demo``.

The runner reads i-PI's input (the ``<ffsocket>`` to drive, the starting
structure, beads and steps), records the run in an output folder
(``run.json``; running again with the same input, structure and model resumes
from i-PI's ``RESTART``), starts ``i-pi`` there, answers it with an
:class:`~atomflux.ipi.driver.IPIDriver`, waits for it to finish and removes
the socket.  The folder keeps a copy of the input in which relative file
paths are absolute (so the input can live anywhere) and a UNIX socket gets a
unique address (so runs never collide on socket files: i-PI puts sockets
nested in ``<ffcommittee>`` under ``/tmp/ipi_`` whatever ``-S`` says).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from ase import Atoms

from ..models import Potential
from ..systems import MIN_DISTANCE
from .driver import DriverSummary, IPIDriver, read_template
from .protocol import DEFAULT_PREFIX, connect, disconnect, socket_path

#: tags whose text names a file, made absolute in the copied input
FILE_TAGS = ("file", "positions", "velocities", "momenta", "cell", "masses", "labels")


@dataclass
class SocketSpec:
    """One ``<ffsocket>`` of an i-PI input."""

    name: str
    mode: str
    address: str
    port: int | None
    batch_size: int


@dataclass
class IPIInput:
    """What the runner needs from an i-PI input file.

    Attributes
    ----------
    sockets : list of SocketSpec
        Every ``<ffsocket>`` (also inside ``<ffcommittee>``).
    start_file, start_mode : Path or None, str
        The ``<initialize><file>`` and its i-PI mode (``xyz``, ``pdb``, ``ase`` ...).
    n_beads, total_steps : int
    """

    sockets: list[SocketSpec]
    start_file: Path | None
    start_mode: str
    n_beads: int
    total_steps: int


@dataclass
class IPIRun:
    """A finished run: its folder, the driver's summary (None when the run was already complete),
    i-PI's exit code and log."""

    folder: Path
    driver: DriverSummary | None
    ipi_returncode: int
    log: Path
    resumed: bool
    outputs: list[str] = field(default_factory=list)


def read_input(path: str | Path) -> IPIInput:
    """Parse the parts of an i-PI input file the runner uses (``ValueError`` when unusable)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no i-PI input file {str(path)!r}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not valid XML ({err})") from None
    sockets = []
    for element in root.iter("ffsocket"):
        mode = element.get("mode", "inet")
        port = element.findtext("port")
        sockets.append(SocketSpec(
            name=element.get("name", ""), mode=mode, address=(element.findtext("address") or "localhost").strip(),
            port=(int(port) if port else 65535) if mode == "inet" else None,
            batch_size=int(element.findtext("batch_size") or 1)))
    initialize = root.find(".//system/initialize")
    start = initialize.find("file") if initialize is not None else None
    start_file = (path.parent / start.text.strip()) if start is not None and start.text else None
    return IPIInput(sockets=sockets, start_file=start_file,
                    start_mode=start.get("mode", "xyz") if start is not None else "",
                    n_beads=int(initialize.get("nbeads", 1)) if initialize is not None else 1,
                    total_steps=int(root.findtext("total_steps") or 1000))


def pick_socket(spec: IPIInput, name: str | None) -> SocketSpec:
    """The ``<ffsocket>`` to drive: the one named ``name``, or the only one."""
    if not spec.sockets:
        raise ValueError("the i-PI input has no <ffsocket>: nothing for the driver to connect to")
    if name is None:
        if len(spec.sockets) > 1:
            names = ", ".join(s.name for s in spec.sockets)
            raise ValueError(f"the i-PI input has {len(spec.sockets)} <ffsocket>s ({names}): choose one with "
                             "--forcefield NAME and start drivers for the others yourself (atomflux ipi ...)")
        chosen = spec.sockets[0]
    else:
        matches = [s for s in spec.sockets if s.name == name]
        if not matches:
            raise ValueError(f"no <ffsocket name='{name}'> in the i-PI input "
                             f"(it has: {', '.join(s.name for s in spec.sockets)})")
        chosen = matches[0]
    if chosen.mode not in ("unix", "inet"):
        raise ValueError(f"<ffsocket name='{chosen.name}'> has mode='{chosen.mode}': atomflux ipi speaks "
                         "mode='unix' and mode='inet'")
    return chosen


def ipi_elements(spec: IPIInput) -> list[str] | None:
    """Atom names of i-PI's starting structure, read with i-PI's own reader (None if there is none)."""
    if spec.start_file is None or spec.start_mode == "chk":
        return None
    if not spec.start_file.is_file():
        raise FileNotFoundError(f"i-PI's starting structure {str(spec.start_file)!r} does not exist")
    from ipi.utils.io import read_file_raw

    with open(spec.start_file) as handle:
        return [str(name) for name in read_file_raw(spec.start_mode, handle)["names"]]


def starting_template(spec: IPIInput, structure: str | Path | Atoms | Sequence[str] | None) -> Atoms:
    """The driver's template: ``structure`` checked against i-PI's starting file, or that file itself."""
    names = ipi_elements(spec)
    if structure is None:
        if names is None:
            raise ValueError("the i-PI input starts from no structure file atomflux can read (checkpoint?): "
                             "give --structure with the elements of its atoms")
        if spec.start_mode == "ase":
            return read_template(spec.start_file)[0]
        return read_template(names)[0]
    template, label = read_template(structure)
    if names is not None:
        if len(names) != len(template):
            raise ValueError(f"{label} has {len(template)} atoms but i-PI starts from {spec.start_file} with "
                             f"{len(names)}: give the structure i-PI simulates")
        mismatch = [k for k, (a, b) in enumerate(zip(names, template.get_chemical_symbols())) if a != b]
        if mismatch:
            k = mismatch[0]
            raise ValueError(f"elements differ from i-PI's {spec.start_file.name} at {len(mismatch)} atoms, "
                             f"first atom {k}: {names[k]} there, {template.get_chemical_symbols()[k]} in {label}")
    return template


def ipi_executable() -> str:
    """Path of the ``i-pi`` script (next to this Python first)."""
    beside = Path(sys.executable).parent / "i-pi"
    found = str(beside) if beside.is_file() else shutil.which("i-pi")
    if found is None:
        raise ImportError("i-PI is not installed: pip install 'atomflux[ipi]' (i-PI 3.3)")
    return found


def write_run_input(source: Path, target: Path, chosen: SocketSpec, address: str) -> None:
    """Copy an i-PI input with relative file names made absolute (relative to the input's folder) and
    the UNIX socket of the ``<ffsocket>`` ``chosen`` renamed to ``address``."""
    tree = ET.parse(source)
    for element in tree.getroot().iter():
        if element.tag in FILE_TAGS and element.text and element.text.strip():
            name = Path(element.text.strip())
            candidate = source.parent / name
            if not name.is_absolute() and candidate.is_file():
                element.text = str(candidate.resolve())
        if element.tag == "ffsocket" and element.get("name", "") == chosen.name and chosen.mode == "unix":
            node = element.find("address")
            if node is None:
                node = ET.SubElement(element, "address")
            node.text = address
    tree.write(target, encoding="unicode")


def run_ipi(input_xml: str | Path, model: str | Path | Potential = "demo", structure: str | Path | Atoms |
            Sequence[str] | None = None, *, output: str | Path | None = None, forcefield: str | None = None,
            uncertainty: str | bool = "full", pbc: Sequence[bool] | None = None,
            dtype: torch.dtype | str | None = None, device: str | torch.device = "cpu",
            min_distance: float = MIN_DISTANCE, trust: bool = False, restart: bool = False,
            progress: bool = True, start_timeout: float = 120.0) -> IPIRun:
    """Run i-PI on ``input_xml`` with an atomflux model as its driver; return when i-PI has finished.

    Parameters
    ----------
    input_xml
        i-PI input file (its ``<ffsocket>`` may be ``unix`` or ``inet``).
    model
        Anything a model spec takes (file, shipped name, potential).
    structure
        Elements of the atoms (file, ``Atoms`` or symbols); checked against
        i-PI's starting structure, which is used when this is ``None``.
    output
        Run folder (i-PI runs there and writes its outputs there); default
        ``ipi-<input name>``.  Running again into it with the same input,
        structure and model resumes from i-PI's ``RESTART``.
    forcefield
        ``name`` of the ``<ffsocket>`` to drive when the input has several.
    uncertainty, pbc, dtype, device, min_distance, trust
        See :class:`~atomflux.ipi.driver.IPIDriver`.
    restart
        Move an existing run folder aside and start over.
    progress
        Show a progress bar (i-PI steps, estimated from the structures evaluated).
    start_timeout
        Seconds to wait for i-PI to open its socket (s).

    Raises
    ------
    ValueError
        Bad input, element or atom-count mismatch, i-PI failing (with the end of its log).
    """
    from ..records import fingerprint, model_record, open_run

    source = Path(input_xml)
    spec = read_input(source)
    chosen = pick_socket(spec, forcefield)
    template = starting_template(spec, structure)
    driver = IPIDriver(model, template, uncertainty=uncertainty, pbc=pbc, dtype=dtype, device=device,
                       min_distance=min_distance, trust=trust)
    folder = Path(output) if output is not None else Path(f"ipi-{source.stem}")
    parameters = {"input": fingerprint(source.read_text()), "structure": fingerprint(template),
                  "forcefield": chosen.name, "uncertainty": driver.uncertainty,
                  "pbc": None if driver.pbc is None else driver.pbc.tolist(), "dtype": str(driver.dtype)}
    spec_name = model if isinstance(model, (str, Path)) else None
    resumed = open_run(folder, "ipi run", parameters, model_record(spec_name, driver.potential),
                       info={"input_file": str(source.resolve()), "n_beads": spec.n_beads,
                             "total_steps": spec.total_steps}, restart=restart)
    first_step, base = 0, source
    if resumed and (folder / "RESTART").is_file():
        base = folder / "RESTART"
        restart_xml = ET.parse(base).getroot()
        first_step = int(restart_xml.findtext("step") or 0)
        if first_step >= int(restart_xml.findtext("total_steps") or 0):   # i-PI refuses to start a finished run
            return IPIRun(folder=folder, driver=None, ipi_returncode=0, log=folder / "ipi.log", resumed=True,
                          outputs=_outputs(folder))
    address = f"{chosen.address}-{uuid.uuid4().hex[:12]}" if chosen.mode == "unix" else chosen.address
    run_input = "input.xml" if base == source else "restart-input.xml"
    write_run_input(base, folder / run_input, chosen, address)
    socket_file = socket_path(address, DEFAULT_PREFIX)
    log = folder / "ipi.log"
    with open(log, "a") as log_handle:
        process = subprocess.Popen([ipi_executable(), "-S", DEFAULT_PREFIX, run_input], cwd=folder,
                                   stdout=log_handle, stderr=subprocess.STDOUT)
        sock = None
        try:
            sock = connect(address, chosen.port, DEFAULT_PREFIX, timeout=start_timeout,
                           abort=lambda: _ended(process, log))
            summary = _drive(driver, sock, spec, first_step, progress)
            returncode = _wait(process, summary)
        except BaseException:
            if sock is not None:      # a clean disconnection first: i-PI then stops without waiting for us
                disconnect(sock)
                sock = None
            _stop(process)            # SIGTERM: i-PI writes RESTART
            raise
        finally:
            if sock is not None:
                disconnect(sock)
            if chosen.mode == "unix":
                socket_file.unlink(missing_ok=True)
    if returncode != 0:
        raise ValueError(f"i-PI stopped with exit code {returncode}: {_last_line(log)} (log: {log})")
    return IPIRun(folder=folder, driver=summary, ipi_returncode=returncode, log=log, resumed=resumed,
                  outputs=_outputs(folder))


def _outputs(folder: Path) -> list[str]:
    """Files i-PI wrote in the run folder."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in ("run.json", "ipi.log"))


def _ended(process: subprocess.Popen, log: Path) -> str | None:
    """Why i-PI is no longer there to connect to (None while it runs)."""
    code = process.poll()
    return None if code is None else f"i-PI exited with code {code} ({_last_line(log)}; log: {log})"


def _drive(driver: IPIDriver, sock: socket.socket, spec: IPIInput, first_step: int, progress: bool) -> DriverSummary:
    from ..progress import progress as progress_bar

    with progress_bar(spec.total_steps, "i-PI", unit="step", initial=first_step, enabled=progress) as bar:
        def advance(session) -> None:
            done = session.structures // max(spec.n_beads, 1) - 1      # the first call is step 0
            steps = min(spec.total_steps, first_step + max(0, done))
            bar.update(steps - bar.n)

        return driver.serve(sock, on_reply=advance)


def _wait(process: subprocess.Popen, summary: DriverSummary, grace: float = 120.0) -> int:
    """i-PI's exit code once it has written its final outputs."""
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise ValueError(f"i-PI did not finish within {grace:g} s after the driver was "
                         f"{'told to exit' if summary.ended == 'exit' else 'disconnected'}") from None


def _stop(process: subprocess.Popen) -> None:
    """Ask i-PI to stop (SIGTERM: it writes RESTART), then kill it if it does not."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _last_line(log: Path) -> str:
    """The last informative line of i-PI's log (its error message, usually)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors[-1] if errors else lines[-1] if lines else "empty log")[:300]
