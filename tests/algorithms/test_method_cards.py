"""Every method card's copy list is enough: copy exactly the folders a card names into an empty folder, as a user
would, and train with the method there (two batches of Composer's Trainer on random data) in a fresh interpreter that
sees only that folder (and the installed packages)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALGORITHMS = REPO / 'algorithms'

PREAMBLE = '''
from pathlib import Path
import torch
from torch.utils.data import DataLoader, TensorDataset
from composer import Trainer
from composer.models import ComposerClassifier
import algorithms
assert Path(algorithms.__file__).resolve().parent.parent == Path.cwd().resolve(), algorithms.__file__


def net():
    return ComposerClassifier(torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(16, 3)), num_classes=3)


def train(algorithm):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))), batch_size=8)
    trainer = Trainer(model=net(), train_dataloader=data, max_duration='2ba', algorithms=[algorithm],
                      progress_bar=False, device='cpu')
    trainer.fit()
    assert int(trainer.state.timestamp.batch) == 2
    trainer.close()
'''

#: What each card's method does in the copied folder (the blockwise card: its own minimal example, read from it).
SCRIPTS = {
    'distillation': '''
from algorithms.distillation import KnowledgeDistillation
train(KnowledgeDistillation([net()], kd_loss='kl', temperature=4.0))
''',
    'feature_distillation': '''
from algorithms.feature_distillation import AttentionTransfer
train(AttentionTransfer([net()], ['0']))
''',
    'pruning': '''
from algorithms.pruning import MagnitudePruning
pruning = MagnitudePruning([('1ba', 0.5)])
train(pruning)
assert pruning.masks and pruning.sparsity == 0.5
''',
    'label_smoothing': '''
from algorithms.label_smoothing import LabelSmoothing
train(LabelSmoothing(smoothing=0.1))
''',
    'analysis': '''
from algorithms.analysis import bias_metrics, linear_cka, svcca
a, b = torch.randn(8, 300), torch.randn(6, 300)
assert 0.0 <= svcca(a, b, keep=0.99).mean <= 1.0 and 0.0 <= linear_cka(a.T, b.T) <= 1.0
labels = torch.randint(0, 3, (200,))
report = bias_metrics(torch.randint(0, 3, (200,)), labels, labels, num_classes=3)
assert report.cev >= 0.0
''',
    'blockwise': None,  # the card's first python block
}


def cards() -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(ALGORITHMS.glob('*/README.md')) if p.parent.name != 'common'}


def copy_list(card: Path) -> list[str]:
    """The folders of ``algorithms/`` the card says to copy: its own and those named in its bold copy sentence."""
    match = re.search(r'\*\*Copy this folder(.*?)\*\*', card.read_text(), flags=re.S)
    assert match, f'{card}: no "**Copy this folder ...**" sentence'
    return [card.parent.name, *re.findall(r'`algorithms/([a-z_]+)/`', match.group(1))]


def script(name: str, card: Path) -> str:
    body = SCRIPTS[name]
    if body is None:
        body = re.findall(r'```python\n(.*?)```', card.read_text(), flags=re.S)[0]
    return PREAMBLE + body


def run_copied(tmp_path: Path, folders: list[str], code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose only project files are ``folders`` copied under ``tmp_path/algorithms``."""
    (tmp_path / 'algorithms').mkdir()
    shutil.copy(ALGORITHMS / '__init__.py', tmp_path / 'algorithms' / '__init__.py')
    for folder in folders:
        shutil.copytree(ALGORITHMS / folder, tmp_path / 'algorithms' / folder,
                        ignore=shutil.ignore_patterns('__pycache__'))
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
    env['PYTHONPATH'] = str(tmp_path)
    return subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_every_card_has_a_check_and_says_what_to_copy():
    assert set(cards()) == set(SCRIPTS)
    assert copy_list(cards()['feature_distillation']) == ['feature_distillation', 'common', 'distillation']
    assert copy_list(cards()['label_smoothing']) == ['label_smoothing']  # it imports nothing of common/


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_the_copied_folders_train(tmp_path, name):
    card = cards()[name]
    done = run_copied(tmp_path, copy_list(card), script(name, card))
    assert done.returncode == 0, f'{name}: copied {copy_list(card)}\n{done.stderr[-3000:]}'


def test_a_copy_list_that_misses_a_folder_fails(tmp_path):
    card = cards()['distillation']
    done = run_copied(tmp_path, [f for f in copy_list(card) if f != 'common'], script('distillation', card))
    assert done.returncode != 0 and "No module named 'algorithms.common'" in done.stderr
