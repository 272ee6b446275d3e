"""Novelty: how far each atom's environment lies from the environments of the training set.

Every σ a model reports (LLPR, shallow ensembles, committees) measures how differently fits to the data
could predict; where all fits extrapolate the same way (a Cu3 island leaving a surface for models that
never saw a cluster) the error grows and no σ does.  The distance of an atom's descriptor from the
training atoms' descriptors sees such environments directly.  Per centre species s, the standardised
descriptors x [D] of the training atoms get a mean m_s and a shrinkage-regularised covariance C_s
(Ledoit–Wolf: the sample covariance pulled towards (tr S/D)·I by the intensity that minimises the
expected Frobenius error), and each atom the grade

    g_i = sqrt((x_i − m_s)ᵀ C_s⁻¹ (x_i − m_s)) / max over training atoms of species s of the same distance

so g > 1 is an environment farther out than any training atom (the idea behind the extrapolation grade
of moment tensor potentials and descriptor-distance detectors).  The grade is dimensionless.

A :class:`Novelty` is stored in the model file beside the weights (:mod:`atomflux.io`), checked against
the descriptor it was fitted for (a digest of the descriptor's tensors), and read by
:class:`~atomflux.uncertainty.UncertaintyGuard` with ``quantity="novelty"``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms

from ..models import LongRangePotential
from ..models.base import Potential
from ..progress import progress
from ..systems import Batch
from .llpr import LLPR

#: state-dict entries of a descriptor model that act after the descriptor (not part of the digest)
READOUT_PREFIXES = ("backbone.", "last_layer.", "baseline", "energy_scale")


def descriptor_model(potential: Potential) -> Potential:
    """The model inside ``potential`` whose per-atom descriptors the grade uses.

    An LLPR wrapper's base and a long-range model's short-range part are looked through; the model
    must have ``descriptors(batch, vectors)`` and the standardisation buffers ``descriptor_mean`` /
    ``descriptor_std`` (atomflux's ``PowerSpectrumPotential`` and ``UnconstrainedPotential``).

    Raises
    ------
    ValueError
        For any other model (third-party models, analytic potentials, averaged models).
    """
    inner = potential.base if isinstance(potential, LLPR) else potential
    if isinstance(inner, LongRangePotential):
        inner = inner.short_range
    if not (hasattr(inner, "descriptors") and hasattr(inner, "descriptor_mean") and hasattr(inner, "descriptor_std")):
        raise ValueError(f"{type(potential).__name__} exposes no per-atom descriptors, so it has no novelty grade; "
                         "novelty works for atomflux's descriptor models (PowerSpectrumPotential, LongRangePotential, "
                         "UnconstrainedPotential, and LLPR on them) — use --max-uncertainty for other models")
    return inner


def descriptor_digest(potential: Potential) -> str:
    """16 hex digits identifying the descriptor of ``potential`` (its tensors before the readout, rounded
    to float32 so a model placed in float32 for MD has the digest of its float64 file)."""
    model = descriptor_model(potential)
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(READOUT_PREFIXES):
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def atom_descriptors(potential: Potential, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised per-atom descriptors and species indices of ``batch``.

    Returns
    -------
    descriptors
        Tensor [N, D], float64, dimensionless: (raw descriptor − training mean) / training std, as the
        model's network sees them.
    species
        Tensor [N] of indices into ``potential.species``.
    """
    model = descriptor_model(potential)
    dtype = model.descriptor_mean.dtype
    with torch.no_grad():
        vectors = batch.pair_vectors().to(dtype)
        raw = model.descriptors(batch, vectors)
        x = (raw - model.descriptor_mean) / model.descriptor_std
    return x.to(torch.float64), model.species_index(batch.numbers)


def shrunk_covariance(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit–Wolf covariance of the rows of ``x`` [n, D]: (1 − δ)·S + δ·(tr S / D)·I.

    S = XᵀX / n of the centred rows; δ = min(b², d²) / d² with d² = ‖S − μI‖²_F and
    b² = (1/n²) Σ_k ‖x_k x_kᵀ − S‖²_F (the estimate of the sample covariance's own error), which
    minimises the expected Frobenius error of the estimate.

    Returns
    -------
    covariance
        Tensor [D, D].
    shrinkage
        δ in [0, 1] (1: the scaled identity).
    """
    n, dim = x.shape
    centred = x - x.mean(dim=0)
    sample = centred.T @ centred / n
    mu = torch.trace(sample) / dim
    target = mu * torch.eye(dim, dtype=x.dtype)
    d2 = float(((sample - target) ** 2).sum())
    # Σ_k ‖x_k x_kᵀ − S‖² = Σ_k |x_k|⁴ − n ‖S‖² (the cross term sums to n ‖S‖²)
    b2 = float(((centred ** 2).sum(dim=1) ** 2).sum() - n * (sample ** 2).sum()) / n ** 2
    shrinkage = 1.0 if d2 <= 0.0 else min(max(b2, 0.0), d2) / d2
    return (1.0 - shrinkage) * sample + shrinkage * target, shrinkage


def mahalanobis(x: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Distances [n] of the rows of ``x`` [n, D] from ``mean`` [D] under ``precision`` [D, D] (symmetric)."""
    d = x - mean
    return ((d @ precision) * d).sum(dim=1).clamp(min=0.0).sqrt()


@dataclass
class Novelty:
    """Per-species Gaussian model of the training atoms' standardised descriptors (see module doc).

    Attributes
    ----------
    species
        Chemical symbols, the model's species order.
    mean
        Tensor [S, D]: training mean of each centre species' standardised descriptors.
    precision
        Tensor [S, D, D]: inverse shrunk covariance.
    largest
        Tensor [S]: largest Mahalanobis distance among the training atoms of each species (0: fewer than
        two training atoms of that species; such atoms get grade ∞).
    n_atoms
        Tensor [S]: training atoms per species.
    shrinkage
        Ledoit–Wolf intensity per species.
    digest
        :func:`descriptor_digest` of the model it was fitted for.
    n_structures
        Training structures.
    """

    species: list[str]
    mean: torch.Tensor
    precision: torch.Tensor
    largest: torch.Tensor
    n_atoms: torch.Tensor
    shrinkage: list[float]
    digest: str
    n_structures: int

    def distances(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distances [N] of standardised descriptors ``x`` [N, D] with species indices [N]
        (species by species: one [n_s, D] × [D, D] product each)."""
        out = torch.empty(len(x), dtype=x.dtype)
        for s in torch.unique(species).tolist():
            rows = species == s
            out[rows] = mahalanobis(x[rows], self.mean[s], self.precision[s])
        return out

    def grades(self, potential: Potential, batch: Batch) -> torch.Tensor:
        """Per-atom extrapolation grades [N] (dimensionless; > 1: farther out than any training atom)."""
        x, species = atom_descriptors(potential, batch)
        largest = self.largest[species]
        distances = self.distances(x, species)
        return torch.where(largest > 0, distances / largest.clamp(min=1e-300), torch.full_like(distances, math.inf))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors stored in a model file."""
        return {"mean": self.mean, "precision": self.precision, "largest": self.largest, "n_atoms": self.n_atoms}

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata stored in a model file."""
        return {"descriptor_digest": self.digest, "n_structures": self.n_structures,
                "n_atoms": {s: int(n) for s, n in zip(self.species, self.n_atoms)},
                "largest_distance": {s: float(d) for s, d in zip(self.species, self.largest)},
                "shrinkage": dict(zip(self.species, self.shrinkage)),
                "grade": "Mahalanobis distance of the standardised descriptor / the largest among training atoms"}

    @classmethod
    def from_stored(cls, species: Sequence[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> "Novelty":
        """A :class:`Novelty` from a model file's tensors and metadata (see :meth:`tensors`, :meth:`metadata`)."""
        try:
            return cls(list(species), tensors["mean"].double(), tensors["precision"].double(),
                       tensors["largest"].double(), tensors["n_atoms"].long(),
                       [float(meta["shrinkage"][s]) for s in species], str(meta["descriptor_digest"]),
                       int(meta["n_structures"]))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"invalid novelty data in the model file ({err!r}); refit it: atomflux novelty") from None


def fit_novelty(potential: Potential, structures: Iterable[Atoms], show_progress: bool = False) -> Novelty:
    """Fit the novelty grade of ``potential`` on its training structures.

    Parameters
    ----------
    potential
        A descriptor model (see :func:`descriptor_model`).
    structures
        The training structures (ASE Atoms; frames' ``.atoms`` work too).
    show_progress
        A progress bar over the structures.

    Raises
    ------
    ValueError
        A model without descriptors, or no structures.
    """
    model = descriptor_model(potential)
    structures = [getattr(s, "atoms", s) for s in structures]
    if not structures:
        raise ValueError("novelty needs the training structures; the list is empty")
    blocks, kinds = [], []
    bar = progress(len(structures), "novelty: training descriptors", unit="structure", enabled=show_progress)
    for atoms in structures:
        batch = Batch.from_atoms(atoms, model.cutoff, dtype=model.descriptor_mean.dtype)
        x, species = atom_descriptors(potential, batch)
        blocks.append(x)
        kinds.append(species)
        bar.update(1)
    bar.close()
    x, species = torch.cat(blocks), torch.cat(kinds)
    n_species, dim = len(model.species), x.shape[1]
    mean = torch.zeros(n_species, dim, dtype=torch.float64)
    precision = torch.zeros(n_species, dim, dim, dtype=torch.float64)
    largest = torch.zeros(n_species, dtype=torch.float64)
    counts = torch.bincount(species, minlength=n_species)
    shrinkages = [1.0] * n_species
    for s in range(n_species):
        rows = x[species == s]
        if len(rows) < 2:
            continue
        covariance, shrinkages[s] = shrunk_covariance(rows)
        covariance = covariance + 1e-10 * max(float(torch.trace(covariance)) / dim, 1e-12) * torch.eye(dim,
                                                                                                        dtype=x.dtype)
        mean[s], precision[s] = rows.mean(dim=0), torch.linalg.inv(covariance)
        largest[s] = mahalanobis(rows, mean[s], precision[s]).max()
    return Novelty(list(model.species), mean, precision, largest, counts, shrinkages, descriptor_digest(potential),
                   len(structures))


def attach_novelty(potential: Potential, novelty: Novelty) -> Potential:
    """Set ``potential.novelty`` after checking that it was fitted for this descriptor.

    Raises
    ------
    ValueError
        Another model's novelty data (different descriptor tensors or species).
    """
    if list(novelty.species) != list(descriptor_model(potential).species) or \
            novelty.digest != descriptor_digest(potential):
        raise ValueError("the novelty data were fitted for another model's descriptors (its species or descriptor "
                         "weights differ); refit them for this model: atomflux novelty MODEL TRAIN.extxyz -o OUT.pt")
    potential.novelty = novelty
    return potential


def carried_novelty(potential: Potential) -> Novelty | None:
    """``potential.novelty``, else that of the descriptor model inside it (an LLPR fitted on a model with novelty
    data shares its base's descriptor, so it keeps them), else ``None``."""
    novelty = getattr(potential, "novelty", None)
    if novelty is None:
        try:
            novelty = getattr(descriptor_model(potential), "novelty", None)
        except ValueError:
            return None
    return novelty


def novelty_of(potential: Potential, name: str = "the model") -> Novelty:
    """The novelty data of ``potential`` (:func:`carried_novelty`), or a one-line ``ValueError`` naming how to
    add them."""
    novelty = carried_novelty(potential)
    if novelty is None:
        descriptor_model(potential)  # a model without descriptors: say so first
        raise ValueError(f"{name} has no novelty data (the training atoms' descriptor statistics); add them: "
                         "atomflux novelty MODEL TRAIN.extxyz -o OUT.pt (or atomflux.uncertainty.fit_novelty)")
    return novelty


def novelty_grades(potential: Potential, atoms: Atoms, batch: Batch | None = None) -> np.ndarray:
    """Per-atom extrapolation grades [N] of ``atoms`` under ``potential`` (which must carry novelty data);
    ``batch``: the atoms' batch when one is at hand (an MD calculator's Verlet list), else built here."""
    novelty = novelty_of(potential)
    if batch is None:
        batch = Batch.from_atoms(atoms, potential.cutoff, dtype=descriptor_model(potential).descriptor_mean.dtype)
    return novelty.grades(potential, batch).numpy()
