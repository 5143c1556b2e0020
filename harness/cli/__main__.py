"""`python -m icl_bench.cli`."""

import sys

from icl_bench.cli import main

sys.exit(main())
