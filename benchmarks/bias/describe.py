"""The bias study's own step: one small record per finished run, which the report reads. Run the study with the engine:

    python -m benchmarks.study benchmarks/studies/bias_fashion_mnist.yaml
    python -m benchmarks.bias.report runs/bias-study --out benchmarks/results/bias_fashion_mnist

A study YAML of this family (``family: bias``; the seed's chapter III) trains, for each seed, the dense ``original``
on biased data, then each compressed method (structured AGP pruning alone, with KD, AT+KD, ...) from that
original's weights and distilling from it (``load_from`` and ``teachers``: the original of the same seed); phase 1
of every seed (the methods that come first), then phase 2 (what fits the budget). After every run,
``<runs_root>/records/<run>-seed<S>.json``: test predictions (one character per image), accuracy, measured filter
sparsity, per-layer SVCCA similarity to the run it started from on the first test images (``compare``), wall-clock
and CPU time, and for the study's first seed the costs of the exported (physically pruned) model. The report
computes CEV, SDE, PIEs and intervals from those records alone; an existing record is kept (the study resumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from algorithms.callbacks.run_record import LATEST_CHECKPOINT, read_records
from benchmarks.core.reporting import write_once
from benchmarks.study.measure import ordered_eval_loader, svcca_options, trained_model

if TYPE_CHECKING:
    from benchmarks.study.spec import Study, StudyRun

RECORDS = 'records'


def run_config(study: Study, run: StudyRun) -> dict[str, Any]:
    """The resolved recipe ``run`` trained with in ``study`` (the same overrides as its command)."""
    from benchmarks.study.engine import resolve_yaml, run_overrides
    from recipes.core.config import load_config

    return load_config(resolve_yaml(run.recipe), run_overrides(study, run))


def describe(study: Study, run: StudyRun) -> None:
    """``<runs_root>/records/<run>-seed<S>.json`` of a finished run, written once."""
    records = Path(study.runs_root) / RECORDS
    records.mkdir(parents=True, exist_ok=True)
    write_once(records / f'{run.name}-seed{study.seed}.json', lambda: record(study, run))


def record(study: Study, run: StudyRun) -> dict[str, Any]:
    """The record of one finished run (see the module docstring)."""
    from algorithms.analysis import collect_predictions, layer_similarity
    from algorithms.pruning import channel_groups, export_costs, export_pruned, filter_sparsity
    from algorithms.pruning.structured import zero_channel_masks

    compare, cfg = study.compare, run_config(study, run)
    model = trained_model(cfg['model'], Path(cfg['run_dir']) / LATEST_CHECKPOINT)
    preds, labels = collect_predictions(model, ordered_eval_loader(cfg['eval_loader']))
    rows = read_records(Path(cfg['run_dir']))
    last = rows[-1] if rows else {}
    out: dict[str, Any] = {
        'method': run.name, 'seed': study.seed, 'recipe': run.recipe,
        'preds': ''.join(str(int(p)) for p in preds), 'labels': ''.join(str(int(y)) for y in labels),
        'accuracy': float((preds == labels).mean()), 'train_wct_s': last.get('train_wct_s'),
        'cpu_s': last.get('cpu_s'), 'epochs': last.get('epoch'),
        'downsample': cfg['train_loader'].get('downsample'), 'num_classes': cfg['model'].get('num_classes'),
    }
    sample = ordered_eval_loader(cfg['eval_loader'], compare.get('images', 1000))
    example = next(iter(sample))[0][:1]
    groups = channel_groups(model, example)
    out['filter_sparsity'] = filter_sparsity(model, [n for g in groups for n in g.producers])
    if run.load_from:  # compressed from an original: compared with it
        original_cfg = run_config(study, study.run(run.load_from))
        original = trained_model(original_cfg['model'], Path(original_cfg['run_dir']) / LATEST_CHECKPOINT)
        rows = layer_similarity(original, model, sample, compare['layers'], **svcca_options(compare))
        out['svcca'] = {r['layer']: r['similarity'] for r in rows}
        if study.seed == study.seeds[0]:
            batch = next(iter(sample))[0][:compare.get('latency_batch', 128)]
            exported = export_pruned(model, zero_channel_masks(model, groups), example)
            out['export'] = export_costs(model, exported, example, latency_inputs=batch)
            out['export']['latency_batch'] = int(batch.shape[0])
            out['export']['max_abs_output_difference'] = float((model.module(batch) - exported(batch)).abs().max()) \
                if hasattr(model, 'module') else None
    return out
