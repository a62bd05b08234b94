"""Train one recipe.

    composer recipes/train.py -f yamls/fashion_mnist/fast_cnn.yaml [dotted.key=value ...]  # N GPUs: composer -n N
    python recipes/train.py                                                                # the embedded default

Without ``-f`` it runs the embedded default, ``yamls/fashion_mnist/fast_cnn.yaml`` (Fashion-MNIST on CPU, the job
``make train`` runs; prepare the data first with ``make data``). A bad config exits with status 2 and a one-line ``error:`` before anything starts.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `composer recipes/train.py` runs this file as a script from a checkout
    sys.path.insert(0, str(REPO))

from algorithms.callbacks.run_record import SUMMARY_FILE  # noqa: E402
from recipes.core.builders import launch, prepare  # noqa: E402
from recipes.core.cli import LOG_FORMAT, driver_args, run_main  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402

DEFAULT_YAML = REPO / 'yamls' / 'fashion_mnist' / 'fast_cnn.yaml'
log = logging.getLogger('recipes.train')


def main(argv: list[str] | None = None) -> int:
    # Quiet until the config is valid, so that a bad config prints its one error line and nothing else.
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    args = driver_args(argv, __doc__, default_file=str(DEFAULT_YAML))
    try:
        run = prepare(load_config(args.file, args.overrides))
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    logging.getLogger().setLevel(logging.INFO)

    def fit() -> None:
        trainer = launch(run)  # a ConfigError here: another live run holds run_dir
        try:
            trainer.fit()
        finally:
            trainer.close()
    status = run_main(fit)  # one error line for a NaN loss or a full disk (the same command then resumes)
    if status:
        return status
    summary = run.run_dir / SUMMARY_FILE
    log.info('config and run record: %s (record.jsonl, summary.json)', run.run_dir)
    if run.cfg['save_folder']:
        log.info('checkpoints: %s', run.cfg['save_folder'])
    if summary.is_file():
        s = json.loads(summary.read_text())
        log.info('final metrics: %s; training wall-clock %.1f s (total %.1f s)',
                 s['final_metrics'], s['train_wct_s'], s['total_wct_s'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
