"""``python -m training TASK [options]``: ``edge-scorer train`` for ``torchrun``.

``torchrun --nproc-per-node N -m training intra --config intra_vit_base --set ...`` trains
data-parallel in N processes (:mod:`training.distributed`); the options are those of
``edge-scorer train`` (``-v`` first for debug logging).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``edge-scorer train`` with ``argv``, then leave the process group."""
    from edge_scorer.cli import main as cli_main
    from training import distributed

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = [a for a in argv if a in ("-v", "-vv", "--verbose")]
    rest = [a for a in argv if a not in verbose]
    try:
        return cli_main([*verbose, "train", *rest])
    finally:
        distributed.shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
