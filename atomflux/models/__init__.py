"""Potentials: analytic references and the learnable reference architecture."""

from .analytic import LennardJones, Morse, PairPotential
from .base import Potential
from .power_spectrum import PowerSpectrumPotential

#: architectures a model file may name
ARCHITECTURES: dict[str, type[Potential]] = {
    cls.architecture: cls for cls in (LennardJones, Morse, PowerSpectrumPotential)
}

__all__ = ["ARCHITECTURES", "LennardJones", "Morse", "PairPotential", "Potential", "PowerSpectrumPotential"]
