"""The seams recipes plug into: models and datasets registered by name, teachers shared between algorithms and
listed in the run record, and the driver CLI helper (validate every stage first, skip finished ones, exit 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from composer.models import ComposerClassifier
from torch.utils.data import Dataset

from recipes.data import registry as data
from recipes.models import registry as models
from recipes.core.builders import launch, prepare
from recipes.core.cli import Stage, dotlist, run_main, run_stages
from recipes.core.config import load_config
from recipes.core.errors import ConfigError
from recipes.core.teachers import TeacherRegistry, build_teachers
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


class Stripes(Dataset):
    """A toy text-free dataset: vectors whose label is the sign of their first entry."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def mlp(width: int = 8, num_classes: int = 2) -> ComposerClassifier:
    net = torch.nn.Sequential(torch.nn.Linear(6, width), torch.nn.ReLU(), torch.nn.Linear(width, num_classes))
    return ComposerClassifier(net, num_classes=num_classes)


@dataclass
class StripesOptions(data.CommonOptions):
    """A new dataset's options: the common ones and its own, declared once."""

    path: str = 'unused'
    n: int = 32


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(models.COMPOSER_MODELS, 'toy_mlp', mlp)
    spec = data.DatasetSpec(options=StripesOptions, build=lambda opts, bs: Stripes(opts['n']),
                            files=lambda path, split: [], info={'num_classes': 2})
    monkeypatch.setitem(data.DATASETS, 'stripes', spec)


def test_a_registered_model_and_dataset_train_from_a_yaml(registered, tmp_path):
    yaml = tmp_path / 'toy.yaml'
    yaml.write_text(f"""
run_name: toy
run_dir: {tmp_path / 'run'}
model: {{name: toy_mlp, width: 16}}
train_loader: {{dataset: stripes, n: 64}}
eval_loader: {{dataset: stripes, n: 32, split: test}}
global_train_batch_size: 16
optimizer: {{name: sgd, lr: 0.5}}
max_duration: 3ep
progress_bar: false
save_folder: null
""")
    run = prepare(load_config(yaml))
    assert run.trainer_kwargs['model'].module[0].out_features == 16  # the YAML's option reached the builder
    trainer = launch(run)
    trainer.fit()
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['final_metrics']['eval/MulticlassAccuracy'] > 0.75  # it learnt the sign rule
    with pytest.raises(ConfigError, match="model.depth: unknown option for model 'toy_mlp'; allowed: width"):
        prepare(load_config(yaml, ['model.depth=2']))
    with pytest.raises(ConfigError, match="model.num_classes: 3 does not fit train_loader.dataset 'stripes'"):
        prepare(load_config(yaml, ['model.num_classes=3']))


def checkpoint(tmp_path: Path, name: str, seed: int) -> str:
    torch.manual_seed(seed)
    model = models.build_model('cifar_resnet8', num_classes=10, in_channels=1)
    path = tmp_path / f'{name}.pt'
    torch.save({'state': {'model': model.state_dict(), 'callbacks': {'RunRecord': {'metrics': {'acc': seed / 10}}}}},
               path)
    return str(path)


def test_build_teachers_shares_models_and_pools_and_lists_checkpoints(tmp_path):
    a, b = checkpoint(tmp_path, 'a', 1), checkpoint(tmp_path, 'b', 2)
    registry = TeacherRegistry(default_model={'name': 'cifar_resnet8', 'num_classes': 10, 'in_channels': 1})
    first = registry.teachers('x.teachers', [a, {'checkpoint': b}], score_metric='acc')
    second = registry.teachers('y.teachers', [a])
    assert first.models[0] is second.models[0]  # built once per (checkpoint, model)
    assert first.scores == [0.1, 0.2] and registry.checkpoints == [a, b]
    assert registry.pool(first, 'random_1') is registry.pool(first, 'random_1')
    assert registry.pool(first, 'random_1') is not registry.pool(first, 'random_1', seed=1)
    loaded = torch.load(a, weights_only=True)['state']['model']
    assert all(torch.equal(v, loaded[k]) for k, v in first.models[0].state_dict().items())
    with pytest.raises(ConfigError, match=r'z.teachers\[0\].checkpoint: teacher checkpoint not found'):
        build_teachers(['/no/such.pt'], registry.default_model, key='z.teachers')


def test_the_run_record_lists_the_teachers_of_any_algorithm(fmnist_root, tmp_path):
    teacher = checkpoint(tmp_path, 't', 3)
    cfg = tiny_config(fmnist_root, tmp_path / 'run', yaml=REPO / 'yamls' / 'fashion_mnist' / 'fitnets.yaml',
                      max_duration='1ep')
    cfg['algorithms']['fitnets']['teachers'] = [teacher]
    cfg['algorithms']['knowledge_distillation']['teachers'] = [teacher]  # the same teacher: one forward, one entry
    trainer = launch(prepare(cfg))
    trainer.fit()
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    lines = [json.loads(line) for line in (tmp_path / 'run' / 'record.jsonl').read_text().splitlines()]
    assert summary['teachers'] == [teacher] and all(line['teachers'] == [teacher] for line in lines)
    assert {'hint', 'kd', 'ce'} <= set(trainer.state.loss)
    pools = {id(a.pool) for a in trainer.state.algorithms}
    assert len(pools) == 1  # the two terms share one pool, so one teacher forward per step


def test_driver_stages_are_all_checked_first_then_skipped_when_done(capsys):
    ran = []
    stages = [Stage('one', run=lambda: ran.append('one'), done=lambda: True),
              Stage('two', run=lambda: ran.append('two')),
              Stage('three', run=lambda: ran.append('three'), check=lambda: None)]
    assert run_stages(stages) == {'one': 'skipped', 'two': 'ran', 'three': 'ran'} and ran == ['two', 'three']

    def bad_check():
        raise ConfigError('stages[2].optimizer.lr: expected float')

    ran.clear()
    stages[2].check = bad_check
    assert run_main(lambda: run_stages(stages)) == 2
    assert ran == []  # nothing ran: the last stage's config was checked before the first stage started
    assert capsys.readouterr().err == 'error: stages[2].optimizer.lr: expected float\n'
    assert dotlist({'a.b': 1, 'c': 'x', 'd': [1, 2]}) == ['a.b=1', 'c=x', 'd=[1, 2]']
