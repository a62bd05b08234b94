"""``python -m recipes.prepare_data imagenet``: an ImageFolder tree into the ``imagenet_mds`` loader's shards, checked
by a round trip through the project's own loaders, resuming, and one-line refusals of bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from recipes import prepare_data
from recipes.data.registry import build_dataloader
from tests.helpers.tiny_data import write_imagefolder

CLASSES = ['dog', 'cat', 'emu']  # sorted: cat 0, dog 1, emu 2
PNG = 'train/emu/00014.png'  # the one file left a PNG (ImageNet too holds one): JPEG-encoded by the converter
GRAY = 'train/cat/00000.JPEG'  # a greyscale JPEG (as ImageNet holds some), stored as it is


def write_tree(root: Path) -> Path:
    """A tiny ImageFolder tree of JPEG files (ImageNet's format), one greyscale, one PNG: 15 train, 6 val images."""
    write_imagefolder(root, n_per_class=5, classes=CLASSES, size=40, split='train')
    write_imagefolder(root, n_per_class=2, classes=CLASSES, size=40, split='val')
    for png in sorted(root.rglob('*.png')):
        if png.relative_to(root).as_posix() != PNG:
            image = Image.open(png)
            image = image.convert('L') if png.with_suffix('.JPEG').relative_to(root).as_posix() == GRAY else image
            image.save(png.with_suffix('.JPEG'), quality=90)
            png.unlink()
    return root


def convert(source: Path, out: Path, *extra: str) -> int:
    return prepare_data.main(['imagenet', '--source', str(source), '--out', str(out), '--workers', '2', *extra])


def images(dataset: str, path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image and label of a split through ``build_dataloader``, in order, without augmentation."""
    cfg = {'dataset': dataset, 'path': str(path), 'split': split, 'image_size': 32, 'augment': False,
           'shuffle': False, 'drop_last': False}
    xs, ys = zip(*build_dataloader(cfg, batch_size=4))
    return torch.cat(xs), torch.cat(ys)


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in [root, *root.rglob('*')]}


@pytest.fixture(scope='module')
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp('imagenet'))


def test_round_trip_gives_the_folder_loaders_images_and_labels(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / 'mds'
    assert convert(tree, out, '--chunk-size', '4') == 0
    assert sorted(p.name for p in (out / 'train').iterdir()) == [
        'chunk-00000', 'chunk-00001', 'chunk-00002', 'chunk-00003', 'conversion.json', 'index.json']
    for split, n in (('train', 15), ('val', 6)):
        x_mds, y_mds = images('imagenet_mds', out, split)
        x_dir, y_dir = images('imagenet_folder', tree, split)
        assert y_mds.tolist() == y_dir.tolist() == sorted(y_dir.tolist()) and len(y_mds) == n
        assert set(y_mds.tolist()) == {0, 1, 2}
        jpeg = torch.ones(n, dtype=torch.bool)
        if split == 'train':
            jpeg[-1] = False  # the PNG, last of the last class: JPEG-encoded (lossy), so only close to its source,
            error = (x_mds[-1] - x_dir[-1]).abs()  # far closer than to its neighbour of the same class
            assert 0 < error.mean() < 0.25 * (x_mds[-1] - x_dir[-2]).abs().mean()
        assert torch.equal(x_mds[jpeg], x_dir[jpeg])  # JPEG files: not re-encoded, the same pixels exactly


def test_jpeg_files_are_stored_as_their_own_bytes(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / 'mds'
    assert convert(tree, out, '--splits', 'val') == 0
    assert not (out / 'train').exists()
    shards = b''.join(p.read_bytes() for p in sorted((out / 'val').rglob('*.mds')))
    sources = sorted((tree / 'val').rglob('*.JPEG'))
    assert len(sources) == 6 and all(p.read_bytes() in shards for p in sources)


def test_a_rerun_writes_nothing_and_an_interrupted_chunk_is_redone(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / 'mds'
    assert convert(tree, out, '--chunk-size', '4') == 0
    before = mtimes(out)
    assert convert(tree, out, '--chunk-size', '4') == 0
    assert mtimes(out) == before  # nothing rewritten, nothing added

    # An interruption while chunk 1 was being written: its temporary folder left half-written, no index yet.
    train = out / 'train'
    (train / 'chunk-00001').rename(train / 'chunk-00001.tmp')
    next((train / 'chunk-00001.tmp').glob('*.mds')).write_bytes(b'half')
    (train / 'index.json').unlink()
    before = mtimes(out)
    assert convert(tree, out, '--chunk-size', '4') == 0
    after = mtimes(out)
    assert not (train / 'chunk-00001.tmp').exists() and (train / 'index.json').is_file()
    redone = {k for k in after if k.startswith('train/chunk-00001/')}
    kept = [k for k in after if k in before and (out / k).is_file()]
    assert redone and kept and all(after[k] == before[k] for k in kept)  # only chunk 1 and the index written
    assert set(after) - set(before) == redone | {'train/chunk-00001', 'train/index.json'}
    x_mds, y_mds = images('imagenet_mds', out, 'train')
    x_dir, y_dir = images('imagenet_folder', tree, 'train')
    assert y_mds.tolist() == y_dir.tolist() and torch.equal(x_mds[:-1], x_dir[:-1])


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: imagenet: '), err
    return err[0]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / 'mds'
    assert convert(tmp_path / 'nowhere', out) == 2
    assert f'{tmp_path / "nowhere"}: no such folder' in one_error_line(capsys)
    assert prepare_data.main(['imagenet', '--out', str(out)]) == 2
    assert '--source is required' in one_error_line(capsys)

    flat = write_tree(tmp_path / 'flat')  # val/ as ImageNet publishes it: images, no class folders
    for image in list((flat / 'val').rglob('*.JPEG')):
        image.rename(flat / 'val' / image.name)
    for folder in CLASSES:
        (flat / 'val' / folder).rmdir()
    assert convert(flat, out) == 2
    assert f'{flat / "val"}: ' in (line := one_error_line(capsys)) and 'class folder' in line

    other = write_tree(tmp_path / 'other')
    (other / 'val' / 'emu').rename(other / 'val' / 'eel')
    assert convert(other, out) == 2
    assert 'other classes' in one_error_line(capsys)
    assert not out.exists()

    corrupt = write_tree(tmp_path / 'corrupt')
    bad = corrupt / 'val' / 'dog' / '00002.JPEG'
    good = bad.read_bytes()
    bad.write_bytes(good[:200])  # truncated
    assert convert(corrupt, out, '--splits', 'val') == 2
    assert str(bad) in one_error_line(capsys)
    assert not out.exists()  # val's one chunk failed: nothing left
    assert convert(corrupt, out, '--chunk-size', '2') == 2  # 11 chunks, two workers
    assert str(bad) in one_error_line(capsys)
    assert not list(out.rglob('*.tmp')) and not list(out.glob('*/index.json'))  # finished chunks only, no index
    assert not (out / 'val' / 'chunk-00001').exists()  # the bad image's chunk
    bad.write_bytes(good)  # repaired: the rerun completes the conversion
    assert convert(corrupt, out, '--chunk-size', '2') == 0
    assert images('imagenet_mds', out, 'val')[1].tolist() == [0, 0, 1, 1, 2, 2]


def test_a_rerun_over_another_tree_or_chunk_size_is_refused(tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / 'mds'
    assert convert(tree, out, '--splits', 'val') == 0
    before = mtimes(out)
    assert convert(tree, out, '--splits', 'val', '--chunk-size', '2') == 2
    assert 'chunk_size differ' in one_error_line(capsys)
    (out / 'train').mkdir()
    (out / 'train' / 'notes.txt').write_text('mine')
    assert convert(tree, out) == 2
    assert 'holds no conversion.json' in one_error_line(capsys)
    after = mtimes(out)
    assert {k: after[k] for k in before if k.startswith('val')} == \
        {k: v for k, v in before.items() if k.startswith('val')}
    assert [p.name for p in (out / 'train').iterdir()] == ['notes.txt']
