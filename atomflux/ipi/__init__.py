"""i-PI driver: any atomflux model drives i-PI (classical and path-integral MD, committees).

``run_driver(model, structure, address=...)`` connects to a running i-PI and
answers its force requests; ``run_ipi(input_xml, model)`` starts i-PI and the
driver together.  See :mod:`atomflux.ipi.protocol` for the wire format and
:mod:`atomflux.ipi.committee` for how the model's uncertainty reaches i-PI's
``<ffcommittee>``.
"""

from .driver import DriverSummary, IPIDriver, run_driver
from .runner import IPIRun, run_ipi

__all__ = ["DriverSummary", "IPIDriver", "IPIRun", "run_driver", "run_ipi"]
