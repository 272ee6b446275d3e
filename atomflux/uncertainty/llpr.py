"""Last-layer prediction rigidity (LLPR) for any potential that returns ``features``.

Treat the energy as linear in the last-layer features, E_S = φ_S·w + ...,
with φ_S = Σ_{i∈S} [f_i, 1] (the 1 carries the bias; the ``llpr_features``
output holds [f_i, 1] per atom).  Forces and stress are then linear in w
too, with rows ψ = -∂φ_S/∂x and χ = (1/V)∂φ_S/∂ε
(:mod:`atomflux.uncertainty.lastlayer`).  Over a training set with
energies, forces and stress,

    C = Σ_S φ_S φ_Sᵀ + w_F Σ_components ψ ψᵀ + w_σ Σ_components χ χᵀ

(the Gauss–Newton matrix of a Gaussian likelihood of all three targets;
w_q = s²_E / s²_q with s²_q the mean squared training residual of quantity
q, the treatment of derivative observables in Bigi et al.,
arXiv:2403.02251).  The posterior covariance of the last-layer weights is

    Σ = α² (C + ς² I)⁻¹

and the variance of any observable with row r is rᵀΣr: the energy of a
structure φ_Sᵀ Σ φ_S (per atom, f_iᵀ Σ f_i: the local prediction rigidity),
a force component ψᵀΣψ.  ς² is chosen by the summed Gaussian NLL of
validation energies and forces; α is calibrated per quantity in closed form
(α² = mean(r²/v)): α_E goes into Σ.  Forces and stress get the predictive
variance of Bayesian linear regression, α_q² rᵀΣ₁r + τ_q² (Σ₁ the posterior at
α = 1, τ_q the observation noise the last layer cannot explain), with α_q and
τ_q fitted by the NLL of the validation data: the ratios α_F/α_E, α_σ/α_E are
the model's ``uncertainty_scale_forces`` / ``uncertainty_scale_stress``, τ_q
its ``uncertainty_floor_forces`` / ``uncertainty_floor_stress``.  Forces
and stress uncertainties come from K fixed samples δw_k ~ N(0, Σ), centred on
their mean (Σ_k δw_k = 0: the same spread, and the samples' mean is the mean
prediction): member k has per-atom energy e_i + f_i·δw_k, and
:func:`atomflux.evaluate` differentiates the members like a shallow ensemble.
Nothing about the base model is assumed beyond ``features`` [N, F] being the
input of a last linear layer; the base is not changed.

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
from ..training.dataset import Frame
from .calibration import scale_and_floor, warn_if_imprecise
from .lastlayer import QUANTITIES, LastLayerDesign, as_design

#: relative ς² grid of the calibration (times the largest eigenvalue of C)
REGULARISER_GRID = np.logspace(-14, 0, 57)


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
        self.long_range = getattr(base, "long_range", False)  # evaluate differentiates positions and strain
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
    def fit_observations(self, design: LastLayerDesign, weights: dict[str, float] | None = None,
                         groups: Sequence[str] | None = None) -> dict[str, float]:
        """Set C = Σ_q w_q Σ_rows r rᵀ from training observations (energies, forces, stress).

        Parameters
        ----------
        design
            :func:`~atomflux.uncertainty.lastlayer.last_layer_design` of the training set.
        weights
            Weight of each quantity's rows; default w_q = s²_E/s²_q (s²_q the
            mean squared training residual), so that α² stays an energy
            variance (eV²) and each force component counts as an energy
            observation of matching noise.
        groups
            A label per training structure (e.g. ``"bulk"``, ``"dimer"``): the
            observations get the noise of their group (heteroscedastic
            regression, :func:`group_noise_multipliers`), so a few structures
            the model fits badly do not pin the weights as if they were as
            precise as the rest.  Default: one noise level for all.

        Returns
        -------
        dict
            The weights used.
        """
        if weights is None:
            weights = design.noise_weights()
        multipliers = None if groups is None else group_noise_multipliers(design, groups)
        self.covariance.copy_(design.precision(weights, multipliers).to(self.covariance.dtype))
        self.n_structures.fill_(len(design.n_atoms))
        self._invalidate()
        return {q: float(weights[q]) for q in design.quantities() if q in weights}

    @torch.no_grad()
    def calibrate_observations(self, design: LastLayerDesign) -> dict[str, Any]:
        """Choose ς² by the summed NLL of the validation quantities, α per quantity in closed form.

        For each ς² on :data:`REGULARISER_GRID`, α_q² = mean(r²/v) (v = rᵀ(C + ς²I)⁻¹r)
        is optimal for quantity q; the ς² with the lowest sum over quantities of
        the mean NLL is kept.  The energy α² (or the first quantity's) goes into
        the posterior; the other quantities get a factor and a noise floor τ_q of
        their predictive σ' = √(α_q² v + τ_q²), both by the NLL
        (:func:`~atomflux.uncertainty.calibration.scale_and_floor`), stored as
        ``uncertainty_scale_<q>`` = α_q/α_E and ``uncertainty_floor_<q>`` = τ_q.

        Returns
        -------
        dict
            ``alpha_squared``, ``regulariser``, ``scale_forces`` / ``scale_stress`` and
            ``floor_forces`` / ``floor_stress`` (eV/Å, eV/Å³; where calibrated), ``validation_nll`` per quantity (nats)
            and ``energy_factor_interval``: the factors (low, high) that span the 90 % confidence interval of the
            energy α on this many validation energies
            (:func:`~atomflux.uncertainty.calibration.factor_interval`; a warning when it is wide).
        """
        quantities = design.quantities()
        if not quantities or len(design.n_atoms) < 2:
            raise ValueError("LLPR calibration needs at least two validation structures with energies or forces")
        dtype = self.covariance.dtype
        eigenvalues, eigenvectors = torch.linalg.eigh(self.covariance)
        eigenvalues = eigenvalues.clamp(min=0.0)
        projected = {q: ((getattr(design, q).rows.to(dtype) @ eigenvectors) ** 2, getattr(design, q).residuals.to(dtype) ** 2)
                     for q in quantities}
        top = float(eigenvalues.max().clamp(min=1e-12))
        best: tuple[float, float, dict, dict] | None = None
        for reg in top * REGULARISER_GRID:
            alphas, nlls = {}, {}
            for q, (squares, r2) in projected.items():
                v = (squares / (eigenvalues + reg)).sum(1).clamp(min=1e-300)
                alphas[q] = float((r2 / v).mean())
                nlls[q] = float((0.5 * (torch.log(2 * np.pi * alphas[q] * v) + r2 / (alphas[q] * v))).mean())
            if best is None or sum(nlls.values()) < best[0]:
                best = (sum(nlls.values()), float(reg), alphas, nlls)
        _, reg, alphas, nlls = best
        reference = alphas[quantities[0]]
        self.alpha_squared.fill_(reference)
        self.regulariser.fill_(reg)
        self._invalidate()
        result: dict[str, Any] = {"alpha_squared": reference, "regulariser": reg, "quantities": quantities,
                                  "validation_nll": nlls}
        if quantities[0] == "energy":
            result["energy_factor_interval"] = list(warn_if_imprecise("energy", len(design.energy)))
        for q in QUANTITIES:
            self.__dict__.pop(f"uncertainty_scale_{q}", None)
            self.__dict__.pop(f"uncertainty_floor_{q}", None)
        self.__dict__.pop("uncertainty_locality_forces", None)  # fitted on top of these factors: refit it after
        for q in quantities[1:]:  # forces, stress: factor and observation-noise floor of the predictive σ
            squares, r2 = projected[q]
            v = (squares / (eigenvalues + reg)).sum(1).clamp(min=1e-300)
            alpha, floor = scale_and_floor(r2.sqrt().numpy(), v.sqrt().numpy())
            result[f"scale_{q}"], result[f"floor_{q}"] = alpha / float(np.sqrt(reference)), floor
            setattr(self, f"uncertainty_scale_{q}", result[f"scale_{q}"])
            setattr(self, f"uncertainty_floor_{q}", floor)
        return result

    def calibrate(self, frames: Sequence[Frame] | LastLayerDesign, quantities: Sequence[str] = QUANTITIES,
                  progress: bool = False) -> dict[str, Any]:
        """:meth:`calibrate_observations` on validation frames (energies, forces, stress where present)."""
        return self.calibrate_observations(as_design(self, frames, quantities, progress))

    # -- evaluation ------------------------------------------------------
    def forward(self, batch: Batch, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._with_samples(dict(self.base(batch, vectors)))

    def sample_offsets(self) -> torch.Tensor:
        """The K posterior samples δw_k = L z_k of the last-layer weights, centred on their mean,
        Tensor [F+1, K] (model dtype).

        Centring (Σ_k δw_k = 0) leaves their spread unchanged and makes the samples' mean the
        mean prediction, so the energy gradient is the samples' gradients averaged: the batched
        backward pass takes K cotangents, not K + 1.
        """
        _, chol = self.posterior()
        weights = chol @ self.draws
        return weights - weights.mean(1, keepdim=True)

    def _with_samples(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Base outputs plus ``llpr_features`` [N, F+1] and the K samples ``energy_ensemble`` [N, K]."""
        out["llpr_features"] = _augmented(out["features"])
        out["energy_ensemble"] = out["energy"][:, None] + out["llpr_features"] @ self.sample_offsets()
        return out

    def gradient_chunks(self, batch: Batch, vectors: torch.Tensor, *, gradients: bool = True, members: bool = False,
                        max_bytes: int = 2**27):
        """The base model's hand-derived chunks, with the K posterior samples as members.

        Sample k has atomic energies e_i + [f_i, 1]·δw_k, so its pair gradients are
        the energy's plus the gradient of Σ_i f_i·δw_k[:F]: the base computes all of
        them in its one batched backward pass (K cotangents: the samples are centred,
        so the energy gradient is their mean).
        """
        base_chunks = getattr(self.base, "gradient_chunks", None)
        if base_chunks is None:
            return None
        directions = self.sample_offsets()[:-1].T if members else None                   # [K, F]
        chunks = base_chunks(batch, vectors, gradients=gradients, max_bytes=max_bytes, feature_directions=directions,
                             centred_directions=True)
        if chunks is None:
            return None
        return (self._sampled_chunk(chunk) for chunk in chunks)

    def _sampled_chunk(self, chunk):
        with torch.no_grad():
            chunk.outputs = self._with_samples(chunk.outputs)
        return chunk


def group_noise_multipliers(design: LastLayerDesign, groups: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-row precision multipliers of a heteroscedastic Gaussian likelihood, per quantity, Tensors [R].

    The most frequent label is the reference group (multiplier 1).  The rows of
    another group g get min(1, s²_ref,q / s²_g,q), s²_g,q the mean squared
    training residual of quantity q over the group's structures: a group the
    model fits worse than the reference counts as noisier observations (never
    as more precise ones).
    """
    labels = np.asarray(groups)
    if len(labels) != len(design.n_atoms):
        raise ValueError(f"{len(labels)} group labels for {len(design.n_atoms)} training structures")
    names, counts = np.unique(labels, return_counts=True)
    reference = names[np.argmax(counts)]
    out = {}
    for q in design.quantities():
        obs = getattr(design, q)
        owner_group = labels[obs.owner.numpy()]
        squares = obs.residuals.pow(2)
        in_reference = torch.from_numpy(owner_group == reference)
        if not in_reference.any():
            raise ValueError(f"the reference group {reference!r} has no {q} observations")
        noise = float(squares[in_reference].mean())
        multiplier = torch.ones_like(squares)
        for name in names:
            rows = torch.from_numpy(owner_group == name)
            if name != reference and rows.any():
                multiplier[rows] = min(1.0, noise / max(float(squares[rows].mean()), 1e-300))
        out[q] = multiplier
    return out


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


def add_llpr(potential: Potential | torch.nn.Module | str, train_frames: Sequence[Frame] | LastLayerDesign,
             validation_frames: Sequence[Frame] | LastLayerDesign,
             n_samples: int = 16, quantities: Sequence[str] = QUANTITIES, weights: dict[str, float] | None = None,
             last_layer: str | None = None, groups: Sequence[str] | None = None, progress: bool = False) -> LLPR:
    """Wrap a trained potential with LLPR, fitted on training and calibrated on validation data.

    Parameters
    ----------
    potential
        Trained potential with a ``features`` output, a model spec
        (``"sevennet:7net-0"``) or a third-party torch model that
        :mod:`atomflux.foreign` adapts.
    train_frames
        The training structures; their energies, forces and stress (those in
        ``quantities``) enter the covariance C.  A precomputed
        :func:`~atomflux.uncertainty.lastlayer.last_layer_design` of the
        potential is accepted too (here and for ``validation_frames``).
    validation_frames
        Held-out structures: ς² and the per-quantity α are calibrated on them.
    n_samples
        Posterior samples K for force/stress uncertainties.
    quantities
        Targets used; ``("energy",)`` gives the energy-only LLPR.
    weights
        Weights of the quantities in C (default: inverse training noise, see :meth:`LLPR.fit_observations`).
    last_layer
        Name of the last linear layer, for models without a ``features``
        output: its input become the features (forward hook).
    groups
        A label per training structure: each group's observations get their own
        noise level in C (:meth:`LLPR.fit_observations`).
    progress
        Show progress bars while computing feature gradients.
    """
    potential = _as_potential(potential)
    model = LLPR(potential, n_samples=n_samples, last_layer=last_layer)
    used = model.fit_observations(as_design(model, train_frames, quantities, progress), weights, groups)
    validation = as_design(model, validation_frames, quantities, progress)
    calibration = model.calibrate_observations(validation)
    model.metadata = dict(getattr(potential, "metadata", {}) or {})
    model.metadata["uncertainty"] = {"method": "llpr", "n_samples": n_samples,
                                     "n_training_structures": int(model.n_structures),
                                     "fit": {"quantities": list(used), "weights": used,
                                             "noise_groups": sorted(set(groups)) if groups is not None else None},
                                     "n_validation_structures": len(validation.n_atoms),
                                     "calibration": calibration}
    return model.eval()
