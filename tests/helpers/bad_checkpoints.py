"""Files that are not checkpoints, or are unsafe ones, for the tests of every command that reads a checkpoint."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import torch


class Boom:
    """Unpickling this runs code: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ('echo pwned',))


# kind -> what the one error line must say about it
EXPECTED = {
    'empty': 'is empty (0 bytes): not a checkpoint',
    'random': 'is not a checkpoint (4,096 bytes)',
    'truncated': 'is not a checkpoint',
    'crafted': 'was refused as unsafe by weights_only loading',
    'crafted_pickle': 'was refused as unsafe by weights_only loading',
}


def write_bad_checkpoints(folder: Path) -> dict[str, Path]:
    """One file of each kind in ``EXPECTED`` under ``folder``: an empty file, 4 KiB of random bytes, the first half of
    a real checkpoint, a torch checkpoint holding a callable, and a bare (non-torch) pickle of one."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f'{kind}.pt' for kind in EXPECTED}
    paths['empty'].write_bytes(b'')
    paths['random'].write_bytes(random.Random(0).randbytes(4096))
    good = folder / 'good.pt'
    torch.save({'state': {'model': {'w': torch.zeros(4096)}}}, good)
    data = good.read_bytes()
    paths['truncated'].write_bytes(data[:len(data) // 2])
    torch.save({'state': {'model': {}}, 'payload': Boom()}, paths['crafted'])
    paths['crafted_pickle'].write_bytes(pickle.dumps(Boom(), protocol=2))
    return paths
