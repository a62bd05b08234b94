"""Run the pruning study (pipelines x seeds, interleaved) and measure what the report needs, into small records.

    python -m benchmarks.pruning_study benchmarks/studies/pruning_fashion_mnist.yaml
    python -m benchmarks.pruning_report runs/pruning-study --out benchmarks/results/pruning_fashion_mnist

A study YAML names pipeline specs (``recipes/prune_pipeline.py``: original -> magnitude pruning and fine-tuning ->
re-init / random sparse from scratch, at each sparsity), the seeds to repeat them with (run interleaved: seed 0 of
every pipeline, then seed 1, ...), and what to compare. Each pipeline's folder gets ``analysis.json``:

* per stage: final accuracy, the measured sparsity of every prunable layer, parameters and MACs (dense and
  effective), and the per-layer SVCCA similarity of the final model to the original on the same test images;
* per stage and retraining epoch (the per-epoch checkpoints): the same similarity, to see which layers re-converge;
* the forward latency of the dense original and of a masked model, timed side by side (interleaved) on this CPU.

Everything resumes: finished pipeline stages are skipped by the driver and an existing ``analysis.json`` is kept.
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
from omegaconf import OmegaConf

from algorithms.analysis import layer_similarity
from algorithms.callbacks.run_record import CONFIG_FILE, MANIFEST_FILE
from algorithms.distillation import load_teacher_weights
from algorithms.pruning import count_macs, count_parameters, layer_sparsity, prunable_layers, time_forward
from benchmarks.machine import record_session
from recipes.cli import dotlist

log = logging.getLogger('benchmarks.pruning_study')
ANALYSIS_FILE = 'analysis.json'
REPO = Path(__file__).resolve().parents[1]


def load_study(path: str) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    for key in ('name', 'runs_root', 'pipelines'):
        if key not in cfg:
            raise SystemExit(f'error: {path}: missing key {key!r}')
    return cfg  # type: ignore[return-value]


def pipeline_dir(study: dict[str, Any], pipeline: dict[str, Any], seed: int) -> Path:
    return Path(study['runs_root']) / pipeline['name'] / f'seed{seed}'


def run_pipeline(study: dict[str, Any], pipeline: dict[str, Any], seed: int) -> Path:
    """Train (or resume, or skip) one pipeline at one seed; returns its folder."""
    from recipes import prune_pipeline

    out = pipeline_dir(study, pipeline, seed)
    args = ['-f', str(REPO / pipeline['spec']), f'seed={seed}', f'out_dir={out}',
            *dotlist(pipeline.get('overrides') or {})]
    status = prune_pipeline.main(args)
    if status != 0:
        raise RuntimeError(f'pipeline {pipeline["name"]} seed {seed} exited {status}')
    return out


def _model(run_dir: Path, checkpoint: str) -> torch.nn.Module:
    from recipes.models import build_model

    cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    model = build_model(**cfg['model'])
    load_teacher_weights(model, checkpoint)
    return model.eval()


def _loader(run_dir: Path, images: int):
    from recipes.data import build_dataloader

    cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    loader_cfg = {**cfg['eval_loader'], 'subset': images, 'shuffle': False, 'num_workers': 0}
    return build_dataloader(loader_cfg, batch_size=250)


def analyse(folder: Path, compare: dict[str, Any], layers: list[str]) -> dict[str, Any]:
    """``analysis.json`` of one finished pipeline folder (see the module docstring)."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    stages = manifest['stages']
    original = next(s for s in stages if s['method'] == 'original')
    orig_dir = Path(original['run_dir'])
    reference = _model(orig_dir, original['checkpoint'])
    loader = _loader(orig_dir, compare.get('images', 1000))
    sim_kwargs = dict(method='svcca', conv_mode=compare.get('conv_mode', 'positions'), keep=compare.get('keep', 0.99),
                      max_datapoints=compare.get('max_datapoints', 5000))

    def similarity(model: torch.nn.Module) -> dict[str, float]:
        rows = layer_similarity(reference, model, loader, layers, **sim_kwargs)
        return {r['layer']: r['similarity'] for r in rows}

    example = next(iter(loader))[0][:1]
    result: dict[str, Any] = {'layers': layers, 'similarity': sim_kwargs, 'images': compare.get('images', 1000),
                              'stages': [], 'epochs': []}
    for stage in stages:
        if stage['method'] == 'original':
            continue
        model = _model(Path(stage['run_dir']), stage['checkpoint'])
        prunable = prunable_layers(model)
        result['stages'].append({
            'method': stage['method'], 'sparsity': stage.get('sparsity'),
            'accuracy': stage['metrics'].get('eval/MulticlassAccuracy'),
            'layer_sparsity': layer_sparsity(model, list(prunable)),
            'params': count_parameters(model), 'macs': count_macs(model, example),
            'similarity': similarity(model),
        })
        for path in stage.get('epoch_checkpoints', []):  # ep<E>-ba<B>-rank0.pt, in training order
            epoch = int(Path(path).name.split('-')[0][2:])
            result['epochs'].append({'method': stage['method'], 'sparsity': stage.get('sparsity'), 'epoch': epoch,
                                     'similarity': similarity(_model(Path(stage['run_dir']), path))})
    if any(s['method'] == 'magnitude' for s in stages):  # side by side, interleaved: the dense original vs the most pruned magnitude model
        most = max((s for s in stages if s['method'] == 'magnitude'), key=lambda s: s['sparsity'])
        pruned = _model(Path(most['run_dir']), most['checkpoint'])
        batch = next(iter(loader))[0][:128]
        dense_t, masked_t = [], []
        for _ in range(5):
            dense_t.append(time_forward(reference, batch, repeats=5))
            masked_t.append(time_forward(pruned, batch, repeats=5))
        result['latency'] = {'batch': 128, 'sparsity': most['sparsity'],
                             'dense_ms': 1000 * sorted(dense_t)[2], 'masked_ms': 1000 * sorted(masked_t)[2]}
    result['original_accuracy'] = original['metrics'].get('eval/MulticlassAccuracy')
    result['original'] = {'params': count_parameters(reference), 'macs': count_macs(reference, example)}
    return result


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    p = argparse.ArgumentParser(prog='python -m benchmarks.pruning_study', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('study', help='study YAML, e.g. benchmarks/studies/pruning_fashion_mnist.yaml')
    p.add_argument('--only', nargs='+', help='only these pipelines (by name)')
    args = p.parse_args(argv)
    study = load_study(args.study)
    root = Path(study['runs_root'])
    root.mkdir(parents=True, exist_ok=True)
    record_session(root, study['name'])
    pipelines = [p for p in study['pipelines'] if not args.only or p['name'] in args.only]
    rounds = max(len(p['seeds']) for p in pipelines)
    for i in range(rounds):  # interleaved: seed i of every pipeline before seed i + 1 of any
        for pipeline in pipelines:
            if i >= len(pipeline['seeds']):
                continue
            seed = pipeline['seeds'][i]
            folder = run_pipeline(study, pipeline, seed)
            target = folder / ANALYSIS_FILE
            if not target.is_file():
                log.info('analysing %s', folder)
                layers = study['compare']['layers'][pipeline['name']]
                target.write_text(json.dumps(analyse(folder, study['compare'], layers), indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
