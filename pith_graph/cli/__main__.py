"""``python -m pith_graph.cli``: the same as ``pith-graph``."""

import sys

from pith_graph.cli import main

sys.exit(main())
