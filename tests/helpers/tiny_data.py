"""Tiny datasets written in the real on-disk formats the loaders of ``recipes.data.registry`` read.

Every image carries a learnable signal: its brightness grows with its label (plus noise), so a test can check
that a model learns. Labels cycle through the classes (``i % num_classes``). Each writer returns the labels it
wrote, per split, in file order.
"""
from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def labels_for(n: int, num_classes: int) -> np.ndarray:
    """Labels 0, 1, ..., num_classes-1, 0, 1, ... (n of them)."""
    return np.arange(n, dtype=np.int64) % num_classes


def images_for(labels: np.ndarray, num_classes: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint8 images of ``shape`` each, mean brightness 40 + 180 * label / (classes - 1), noise +-20."""
    rng = np.random.default_rng(seed)
    base = 40 + 180 * labels.astype(np.float64) / max(1, num_classes - 1)
    noise = rng.uniform(-20, 20, size=(len(labels), *shape))
    return np.clip(base.reshape(-1, *([1] * len(shape))) + noise, 0, 255).astype(np.uint8)


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    """An idx ubyte file: big-endian int32 magic, dimensions, then the uint8 data."""
    with open(path, 'wb') as f:
        f.write(struct.pack(f'>{1 + array.ndim}i', magic, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: str | Path, n_train: int = 64, n_test: int = 32) -> dict[str, np.ndarray]:
    """Write un-gzipped Fashion-MNIST idx files (28x28, 10 classes) under ``root/FashionMNIST/raw/``."""
    raw = Path(root) / 'FashionMNIST' / 'raw'
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (('train', 'train', n_train), ('test', 't10k', n_test)):
        labels = labels_for(n, 10)
        _write_idx(raw / f'{prefix}-images-idx3-ubyte', 2051, images_for(labels, 10, (28, 28), seed=n))
        _write_idx(raw / f'{prefix}-labels-idx1-ubyte', 2049, labels)
        written[split] = labels
    return written


def write_cifar(root: str | Path, name: str = 'cifar10', n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    """Write CIFAR python-pickle batches as the published archives hold them.

    ``cifar10``: ``cifar-10-batches-py/data_batch_1..5`` (train split over five batches), ``test_batch``,
    ``batches.meta``; ``cifar100``: ``cifar-100-python/train``, ``test``, ``meta`` with fine and coarse labels.
    Rows are 3072 uint8 values, channel-major (R plane, G plane, B plane) of a 32x32 image.
    """
    num_classes = 10 if name == 'cifar10' else 100
    folder = Path(root) / ('cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python')
    folder.mkdir(parents=True, exist_ok=True)
    written = {}

    def batch(labels: np.ndarray, seed: int, tag: str) -> dict:
        data = images_for(labels, num_classes, (3, 32, 32), seed=seed).reshape(len(labels), 3072)
        entry = {'batch_label': tag, 'data': data, 'filenames': [f'{i}.png' for i in range(len(labels))]}
        if name == 'cifar10':
            entry['labels'] = labels.tolist()
        else:
            entry['fine_labels'], entry['coarse_labels'] = labels.tolist(), (labels // 5).tolist()
        return entry

    def dump(obj: dict, file: str) -> None:
        with open(folder / file, 'wb') as f:
            pickle.dump(obj, f)

    written['train'], written['test'] = labels_for(n_train, num_classes), labels_for(n_test, num_classes)
    if name == 'cifar10':
        for i, part in enumerate(np.array_split(written['train'], 5), start=1):
            dump(batch(part, seed=i, tag=f'training batch {i} of 5'), f'data_batch_{i}')
        dump(batch(written['test'], seed=0, tag='testing batch 1 of 1'), 'test_batch')
        dump({'label_names': [f'class{i}' for i in range(10)], 'num_cases_per_batch': 10000, 'num_vis': 3072},
             'batches.meta')
    else:
        dump(batch(written['train'], seed=1, tag='training batch 1 of 1'), 'train')
        dump(batch(written['test'], seed=0, tag='testing batch 1 of 1'), 'test')
        dump({'fine_label_names': [f'fine{i:02d}' for i in range(100)],
              'coarse_label_names': [f'coarse{i:02d}' for i in range(20)]}, 'meta')
    return written


def _class_names(classes: int | Sequence[str]) -> list[str]:
    return [f'class{i:03d}' for i in range(classes)] if isinstance(classes, int) else list(classes)


def write_imagefolder(root: str | Path, n_per_class: int = 4, classes: int | Sequence[str] = 2, size: int = 32,
                      split: str = 'train') -> dict[str, np.ndarray]:
    """Write RGB PNGs as ``root/<split>/<class>/<i>.png``; labels are indices of the sorted class names."""
    names = sorted(_class_names(classes))
    labels = np.repeat(np.arange(len(names)), n_per_class)
    images = images_for(labels, len(names), (size, size, 3), seed=size)
    for i, (label, image) in enumerate(zip(labels, images)):
        folder = Path(root) / split / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f'{i:05d}.png')
    return {split: labels}


def write_mds(root: str | Path, split: str = 'train', n: int = 16, size: int = 32,
              num_classes: int = 2) -> dict[str, np.ndarray]:
    """Write MDS shards to ``root/<split>`` with columns ``x`` (JPEG-encoded RGB image) and ``y`` (int label)."""
    from streaming import MDSWriter

    labels = labels_for(n, num_classes)
    images = images_for(labels, num_classes, (size, size, 3), seed=n)
    with MDSWriter(out=str(Path(root) / split), columns={'x': 'jpeg', 'y': 'int'}) as writer:
        for label, image in zip(labels, images):
            writer.write({'x': Image.fromarray(image), 'y': int(label)})
    return {split: labels}


# --- text ------------------------------------------------------------------------------------------------------------
_WORDS = ('the', 'people', 'of', 'nation', 'congress', 'shall', 'union', 'state', 'peace', 'war', 'trade', 'law',
          'freedom', 'government', 'citizens', 'year', 'great', 'public', 'duty', 'country', 'we', 'our', 'and', 'a')


def text_documents(n_docs: int, words: int = 60, seed: int = 0) -> list[str]:
    """Pseudo-English documents: ``words`` words drawn from a small vocabulary, sentences of 6 words."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        tokens = [str(w) for w in rng.choice(_WORDS, size=words)]
        docs.append(' '.join(t + ('.' if (i + 1) % 6 == 0 else '') for i, t in enumerate(tokens)))
    return docs


def write_text_corpus(root: str | Path, n_docs: int = 6, words: int = 60,
                      splits: Sequence[str] = ('train', 'validation', 'test')) -> dict[str, list[str]]:
    """C4-style JSON lines ``<root>/<split>.jsonl`` (``{"text": ...}`` a line); returns the texts per split."""
    import json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, split in enumerate(splits):
        written[split] = text_documents(n_docs, words, seed=i)
        (root / f'{split}.jsonl').write_text(''.join(json.dumps({'text': t}) + '\n' for t in written[split]))
    return written


def write_tokenizer(folder: str | Path, vocab_size: int = 120) -> Path:
    """A BERT WordPiece tokenizer trained on :func:`text_documents`, saved with ``save_pretrained``."""
    from recipes.data.prepare_text import train_wordpiece

    return train_wordpiece(text_documents(20), folder, vocab_size=vocab_size)


def write_glue_tasks(root: str | Path, n: int = 8) -> Path:
    """Every GLUE task in the local layout (``<root>/<task>/<split>.jsonl``, GLUE's column names): ``n`` rows of
    pseudo-English per labelled split, labels cycling through the classes (STS-B: scores in [0, 5])."""
    import json

    from recipes.data.text.glue_tasks import TASKS

    root = Path(root)
    for task in TASKS.values():
        for j, split in enumerate(('train', *task.eval_splits)):
            docs = text_documents(n * len(task.text_columns), words=8, seed=j)
            rows = []
            for i in range(n):
                row = {c: docs[i * len(task.text_columns) + k] for k, c in enumerate(task.text_columns)}
                row['label'] = 5.0 * (i % 6) / 5 if task.is_regression else i % task.num_labels
                rows.append({**row, 'idx': i})
            (root / task.name).mkdir(parents=True, exist_ok=True)
            (root / task.name / f'{split}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return root
