"""Swap Monte Carlo runs: one loop for in-memory and resumable runs, one or several temperatures, hybrid MC/MD.

:func:`run_swap_mc` is the driver (:func:`~.swap_mc.swap_monte_carlo` is a
thin in-memory call of it).  With an output folder it holds ``run.json``
(:mod:`atomflux.records`: structure, model fingerprint and every setting that
changes the numbers) and ``state.npz`` (the species sampled after every
``sample_every`` sweeps at every temperature, their energies, acceptance
counts, the current positions and species and the random generator's
state), written atomically every ``checkpoint_every`` sweeps.  Running again
into the folder continues from the last checkpoint when the record matches —
the same chain as an uninterrupted run (the chains are rebuilt at every
multiple of ``checkpoint_every``, so a run extended from a total that is not
such a multiple continues statistically, not bit for bit); more sweeps
extend a finished run.

One *sweep* is as many swap attempts as the region has atoms.  With several
temperatures T_0 < T_1 < ... (*replica exchange*), one chain runs at each;
every ``exchange_every`` sweeps the configurations at neighbouring
temperatures k, k + 1 (k = 0, 1, ... in turn) are exchanged with probability
min(1, exp((β_k − β_{k+1})(E_k − E_{k+1}))), which keeps the product of the
Boltzmann distributions stationary and lets the cold chains borrow the hot
chains' decorrelation.  Samples and acceptance counts belong to a
temperature, not to a configuration.

With ``md_every`` > 0, every ``md_every`` sweeps the atoms move: ``md_steps``
Langevin steps at the chain's temperature (velocities drawn afresh from
Maxwell–Boltzmann, seeded by the run's seed, the sweep and, with several
temperatures, the temperature's index), and/or a FIRE relaxation every
``relax_every`` sweeps; the swap energies are then recomputed at the new
positions.  MD at the same temperature keeps the canonical distribution of
positions and species; relaxation instead samples species on relaxed
positions (an approximation, commonly used, to the relaxed-lattice ensemble).

Small trial batches are evaluated with one torch thread (the calls are far
too small for intra-op threads to pay; on a loaded 2-core machine two threads
made them ~20x slower: ``docs/benchmarks.md``).

Units: K, fs, eV, eV/Å.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ase import Atoms, units

from ..progress import progress
from ..records import deferred_interrupts, finish_run, fingerprint, open_run, read_run, update_info, \
    write_atomically
from ..threads import torch_threads
from .chain import SwapChain
from .energies import DEFAULT_ATOMS_PER_CALL, DensitySwapEnergy, LocalSwapEnergy, SwapEnergy, swap_energy

STATE_FILE = "state.npz"


@dataclass
class HybridSettings:
    """Moves of the atoms between swap sweeps (all off by default).

    Attributes
    ----------
    md_every : int
        Sweeps between MD segments (0: no MD).
    md_steps : int
        Langevin steps per segment.
    timestep : float
        fs.
    friction : float
        Langevin friction, 1/fs.
    relax_every : int
        Sweeps between FIRE relaxations (0: none).
    fmax : float
        Relaxation force criterion, eV/Å.
    relax_steps : int
        Most FIRE steps per relaxation.
    """

    md_every: int = 0
    md_steps: int = 20
    timestep: float = 2.0
    friction: float = 0.02
    relax_every: int = 0
    fmax: float = 0.05
    relax_steps: int = 200

    def check(self) -> None:
        for name in ("md_every", "relax_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 0 sweeps, got {getattr(self, name)}")
        for name in ("md_steps", "relax_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")
        for name, unit in (("timestep", "fs"), ("friction", "1/fs"), ("fmax", "eV/Å")):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 {unit}, got {getattr(self, name)}")

    @property
    def moves_atoms(self) -> bool:
        return self.md_every > 0 or self.relax_every > 0

    def parameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.md_every:
            out.update(md_every=self.md_every, md_steps=self.md_steps, timestep_fs=self.timestep,
                       friction_per_fs=self.friction)
        if self.relax_every:
            out.update(relax_every=self.relax_every, fmax_eV_per_A=self.fmax, relax_steps=self.relax_steps)
        return out


@dataclass
class SwapRun:
    """The samples of a swap Monte Carlo run at one temperature.

    Attributes
    ----------
    numbers : ndarray [S, N]
        Species after every ``sample_every`` sweeps (sample 0: after the first ``sample_every`` sweeps).
    energies : ndarray [S]
        Potential energy of each sample, eV.
    sweeps : ndarray [S]
        Sweeps done at each sample.
    attempted, accepted : int
        Swap attempts and accepted swaps at this temperature.
    atoms : Atoms
        The current configuration (positions and species).
    folder : Path or None
        The run folder (``None``: a run in memory).
    temperature : float
        K.
    """

    numbers: np.ndarray
    energies: np.ndarray
    sweeps: np.ndarray
    attempted: int
    accepted: int
    atoms: Atoms
    folder: Path | None
    temperature: float = float("nan")

    @property
    def acceptance(self) -> float:
        return self.accepted / self.attempted if self.attempted else float("nan")


@dataclass
class ReplicaExchangeRun:
    """A replica-exchange run: one :class:`SwapRun` per temperature and the exchange statistics.

    Attributes
    ----------
    replicas : list of SwapRun
        The samples at each temperature, in increasing temperature.
    temperatures : ndarray [R]
        K.
    exchange_attempted, exchange_accepted : ndarray [R − 1] (int)
        Exchanges attempted and accepted between temperatures k and k + 1.
    folder : Path or None
    """

    replicas: list[SwapRun]
    temperatures: np.ndarray
    exchange_attempted: np.ndarray
    exchange_accepted: np.ndarray
    folder: Path | None = None

    @property
    def exchange_acceptance(self) -> np.ndarray:
        """Accepted / attempted exchanges of each neighbouring pair of temperatures [R − 1] (NaN: none attempted)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.exchange_attempted > 0, self.exchange_accepted / np.maximum(self.exchange_attempted, 1),
                            np.nan)


def load_swap_run(folder: str | Path) -> SwapRun | ReplicaExchangeRun:
    """The samples and current state of a run folder: a :class:`SwapRun` for one temperature,
    a :class:`ReplicaExchangeRun` for several (``ValueError`` when the folder holds no samples)."""
    folder = Path(folder)
    state = _read_state(folder)
    replicas = [SwapRun(state["numbers"][:, r], state["energies"][:, r], state["sweeps"], int(state["attempted"][r]),
                        int(state["accepted"][r]),
                        Atoms(numbers=state["numbers_now"][r], positions=state["positions"][r], cell=state["cell"],
                              pbc=state["pbc"]), folder, float(state["temperatures"][r]))
                for r in range(len(state["temperatures"]))]
    if len(replicas) == 1:
        return replicas[0]
    return ReplicaExchangeRun(replicas, state["temperatures"], state["exchange_attempted"], state["exchange_accepted"],
                              folder)


def _read_state(folder: Path) -> dict[str, Any]:
    """``state.npz`` with a temperature axis everywhere (files of single-temperature runs from before
    replica exchange have none)."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise ValueError(f"{folder} holds no swap Monte Carlo samples ({STATE_FILE}); run it first")
    with np.load(path) as stored:
        state = {key: stored[key] for key in stored.files}
    if state["numbers_now"].ndim == 1:                       # one temperature: no temperature axis
        temperature = state["temperatures"][0] if "temperatures" in state else \
            read_run(folder)["parameters"]["temperature_K"]
        n_atoms = len(state["numbers_now"])
        state.update(numbers=state["numbers"].reshape(-1, 1, n_atoms), energies=state["energies"].reshape(-1, 1),
                     numbers_now=state["numbers_now"][None], positions=state["positions"][None],
                     attempted=np.atleast_1d(state["attempted"]), accepted=np.atleast_1d(state["accepted"]),
                     temperatures=np.array([temperature]), exchange_attempted=np.zeros(0, dtype=np.int64),
                     exchange_accepted=np.zeros(0, dtype=np.int64))
    return state


@dataclass
class _Replica:
    """One temperature's chain: its configuration (engine and positions) and counts."""

    config: Atoms
    engine: SwapEnergy
    chain: SwapChain | None = None
    attempted: int = 0
    accepted: int = 0
    samples: dict[str, list] = field(default_factory=lambda: {"numbers": [], "energies": []})


def run_swap_mc(atoms: Atoms, calculator, output: str | Path | None, temperature: float | Sequence[float],
                sweeps: int, *, seed: int = 0, region: Sequence[int] | None = None, batch_size: int = 32,
                sample_every: int = 1, checkpoint_every: int = 10, exchange_every: int = 1,
                hybrid: HybridSettings | None = None, model: dict[str, Any] | None = None, restart: bool = False,
                show_progress: bool = True, label: str = "swap MC", max_attempts: int | None = None,
                atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
                observer: Callable[[SwapEnergy], None] | None = None) -> SwapRun | ReplicaExchangeRun:
    """Canonical swap Monte Carlo of ``atoms`` at one temperature or several (replica exchange).

    Parameters
    ----------
    atoms
        The structure (not modified).
    calculator
        An ``AtomfluxCalculator`` or an atomflux potential (local, batched ΔE for
        strictly local models) or any ASE calculator (one energy call per trial);
        with ``hybrid`` it also drives the MD and relaxation (a calculator then).
    output
        Run folder (resumable), or ``None`` for a run in memory (no checkpoints).
    temperature
        K: one value, or several in increasing order for replica exchange.
    sweeps
        Sweeps in total (a rerun with more sweeps extends the run).
    seed
        Random seed (swaps, exchanges; MD velocities and thermostat per segment).
    region
        Atom indices allowed to swap (default all).
    batch_size
        Trial swaps per energy call (the Markov chain is the same for any value).
    sample_every, checkpoint_every
        Sweeps between samples, and between checkpoints (a multiple of ``sample_every``).
    exchange_every
        Sweeps between replica exchanges (several temperatures only).
    hybrid
        MD / relaxation between sweeps.
    model
        ``records.model_record`` of the model (compared on resume; default: the calculator's fingerprint).
    restart
        Move an existing run aside and start over.
    show_progress
        Progress bar with the acceptance rate.
    label
        Name on the progress bar.
    max_attempts
        Stop after this many swap attempts per temperature (the last sweep cut short); default: all sweeps.
    atoms_per_call
        Atoms per call when whole systems are evaluated in batches (non-local models).
    observer
        Called with the energy engine at the start and after every attempt (one temperature only), e.g. to
        record energies.

    Returns
    -------
    SwapRun (one temperature) or ReplicaExchangeRun (several).
    """
    hybrid = hybrid or HybridSettings()
    hybrid.check()
    temperatures = np.atleast_1d(np.asarray(temperature, dtype=float))
    if temperatures.ndim != 1 or len(temperatures) == 0 or not (temperatures > 0).all():
        raise ValueError(f"temperatures must be > 0 K, got {temperatures.tolist()}")
    if len(temperatures) > 1 and not (np.diff(temperatures) > 0).all():
        raise ValueError(f"replica-exchange temperatures must be distinct and increasing, got {temperatures.tolist()}")
    if observer is not None and len(temperatures) > 1:
        raise ValueError("an observer of every attempt needs a single temperature")
    for name, value in (("sweeps", sweeps), ("sample_every", sample_every), ("checkpoint_every", checkpoint_every),
                        ("batch_size", batch_size), ("exchange_every", exchange_every)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {value}")
    if output is not None and checkpoint_every % sample_every:
        raise ValueError(f"checkpoint every ({checkpoint_every}) must be a multiple of sample every ({sample_every})")
    region_indices = np.arange(len(atoms)) if region is None else np.unique(np.asarray(region, dtype=np.int64))
    several = len(temperatures) > 1
    folder = None if output is None else Path(output)
    rng = np.random.default_rng(seed)
    start = atoms.copy()
    start.calc = None
    configs = [start.copy() for _ in temperatures]
    counts = np.zeros((len(temperatures), 2), dtype=np.int64)              # attempted, accepted per temperature
    exchanges = np.zeros((max(len(temperatures) - 1, 0), 2), dtype=np.int64)  # attempted, accepted per pair
    sweeps_sampled: list[int] = []
    stored: dict[str, Any] | None = None
    done = 0
    if folder is not None:
        parameters = {"structure": fingerprint(atoms), "formula": atoms.get_chemical_formula(),
                      **({"temperatures_K": temperatures.tolist(), "exchange_every": int(exchange_every)} if several
                         else {"temperature_K": float(temperatures[0])}),
                      "seed": int(seed), "region": region_indices.tolist(), "batch_size": int(batch_size),
                      "sample_every": int(sample_every), "checkpoint_every": int(checkpoint_every),
                      **hybrid.parameters()}
        model = model or {"spec": None, "fingerprint": fingerprint(calculator)}
        resuming = open_run(folder, "segregation", parameters, model, info={"sweeps": sweeps}, restart=restart)
        if resuming and (folder / STATE_FILE).is_file():
            stored = _read_state(folder)
            for r, config in enumerate(configs):
                config.positions, config.numbers = stored["positions"][r], stored["numbers_now"][r]
            counts[:] = np.stack([stored["attempted"], stored["accepted"]], axis=1)
            exchanges[:] = np.stack([stored["exchange_attempted"], stored["exchange_accepted"]], axis=1).reshape(-1, 2)
            sweeps_sampled = stored["sweeps"].tolist()
            done = int(stored["sweeps"][-1]) if len(stored["sweeps"]) else 0
            rng.bit_generator.state = json.loads(str(stored["rng"]))
            update_info(folder, sweeps=max(sweeps, int(read_run(folder).get("info", {}).get("sweeps", 0))))
    replicas = [_Replica(config, swap_energy(calculator, config, atoms_per_call)) for config in configs]
    if stored is not None:
        for r, replica in enumerate(replicas):
            replica.samples = {"numbers": list(stored["numbers"][:, r]), "energies": list(stored["energies"][:, r])}
    for replica, (attempted, accepted) in zip(replicas, counts):
        replica.attempted, replica.accepted = int(attempted), int(accepted)

    def new_chains() -> None:
        # rebuilt at every checkpoint (fresh proposer lists, energies from scratch) so that a resumed
        # run continues exactly the chain of an uninterrupted one
        for replica, t in zip(replicas, temperatures):
            replica.chain = SwapChain(replica.engine, t, rng, region=region_indices, batch_size=batch_size,
                                      observer=observer)

    new_chains()
    if observer is not None:
        observer(replicas[0].engine)
    per_sweep = len(region_indices)
    limit = math.inf if max_attempts is None else int(max_attempts)
    threads = 1 if isinstance(replicas[0].engine, (DensitySwapEnergy, LocalSwapEnergy)) else torch.get_num_threads()

    def save() -> None:
        if folder is None:
            return

        def write(tmp: Path) -> None:
            numbers = np.array([r.samples["numbers"] for r in replicas], dtype=np.int16).reshape(
                len(replicas), -1, len(atoms)).transpose(1, 0, 2)                             # [S, R, N]
            energies = np.array([r.samples["energies"] for r in replicas], dtype=float).reshape(len(replicas), -1).T
            arrays = dict(numbers=numbers, energies=energies, attempted=np.array([r.attempted for r in replicas]),
                          accepted=np.array([r.accepted for r in replicas]),
                          numbers_now=np.array([r.engine.numbers for r in replicas]),
                          positions=np.array([r.config.positions for r in replicas]))
            if not several:   # one temperature: no temperature axis (the layout of earlier versions)
                arrays = {key: value[:, 0] if key in ("numbers", "energies") else value[0] for key, value in arrays.items()}
            np.savez(tmp, **arrays, sweeps=np.array(sweeps_sampled, dtype=np.int64), cell=atoms.cell.array,
                     pbc=atoms.pbc, temperatures=temperatures, exchange_attempted=exchanges[:, 0],
                     exchange_accepted=exchanges[:, 1], rng=json.dumps(rng.bit_generator.state))

        with deferred_interrupts():
            write_atomically(folder / STATE_FILE, write)

    description = f"{label} {', '.join(f'{t:g}' for t in temperatures)} K"
    with progress(sweeps, description, unit="sweep", initial=min(done, sweeps), enabled=show_progress) as bar:
        while done < sweeps and replicas[0].attempted < limit:
            for k, replica in enumerate(replicas):
                with torch_threads(threads):
                    step = replica.chain.attempt(int(min(per_sweep, limit - replica.attempted)))
                replica.attempted += step.attempted
                replica.accepted += step.accepted
            done += 1
            if hybrid.moves_atoms:
                for k, replica in enumerate(replicas):
                    segment_seed = [seed, done, k] if several else [seed, done]
                    if _move_atoms(replica.config, replica.engine, calculator, temperatures[k], hybrid, segment_seed,
                                   done):
                        replica.engine.reset(replica.config)
            if several and done % exchange_every == 0:
                _exchange(replicas, temperatures, rng, exchanges)
            if done % sample_every == 0:
                for replica in replicas:
                    replica.samples["numbers"].append(replica.engine.numbers.copy())
                    replica.samples["energies"].append(replica.engine.energy)
                sweeps_sampled.append(done)
            if folder is not None and done % checkpoint_every == 0:
                save()
                for replica in replicas:
                    replica.config.numbers = replica.engine.numbers
                    replica.engine.reset(replica.config)
                new_chains()
            elif done == sweeps:
                save()
            bar.update(1)
            bar.set_postfix(acceptance=", ".join(f"{r.accepted / max(r.attempted, 1):.3f}" for r in replicas),
                            **({"exchange": ", ".join(f"{a / max(n, 1):.2f}" for n, a in exchanges)} if several else
                               {"energy": f"{replicas[0].engine.energy:.3f} eV"}))
    if folder is None:
        runs = [SwapRun(np.array(r.samples["numbers"], dtype=np.int64).reshape(-1, len(atoms)),
                        np.array(r.samples["energies"], dtype=float), np.array(sweeps_sampled, dtype=np.int64),
                        r.attempted, r.accepted, _current(r), None, float(t)) for r, t in zip(replicas, temperatures)]
        return runs[0] if not several else ReplicaExchangeRun(runs, temperatures, exchanges[:, 0].copy(),
                                                              exchanges[:, 1].copy())
    if not (folder / STATE_FILE).is_file():
        save()
    run = load_swap_run(folder)
    finish_run(folder, {"sweeps": done, "samples": len(sweeps_sampled),
                        "acceptance": [r.accepted / max(r.attempted, 1) for r in replicas],
                        "final_energy_eV": [float(r.engine.energy) for r in replicas],
                        **({"exchange_acceptance": [a / max(n, 1) for n, a in exchanges]} if several else {})})
    return run


def _current(replica: _Replica) -> Atoms:
    atoms = replica.config.copy()
    atoms.calc = None
    atoms.numbers = replica.engine.numbers
    return atoms


def _exchange(replicas: list[_Replica], temperatures: np.ndarray, rng: np.random.Generator,
              exchanges: np.ndarray) -> None:
    """Metropolis exchanges of the configurations at temperatures k and k + 1, k = 0, 1, ... in turn."""
    betas = 1.0 / (units.kB * temperatures)
    for k in range(len(replicas) - 1):
        low, high = replicas[k], replicas[k + 1]
        exchanges[k, 0] += 1
        if rng.random() < np.exp(min(0.0, (betas[k] - betas[k + 1]) * (low.engine.energy - high.engine.energy))):
            exchanges[k, 1] += 1
            # the configurations change temperature; chains (their proposers follow the species) go with them
            low.config, high.config = high.config, low.config
            low.engine, high.engine = high.engine, low.engine
            low.chain, high.chain = high.chain, low.chain
            low.chain.temperature, high.chain.temperature = float(temperatures[k]), float(temperatures[k + 1])


def _move_atoms(config: Atoms, engine, calculator, temperature: float, hybrid: HybridSettings, seed: list[int],
                sweep: int) -> bool:
    """MD and/or relaxation after ``sweep`` when due; True when the atoms moved."""
    from ase.md.langevin import Langevin
    from ase.optimize import FIRE

    from ..md import thermalize

    moved = False
    config.numbers = engine.numbers
    config.calc = calculator
    if hybrid.md_every and sweep % hybrid.md_every == 0:
        rng = np.random.default_rng(seed)
        thermalize(config, temperature, rng)
        dyn = Langevin(config, hybrid.timestep * units.fs, temperature_K=temperature,
                       friction=hybrid.friction / units.fs, fixcm=False, rng=rng)
        dyn.run(hybrid.md_steps)
        moved = True
    if hybrid.relax_every and sweep % hybrid.relax_every == 0:
        FIRE(config, logfile=None).run(fmax=hybrid.fmax, steps=hybrid.relax_steps)
        moved = True
    config.set_momenta(np.zeros((len(config), 3)))
    config.calc = None
    return moved
