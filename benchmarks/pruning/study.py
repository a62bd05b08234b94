"""``python -m benchmarks.pruning.study STUDY.yaml [options]`` is ``python -m benchmarks.study STUDY.yaml [options]``,
kept so that older commands still work: the pruning study is a study of ``prune_pipeline`` runs with
``family: pruning`` (:mod:`benchmarks.pruning.describe`), run by the one study engine (:mod:`benchmarks.study.engine`).
"""

import sys

from benchmarks.pruning import ANALYSIS_FILE  # noqa: F401 - its old place; benchmarks.pruning holds it now
from benchmarks.study.engine import main

if __name__ == '__main__':
    sys.exit(main())
