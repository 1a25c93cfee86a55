"""`python -m bench [--quick]`: see bench/run.py. Exits 1 when a target is missed."""

import sys

from bench.run import main

sys.exit(main())
