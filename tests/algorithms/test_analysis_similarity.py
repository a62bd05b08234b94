"""SVCCA, linear CKA, per-layer similarity of two models and the compare_models command (fast, CPU)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from algorithms.analysis import (collect_activations, conv_activations, layer_similarity, linear_cka,
                                 similarity_heatmap, svcca)
from benchmarks.measurements.svcca_reference import svcca_reference
from recipes import compare_models
from recipes.models.registry import build_model
from tests.conftest import tiny_config, tiny_overrides

SPEC = dict(name='cifar_resnet8', num_classes=10, in_channels=1)
LAYERS = ['layer1', 'layer2', 'layer3', 'fc']


def correlated(neurons1: int, neurons2: int, n: int, seed: int = 0, latent: int = 12) -> tuple[np.ndarray, ...]:
    """Two layers driven by a shared low-dimensional signal plus independent noise (neurons x datapoints)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((latent, n))
    a = rng.standard_normal((neurons1, latent)) @ z + 0.5 * rng.standard_normal((neurons1, n))
    b = rng.standard_normal((neurons2, latent)) @ z + 1.0 * rng.standard_normal((neurons2, n))
    return a, b


def orthogonal(p: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((p, p)))[0]


# ---- svcca / linear_cka on synthetic activations ----

def test_identical_activations_give_one():
    a, _ = correlated(30, 30, 1000)
    result = svcca(a, a.copy())
    assert result.mean == pytest.approx(1.0, abs=1e-6)
    assert torch.all(result.coefs > 1 - 1e-6)
    assert linear_cka(a.T, a.T.copy()) == pytest.approx(1.0, abs=1e-12)


def test_invertible_linear_map_gives_one_with_every_direction_kept():
    rng = np.random.default_rng(3)
    a, _ = correlated(25, 25, 2000)
    mild = orthogonal(25, rng) @ np.diag(np.linspace(0.5, 2.0, 25)) @ orthogonal(25, rng)
    assert svcca(a, mild @ a, keep=25).mean == pytest.approx(1.0, abs=1e-6)
    # A badly conditioned map (condition number 1e3): exact up to the regulariser, so 1 with epsilon = 0.
    harsh = orthogonal(25, rng) @ np.diag(np.logspace(0, 3, 25)) @ orthogonal(25, rng)
    assert svcca(a, harsh @ a, keep=25, epsilon=0.0).mean == pytest.approx(1.0, abs=1e-6)
    # CCA is invariant to it; CKA is not.
    assert linear_cka(a.T, (harsh @ a).T) < 0.95


def test_svcca_ignores_the_scale_of_activations():
    # cca_core rescales each covariance block by its largest entry, so epsilon is relative: activations of size
    # 1e-6 (variances 1e-12, below epsilon in absolute terms) are not thrown away.
    a, b = correlated(20, 30, 1500, seed=9)
    reference = svcca(a, b).mean
    assert svcca(1e-6 * a, b).mean == pytest.approx(reference, abs=1e-9)
    assert svcca(a, 1e6 * b).mean == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize('offset', [50.0, 1e7])
def test_large_neuron_means_do_not_cost_precision(offset):
    # The Gram matrix is centred as acts acts^T - n m m^T; a mean 1e7 times the spread would lose 12 of float64's
    # digits that way, so such activations are centred explicitly.
    a, b = correlated(30, 40, 1500, seed=10)
    shifted = a + offset * np.random.default_rng(11).uniform(0.5, 1.5, size=(30, 1))
    assert svcca(shifted, b).mean == pytest.approx(svcca(a, b).mean, abs=1e-9)
    assert svcca(shifted, b, keep=30).mean == pytest.approx(svcca_reference(a, b, keep=30), abs=1e-9)


def test_linear_cka_invariances():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2000, 6)) @ rng.standard_normal((6, 20)) * 3 + rng.standard_normal((2000, 20))
    q = orthogonal(20, rng)
    assert linear_cka(x, 7.5 * x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, x + 100.0) == pytest.approx(1.0, abs=1e-10)  # centred
    anisotropic = q @ np.diag(np.logspace(0, 1.5, 20)) @ orthogonal(20, rng)
    assert linear_cka(x, x @ anisotropic) < 0.9


def test_independent_noise_is_near_zero():
    # For independent Gaussian layers of p and q neurons over n datapoints the canonical correlations stay below
    # the Wachter edge sqrt(c1 (1 - c2)) + sqrt(c2 (1 - c1)), c = neurons / n (0.126 here); linear CKA is about
    # sqrt(p q) / n (0.004 here).
    p, q, n = 20, 20, 5000
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((p, n)), rng.standard_normal((q, n))
    c1, c2 = p / n, q / n
    edge = math.sqrt(c1 * (1 - c2)) + math.sqrt(c2 * (1 - c1))
    result = svcca(x, y, keep=p)
    assert result.mean < edge
    assert float(result.coefs.max()) < 1.25 * edge
    assert svcca(x, y).mean < edge
    assert linear_cka(x.T, y.T) < 2 * math.sqrt(p * q) / n


def test_symmetric_in_its_arguments():
    a, b = correlated(30, 45, 1500, seed=6)
    assert svcca(a, b).mean == pytest.approx(svcca(b, a).mean, abs=1e-12)
    assert svcca(a, b, keep=10).mean == pytest.approx(svcca(b, a, keep=10).mean, abs=1e-12)
    assert linear_cka(a.T, b.T) == pytest.approx(linear_cka(b.T, a.T), abs=1e-12)


@pytest.mark.parametrize('neurons1,neurons2,keep', [(40, 40, 0.99), (30, 50, 0.9), (64, 32, 10), (20, 35, 20)])
def test_matches_google_svcca_procedure(neurons1, neurons2, keep):
    a, b = correlated(neurons1, neurons2, 1500, seed=neurons1 + neurons2)
    ours = svcca(torch.from_numpy(a), torch.from_numpy(b), keep=keep)
    assert ours.mean == pytest.approx(svcca_reference(a, b, keep=keep), abs=1e-6)
    assert 0.3 < ours.mean < 1.0  # not a trivial case
    assert ours.coefs.dtype == torch.float64 and len(ours.coefs) == min(ours.kept1, ours.kept2)
    if isinstance(keep, int):
        assert (ours.kept1, ours.kept2) == (keep, keep)


def test_keep_share_of_variance_counts_squared_singular_values():
    rng = np.random.default_rng(7)
    scales = np.array([10.0, 5.0, 2.0, 1.0, 0.1, 0.1])  # variance shares 0.77, 0.19, 0.031, 0.0077, ...
    a = orthogonal(6, rng) @ (scales[:, None] * rng.standard_normal((6, 4000)))
    assert svcca(a, a, keep=0.5).kept1 == 1
    assert svcca(a, a, keep=0.95).kept1 == 2
    assert svcca(a, a, keep=0.99).kept1 == 3
    assert svcca(a, a, keep=1.0).kept1 == 6


def test_cka_gram_and_feature_forms_agree():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((30, 200)), rng.standard_normal((30, 150))  # few datapoints: Gram form
    x_big, y_big = np.repeat(x, 20, axis=0), np.repeat(y, 20, axis=0)  # each datapoint 20 times: same CKA,
    # computed in feature space (600 datapoints)
    w = rng.standard_normal((200, 150))
    small = linear_cka(x, x @ w + y)
    big = linear_cka(x_big, x_big @ w + y_big)
    assert small == pytest.approx(big, abs=1e-10)


def test_bad_inputs_raise_value_error():
    a, b = correlated(10, 10, 100)
    with pytest.raises(ValueError, match='need more datapoints'):
        svcca(np.ones((50, 40)) + np.random.default_rng(0).standard_normal((50, 40)), b[:, :40])
    with pytest.raises(ValueError, match='same number of datapoints'):
        svcca(a, b[:, :90])
    bad = a.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        svcca(bad, b)
    with pytest.raises(ValueError, match='NaN'):
        linear_cka(bad.T, b.T)
    with pytest.raises(ValueError, match='2-D'):
        svcca(a[None], b)
    with pytest.raises(ValueError, match='directions asked'):
        svcca(a, b, keep=11)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        svcca(a, b, keep=1.5)
    with pytest.raises(ValueError, match='no variance'):
        linear_cka(np.ones((100, 3)), b.T)


def test_conv_activations_shapes_and_order():
    t = torch.randn(2, 3, 4, 5)
    pos = conv_activations(t, 'positions')
    assert pos.shape == (3, 2 * 4 * 5)
    assert torch.equal(pos[:, 1 * 20 + 2 * 5 + 3], t[1, :, 2, 3])  # column b*H*W + h*W + w
    pooled = conv_activations(t, 'pooled')
    assert pooled.shape == (3, 2) and torch.allclose(pooled[:, 1], t[1].mean(dim=(1, 2)))
    assert conv_activations(torch.randn(7, 16)).shape == (16, 7)
    seq = torch.randn(2, 6, 8)
    assert conv_activations(seq).shape == (8, 12) and torch.equal(conv_activations(seq)[:, 6 + 4], seq[1, 4])
    assert conv_activations(seq, 'pooled').shape == (8, 2)
    with pytest.raises(ValueError):
        conv_activations(torch.randn(2, 3, 4, 5, 6))
    with pytest.raises(ValueError):
        conv_activations(t, 'flat')


# ---- models: collect_activations, layer_similarity ----

def image_loader(n: int = 32, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 1, 28, 28, generator=gen), torch.arange(n) % 10)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(1))


def resnet8(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(**SPEC)


def test_collect_activations_shapes_mode_and_copies():
    model = resnet8(0)
    model.train()
    acts = collect_activations(model, image_loader(), LAYERS, max_batches=1)
    assert acts['layer1'].shape == (16, 16, 28, 28) and acts['layer3'].shape == (16, 64, 7, 7)
    assert acts['fc'].shape == (16, 10)
    assert model.training  # mode restored
    # A later in-place ReLU must not change what was captured at the tapped module's output.
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True))
    taken = collect_activations(net, [torch.randn(64, 4)], ['0'])
    assert (taken['0'] < 0).any()


@pytest.mark.parametrize('method', ['svcca', 'cka'])
def test_layer_similarity_self_is_one_and_other_init_is_lower(method):
    a, b = resnet8(0), resnet8(1)
    loader = image_loader(shuffle=True)  # each batch goes to both models, so shuffling cannot misalign them
    rows = layer_similarity(a, resnet8(0), loader, LAYERS, method=method, max_datapoints=3000)
    assert [r['layer'] for r in rows] == LAYERS
    for r in rows:
        assert r['similarity'] == pytest.approx(1.0, abs=1e-5), r
    by_layer = {r['layer']: r for r in rows}
    assert by_layer['layer1']['datapoints'] == 3000  # 32 images x 784 positions, sampled
    assert by_layer['layer3']['datapoints'] == 32 * 49 and by_layer['fc']['datapoints'] == 32
    assert by_layer['layer3']['neurons'] == 64
    other = layer_similarity(a, b, loader, LAYERS, method=method, max_datapoints=3000)
    for r in other:
        assert 0.0 < r['similarity'] < 0.99, r


def test_layer_similarity_errors():
    a, b = resnet8(0), resnet8(1)
    with pytest.raises(KeyError, match='layer4'):
        layer_similarity(a, b, image_loader(), ['layer4'])
    with pytest.raises(ValueError, match='layer3: .*64 neurons'):  # pooled: 32 images for 64 channels
        layer_similarity(a, b, image_loader(), ['layer3'], conv_mode='pooled')


def test_heatmap_writes_png(tmp_path):
    columns = {'ep 1': {'layer1': 0.9, 'fc': 0.2}, 'ep 5': [{'layer': 'layer1', 'similarity': 0.95},
                                                             {'layer': 'layer2', 'similarity': 0.5}]}
    path = similarity_heatmap(columns, tmp_path / 'map.png', xlabel='epoch')
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 2000


# ---- the command ----

@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    from tests.helpers.tiny_data import write_fashion_mnist

    root = tmp_path_factory.mktemp('compare')
    data = root / 'data'
    write_fashion_mnist(data, n_train=16, n_test=32)
    cfg = tiny_config(data, root / 'run')
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(**cfg['model'])
        paths.append(root / f'model{seed}.pt')
        torch.save({'state': {'model': model.state_dict()}}, paths[-1])
    return root, data, paths


def run_command(root: Path, data: Path, a: Path, b: Path, *extra: str) -> int:
    return compare_models.main(['-f', str(compare_models.REPO / 'yamls/fashion_mnist/resnet8.yaml'),
                                '--a', str(a), '--b', str(b), '--out', str(root / 'out'), '--device', 'cpu',
                                '--max-datapoints', '4000', *extra, *tiny_overrides(data, root / 'run')])


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {row['layer']: row for row in csv.DictReader(f)}


def test_compare_models_end_to_end(checkpoints):
    root, data, (a, b) = checkpoints
    assert run_command(root, data, a, a, '--layers', *LAYERS) == 0
    same = read_csv(root / 'out' / 'similarity.csv')
    assert list(same) == LAYERS
    assert all(float(r['similarity']) == pytest.approx(1.0, abs=1e-5) for r in same.values())
    assert run_command(root, data, a, b, '--layers', *LAYERS, '--method', 'svcca', '--keep', '0.99') == 0
    rows = read_csv(root / 'out' / 'similarity.csv')
    assert all(0.0 < float(rows[layer]['similarity']) < 0.99 for layer in LAYERS[:3])
    # The tiny images differ mainly in brightness: 99% of the logits' variance lies in 1-2 directions, which two
    # random networks share, so fc is near 1 here; it is still computed from the checkpoints' own weights.
    assert 0.0 < float(rows['fc']['similarity']) <= 1.0 and int(rows['fc']['kept_a']) <= 10
    assert rows['layer1']['datapoints'] == '4000' and rows['fc']['datapoints'] == '32'
    assert rows['layer2']['neurons'] == '32' and int(rows['layer2']['kept_a']) <= 32
    md = (root / 'out' / 'similarity.md').read_text()
    assert '| layer3 |' in md and 'svcca' in md
    assert (root / 'out' / 'similarity.png').read_bytes()[:4] == b'\x89PNG'


def test_compare_models_bad_input_exits_2(checkpoints, capsys):
    root, data, (a, b) = checkpoints
    assert run_command(root, data, a, root / 'missing.pt', '--layers', 'fc') == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: --b: checkpoint file not found') and '\n' not in err
    assert run_command(root, data, a, b, '--layers', 'layer1', 'layer9') == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: no module named') and 'layer9' in err and '\n' not in err


def test_readme_example_runs(tmp_path, monkeypatch):
    readme = Path(__file__).resolve().parents[2] / 'algorithms' / 'analysis' / 'README.md'
    blocks = re.findall(r'```python\n(.*?)```', readme.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(readme), 'exec'), {'__name__': 'readme'})
    assert (tmp_path / 'similarity.png').is_file()


def test_compare_models_refuses_bad_checkpoint_files_in_one_line(checkpoints, capsys, tmp_path):
    """A crafted, random, empty or truncated --a/--b is one error line and exit 2 (it was a torch traceback), told
    apart as 'unsafe' or 'not a checkpoint' by the check train.py uses; no output is written."""
    import shutil

    from tests.helpers.bad_checkpoints import EXPECTED, write_bad_checkpoints

    root, data, (a, _) = checkpoints
    shutil.rmtree(root / 'out', ignore_errors=True)  # the end-to-end test's output
    for kind, path in write_bad_checkpoints(tmp_path / 'bad').items():
        assert run_command(root, data, a, path, '--layers', 'fc') == 2, kind
        err = capsys.readouterr().err.strip()
        assert err.startswith(f'error: --b: {path} ') and EXPECTED[kind] in err and '\n' not in err, err
        assert not (root / 'out').exists()
