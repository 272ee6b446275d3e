"""Potentials: analytic references, the learnable reference architecture, its unconstrained variant and
its long-range (Ewald/PME) extension."""

from .analytic import LennardJones, Morse, PairPotential
from .base import Potential
from .long_range import LongRangePotential
from .power_spectrum import PowerSpectrumPotential
from .unconstrained import UnconstrainedPotential

#: architectures a model file may name
ARCHITECTURES: dict[str, type[Potential]] = {
    cls.architecture: cls for cls in (LennardJones, Morse, PowerSpectrumPotential, UnconstrainedPotential,
                                     LongRangePotential)
}

__all__ = ["ARCHITECTURES", "LennardJones", "LongRangePotential", "Morse", "PairPotential", "Potential", "PowerSpectrumPotential",
           "UnconstrainedPotential"]
