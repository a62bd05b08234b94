"""How every ``python -m recipes.prepare_data`` subcommand reads its sources and writes its files, so that a failure
is one error naming the file and leaves nothing half-written behind.

* :class:`reading`: a source that cannot be read (a corrupt or truncated ``.gz``, not a tar archive, a member
  missing, bad JSON or text) becomes one ``RuntimeError`` naming it, which the command prints as one ``error:`` line;
* :func:`written`: a file is written under a temporary name beside it, renamed when complete, and the temporary
  file removed whatever stops the writing (an unreadable source, a full disk, Ctrl-C).
"""
from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

__all__ = ['reading', 'written', 'UNREADABLE']

# What reading a corrupt source raises: gzip.BadGzipFile and truncated files (OSError, EOFError), tarfile errors,
# zlib errors, bad JSON or UTF-8 (ValueError), an expected member or key missing or of another type (KeyError,
# StopIteration, TypeError).
UNREADABLE = (OSError, EOFError, ValueError, TypeError, KeyError, StopIteration, tarfile.TarError, zlib.error)


class reading:  # noqa: N801 - used as a context manager, like open()
    """``with reading(source, what):`` turns an :data:`UNREADABLE` error of the block into one ``RuntimeError``
    ``'<what>: <source>: cannot read it (<error>)'``. A class, not ``@contextmanager``: a ``StopIteration`` from
    the block must be converted too."""

    def __init__(self, source: str | Path, what: str) -> None:
        self.source, self.what = source, what

    def __enter__(self) -> reading:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is None or not isinstance(error, UNREADABLE):
            return
        if isinstance(error, OSError) and error.errno is not None and not _names(error, self.source):
            return  # a system error of another file (a full disk, a folder not writable): not the source's fault
        detail = ' '.join(str(error).split()) or 'no detail'
        raise RuntimeError(f'{self.what}: {self.source}: cannot read it ({type(error).__name__}: {detail})') from error


def _names(error: OSError, source: str | Path) -> bool:
    return error.filename is not None and Path(error.filename) == Path(source)


@contextmanager
def written(path: Path) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to write; it becomes ``path`` when the block completes and is removed if it fails."""
    tmp = path.with_name(f'{path.name}.tmp')
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a successful replace
