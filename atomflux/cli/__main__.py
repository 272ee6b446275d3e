"""``python -m atomflux.cli``: the same as the ``atomflux`` command."""

import sys

from . import main

sys.exit(main())
