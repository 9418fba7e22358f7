"""``python -m edge_scorer`` runs the command line."""

import sys

from edge_scorer.cli import main

sys.exit(main())
