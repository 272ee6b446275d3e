"""CHGNet (``chgnet``) models at the calculator level.

CHGNet builds a bond graph (angles) from fractional coordinates inside its
own model, so it has no torch-level adapter: ``"chgnet:0.3.0"`` gives
CHGNet's own ASE calculator, which atomflux's MD, κ and :class:`~atomflux.
calculators.Committee` accept like any ASE calculator.
"""

from __future__ import annotations

from pathlib import Path

from . import check_trusted, require

#: models shipped inside the chgnet wheel (CHGNet.load names)
SHIPPED = ("0.3.0", "0.2.0", "r2scan")


def chgnet_calculator(name: str, trust: bool = False):
    """CHGNet's ASE calculator on the CPU: a shipped model by name, or a checkpoint file (needs ``trust``)."""
    chgnet = require("chgnet", "chgnet")
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    if name in SHIPPED:
        model = CHGNet.load(model_name=name, use_device="cpu", verbose=False)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no CHGNet model {name!r}: neither a file nor a model shipped in the chgnet "
                                    f"wheel ({', '.join(SHIPPED)})")
        check_trusted(path, chgnet, trust, f"chgnet:{name}")
        model = CHGNet.from_file(str(path))
    calculator = CHGNetCalculator(model=model, use_device="cpu")
    calculator.spec = f"chgnet:{name}"
    return calculator
