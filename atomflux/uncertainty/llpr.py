"""Last-layer prediction rigidity (LLPR) for any potential that returns ``features``.

Treat the energy as linear in the last-layer features, E_S = φ_S·w + ...,
with φ_S = Σ_{i∈S} [f_i, 1] (the 1 carries the bias; the ``llpr_features``
output holds [f_i, 1] per atom).  Over a training set,
C = Σ_S φ_S φ_Sᵀ; the posterior covariance of the last-layer weights is

    Σ = α² (C + ς² I)⁻¹

and the energy variance of a structure is σ²_S = φ_Sᵀ Σ φ_S (per atom,
f_iᵀ Σ f_i: the local prediction rigidity).  α and ς are calibrated on a
validation set by minimising the Gaussian NLL.  Forces and stress
uncertainties come from K fixed samples δw_k ~ N(0, Σ): member k has per-atom
energy e_i + f_i·δw_k, and :func:`atomflux.evaluate` differentiates the members
like a shallow ensemble.  Nothing about the base model is assumed beyond
``features`` [N, F] being the input of a last linear layer; the base is not
changed (reference: Bigi et al., arXiv:2403.02251).

A model that does not return ``features`` needs no rewriting: with
``last_layer="name"`` the features are the input of that linear layer, taken
by a forward hook (the base then reports them as its ``features`` output).
A third-party base (:mod:`atomflux.foreign`) is stored in model files by its
spec (``{"base": {"spec": "sevennet:7net-0"}}``), not copied.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..models.base import Potential, floating_dtype
from ..systems import Batch


def _augmented(features: torch.Tensor) -> torch.Tensor:
    return torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)


class HookedFeatures(Potential):
    """A potential whose ``features`` are the input of one of its linear layers, taken by a forward hook.

    The hook records only while this wrapper evaluates, so the wrapped
    potential itself is unchanged for every other caller.

    Parameters
    ----------
    potential
        Any potential returning per-atom ``energy``.
    last_layer
        Name of the layer (as in ``potential.named_modules()``) whose input,
        Tensor [N, F] (one row per atom), become the features.
    """

    def __init__(self, potential: Potential, last_layer: str) -> None:
        super().__init__(potential.species, potential.cutoff)
        self.potential, self.last_layer = potential, last_layer
        self.strictly_local = getattr(potential, "strictly_local", False)
        try:
            layer = potential.get_submodule(last_layer)
        except AttributeError:
            linear = [n for n, m in potential.named_modules() if "linear" in type(m).__name__.lower()]
            raise ValueError(f"last_layer {last_layer!r} is not a sub-module of {type(potential).__name__}; "
                             f"its linear layers include: {', '.join(linear[-5:]) or 'none'}") from None
        self._recording = False
        self._captured: torch.Tensor | None = None
        layer.register_forward_pre_hook(self._capture_input)

    def _capture_input(self, module: torch.nn.Module, args: tuple) -> None:
        if not self._recording:
            return
        features = args[0] if args else None
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            raise ValueError(f"last_layer {self.last_layer!r} takes {type(features).__name__}, not a [N, F] tensor: "
                             "name the linear layer itself (the module whose input is one feature row per atom)")
        self._captured = features

    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        self._recording, self._captured = True, None
        try:
            out = dict(self.potential(batch, vectors))
        finally:
            self._recording = False
        features, self._captured = self._captured, None
        if features is None or features.shape[0] != out["energy"].shape[0]:
            raise ValueError(f"last_layer {self.last_layer!r} did not see one row per atom in this evaluation; "
                             "choose the last linear layer of the per-atom energy readout")
        out["features"] = features
        return out


class LLPR(Potential):
    """A potential wrapped with LLPR uncertainty.

    Parameters
    ----------
    base : Potential or dict
        The trained potential (or ``{"architecture": ..., "config": ...}``
        when rebuilding from a model file).
    n_features : int
        Size F of ``features`` (found by a probe evaluation if omitted).
    n_samples : int
        Posterior samples K used for force/stress uncertainties.
    seed : int
        Seed of the fixed standard-normal draws behind the samples.
    last_layer : str, optional
        Name (as in ``base.named_modules()``) of the last linear layer: its
        input [N, F] becomes the features, taken by a forward hook.  Without
        it, the base's own ``features`` output is used.
    """

    architecture = "LLPR"

    def __init__(self, base: Potential | dict, n_features: int | None = None, n_samples: int = 16,
                 seed: int = 0, last_layer: str | None = None) -> None:
        if isinstance(base, dict):
            if "spec" in base:
                raise ValueError(f"LLPR base {base['spec']!r} is a model spec: load it with atomflux.load_model "
                                 "(which resolves specs) and pass the potential")
            from ..models import ARCHITECTURES

            base = ARCHITECTURES[base["architecture"]](**base["config"])
        super().__init__(base.species, base.cutoff)
        self.base = base
        self.strictly_local = getattr(base, "strictly_local", False)
        if hasattr(base, "interaction_range"):
            self.interaction_range = base.interaction_range
        self.last_layer = last_layer
        if last_layer is not None:
            base = self.base = HookedFeatures(base, last_layer)
        self.n_features = int(n_features) if n_features is not None else _probe_features(base)
        self.n_samples, self.seed = int(n_samples), int(seed)
        dim = self.n_features + 1
        dtype = floating_dtype(base)
        self.register_buffer("covariance", torch.zeros(dim, dim, dtype=dtype))
        self.register_buffer("n_structures", torch.tensor(0, dtype=torch.long))
        self.register_buffer("alpha_squared", torch.tensor(1.0, dtype=dtype))
        self.register_buffer("regulariser", torch.tensor(1e-6, dtype=dtype))
        generator = torch.Generator().manual_seed(self.seed)
        self.register_buffer("draws", torch.randn(dim, self.n_samples, generator=generator, dtype=dtype))
        self._posterior: tuple[torch.Tensor, torch.Tensor] | None = None

    def config(self) -> dict[str, Any]:
        inner = self.base.potential if isinstance(self.base, HookedFeatures) else self.base
        spec = getattr(inner, "spec", None)
        if spec is not None:
            inner.config()  # raises for a third-party model given as an object (nothing to refer to)
        base = {"spec": spec} if spec else {"architecture": inner.architecture, "config": inner.config()}
        config = {"base": base, "n_features": self.n_features, "n_samples": self.n_samples, "seed": self.seed}
        if self.last_layer is not None:
            config["last_layer"] = self.last_layer
        return config

    # -- posterior -------------------------------------------------------
    def _invalidate(self) -> None:
        self._posterior = None

    def _apply(self, fn, recurse=True):  # dtype/device changes invalidate the cached posterior
        self._invalidate()
        return super()._apply(fn, recurse)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior covariance Σ [(F+1), (F+1)] and a square root L (L Lᵀ = Σ), in the model's dtype."""
        sigma, root = self._posterior_float64()
        return sigma.to(self.covariance.dtype), root.to(self.covariance.dtype)

    def _posterior_float64(self) -> tuple[torch.Tensor, torch.Tensor]:
        # always solved in float64: a float32 base (SevenNet) leaves C too ill-conditioned for float32
        if self._posterior is None:
            if int(self.n_structures) == 0:
                raise ValueError("LLPR has not been fitted: call fit() on training data first")
            # C = Σ φφᵀ is positive semi-definite: negative eigenvalues are rounding (float32 features)
            covariance = self.covariance.double()
            eigenvalues, vectors = torch.linalg.eigh(0.5 * (covariance + covariance.T))
            scale = float(self.alpha_squared) / (eigenvalues.clamp(min=0.0) + float(self.regulariser))
            root = vectors * scale.sqrt()                                   # L with L Lᵀ = Σ
            self._posterior = (root @ root.T, root)
        return self._posterior

    def energy_variance(self, phi: torch.Tensor) -> torch.Tensor:
        """Variance (eV²) of the energy for augmented features φ [..., F+1] of atoms or structures.

        φ is the ``llpr_features`` output ([f_i, 1] per atom) or its sum over a structure.
        """
        sigma, _ = self._posterior_float64()
        phi64 = phi.double()
        return ((phi64 @ sigma) * phi64).sum(-1).clamp(min=0.0).to(phi.dtype)

    # -- fitting ---------------------------------------------------------
    @torch.no_grad()
    def system_features(self, batch: Batch) -> torch.Tensor:
        """φ_S = Σ_i [f_i, 1] per system, Tensor [S, F+1]."""
        from ..evaluate import sum_per_system

        feats = self.base(batch, batch.pair_vectors())["features"]
        return sum_per_system(_augmented(feats), batch)

    @torch.no_grad()
    def fit(self, batches: Sequence[Batch]) -> "LLPR":
        """Accumulate C = Σ_S φ_S φ_Sᵀ over training structures (energies)."""
        return self.fit_features(torch.cat([self.system_features(b.to(self.covariance.dtype)) for b in batches]))

    @torch.no_grad()
    def fit_features(self, phi: torch.Tensor) -> "LLPR":
        """Set C = φᵀφ from augmented structure features φ [S, F+1] computed elsewhere."""
        self.covariance.copy_(phi.T @ phi)
        self.n_structures.fill_(len(phi))
        self._invalidate()
        return self

    @torch.no_grad()
    def calibrate(self, batches: Sequence[Batch], energies: Sequence[float]) -> dict[str, float]:
        """Choose ς² and α² minimising the NLL of validation energies.

        For each ς² on a logarithmic grid, α² = mean(r²/v) is optimal in closed
        form (v = φᵀ(C + ς² I)⁻¹φ, r the residual); the pair with the lowest
        NLL is kept.  Returns the chosen values and the NLL.
        """
        phis, residuals = [], []
        for batch, energy in zip(batches, energies):
            if energy is None:
                continue
            batch = batch.to(self.covariance.dtype)
            out = self.base(batch, batch.pair_vectors())
            phis.append(_augmented(out["features"]).sum(0))
            residuals.append(float(energy) - float(out["energy"].sum()))
        if len(phis) < 2:
            raise ValueError("LLPR calibration needs at least two validation structures with energies")
        phi = torch.stack(phis)
        r = torch.tensor(residuals, dtype=phi.dtype)
        scale = float(torch.linalg.eigvalsh(self.covariance).max().clamp(min=1e-12))
        eye = torch.eye(len(self.covariance), dtype=phi.dtype)
        best = (np.inf, 1.0, 1e-6)
        for reg in scale * np.logspace(-12, 0, 49):
            inv = torch.linalg.inv(self.covariance + reg * eye)
            v = ((phi @ inv) * phi).sum(-1).clamp(min=1e-300)
            a2 = float((r**2 / v).mean())
            nll = float((0.5 * (torch.log(2 * np.pi * a2 * v) + r**2 / (a2 * v))).mean())
            if nll < best[0]:
                best = (nll, a2, float(reg))
        self.alpha_squared.fill_(best[1])
        self.regulariser.fill_(best[2])
        self._invalidate()
        return {"alpha_squared": best[1], "regulariser": best[2], "validation_nll": best[0]}

    # -- evaluation ------------------------------------------------------
    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._with_samples(dict(self.base(batch, vectors)))

    def _with_samples(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Base outputs plus ``llpr_features`` [N, F+1] and the K samples ``energy_ensemble`` [N, K]."""
        _, chol = self.posterior()
        weights = chol @ self.draws                                # [F+1, K]
        out["llpr_features"] = _augmented(out["features"])
        out["energy_ensemble"] = out["energy"][:, None] + out["llpr_features"] @ weights
        return out

    def gradient_chunks(self, batch: Batch, vectors: torch.Tensor, *, gradients: bool = True, members: bool = False,
                        max_bytes: int = 2**27):
        """The base model's hand-derived chunks, with the K posterior samples as members.

        Sample k has atomic energies e_i + [f_i, 1]·δw_k, so its pair gradients are
        the energy's plus the gradient of Σ_i f_i·δw_k[:F]: the base computes all of
        them in its one batched backward pass.
        """
        base_chunks = getattr(self.base, "gradient_chunks", None)
        if base_chunks is None:
            return None
        directions = (self.posterior()[1] @ self.draws)[:-1].T if members else None   # [K, F]
        chunks = base_chunks(batch, vectors, gradients=gradients, max_bytes=max_bytes, feature_directions=directions)
        if chunks is None:
            return None
        return (self._sampled_chunk(chunk) for chunk in chunks)

    def _sampled_chunk(self, chunk):
        with torch.no_grad():
            chunk.outputs = self._with_samples(chunk.outputs)
        return chunk


def _as_potential(model: Potential | torch.nn.Module | str) -> Potential:
    """An atomflux potential for a potential, a model spec or a third-party torch model."""
    if isinstance(model, Potential):
        return model
    from .. import foreign

    if isinstance(model, str) and foreign.is_spec(model):
        loaded = foreign.load_spec(model)
        if not isinstance(loaded, Potential):
            raise ValueError(f"{model} is available as an ASE calculator only: LLPR needs a torch-level model")
        return loaded.eval()
    adapted = foreign.potential_from_object(model)
    if adapted is None:
        raise ValueError(f"add_llpr needs an atomflux Potential (forward(batch, pair_vectors) → per-atom 'energy'), "
                         f"a model spec or a SevenNet/MACE model; {type(model).__name__} is none of these: wrap it "
                         "as in the README section 'Bring your own model'")
    return adapted


def _probe_features(base: Potential) -> int:
    from ase import Atoms

    symbol = base.species[0] if base.species else "H"
    dimer = Atoms([symbol, symbol], positions=[[0, 0, 0], [0, 0, 0.6 * base.cutoff]])
    batch = Batch.from_atoms(dimer, base.cutoff, dtype=floating_dtype(base))
    with torch.no_grad():
        out = base(batch, batch.pair_vectors())
    if "features" not in out:
        raise ValueError(f"{type(base).__name__} returns no 'features': LLPR needs the input of the last linear layer")
    return int(out["features"].shape[1])


def add_llpr(potential: Potential | torch.nn.Module | str, train_batches: Sequence[Batch],
             validation_batches: Sequence[Batch], validation_energies: Sequence[float], n_samples: int = 16,
             last_layer: str | None = None) -> LLPR:
    """Wrap a trained potential with LLPR, fitted on training and calibrated on validation data.

    ``potential`` may be an atomflux potential, a model spec (``"sevennet:7net-0"``)
    or a third-party torch model that :mod:`atomflux.foreign` adapts; with
    ``last_layer`` the features come from a forward hook on that linear layer.
    """
    potential = _as_potential(potential)
    model = LLPR(potential, n_samples=n_samples, last_layer=last_layer).fit(train_batches)
    calibration = model.calibrate(validation_batches, validation_energies)
    model.metadata = dict(getattr(potential, "metadata", {}) or {})
    model.metadata["uncertainty"] = {"method": "llpr", "n_samples": n_samples,
                                     "n_training_structures": int(model.n_structures),
                                     "calibration": calibration}
    return model.eval()
