"""Run the bias study (the seed's chapter III at CPU scale) and record what its report needs.

    python -m benchmarks.bias.study benchmarks/studies/bias_fashion_mnist.yaml
    python -m benchmarks.bias.report runs/bias-study --out benchmarks/results/bias_fashion_mnist

For each seed, the study trains the dense **original** on biased data, then each **method** (structured AGP pruning
alone, with KD, AT+KD, PKT+KD, ...) starting from that original's weights and distilling from it (every
``teachers`` list and the ``load_path`` of a method's recipe are pointed at the original of the same seed). Seeds are
interleaved (seed 0 of every method, then seed 1, ...) so machine drift spreads over all methods; ``extra_methods``
run after every seed of ``methods`` (what fits the budget first). Each run then gets one small record
(``<runs_root>/records/<method>-seed<S>.json``): test predictions (one character per image), accuracy, measured
filter sparsity, per-layer SVCCA similarity to its original on the first test images, wall-clock and CPU time, and
for seed 0 the costs of the exported (physically pruned) model. The report computes CEV, SDE, PIEs and intervals
from those records alone. Running the command again skips finished runs and existing records (it resumes). The study
YAML is read with the recipes' loader (``base:``, interpolations); every run's recipe is resolved before the first
one trains, so a bad entry is one ``error:`` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

from algorithms.analysis import collect_predictions, layer_similarity
from algorithms.callbacks.run_record import LATEST_CHECKPOINT, SUMMARY_FILE, read_records
from algorithms.pruning import channel_groups, export_costs, export_pruned, filter_sparsity
from algorithms.pruning.structured import zero_channel_masks
from benchmarks.core.machine import record_session
from benchmarks.pruning.study import ordered_eval_loader, svcca_options, trained_model
from benchmarks.core.reporting import study_main, write_once
from benchmarks.study.spec import StudyError, load_spec
from recipes.core.cli import Stage, dotlist, run_stages, train_stage
from recipes.core.config import load_config

log = logging.getLogger('benchmarks.bias.study')
RECORDS = 'records'


def method_spec(entry: Any, key: str = 'methods') -> tuple[str, dict[str, Any]]:
    """A method entry of the study YAML: a recipe path, or ``{recipe, overrides}`` (e.g. another sparsity)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get('recipe'), str):
        return entry['recipe'], dict(entry.get('overrides') or {})
    raise StudyError(f'{key}: expected a recipe path or {{recipe, overrides}}, got {entry!r}')


def load_study(path: str) -> dict[str, Any]:
    """The study YAML (``base:`` merged), its keys and method entries checked."""
    study = load_spec(path, ('name', 'runs_root', 'seeds', 'original', 'methods', 'compare'),
                      ('extra_methods', 'overrides'))
    for group in ('methods', 'extra_methods'):
        for method, entry in (study.get(group) or {}).items():
            method_spec(entry, f'{path}: {group}.{method}')
    return study


def run_config(study: dict[str, Any], method: str, entry: Any, seed: int) -> dict[str, Any]:
    """The resolved recipe of ``method`` at ``seed``, its folder under ``runs_root`` and, for a compressed method,
    the original of the same seed as its initial weights and its teacher."""
    recipe, own = method_spec(entry)
    run_dir = Path(study['runs_root']) / method / f'seed{seed}'
    overrides = {'seed': seed, 'run_name': f"{study['name']}-{method}-s{seed}", 'run_dir': str(run_dir),
                 'save_folder': str(run_dir / 'checkpoints'), 'autoresume': True, 'progress_bar': False,
                 **(study.get('overrides') or {}), **own}
    cfg = load_config(recipe, dotlist(overrides))
    if method != 'original':
        original = str(Path(study['runs_root']) / 'original' / f'seed{seed}' / LATEST_CHECKPOINT)
        cfg['load_path'] = original
        for args in (cfg.get('algorithms') or {}).values():
            if isinstance(args, dict) and 'teachers' in args:
                args['teachers'] = [original]
    return cfg


def finished(cfg: dict[str, Any]) -> bool:
    summary = Path(cfg['run_dir']) / SUMMARY_FILE
    return summary.is_file() and bool(json.loads(summary.read_text()).get('finished')) and \
        (Path(cfg['run_dir']) / LATEST_CHECKPOINT).is_file()


def _model(cfg: dict[str, Any]):
    return trained_model(cfg['model'], Path(cfg['run_dir']) / LATEST_CHECKPOINT)


def record(study: dict[str, Any], method: str, seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The record of one finished run (see the module docstring)."""
    compare = study['compare']
    model = _model(cfg)
    preds, labels = collect_predictions(model, ordered_eval_loader(cfg['eval_loader']))
    rows = read_records(Path(cfg['run_dir']))
    last = rows[-1] if rows else {}
    entry = {**study['methods'], **(study.get('extra_methods') or {})}.get(method, study['original'])
    out: dict[str, Any] = {
        'method': method, 'seed': seed, 'recipe': method_spec(entry)[0],
        'preds': ''.join(str(int(p)) for p in preds), 'labels': ''.join(str(int(y)) for y in labels),
        'accuracy': float((preds == labels).mean()), 'train_wct_s': last.get('train_wct_s'),
        'cpu_s': last.get('cpu_s'), 'epochs': last.get('epoch'),
        'downsample': cfg['train_loader'].get('downsample'), 'num_classes': cfg['model'].get('num_classes'),
    }
    sample = ordered_eval_loader(cfg['eval_loader'], compare.get('images', 1000))
    example = next(iter(sample))[0][:1]
    groups = channel_groups(model, example)
    out['filter_sparsity'] = filter_sparsity(model, [n for g in groups for n in g.producers])
    if method != 'original':
        original = _model(run_config(study, 'original', study['original'], seed))
        rows = layer_similarity(original, model, sample, compare['layers'], **svcca_options(compare))
        out['svcca'] = {r['layer']: r['similarity'] for r in rows}
        if seed == study['seeds'][0]:
            batch = next(iter(sample))[0][:compare.get('latency_batch', 128)]
            exported = export_pruned(model, zero_channel_masks(model, groups), example)
            out['export'] = export_costs(model, exported, example, latency_inputs=batch)
            out['export']['latency_batch'] = int(batch.shape[0])
            out['export']['max_abs_output_difference'] = float((model.module(batch) - exported(batch)).abs().max()) \
                if hasattr(model, 'module') else None
    return out


def run(study: dict[str, Any], args: argparse.Namespace) -> int:
    """Per phase (``methods``, then ``extra_methods``) and seed: the original and every method, then their records."""
    root = Path(study['runs_root'])
    phases = [study['methods']] + ([] if args.no_extra else [study.get('extra_methods') or {}])
    plan = [(seed, {m: run_config(study, m, entry, seed) for m, entry in [('original', study['original']),
                                                                          *methods.items()]})
            for methods in phases for seed in study['seeds']]  # seed i of every method before seed i + 1 of any
    (root / RECORDS).mkdir(parents=True, exist_ok=True)
    record_session(root, study['name'])
    for seed, configs in plan:
        run_stages([Stage(name=f'{m} seed {seed}', run=lambda c=c: train_stage(c), done=lambda c=c: finished(c))
                    for m, c in configs.items()], log)
        for method, cfg in configs.items():
            write_once(root / RECORDS / f'{method}-seed{seed}.json', lambda: record(study, method, seed, cfg))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    return study_main('benchmarks.bias.study', __doc__, load_study, run, argv, lambda p: p.add_argument(
        '--no-extra', action='store_true', help='skip extra_methods'))


if __name__ == '__main__':
    sys.exit(main())
