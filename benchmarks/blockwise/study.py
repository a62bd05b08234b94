"""``python -m benchmarks.blockwise.study STUDY.yaml [options]`` is ``python -m benchmarks.study STUDY.yaml [options]``,
kept so that older commands still work: the blockwise study is a study of ``blockwise`` runs (``recipes/blockwise.py``;
the report reads their ``blockwise.json``), run by the one study engine (:mod:`benchmarks.study.engine`)."""

import sys

from benchmarks.study.engine import main

if __name__ == '__main__':
    sys.exit(main())
