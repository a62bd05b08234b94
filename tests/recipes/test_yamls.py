"""Every recipe in yamls/ builds and trains a few batches on CPU, on tiny data written in its real format.

Paths in the recipes (data folders, teacher checkpoints) are replaced by tiny stand-ins of the same kind: data in
the dataset's on-disk format and teacher checkpoints of the teacher's architecture, so no recipe can rot unnoticed.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pytest
import torch
import yaml

from recipes.core.builders import launch, prepare
from recipes.core.config import load_config
from recipes.models.registry import build_model
from tests.helpers.tiny_data import (write_cifar, write_fashion_mnist, write_glue_tasks, write_imagefolder, write_mds,
                             write_text_corpus, write_tokenizer)

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / 'yamls' / 'pipelines'
# A YAML's kind is its place: everything under yamls/pipelines/ is a driver spec, everything else a train.py recipe.
RECIPES = sorted(p for p in (REPO / 'yamls').rglob('*.yaml') if not p.is_relative_to(PIPELINES))
SPECS = sorted(PIPELINES.rglob('*.yaml'))
TEXT = ('text_json', 'c4', 'glue')
#: The command a driver spec is for, by its place: the GLUE folder, else the file name's prefix.
DRIVERS = {'glue/': 'glue', 'pruning_': 'prune_pipeline', 'blockwise_': 'blockwise', 'matryoshka': 'matryoshka'}


def driver_of(spec: Path) -> str:
    """The driver of ``spec`` (a file under yamls/pipelines/<dataset>/) from :data:`DRIVERS`."""
    dataset = spec.relative_to(PIPELINES).parts[0]
    found = [d for place, d in DRIVERS.items() if f'{dataset}/' == place or spec.name.startswith(place)]
    assert len(found) == 1, f'{spec}: no driver (or several) for its place; add it to DRIVERS'
    return found[0]


def driver_loader(driver: str):
    """The driver's own spec loader."""
    from recipes import glue, matryoshka, prune_pipeline
    from recipes.pipelines.blockwise_config import load_blockwise

    return {'glue': glue.load_spec, 'prune_pipeline': prune_pipeline.load_spec, 'matryoshka': matryoshka.load_spec,
            'blockwise': load_blockwise}[driver]


@pytest.fixture(scope='module')
def tiny_roots(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    roots['fashion_mnist'] = tmp_path_factory.mktemp('fm')
    write_fashion_mnist(roots['fashion_mnist'], n_train=16, n_test=8)
    for name in ('cifar10', 'cifar100'):
        roots[name] = tmp_path_factory.mktemp(name)
        write_cifar(roots[name], name=name, n_train=16, n_test=8)
    roots['imagenet_folder'] = tmp_path_factory.mktemp('folder')
    for split in ('train', 'val'):
        write_imagefolder(roots['imagenet_folder'], n_per_class=4, classes=2, size=40, split=split)
    roots['imagenet_mds'] = tmp_path_factory.mktemp('mds')
    for split in ('train', 'val'):
        write_mds(roots['imagenet_mds'], split=split, n=8, size=40)
    roots['text_json'] = roots['c4'] = tmp_path_factory.mktemp('text')
    write_text_corpus(roots['text_json'], n_docs=8, words=80)
    roots['glue'] = write_glue_tasks(tmp_path_factory.mktemp('glue'))
    roots['tokenizer'] = write_tokenizer(tmp_path_factory.mktemp('tok') / 'tok')
    return roots


def tiny_text(cfg: dict, roots: dict[str, Path]) -> None:
    """Text recipes on the tiny corpus: a tiny tokenizer, blocks of 32 tokens, local files (C4 through the
    ``json`` builder, GLUE's local layout), and bert-tiny instead of bert-base."""
    tok = str(roots['tokenizer'])
    if cfg['model']['name'] in ('bert_mlm', 'bert_classifier'):
        cfg['model'].update(config='bert-tiny', tokenizer=tok)
    for key in ('train_loader', 'eval_loader'):
        loader = cfg[key]
        if loader is None or loader['dataset'] not in TEXT:
            continue
        loader.update(tokenizer=tok, max_seq_len=32)
        if loader['dataset'] == 'c4':
            loader.update(hf_path='json', hf_name=None, data_files=str(roots['c4'] / '{split}.jsonl'))
        if loader['dataset'] == 'glue':
            loader.update(source='local')


def tiny_teacher(model_cfg: dict, path: Path, accuracy: float) -> str:
    """A checkpoint of the teacher's architecture, shaped like a Composer checkpoint with a run record."""
    model = build_model(**model_cfg)
    record = {'metrics': {'eval/MulticlassAccuracy': accuracy, 'eval/MaskedAccuracy': accuracy}, 'train_wct_s': 1.0}
    # like a Composer checkpoint, it holds more than tensors (a timedelta in the timestamp): loaders must allow it
    torch.save({'state': {'model': model.state_dict(), 'callbacks': {'RunRecord': record},
                          'timestamp': {'total_wct': datetime.timedelta(seconds=1)}}}, path)
    return str(path)


@pytest.mark.parametrize('recipe', RECIPES, ids=lambda p: str(p.relative_to(REPO / 'yamls')))
def test_recipe_builds_and_trains(recipe: Path, tiny_roots, tmp_path):
    cfg = load_config(recipe, [
        f'run_dir={tmp_path / "run"}', 'save_folder=null', 'autoresume=false', 'precision=fp32',
        'device_train_microbatch_size=null', 'global_train_batch_size=4', 'global_eval_batch_size=4',
        'max_duration=2ba', 'eval_interval=2ba', 'progress_bar=false', 'callbacks={}',
    ])
    for key in ('train_loader', 'eval_loader'):
        loader = cfg[key]
        loader.update(path=str(tiny_roots[loader['dataset']]))
        if 'num_workers' in loader or loader['dataset'] not in TEXT:
            loader.update(num_workers=0, persistent_workers=False)
        if 'image_size' in loader:
            loader['image_size'] = 32
    tiny_text(cfg, tiny_roots)
    kd = cfg['algorithms'].get('knowledge_distillation')
    stand_ins: dict[str, str] = {}  # every algorithm that names teachers gets tiny ones (the same file for one path)
    for section in cfg['algorithms'].values():
        if not isinstance(section, dict) or 'teachers' not in section:
            continue
        specs = []
        for i, spec in enumerate(section['teachers']):
            spec = {'checkpoint': spec} if isinstance(spec, str) else dict(spec)
            if spec.get('model') and spec['model'].get('tokenizer'):  # a text teacher of its own size: tiny vocabulary
                spec['model'] = {**spec['model'], 'tokenizer': str(tiny_roots['tokenizer'])}
            if spec['checkpoint'] not in stand_ins:
                n = len(stand_ins)
                stand_ins[spec['checkpoint']] = tiny_teacher(spec.get('model') or cfg['model'], tmp_path / f't{n}.pt',
                                                             0.5 + n / 10)
            spec['checkpoint'] = stand_ins[spec['checkpoint']]
            specs.append(spec)
        section['teachers'] = specs
    if cfg['load_path'] is not None:  # a recipe that starts from a trained model (pruning): a tiny one of its kind
        cfg['load_path'] = tiny_teacher(cfg['model'], tmp_path / 'init.pt', 0.5)
    run = prepare(cfg)
    trainer = launch(run)
    trainer.fit()
    trainer.close()
    assert int(trainer.state.timestamp.batch) == 2
    loss = trainer.state.loss
    total = loss['total'] if isinstance(loss, dict) else loss
    assert math.isfinite(float(total))
    records = (tmp_path / 'run' / 'record.jsonl').read_text().splitlines()
    assert len(records) == 1
    if kd is not None:
        algo = next(a for a in trainer.state.algorithms if type(a).__name__ == 'KnowledgeDistillation')
        expected = {'all': len(kd['teachers']), 'random_1': 1}.get(kd.get('pool_mode', 'all'), kd.get('k'))
        start, end = (float(kd.get(k, d).removesuffix('dur')) for k, d in (('start', '0dur'), ('end', '1dur')))
        steps_in_window = sum(start <= step / 2 < end for step in range(2))  # progress of steps 0 and 1 of 2
        assert algo.teacher_forwards == steps_in_window * expected
        if start <= 0.5 < end:  # the last step distilled: its loss carries the KD term
            assert isinstance(loss, dict) and {'total', 'ce', 'kd'} <= set(loss)
        else:
            assert isinstance(loss, torch.Tensor)


def test_every_yaml_is_a_recipe_or_a_driver_spec_by_its_place():
    assert RECIPES and SPECS and not set(RECIPES) & set(SPECS)
    assert {driver_of(spec) for spec in SPECS} == set(DRIVERS.values())
    for recipe in RECIPES:  # a driver spec outside yamls/pipelines/ would be trained as a recipe and fail above
        assert not any(recipe.name.startswith(p) for p in DRIVERS if not p.endswith('/')), recipe


@pytest.mark.parametrize('spec', SPECS, ids=lambda p: str(p.relative_to(PIPELINES)))
def test_driver_spec_loads_with_its_drivers_loader(spec: Path, tmp_path):
    """Each spec through its own driver's loader (schema, ``base:``, referenced recipes), with the files it needs
    that a checkout lacks (data, a pre-trained checkpoint) replaced by tiny stand-ins of the same kind."""
    driver, path, overrides = driver_of(spec), spec, []
    if driver == 'blockwise':  # its loader checks the teacher recipe's data: a tiny copy in the real format
        dataset = spec.relative_to(PIPELINES).parts[0]
        data = tmp_path / 'data'
        if dataset == 'fashion_mnist':
            write_fashion_mnist(data, n_train=8, n_test=8)
        else:
            write_cifar(data, name=dataset, n_train=10, n_test=10)
        path = tmp_path / 'spec.yaml'
        path.write_text(yaml.safe_dump({'base': str(spec), 'teacher': {'overrides': {
            'train_loader.path': str(data), 'eval_loader.path': str(data)}}}))
    if driver == 'glue':  # the pre-trained MLM checkpoint it fine-tunes
        checkpoint = tmp_path / 'mlm.pt'
        torch.save({'state': {'model': {}}}, checkpoint)
        overrides = [f'pretrained={checkpoint}']
    loaded = driver_loader(driver)(path, overrides)
    assert isinstance(loaded, dict) and loaded
