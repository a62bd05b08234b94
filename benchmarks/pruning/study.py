"""Run the pruning study (pipelines x seeds, interleaved) and measure what the report needs, into small records.

    python -m benchmarks.pruning.study benchmarks/studies/pruning_fashion_mnist.yaml
    python -m benchmarks.pruning.report runs/pruning-study --out benchmarks/results/pruning_fashion_mnist

A study YAML names pipeline specs (``recipes/prune_pipeline.py``: original -> magnitude pruning and fine-tuning ->
re-init / random sparse from scratch, at each sparsity), the seeds to repeat them with (run interleaved: seed 0 of
every pipeline, then seed 1, ...), and what to compare. Each pipeline's folder gets ``analysis.json``:

* per stage: final accuracy, the measured sparsity of every prunable layer, parameters and MACs (dense and
  effective), and the per-layer SVCCA similarity of the final model to the original on the same test images;
* per stage and retraining epoch (the per-epoch checkpoints): the same similarity, to see which layers re-converge;
* the forward latency of the dense original and of a masked model, timed side by side (interleaved) on this CPU.

Everything resumes: finished pipeline stages are skipped by the driver and an existing ``analysis.json`` is kept.
The study YAML is read with the recipes' loader (``base:``, interpolations); a bad one is one ``error:`` line and exit
status 2. The bias study measures its models with the same helpers (:func:`trained_model`,
:func:`ordered_eval_loader`, :func:`svcca_options`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from algorithms.analysis import layer_similarity
from algorithms.callbacks.run_record import CONFIG_FILE, MANIFEST_FILE
from algorithms.distillation import load_teacher_weights
from algorithms.pruning import count_macs, count_parameters, layer_sparsity, prunable_layers, time_forward
from benchmarks.core.machine import record_session
from benchmarks.core.reporting import study_main, write_once
from benchmarks.study.spec import StudyError, load_spec
from recipes.core.cli import dotlist

log = logging.getLogger('benchmarks.pruning.study')
ANALYSIS_FILE = 'analysis.json'
REPO = Path(__file__).resolve().parents[2]


def load_study(path: str) -> dict[str, Any]:
    """The study YAML (``base:`` merged), checked: ``name``, ``runs_root``, ``pipelines`` [{name, spec, seeds[,
    overrides]}] and ``compare`` (``layers`` for every pipeline, ``images``, ``conv_mode``, ``keep``,
    ``max_datapoints``)."""
    study = load_spec(path, ('name', 'runs_root', 'pipelines', 'compare'))
    if not isinstance(study['pipelines'], list) or not isinstance(study['compare'], dict):
        raise StudyError(f'{path}: expected pipelines: a list and compare: a mapping')
    layers = study['compare'].get('layers') or {}
    for i, p in enumerate(study['pipelines']):
        if not isinstance(p, dict) or not {'name', 'spec', 'seeds'} <= set(p):
            raise StudyError(f'{path}: pipelines[{i}]: expected {{name, spec, seeds[, overrides]}}, got {p!r}')
        seeds = p['seeds']
        if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
            raise StudyError(f'{path}: pipelines[{i}].seeds: expected a list of ints, got {seeds!r}')
        if not (REPO / p['spec']).is_file():
            raise StudyError(f"{path}: pipelines[{i}].spec: file not found: {p['spec']}")
        if p['name'] not in layers:
            raise StudyError(f"{path}: compare.layers: expected the layers of pipeline '{p['name']}'")
    return study


def trained_model(model: dict[str, Any], checkpoint: str | Path) -> torch.nn.Module:
    """The recipe model ``model`` (its config section) with the weights of ``checkpoint``, in eval mode."""
    from recipes.models.registry import build_model

    net = build_model(**model)
    load_teacher_weights(net, checkpoint)
    return net.eval()


def ordered_eval_loader(eval_loader: dict[str, Any], images: Optional[int] = None, batch_size: int = 500):
    """The recipe's evaluation loader, in order, in this process, on its first ``images`` (all if None)."""
    from recipes.data.registry import build_dataloader

    return build_dataloader({**eval_loader, 'subset': images, 'shuffle': False, 'num_workers': 0},
                            batch_size=batch_size)


def svcca_options(compare: dict[str, Any]) -> dict[str, Any]:
    """The :func:`~algorithms.analysis.layer_similarity` options of a study's ``compare`` section (SVCCA)."""
    return dict(method='svcca', conv_mode=compare.get('conv_mode', 'positions'), keep=compare.get('keep', 0.99),
                max_datapoints=compare.get('max_datapoints', 5000))


def run_pipeline(study: dict[str, Any], pipeline: dict[str, Any], seed: int) -> Path:
    """Train (or resume, or skip) one pipeline at one seed; returns its folder."""
    from recipes import prune_pipeline

    out = Path(study['runs_root']) / pipeline['name'] / f'seed{seed}'
    status = prune_pipeline.main(['-f', str(REPO / pipeline['spec']), f'seed={seed}', f'out_dir={out}',
                                  *dotlist(pipeline.get('overrides') or {})])
    if status != 0:
        raise RuntimeError(f'pipeline {pipeline["name"]} seed {seed} exited {status}')
    return out


def _model(run_dir: Path, checkpoint: str) -> torch.nn.Module:
    return trained_model(yaml.safe_load((run_dir / CONFIG_FILE).read_text())['model'], checkpoint)


def analyse(folder: Path, compare: dict[str, Any], layers: list[str]) -> dict[str, Any]:
    """``analysis.json`` of one finished pipeline folder (see the module docstring)."""
    stages = json.loads((folder / MANIFEST_FILE).read_text())['stages']
    original = next(s for s in stages if s['method'] == 'original')
    orig_dir = Path(original['run_dir'])
    reference = _model(orig_dir, original['checkpoint'])
    loader = ordered_eval_loader(yaml.safe_load((orig_dir / CONFIG_FILE).read_text())['eval_loader'],
                         compare.get('images', 1000), batch_size=250)
    sim_kwargs = svcca_options(compare)

    def similarity(model: torch.nn.Module) -> dict[str, float]:
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


def run(study: dict[str, Any], args: argparse.Namespace) -> int:
    """Every pipeline (or those of ``--only``) at each of its seeds, interleaved, each then analysed once."""
    pipelines = [p for p in study['pipelines'] if not args.only or p['name'] in args.only]
    if not pipelines:
        raise StudyError(f"--only: expected pipeline names of the study, got {' '.join(args.only)}")
    root = Path(study['runs_root'])
    root.mkdir(parents=True, exist_ok=True)
    record_session(root, study['name'])
    for i in range(max(len(p['seeds']) for p in pipelines)):  # seed i of every pipeline before seed i + 1 of any
        for pipeline in (p for p in pipelines if i < len(p['seeds'])):
            folder = run_pipeline(study, pipeline, pipeline['seeds'][i])
            write_once(folder / ANALYSIS_FILE,
                       lambda: analyse(folder, study['compare'], study['compare']['layers'][pipeline['name']]))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    return study_main('benchmarks.pruning.study', __doc__, load_study, run, argv, lambda p: p.add_argument(
        '--only', nargs='+', help='only these pipelines (by name)'))


if __name__ == '__main__':
    sys.exit(main())
