"""An ImageFolder tree in, the ``imagenet_mds`` dataset's MDS shards out:
``python -m recipes.prepare_data imagenet --source /data/imagenet --out /data/imagenet-mds [--workers 4]``.

``<source>/<split>/<class>/<image>`` (``train`` and ``val``; the class index is the position of the class folder in
sorted order, and the files of a split are taken in torchvision ``ImageFolder``'s order, by its own functions) becomes
``<out>/<split>/`` with one merged ``index.json``: mosaicml-streaming MDS shards with the columns the loader reads,
``x`` (``jpeg``) and ``y`` (``int``). A JPEG file is stored as its own bytes, never re-encoded (streaming's ``jpeg``
encoding reads the file of a PIL ``JpegImageFile``); any other format is converted to RGB, as ``ImageFolder``'s
loader converts it, and JPEG-encoded once at quality :data:`QUALITY` without chroma subsampling (ImageNet holds
one such file; streaming's own encoding of a decoded image would use PIL's defaults, quality 75 and 4:2:0). Every
image is decoded once, at an eighth of its size for a JPEG, so that a corrupt or truncated file fails here, named,
and not in the middle of a training run.

Resumable: a split's sorted file list is cut into chunks of ``chunk_size`` images; worker processes write each chunk
with its own ``MDSWriter`` into ``chunk-NNNNN.tmp/``, renamed ``chunk-NNNNN/`` when complete, and
``streaming.base.util.merge_index`` joins the chunks' indexes into ``<split>/index.json`` (so the shards keep the
file order). A rerun skips every finished chunk, rewrites an interrupted one (its ``.tmp`` folder is discarded) and
writes nothing at all once a split is done. ``<split>/conversion.json`` records what the chunks were cut from (the
classes, the file list's digest, the chunk size): a rerun over another tree or chunk size is refused.

Bad input (no source folder, a split without class folders or images, splits with different classes, an unreadable
image, an output holding something else) is one ``RuntimeError`` naming it, which ``recipes.prepare_data`` prints as
one ``error:`` line (exit 2). The tree is checked before anything is written; an image found unreadable stops the
conversion with the chunks finished so far kept for the rerun, no partial chunk and no index left behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image

from recipes.data.prepared_files import reading, written

__all__ = ['SPLITS', 'CHUNK_SIZE', 'CONVERSION_FILE', 'default_workers', 'convert_imagenet']

log = logging.getLogger(__name__)

SPLITS = ('train', 'val')  # the splits the imagenet_mds loader accepts
CHUNK_SIZE = 5000  # images per chunk: the unit of work of a worker and of resuming (ImageNet: 257 + 10 chunks)
CONVERSION_FILE = 'conversion.json'
COLUMNS = {'x': 'jpeg', 'y': 'int'}  # what recipes.data.registry's StreamingImages reads
QUALITY = 95  # JPEG quality of an image that was not a JPEG file


def default_workers() -> int:
    """A few worker processes: 4, or fewer on a machine with fewer cores."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class _Split:
    """One split's plan: its files in ImageFolder order and where its chunks go."""

    name: str
    root: Path
    out: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    chunk_size: int

    @cached_property
    def record(self) -> dict[str, Any]:
        rel = '\n'.join(os.path.relpath(path, self.root) for path, _ in self.samples)
        return {'classes': self.classes, 'images': len(self.samples), 'chunk_size': self.chunk_size,
                'files_sha256': hashlib.sha256(rel.encode()).hexdigest(), 'columns': COLUMNS}

    def chunk(self, i: int) -> Path:
        return self.out / f'chunk-{i:05d}'

    def chunk_samples(self, i: int) -> list[tuple[str, int]]:
        return self.samples[i * self.chunk_size:(i + 1) * self.chunk_size]

    @property
    def chunks(self) -> range:
        return range((len(self.samples) + self.chunk_size - 1) // self.chunk_size)


def _plan(source: Path, out: Path, splits: Sequence[str], chunk_size: int) -> list[_Split]:
    """Every split's file list, checked, and its output checked against an earlier conversion; writes nothing."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not source.is_dir():
        raise RuntimeError(f'imagenet: --source {source}: no such folder (expected <source>/<split>/<class>/<image>)')
    plans = []
    for split in splits:
        folder = source / split
        if not folder.is_dir():
            raise RuntimeError(f'imagenet: {folder}: no such folder (expected the {split} split, <class>/<image>)')
        try:
            classes, class_to_idx = find_classes(folder)
            samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as e:  # no class folder, or a class folder without an image
            raise RuntimeError(f'imagenet: {folder}: {" ".join(str(e).split())} (a flat folder of images, such as '
                               "ImageNet's published val/, must first be sorted into class folders)") from None
        if plans and classes != plans[0].classes:
            differ = sorted(set(classes) ^ set(plans[0].classes))[:3]
            raise RuntimeError(f'imagenet: {folder} has other classes than {source / plans[0].name} (e.g. '
                               f'{", ".join(differ) or "another order"}); every split needs the same class folders')
        plan = _Split(split, folder, out / split, classes, samples, chunk_size)
        _check_output(plan)
        plans.append(plan)
    return plans


def _check_output(plan: _Split) -> None:
    """Refuse an output split folder that holds something other than (part of) this conversion."""
    if not plan.out.exists() or (plan.out.is_dir() and not any(plan.out.iterdir())):
        return
    record = plan.out / CONVERSION_FILE
    if not record.is_file():
        raise RuntimeError(f'imagenet: --out {plan.out} exists and holds no {CONVERSION_FILE}: not a conversion '
                           'of this command; remove it or choose another --out')
    with reading(record, 'imagenet'):
        done = json.loads(record.read_text())
    differ = [key for key, value in plan.record.items() if done.get(key) != value]
    if differ:
        raise RuntimeError(f'imagenet: --out {plan.out} holds a conversion of another tree or chunk size (its '
                           f'{", ".join(differ)} differ); remove it or choose another --out')


def _image(path: str, scratch: Path) -> Image.Image:
    """The image for the ``x`` column, a JPEG file opened (streaming's ``jpeg`` encoding stores the file's bytes):
    ``path`` itself, or anything else converted to RGB and saved as JPEG into ``scratch``. Decoded here (a JPEG at
    an eighth of its size) so that a corrupt file is an error naming it."""
    with reading(path, 'imagenet'):
        image = Image.open(path)
        if image.format != 'JPEG':
            with image:
                image.convert('RGB').save(scratch, format='JPEG', quality=QUALITY, subsampling=0)
            return Image.open(scratch)
        image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
        return image


def _write_chunk(final: Path, samples: list[tuple[str, int]]) -> int:
    """Write ``samples`` (path, label) into ``<final>.tmp/`` and rename it ``final`` when complete; returns their
    count. A ``.tmp`` folder left by an interrupted run is discarded first, and removed whatever stops the writing."""
    from streaming import MDSWriter

    tmp = final.with_name(final.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with MDSWriter(out=str(tmp), columns=COLUMNS) as writer:
            scratch = tmp / 'converted.jpg'
            for path, label in samples:
                image = _image(path, scratch)
                writer.write({'x': image, 'y': label})
                image.close()
        scratch.unlink(missing_ok=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(samples)


def _merge(plan: _Split) -> None:
    """Join the chunks' indexes into ``<split>/index.json`` (written beside, then renamed) and check its count."""
    from streaming.base.util import merge_index

    tmp = plan.out / 'index.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        logging.disable(logging.WARNING)  # merge_index warns on the root logger of the temporary folder it uses
        try:
            merge_index([str(plan.chunk(i) / 'index.json') for i in plan.chunks], str(tmp))
        finally:
            logging.disable(logging.NOTSET)
        count = sum(shard['samples'] for shard in json.loads((tmp / 'index.json').read_text())['shards'])
        if count != len(plan.samples):
            raise RuntimeError(f'imagenet: {plan.out}: the chunks hold {count} images, expected '
                               f'{len(plan.samples)}; remove the folder and convert again')
        (tmp / 'index.json').replace(plan.out / 'index.json')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info('imagenet: %s: %d images of %d classes in %d chunks', plan.out, len(plan.samples), len(plan.classes),
             len(plan.chunks))


def _remove_if_unstarted(plan: _Split, out: Path, out_existed: bool) -> None:
    """After a failure: a split folder holding no finished chunk goes (with ``out``, if this run made it and it is
    left empty), so that a run stopped by a bad image at its start leaves nothing behind."""
    if plan.out.is_dir() and not any(p.name.startswith('chunk-') for p in plan.out.iterdir()):
        shutil.rmtree(plan.out, ignore_errors=True)
    if not out_existed and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, forked where the platform can (the workers need nothing more than this process imported:
    no slow re-import per worker); before any thread of the parent starts (the progress bar's)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context('fork' if 'fork' in methods else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def convert_imagenet(source: str | Path, out: str | Path, splits: Sequence[str] = SPLITS, workers: int | None = None,
                     chunk_size: int = CHUNK_SIZE, progress: bool | None = None) -> dict[str, int]:
    """Convert the ImageFolder tree ``source`` into ``imagenet_mds`` shards under ``out`` (the loader's ``path``);
    returns the image count per split. ``workers``: processes writing chunks (default :func:`default_workers`; 1:
    in this process). ``progress``: a tqdm bar on stderr (None: when stderr is a terminal). Raises RuntimeError
    (one line naming the file) for bad input; see the module docstring."""
    source, out = Path(source), Path(out)
    workers = default_workers() if workers is None else workers
    if workers < 1 or chunk_size < 1:
        raise RuntimeError(f'imagenet: --workers and --chunk-size must be >= 1, got {workers} and {chunk_size}')
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise RuntimeError(f'imagenet: --splits: expected some of {", ".join(SPLITS)}, got {", ".join(unknown)}')
    plans = _plan(source, out, list(dict.fromkeys(splits)), chunk_size)
    out_existed = out.exists()
    pending = [(plan, i) for plan in plans for i in plan.chunks if not plan.chunk(i).is_dir()]
    total = sum(len(plan.samples) for plan in plans)
    for plan in plans:
        log.info('imagenet: %s: %d images, %d classes, %d chunks of %d (%d finished before)', source / plan.name,
                 len(plan.samples), len(plan.classes), len(plan.chunks), chunk_size,
                 sum(plan.chunk(i).is_dir() for i in plan.chunks))
        if not (plan.out / CONVERSION_FILE).is_file():
            plan.out.mkdir(parents=True, exist_ok=True)
            with written(plan.out / CONVERSION_FILE) as tmp:
                tmp.write_text(json.dumps(plan.record, indent=1) + '\n')
        if any(p is plan for p, _ in pending):
            (plan.out / 'index.json').unlink(missing_ok=True)  # stale: a chunk it names is being rewritten
    try:
        _run(pending, workers, total, progress)
    except BaseException:
        for plan in plans:
            _remove_if_unstarted(plan, out, out_existed)
        raise
    for plan in plans:
        if not (plan.out / 'index.json').is_file():
            _merge(plan)
    return {plan.name: len(plan.samples) for plan in plans}


def _run(pending: list[tuple[_Split, int]], workers: int, total: int, progress: bool | None) -> None:
    """Write the ``pending`` chunks, ``workers`` at a time, under one progress bar over all images."""
    from tqdm import tqdm

    if not pending:
        log.info('imagenet: every chunk is finished; nothing to write')
        return
    pool = _pool(workers) if workers > 1 and len(pending) > 1 else None
    done = total - sum(len(plan.chunk_samples(i)) for plan, i in pending)
    bar = tqdm(total=total, initial=done, unit='img', desc='imagenet', file=sys.stderr,
               disable=None if progress is None else not progress)
    try:
        if pool is None:
            for plan, i in pending:
                bar.update(_write_chunk(plan.chunk(i), plan.chunk_samples(i)))
            return
        futures: set[Future] = {pool.submit(_write_chunk, plan.chunk(i), plan.chunk_samples(i))
                                for plan, i in pending}
        while futures:
            finished, futures = wait(futures, return_when=FIRST_EXCEPTION)
            for future in finished:
                bar.update(future.result())  # the first failure raises here; the rest are cancelled below
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
