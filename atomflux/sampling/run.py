"""Resumable swap Monte Carlo runs in a folder, optionally hybrid with MD or relaxation (hybrid MC/MD).

A run folder holds ``run.json`` (:mod:`atomflux.records`: structure, model
fingerprint and every setting that changes the numbers) and ``state.npz``
(the species sampled after every ``sample_every`` sweeps, their energies,
acceptance counts, the current positions and species and the random
generator's state), written atomically every ``checkpoint_every`` sweeps.
Running again into the folder continues from the last checkpoint when the
record matches — the same chain as an uninterrupted run (the chain is rebuilt
at every multiple of ``checkpoint_every``, so a run extended from a total that
is not such a multiple continues statistically, not bit for bit); more sweeps
extend a finished run.

One *sweep* is as many swap attempts as the region has atoms.  With
``md_every`` > 0, every ``md_every`` sweeps the atoms move: ``md_steps``
Langevin steps at the Monte Carlo temperature (velocities drawn afresh from
Maxwell–Boltzmann, seeded by the run's seed and the segment number), and/or
a FIRE relaxation every ``relax_every`` sweeps; the swap energies are then
recomputed at the new positions.  MD at the same temperature keeps the
canonical distribution of positions and species; relaxation instead samples
species on relaxed positions (an approximation, commonly used, to the
relaxed-lattice ensemble).

Units: K, fs, eV, eV/Å.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms, units

from ..progress import progress
from ..records import deferred_interrupts, finish_run, fingerprint, open_run, read_run, update_info, \
    write_atomically
from .chain import SwapChain
from .energies import swap_energy

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
    """The samples of a swap Monte Carlo run folder.

    Attributes
    ----------
    numbers : ndarray [S, N]
        Species after every ``sample_every`` sweeps (sample 0: after the first ``sample_every`` sweeps).
    energies : ndarray [S]
        Potential energy of each sample, eV.
    sweeps : ndarray [S]
        Sweeps done at each sample.
    attempted, accepted : int
    atoms : Atoms
        The current configuration (positions and species).
    folder : Path
    """

    numbers: np.ndarray
    energies: np.ndarray
    sweeps: np.ndarray
    attempted: int
    accepted: int
    atoms: Atoms
    folder: Path

    @property
    def acceptance(self) -> float:
        return self.accepted / self.attempted if self.attempted else float("nan")


def load_swap_run(folder: str | Path) -> SwapRun:
    """The samples and current state of a run folder (``ValueError`` when it holds none)."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise ValueError(f"{folder} holds no swap Monte Carlo samples ({STATE_FILE}); run it first")
    with np.load(path) as state:
        atoms = Atoms(numbers=state["numbers_now"], positions=state["positions"], cell=state["cell"],
                      pbc=state["pbc"])
        return SwapRun(state["numbers"], state["energies"], state["sweeps"], int(state["attempted"]),
                       int(state["accepted"]), atoms, folder)


def run_swap_mc(atoms: Atoms, calculator, output: str | Path, temperature: float, sweeps: int, *,
                seed: int = 0, region: Sequence[int] | None = None, batch_size: int = 32, sample_every: int = 1,
                checkpoint_every: int = 10, hybrid: HybridSettings | None = None, model: dict[str, Any] | None = None,
                restart: bool = False, show_progress: bool = True, label: str = "swap MC") -> SwapRun:
    """Canonical swap Monte Carlo of ``atoms`` into a resumable run folder.

    Parameters
    ----------
    atoms
        The structure (not modified).
    calculator
        An ``AtomfluxCalculator`` (local, batched ΔE for strictly local
        models) or any ASE calculator (one energy call per trial); with
        ``hybrid`` it also drives the MD and relaxation.
    output
        Run folder.
    temperature
        K.
    sweeps
        Sweeps in total (a rerun with more sweeps extends the run).
    seed
        Random seed (swaps; MD velocities and thermostat per segment).
    region
        Atom indices allowed to swap (default all).
    batch_size
        Trial swaps per energy call.
    sample_every, checkpoint_every
        Sweeps between samples, and between checkpoints (a multiple of ``sample_every``).
    hybrid
        MD / relaxation between sweeps.
    model
        ``records.model_record`` of the model (compared on resume; default: the calculator's fingerprint).
    restart
        Move an existing run aside and start over.
    show_progress
        Progress bar with the acceptance rate.
    """
    hybrid = hybrid or HybridSettings()
    hybrid.check()
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 K, got {temperature}")
    for name, value in (("sweeps", sweeps), ("sample_every", sample_every), ("checkpoint_every", checkpoint_every),
                        ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {value}")
    if checkpoint_every % sample_every:
        raise ValueError(f"checkpoint every ({checkpoint_every}) must be a multiple of sample every ({sample_every})")
    region_indices = np.arange(len(atoms)) if region is None else np.unique(np.asarray(region, dtype=np.int64))
    folder = Path(output)
    parameters = {"structure": fingerprint(atoms), "formula": atoms.get_chemical_formula(),
                  "temperature_K": float(temperature), "seed": int(seed), "region": region_indices.tolist(),
                  "batch_size": int(batch_size), "sample_every": int(sample_every),
                  "checkpoint_every": int(checkpoint_every), **hybrid.parameters()}
    model = model or {"spec": None, "fingerprint": fingerprint(calculator)}
    resuming = open_run(folder, "segregation", parameters, model, info={"sweeps": sweeps}, restart=restart)
    config = atoms.copy()
    config.calc = None
    rng = np.random.default_rng(seed)
    samples: dict[str, list] = {"numbers": [], "energies": [], "sweeps": []}
    done, attempted, accepted = 0, 0, 0
    if resuming and (folder / STATE_FILE).is_file():
        previous = load_swap_run(folder)
        config.positions, config.numbers = previous.atoms.positions, previous.atoms.numbers
        samples = {"numbers": list(previous.numbers), "energies": list(previous.energies),
                   "sweeps": list(previous.sweeps)}
        done = int(previous.sweeps[-1]) if len(previous.sweeps) else 0
        attempted, accepted = previous.attempted, previous.accepted
        with np.load(folder / STATE_FILE) as state:
            rng.bit_generator.state = json.loads(str(state["rng"]))
        update_info(folder, sweeps=max(sweeps, int(read_run(folder).get("info", {}).get("sweeps", 0))))
    engine = swap_energy(calculator, config)

    def new_chain(attempted: int, accepted: int) -> SwapChain:
        # rebuilt at every checkpoint (fresh proposer lists, energies from scratch) so that a resumed
        # run continues exactly the chain of an uninterrupted one
        chain = SwapChain(engine, temperature, rng, region=region_indices, batch_size=batch_size)
        chain.counts.attempted, chain.counts.accepted = attempted, accepted
        return chain

    chain = new_chain(attempted, accepted)
    per_sweep = len(region_indices)

    def save() -> None:
        def write(tmp: Path) -> None:
            np.savez(tmp, numbers=np.array(samples["numbers"], dtype=np.int16).reshape(-1, len(config)),
                     energies=np.array(samples["energies"]), sweeps=np.array(samples["sweeps"], dtype=np.int64),
                     attempted=chain.counts.attempted, accepted=chain.counts.accepted,
                     numbers_now=engine.numbers, positions=config.positions, cell=config.cell.array,
                     pbc=config.pbc, rng=json.dumps(rng.bit_generator.state))

        with deferred_interrupts():
            write_atomically(folder / STATE_FILE, write)

    with progress(sweeps, f"{label} {temperature:g} K", unit="sweep", initial=min(done, sweeps),
                  enabled=show_progress) as bar:
        while done < sweeps:
            chain.attempt(per_sweep)
            done += 1
            if hybrid.moves_atoms and _move_atoms(config, engine, calculator, temperature, hybrid, seed, done):
                engine.reset(config)
            if done % sample_every == 0:
                samples["numbers"].append(engine.numbers.copy())
                samples["energies"].append(engine.energy)
                samples["sweeps"].append(done)
            if done % checkpoint_every == 0:
                save()
                config.numbers = engine.numbers
                engine.reset(config)
                chain = new_chain(chain.counts.attempted, chain.counts.accepted)
            elif done == sweeps:
                save()
            bar.update(1)
            bar.set_postfix(acceptance=f"{chain.counts.acceptance:.3f}", energy=f"{engine.energy:.3f} eV")
    if not (folder / STATE_FILE).is_file():
        save()
    run = load_swap_run(folder)
    finish_run(folder, {"sweeps": done, "samples": len(run.sweeps), "acceptance": run.acceptance,
                        "final_energy_eV": float(engine.energy)})
    return run


def _move_atoms(config: Atoms, engine, calculator, temperature: float, hybrid: HybridSettings, seed: int,
                sweep: int) -> bool:
    """MD and/or relaxation after ``sweep`` when due; True when the atoms moved."""
    from ase.md.langevin import Langevin
    from ase.optimize import FIRE

    from ..md import thermalize

    moved = False
    config.numbers = engine.numbers
    config.calc = calculator
    if hybrid.md_every and sweep % hybrid.md_every == 0:
        rng = np.random.default_rng([seed, sweep])
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
