"""``python -m benchmarks.study STUDY.yaml [--only ...] [--print-commands] [--dask SPEC]``: see :mod:`.engine`."""

import sys

from benchmarks.study.engine import main

sys.exit(main())
