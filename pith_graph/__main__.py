"""``python -m pith_graph``: the same CLI as ``pith-graph``."""

import sys

from pith_graph.cli import main

sys.exit(main())
