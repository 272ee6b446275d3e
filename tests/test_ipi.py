"""i-PI driver: the wire protocol byte by byte against a scripted server, and a real i-PI
(started by the tests) receiving the ASE calculator's energies, forces and virials,
integrating NVE like ASE's own SocketClient, printing the model's committee uncertainty
and giving the same path-integral run with batched and single-structure messages."""

import importlib.util
import json
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry import cellpar_to_cell
from ase.io import read, write

from atomflux.calculators import AtomfluxCalculator
from atomflux.cli import main
from atomflux.ipi import IPIDriver, run_driver
from atomflux.ipi import driver as driver_module
from atomflux.ipi.committee import committee_factor
from atomflux.ipi.protocol import IPIConnectionError
from atomflux.ipi.units import BOHR_PER_ANGSTROM, HARTREE_PER_EV

from conftest import finite_difference_stress

HEADER = 12
EV_PER_ANGSTROM = HARTREE_PER_EV / BOHR_PER_ANGSTROM     # Ha/bohr per eV/Å


def msg(word: str) -> bytes:
    return word.upper().ljust(HEADER).encode()


@pytest.fixture(scope="module")
def calc():
    return AtomfluxCalculator("demo")


@pytest.fixture
def triclinic():
    """8 atoms of Cu/Au in a rattled triclinic cell, oriented as i-PI stores cells (upper-triangular h)."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4]] = "Au"
    atoms.set_cell(cellpar_to_cell([7.5, 3.8, 3.6, 84.0, 95.0, 101.0]), scale_atoms=True)
    atoms.rattle(0.08, seed=3)
    return atoms


def posdata(atoms: Atoms) -> bytes:
    """POSDATA payload as i-PI sends it (h with lattice vectors as columns, bohr)."""
    h = atoms.cell.array.T * BOHR_PER_ANGSTROM
    return (np.ascontiguousarray(h).tobytes() + np.linalg.inv(h).tobytes() + np.int32(len(atoms)).tobytes()
            + (atoms.positions * BOHR_PER_ANGSTROM).tobytes())


class ScriptedServer:
    """A UNIX-socket i-PI stand-in: the test writes the server's messages and reads the driver's bytes."""

    def __init__(self, tmp_path: Path, driver_kwargs: dict, tcp: bool = False) -> None:
        if tcp:
            self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.server.bind(("127.0.0.1", 0))
            driver_kwargs = {**driver_kwargs, "address": "127.0.0.1", "port": self.server.getsockname()[1]}
        else:
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(f"{tmp_path}/srv")
            driver_kwargs = {**driver_kwargs, "address": "srv", "socket_prefix": f"{tmp_path}/"}
        self.server.listen(1)
        self.result: dict = {}
        self.thread = threading.Thread(target=self._drive, args=(driver_kwargs,), daemon=True)
        self.thread.start()
        self.server.settimeout(60)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(60)

    def _drive(self, kwargs: dict) -> None:
        try:
            self.result["summary"] = run_driver(connect_timeout=30, **kwargs)
        except Exception as err:  # handed to the test thread
            self.result["error"] = err

    def recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            assert chunk, f"driver closed after {len(data)} of {size} bytes"
            data += chunk
        return data

    def status(self) -> bytes:
        self.conn.sendall(msg("STATUS"))
        return self.recv(HEADER)

    def init(self, text: str) -> None:
        self.conn.sendall(msg("INIT") + np.int32(0).tobytes() + np.int32(len(text)).tobytes() + text.encode())

    def read_reply(self, n_atoms: int, n_structures: int = 1) -> tuple[dict, int]:
        """One FORCEREADY reply, decoded, and its total length in bytes."""
        assert self.recv(HEADER) == msg("FORCEREADY")
        energies = np.frombuffer(self.recv(8 * n_structures), "<f8")
        assert np.frombuffer(self.recv(4), "<i4")[0] == n_atoms
        forces = np.frombuffer(self.recv(24 * n_atoms * n_structures), "<f8").reshape(n_structures, n_atoms, 3)
        virials = np.frombuffer(self.recv(72 * n_structures), "<f8").reshape(n_structures, 3, 3)
        extras, size = [], HEADER + 8 * n_structures + 4 + 24 * n_atoms * n_structures + 72 * n_structures
        for _ in range(n_structures):
            length = int(np.frombuffer(self.recv(4), "<i4")[0])
            extras.append(json.loads(self.recv(length)))
            size += 4 + length
        assert not select.select([self.conn], [], [], 0.2)[0], "the driver sent more than its reply"
        return {"energies": energies, "forces": forces, "virials": virials, "extras": extras}, size

    def finish(self) -> dict:
        self.thread.join(60)
        self.conn.close()
        self.server.close()
        return self.result


def reference(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    energy = a.get_potential_energy()
    return energy, a.get_forces(), -a.get_volume() * a.get_stress(voigt=False), a.calc.results


def test_protocol_state_machine_and_fused_packets(tmp_path, calc, triclinic):
    srv = ScriptedServer(tmp_path, {"model": "demo", "structure": triclinic})
    assert srv.status() == msg("NEEDINIT")
    srv.init("")
    assert srv.status() == msg("READY")
    n = len(triclinic)
    # i-PI 3.3 (consolidate_messages): POSDATA and GETFORCE in one packet, no STATUS between
    srv.conn.sendall(msg("POSDATA") + posdata(triclinic) + msg("GETFORCE"))
    reply, size = srv.read_reply(n)
    extras = reply["extras"][0]
    assert size == 12 + 8 + 4 + 24 * n + 72 + 4 + len(json.dumps(extras).encode())    # and nothing after it
    energy, forces, virial, results = reference(calc, triclinic)
    assert reply["energies"][0] == pytest.approx(energy * HARTREE_PER_EV, rel=1e-12)
    np.testing.assert_allclose(reply["forces"][0], forces * EV_PER_ANGSTROM, rtol=0, atol=1e-12)
    sent_virial = reply["virials"][0]
    np.testing.assert_array_equal(sent_virial, sent_virial.T)
    np.testing.assert_allclose(sent_virial, virial * HARTREE_PER_EV, rtol=0, atol=1e-12)
    assert extras["energy_uncertainty"] == pytest.approx(results["energy_uncertainty"] * HARTREE_PER_EV, rel=1e-10)
    assert np.shape(extras["committee_force"]) == (8, 3 * n)
    assert np.shape(extras["committee_virial"]) == (8, 9)
    assert np.mean(extras["committee_pot"]) == pytest.approx(reply["energies"][0], rel=1e-12)
    assert srv.status() == msg("READY")
    # the classic sequence: POSDATA, STATUS says HAVEDATA, then GETFORCE
    moved = triclinic.copy()
    moved.positions[0] += 0.05
    srv.conn.sendall(msg("POSDATA") + posdata(moved))
    assert srv.status() == msg("HAVEDATA")
    srv.conn.sendall(msg("GETFORCE"))
    reply, _ = srv.read_reply(n)
    assert reply["energies"][0] == pytest.approx(reference(calc, moved)[0] * HARTREE_PER_EV, rel=1e-12)
    srv.conn.sendall(msg("EXIT"))
    result = srv.finish()
    assert "error" not in result, result.get("error")
    assert result["summary"].ended == "exit" and result["summary"].messages == 2


def test_protocol_batched_message_with_padding_over_tcp(tmp_path, calc, triclinic, monkeypatch):
    calls = []
    original = driver_module.evaluate
    monkeypatch.setattr(driver_module, "evaluate", lambda *a, **k: calls.append(a[1].n_systems) or original(*a, **k))
    srv = ScriptedServer(tmp_path, {"model": "demo", "structure": triclinic, "uncertainty": False}, tcp=True)
    assert srv.status() == msg("NEEDINIT")
    srv.init(" batch_size:3")                    # as i-PI 3.3 announces it
    assert srv.status() == msg("READY")
    second = triclinic.copy()
    second.rattle(0.05, seed=8)
    frames = [triclinic, second, second]        # i-PI pads a short batch by repeating the last structure
    n = len(triclinic)
    cells = b"".join(np.ascontiguousarray(a.cell.array.T * BOHR_PER_ANGSTROM).tobytes()
                     + np.linalg.inv(a.cell.array.T * BOHR_PER_ANGSTROM).tobytes() for a in frames)
    positions = b"".join((a.positions * BOHR_PER_ANGSTROM).tobytes() for a in frames)
    srv.conn.sendall(msg("POSDATA") + np.int32(n).tobytes() + cells + positions + msg("GETFORCE"))
    reply, _ = srv.read_reply(n, n_structures=3)
    for k, atoms in enumerate(frames):
        energy, forces, virial, _ = reference(calc, atoms)
        assert reply["energies"][k] == pytest.approx(energy * HARTREE_PER_EV, rel=1e-12)
        np.testing.assert_allclose(reply["forces"][k], forces * EV_PER_ANGSTROM, rtol=0, atol=1e-12)
        np.testing.assert_allclose(reply["virials"][k], virial * HARTREE_PER_EV, rtol=0, atol=1e-12)
    assert reply["extras"] == [{}, {}, {}]
    assert calls == [2]                          # one evaluate call; the padded copy is not recomputed
    srv.conn.sendall(msg("EXIT"))
    result = srv.finish()
    assert result["summary"].batch_size == 3 and result["summary"].structures == 3


def test_server_gone_mid_run_is_a_clean_exit(tmp_path, triclinic):
    srv = ScriptedServer(tmp_path, {"model": "demo", "structure": triclinic})
    assert srv.status() == msg("NEEDINIT")
    srv.init("")
    srv.conn.sendall(msg("POSDATA") + posdata(triclinic))
    assert srv.status() == msg("HAVEDATA")
    srv.conn.close()                             # i-PI dies before asking for the forces
    result = srv.finish()
    assert "error" not in result, result.get("error")
    assert result["summary"].ended == "disconnected" and result["summary"].messages == 1


def test_atom_count_mismatch_is_one_clear_error(tmp_path, triclinic):
    srv = ScriptedServer(tmp_path, {"model": "demo", "structure": triclinic[:-1]})
    assert srv.status() == msg("NEEDINIT")
    srv.init("")
    srv.conn.sendall(msg("POSDATA") + posdata(triclinic) + msg("GETFORCE"))
    result = srv.finish()
    assert isinstance(result.get("error"), ValueError)
    assert "i-PI sends 8 atoms but the structure" in str(result["error"]) and "has 7" in str(result["error"])


def test_unknown_element_and_missing_server(tmp_path, capsys):
    with pytest.raises(ValueError, match="O"):
        IPIDriver("demo", ["Cu", "O"])
    with pytest.raises(ValueError, match="not a chemical element"):
        IPIDriver("demo", ["Cu", "Qq"])
    start = time.monotonic()
    with pytest.raises(IPIConnectionError, match="no i-PI server at UNIX socket"):
        run_driver("demo", ["Cu"], address="nobody", socket_prefix=f"{tmp_path}/", connect_timeout=0.5)
    assert time.monotonic() - start < 10
    structure = tmp_path / "cu.xyz"
    write(structure, bulk("Cu", cubic=True))
    code = main(["ipi", "--structure", str(structure), "--address", "nobody", "--socket-prefix", f"{tmp_path}/",
                 "--connect-timeout", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("atomflux ipi: error: no i-PI server")


def test_committee_factor_maps_population_sigma_to_ipi_sample_std():
    rng = np.random.default_rng(0)
    members = rng.normal(size=(3, 8))
    sigma = 0.7 * members.std(axis=1)            # a calibrated population std (scale 0.7)
    calibrated = members.mean(1, keepdims=True) + 0.7 * (members - members.mean(1, keepdims=True))
    c = committee_factor(calibrated, sigma)
    np.testing.assert_allclose(c, np.sqrt(7 / 8), rtol=1e-14)          # shallow ensemble: √((M−1)/M)
    sent = calibrated.mean(1, keepdims=True) + c[:, None] * (calibrated - calibrated.mean(1, keepdims=True))
    np.testing.assert_allclose(sent.std(axis=1, ddof=1), sigma, rtol=1e-14)


def test_cluster_in_a_zero_cell_and_llpr_committee():
    """No server needed: a cluster (i-PI cell zero) is non-periodic, its virial is the strain derivative of
    the energy; an LLPR model's committee reproduces its closed-form σ."""
    from ase.cluster import Icosahedron

    from atomflux.ipi.protocol import Request

    cluster = Icosahedron("Cu", 2)
    cluster.rattle(0.03, seed=2)
    reply = IPIDriver("demo", cluster).compute(Request(np.zeros((1, 3, 3)), cluster.positions[None] * BOHR_PER_ANGSTROM))
    plain = AtomfluxCalculator("demo", uncertainty=False)

    def energy(positions):
        atoms = cluster.copy()
        atoms.positions = positions
        atoms.calc = plain
        return atoms.get_potential_energy()

    assert reply.energies[0] == pytest.approx(energy(cluster.positions) * HARTREE_PER_EV, rel=1e-12)
    h, fd = 1e-5, np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3))
            strain[a, b] += h / 2
            strain[b, a] += h / 2
            fd[a, b] = -(energy(cluster.positions @ (np.eye(3) + strain))
                         - energy(cluster.positions @ (np.eye(3) - strain))) / (2 * h)     # W = -dE/dε
    np.testing.assert_allclose(reply.virials[0] / HARTREE_PER_EV, fd, rtol=0, atol=1e-6 * np.abs(fd).max())
    assert "committee_virial" not in json.loads(reply.extras[0])       # no member stresses without a cell

    atoms = bulk("Cu", "fcc", a=3.66, cubic=True)
    atoms.rattle(0.05, seed=1)
    h_cell = atoms.cell.array.T[None] * BOHR_PER_ANGSTROM
    reply = IPIDriver("demo-llpr", atoms).compute(Request(h_cell, atoms.positions[None] * BOHR_PER_ANGSTROM))
    extras = json.loads(reply.extras[0])
    atoms.calc = AtomfluxCalculator("demo-llpr")
    atoms.get_potential_energy()
    assert np.std(extras["committee_pot"], ddof=1) == pytest.approx(
        atoms.calc.results["energy_uncertainty"] * HARTREE_PER_EV, rel=1e-10)
    assert np.shape(extras["committee_virial"]) == (len(extras["committee_pot"]), 9)


@pytest.mark.skipif(importlib.util.find_spec("sevenn") is None, reason="sevenn is not installed: pip install "
                    "'atomflux[sevennet]'")
def test_third_party_model_spec_drives_like_its_own_calculator(triclinic):
    """A model spec (SevenNet-0, float32) answers i-PI's message as SevenNet's own ASE calculator would."""
    from sevenn.calculator import SevenNetCalculator

    from atomflux.ipi.protocol import Request

    driver = IPIDriver("sevennet:7net-0", triclinic)
    reply = driver.compute(Request(triclinic.cell.array.T[None] * BOHR_PER_ANGSTROM,
                                   triclinic.positions[None] * BOHR_PER_ANGSTROM))
    reference_atoms = triclinic.copy()
    reference_atoms.calc = SevenNetCalculator("7net-0")
    energy = reference_atoms.get_potential_energy()
    forces = reference_atoms.get_forces()
    virial = -reference_atoms.get_volume() * reference_atoms.get_stress(voigt=False)
    assert reply.energies[0] / HARTREE_PER_EV == pytest.approx(energy, rel=1e-6)
    np.testing.assert_allclose(reply.forces[0] / EV_PER_ANGSTROM, forces, rtol=0, atol=1e-5 * np.abs(forces).max())
    np.testing.assert_allclose(reply.virials[0] / HARTREE_PER_EV, virial, rtol=0, atol=1e-5 * np.abs(virial).max())
    assert reply.extras == [b"{}"]                       # no uncertainty: nothing in the extras


# --- with a real i-PI --------------------------------------------------------------------------------

needs_ipi = pytest.mark.skipif(importlib.util.find_spec("ipi") is None,
                               reason="i-PI is not installed (pip install 'atomflux[ipi]')")
I_PI = str(Path(sys.executable).parent / "i-pi")


def read_properties(path: Path) -> dict:
    import ipi

    return ipi.read_output(str(path))[0]


def ipi_input(address: str, forces: str, *, steps: int, nbeads: int = 1, motion: str = "nve", extra_output: str = "",
              properties: str = "step, conserved{electronvolt}, potential{electronvolt}", seed: int = 12345,
              temperature: float = 600.0, forcefields: str | None = None) -> str:
    forcefields = forcefields or f"<ffsocket mode='unix' name='driver'><address>{address}</address></ffsocket>"
    dynamics = ("<dynamics mode='nve'><timestep units='femtosecond'>2</timestep></dynamics>" if motion == "nve" else
                "<dynamics mode='nvt'><timestep units='femtosecond'>1</timestep>"
                "<thermostat mode='pile_l'><tau units='femtosecond'>50</tau></thermostat></dynamics>")
    return f"""<simulation verbosity='low' floatformat='%.16e'>
  {forcefields}
  <total_steps>{steps}</total_steps>
  <prng><seed>{seed}</seed></prng>
  <output prefix='sim'>
    <properties stride='1' filename='out'>[ {properties} ]</properties>
    {extra_output}
  </output>
  <system>
    <initialize nbeads='{nbeads}'>
      <file mode='ase' units='angstrom' cell_units='angstrom'>start.extxyz</file>
      <velocities mode='thermal' units='kelvin'>{temperature}</velocities>
    </initialize>
    <forces><force forcefield='{forces}'/></forces>
    <motion mode='dynamics'>{dynamics}</motion>
    <ensemble><temperature units='kelvin'>{temperature}</temperature></ensemble>
  </system>
</simulation>"""


class RunningIPI:
    """i-PI started in ``folder`` on ``xml``, waiting on the UNIX socket /tmp/ipi_<address>."""

    def __init__(self, folder: Path, xml: str, atoms: Atoms, address: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write(folder / "start.extxyz", atoms, format="extxyz")
        self.atoms = read(folder / "start.extxyz")          # what i-PI reads (positions rounded to 1e-8 Å)
        (folder / "input.xml").write_text(xml)
        self.folder, self.socket = folder, Path(f"/tmp/ipi_{address}")
        self.log = open(folder / "ipi.log", "w")
        self.process = subprocess.Popen([I_PI, "input.xml"], cwd=folder, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self.socket.exists():
            assert self.process.poll() is None, (folder / "ipi.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "i-PI did not open its socket"
            time.sleep(0.1)

    def finish(self) -> dict:
        assert self.process.wait(timeout=120) == 0, (self.folder / "ipi.log").read_text()[-2000:]
        self.log.close()
        return read_properties(self.folder / "sim.out")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.socket.unlink(missing_ok=True)


@pytest.fixture
def started():
    runs = []

    def start(*args) -> RunningIPI:
        runs.append(RunningIPI(*args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def unique() -> str:
    return f"atomflux-test-{uuid.uuid4().hex[:10]}"


def per_atom(name: str, n_atoms: int, units: str) -> str:
    """i-PI properties giving a per-atom vector of every atom (e.g. atom_f), printed at full precision."""
    return ", ".join(f"{name}{{{units}}}(atom={i})" for i in range(n_atoms))


def read_extras(path: Path) -> list[np.ndarray]:
    """The arrays of an i-PI extras trajectory, one per step."""
    blocks: list[list[list[float]]] = []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            blocks.append([])
        elif line.strip():
            blocks[-1].append([float(x) for x in line.split()])
    return [np.squeeze(np.array(b)) for b in blocks]


@needs_ipi
def test_ipi_receives_the_calculators_energy_forces_and_virial_on_a_triclinic_cell(tmp_path, calc, triclinic,
                                                                                  started):
    address = unique()
    # what i-PI holds, in atomic units, against the calculator converted with i-PI's own eV and Å
    # (i-PI's eV/Å and eV/Å³ output factors are rounded to 8 digits: 1e-7 off its own eV and Å)
    from ipi.utils.units import unit_to_internal

    hartree, bohr = 1 / unit_to_internal("energy", "electronvolt", 1.0), 1 / unit_to_internal("length", "angstrom", 1.0)
    n = len(triclinic)
    run = started(tmp_path, ipi_input(address, "driver", steps=1, properties=(
        "step, potential{atomic_unit}, virial_md{atomic_unit}, " + per_atom("atom_f", n, "atomic_unit"))),
        triclinic, address)
    triclinic = run.atoms
    summary = run_driver("demo", triclinic, address=address)
    run.finish()
    assert summary.ended == "exit" and summary.messages == 2
    row = np.loadtxt(tmp_path / "sim.out")[0]       # step, potential, virial_md (6), forces (3N)
    energy, forces, virial, _ = reference(calc, triclinic)
    assert row[1] * hartree == pytest.approx(energy, rel=1e-7)
    received_forces = row[8:].reshape(n, 3) * hartree / bohr
    np.testing.assert_allclose(received_forces, forces, rtol=0, atol=1e-7 * np.abs(forces).max())
    # i-PI's virial_md is W/V as [xx, yy, zz, xy, xz, yz]; W = -V σ
    w_over_v = row[2:8] * hartree / bohr**3
    expected = virial / triclinic.get_volume()
    upper = np.array([expected[0, 0], expected[1, 1], expected[2, 2], expected[0, 1], expected[0, 2], expected[1, 2]])
    np.testing.assert_allclose(w_over_v, upper, rtol=0, atol=1e-7 * np.abs(upper).max())
    # the same W from a finite-difference strain derivative of the energy: W/V = -(1/V) dE/dε
    plain = AtomfluxCalculator("demo", uncertainty=False)

    def energy_of(atoms):
        atoms.calc = plain
        return atoms.get_potential_energy()
    fd = -finite_difference_stress(energy_of, triclinic, h=1e-5)
    np.testing.assert_allclose(w_over_v, [fd[0, 0], fd[1, 1], fd[2, 2], fd[0, 1], fd[0, 2], fd[1, 2]],
                               rtol=0, atol=1e-6 * np.abs(upper).max())


@needs_ipi
def test_nve_matches_ase_socket_client_around_the_calculator(tmp_path, started):
    from ase.calculators.socketio import SocketClient

    atoms = bulk("Cu", "fcc", a=3.66, cubic=True) * (2, 1, 1)
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.05, seed=1)
    columns = {}
    for name in ("atomflux", "ase"):
        address = unique()
        run = started(tmp_path / name, ipi_input(address, "driver", steps=20), atoms, address)
        if name == "atomflux":
            assert run_driver("demo", atoms, address=address, uncertainty=False).ended == "exit"
        else:
            client_atoms = atoms.copy()
            client_atoms.calc = AtomfluxCalculator("demo", uncertainty=False)
            SocketClient(unixsocket=address).run(client_atoms)
        columns[name] = run.finish()
    assert len(columns["atomflux"]["step"]) == 21
    for key in ("potential", "conserved"):
        np.testing.assert_allclose(columns["atomflux"][key], columns["ase"][key], rtol=1e-6)
    drift = np.ptp(columns["atomflux"]["conserved"])
    assert drift < 1e-3, f"NVE conserved quantity drifts by {drift} eV"


@needs_ipi
def test_ffcommittee_prints_the_calculators_energy_uncertainty(tmp_path, calc, started):
    atoms = bulk("Cu", "fcc", a=3.66, cubic=True) * (2, 1, 1)
    atoms.symbols[[0, 5]] = "Au"
    atoms.rattle(0.05, seed=2)
    address = unique()
    committee = (f"<ffcommittee name='committee'><ffsocket mode='unix' name='driver'><address>{address}</address>"
                 "</ffsocket><parse_json>true</parse_json></ffcommittee>")
    outputs = ("<trajectory filename='sigma' stride='1' extra_type='committee_uncertainty'> extras </trajectory>"
               "<trajectory filename='cforce' stride='1' extra_type='committee_force'> extras </trajectory>")
    n = len(atoms)
    run = started(tmp_path, ipi_input(address, "committee", steps=2, forcefields=committee, extra_output=outputs,
                                      properties="step, potential{electronvolt}, " + per_atom("atom_x", n, "angstrom")),
                  atoms, address)
    run_driver("demo", atoms, address=address)
    run.finish()
    sigmas = read_extras(tmp_path / "sim.sigma_0")
    forces = read_extras(tmp_path / "sim.cforce_0")
    rows = np.loadtxt(tmp_path / "sim.out")      # step, potential, positions (3N)
    assert len(sigmas) == len(rows) == 3
    for step, row in enumerate(rows):
        moved = atoms.copy()
        moved.positions = row[2:].reshape(n, 3)
        energy, _, _, results = reference(calc, moved)
        assert float(sigmas[step]) == pytest.approx(results["energy_uncertainty"] * HARTREE_PER_EV, rel=1e-7)
        assert row[1] == pytest.approx(energy, rel=1e-7)                    # i-PI's mean of the committee
        assert forces[step].shape == (8, 3 * len(atoms))


@needs_ipi
def test_batched_beads_give_the_same_path_integral_run(tmp_path, monkeypatch):
    from atomflux.ipi.runner import run_ipi

    calls = []
    original = driver_module.evaluate
    monkeypatch.setattr(driver_module, "evaluate", lambda *a, **k: calls.append(a[1].n_systems) or original(*a, **k))
    atoms = bulk("Cu", "fcc", a=3.66, cubic=True)
    atoms.symbols[0] = "Au"
    write(tmp_path / "start.extxyz", atoms, format="extxyz")
    columns, messages = {}, {}
    for batch in (4, 1):
        forcefield = (f"<ffsocket mode='unix' name='driver'><address>pimd</address>"
                      f"<batch_size>{batch}</batch_size></ffsocket>")
        xml = tmp_path / f"pimd{batch}.xml"
        xml.write_text(ipi_input("pimd", "driver", steps=4, nbeads=4, motion="nvt", forcefields=forcefield,
                                 temperature=300.0, properties="step, conserved{electronvolt}, "
                                 "potential{electronvolt}, kinetic_cv{electronvolt}"))
        calls.clear()
        run = run_ipi(xml, "demo", output=tmp_path / f"run{batch}", uncertainty=False, progress=False)
        assert run.driver.ended == "exit" and run.driver.batch_size == batch
        assert len(calls) == run.driver.messages and sum(calls) <= 4 * 5   # one evaluate call per message
        columns[batch] = read_properties(run.folder / "sim.out")
        messages[batch] = run.driver.messages
    assert messages[1] == 4 * 5 and messages[4] < messages[1]
    for key in ("conserved", "potential", "kinetic_cv"):
        np.testing.assert_allclose(columns[4][key], columns[1][key], rtol=1e-10)


@needs_ipi
def test_runner_records_and_checks_elements(tmp_path, capsys):
    atoms = bulk("Cu", "fcc", a=3.66, cubic=True)
    write(tmp_path / "start.extxyz", atoms, format="extxyz")
    xml = tmp_path / "in.xml"
    xml.write_text(ipi_input("runner", "driver", steps=2))
    wrong = tmp_path / "wrong.extxyz"
    write(wrong, Atoms("AuCu3", positions=atoms.positions, cell=atoms.cell, pbc=True))
    folder = tmp_path / "out"
    assert main(["ipi", "run", str(xml), "--structure", str(wrong), "-o", str(folder)]) == 2
    assert "elements differ from i-PI's start.extxyz at 1 atoms, first atom 0: Cu there, Au" in capsys.readouterr().err
    assert main(["ipi", "run", str(xml), "-o", str(folder), "--uncertainty", "none"]) == 0
    assert json.loads((folder / "run.json").read_text())["command"] == "ipi run"
    assert (folder / "sim.out").is_file() and not list(Path("/tmp").glob("ipi_runner-*"))
    capsys.readouterr()
    assert main(["ipi", "run", str(xml), "-o", str(folder), "--uncertainty", "none"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(["ipi", "run", str(xml), "-o", str(folder)]) == 2       # other settings: never mixed into one run
    assert "holds a different run" in capsys.readouterr().err


def test_rotationally_averaged_model_by_spec_suffix_drives_like_the_averaging_calculator(tmp_path):
    """IPIDriver("model.pt@lebedev:2") answers with the rotational average of an orientation-dependent model."""
    from ase.cluster import Icosahedron

    from atomflux.ipi.protocol import Request
    from conftest import orientation_dependent_model_file

    cluster = Icosahedron("Cu", 2)
    cluster.rattle(0.05, seed=4)
    path = orientation_dependent_model_file(cluster, tmp_path / "unconstrained.pt")
    reply = IPIDriver(f"{path}@lebedev:2", cluster).compute(
        Request(np.zeros((1, 3, 3)), cluster.positions[None] * BOHR_PER_ANGSTROM))
    reference = cluster.copy()
    reference.calc = AtomfluxCalculator(f"{path}@lebedev:2", dtype="float64")
    energy, forces = reference.get_potential_energy(), reference.get_forces()
    assert reply.energies[0] / HARTREE_PER_EV == pytest.approx(energy, rel=1e-6)
    np.testing.assert_allclose(reply.forces[0] / EV_PER_ANGSTROM, forces, rtol=0, atol=1e-5 * np.abs(forces).max())
    bare = cluster.copy()
    bare.calc = AtomfluxCalculator(str(path), dtype="float64")
    assert abs(bare.get_potential_energy() - energy) > 1e-6 * abs(energy)   # averaging changed the numbers
