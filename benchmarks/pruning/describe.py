"""The pruning study's own step: what it measures on every finished pipeline (``recipes/prune_pipeline.py``), into
``<pipeline folder>/analysis.json``, which the report reads. Run the study with the engine:

    python -m benchmarks.study benchmarks/studies/pruning_fashion_mnist.yaml
    python -m benchmarks.pruning.report runs/pruning-study --out benchmarks/results/pruning_fashion_mnist

A study YAML of this family (``family: pruning``) holds ``prune_pipeline`` runs (original -> magnitude pruning and
fine-tuning -> re-init / random sparse from scratch, at each sparsity), each with its seeds (seed 0 of every pipeline,
then seed 1, ...; folders ``<runs_root>/<pipeline>/seed<s>``), and ``compare``: ``layers`` {pipeline: [layer, ...]},
``images``, ``conv_mode``, ``keep``, ``max_datapoints``. Each pipeline's ``analysis.json`` holds:

* per stage: final accuracy, the measured sparsity of every prunable layer, parameters and MACs (dense and
  effective), and the per-layer SVCCA similarity of the final model to the original on the same test images;
* per stage and retraining epoch (the per-epoch checkpoints): the same similarity, to see which layers re-converge;
* the forward latency of the dense original and of a masked model, timed side by side (interleaved) on this CPU.

An existing ``analysis.json`` is kept (the study resumes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from algorithms.callbacks.run_record import CONFIG_FILE, MANIFEST_FILE
from benchmarks.core.reporting import write_once
from benchmarks.pruning import ANALYSIS_FILE
from benchmarks.study.measure import ordered_eval_loader, svcca_options, trained_model
from benchmarks.study.spec import StudyError

if TYPE_CHECKING:
    import torch

    from benchmarks.study.spec import Study, StudyRun


def check(study: Study) -> None:
    """Every pipeline of the study has its layers to compare."""
    layers = study.compare.get('layers') or {}
    for r in study.runs:
        if r.kind == 'prune_pipeline' and r.name not in layers:
            raise StudyError(f"compare.layers: expected the layers of pipeline '{r.name}'")


def describe(study: Study, run: StudyRun) -> None:
    """``analysis.json`` of a finished pipeline, written once."""
    if run.kind != 'prune_pipeline':
        return
    folder = Path(study.run_dir(run.name))
    write_once(folder / ANALYSIS_FILE, lambda: analyse(folder, study.compare, study.compare['layers'][run.name]))


def _model(run_dir: Path, checkpoint: str) -> 'torch.nn.Module':
    return trained_model(yaml.safe_load((run_dir / CONFIG_FILE).read_text())['model'], checkpoint)


def analyse(folder: Path, compare: dict[str, Any], layers: list[str]) -> dict[str, Any]:
    """``analysis.json`` of one finished pipeline folder (see the module docstring)."""
    from algorithms.analysis import layer_similarity
    from algorithms.pruning import count_macs, count_parameters, layer_sparsity, prunable_layers, time_forward

    stages = json.loads((folder / MANIFEST_FILE).read_text())['stages']
    original = next(s for s in stages if s['method'] == 'original')
    orig_dir = Path(original['run_dir'])
    reference = _model(orig_dir, original['checkpoint'])
    loader = ordered_eval_loader(yaml.safe_load((orig_dir / CONFIG_FILE).read_text())['eval_loader'],
                                 compare.get('images', 1000), batch_size=250)
    sim_kwargs = svcca_options(compare)

    def similarity(model: 'torch.nn.Module') -> dict[str, float]:
        return {r['layer']: r['similarity'] for r in layer_similarity(reference, model, loader, layers, **sim_kwargs)}

    example = next(iter(loader))[0][:1]
    result: dict[str, Any] = {'layers': layers, 'similarity': sim_kwargs, 'images': compare.get('images', 1000),
                              'stages': [], 'epochs': []}
    for stage in stages:
        if stage['method'] == 'original':
            continue
        model = _model(Path(stage['run_dir']), stage['checkpoint'])
        result['stages'].append({
            'method': stage['method'], 'sparsity': stage.get('sparsity'),
            'accuracy': stage['metrics'].get('eval/MulticlassAccuracy'),
            'layer_sparsity': layer_sparsity(model, list(prunable_layers(model))),
            'params': count_parameters(model), 'macs': count_macs(model, example),
            'similarity': similarity(model),
        })
        for path in stage.get('epoch_checkpoints', []):  # ep<E>-ba<B>-rank0.pt, in training order
            epoch = int(Path(path).name.split('-')[0][2:])
            result['epochs'].append({'method': stage['method'], 'sparsity': stage.get('sparsity'), 'epoch': epoch,
                                     'similarity': similarity(_model(Path(stage['run_dir']), path))})
    if any(s['method'] == 'magnitude' for s in stages):  # side by side, interleaved: dense original vs most pruned
        most = max((s for s in stages if s['method'] == 'magnitude'), key=lambda s: s['sparsity'])
        pruned = _model(Path(most['run_dir']), most['checkpoint'])
        batch = next(iter(loader))[0][:128]
        dense_t, masked_t = zip(*[(time_forward(reference, batch, repeats=5), time_forward(pruned, batch, repeats=5))
                                  for _ in range(5)])
        result['latency'] = {'batch': 128, 'sparsity': most['sparsity'],
                             'dense_ms': 1000 * sorted(dense_t)[2], 'masked_ms': 1000 * sorted(masked_t)[2]}
    result['original_accuracy'] = original['metrics'].get('eval/MulticlassAccuracy')
    result['original'] = {'params': count_parameters(reference), 'macs': count_macs(reference, example)}
    return result
