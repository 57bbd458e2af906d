"""``python -m infra.synth``: see :mod:`infra.synth.cli`."""

import sys

from infra.synth.cli import main

sys.exit(main())
