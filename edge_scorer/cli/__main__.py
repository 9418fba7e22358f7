"""``python -m edge_scorer.cli``."""

import sys

from . import main

sys.exit(main())
