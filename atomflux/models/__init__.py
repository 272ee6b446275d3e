"""Potentials: analytic references, the learnable reference architecture and its unconstrained variant."""

from .analytic import LennardJones, Morse, PairPotential
from .base import Potential
from .power_spectrum import PowerSpectrumPotential
from .unconstrained import UnconstrainedPotential

#: architectures a model file may name
ARCHITECTURES: dict[str, type[Potential]] = {
    cls.architecture: cls for cls in (LennardJones, Morse, PowerSpectrumPotential, UnconstrainedPotential)
}

__all__ = ["ARCHITECTURES", "LennardJones", "Morse", "PairPotential", "Potential", "PowerSpectrumPotential",
           "UnconstrainedPotential"]
