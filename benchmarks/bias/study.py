"""``python -m benchmarks.bias.study STUDY.yaml [options]`` is ``python -m benchmarks.study STUDY.yaml [options]``,
kept so that older commands still work: the bias study is a study of training runs with ``family: bias``
(:mod:`benchmarks.bias.describe`), run by the one study engine (:mod:`benchmarks.study.engine`)."""

import sys

from benchmarks.study.engine import main

if __name__ == '__main__':
    sys.exit(main())
