"""``python -m data_prep.synth``: see :mod:`data_prep.synth.cli`."""

import sys

from data_prep.synth.cli import main

sys.exit(main())
