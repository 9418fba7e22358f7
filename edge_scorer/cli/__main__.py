"""``python -m edge_scorer.cli``."""

import sys

from edge_scorer.cli import main

sys.exit(main())
