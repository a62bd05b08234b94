"""The teachers' own training cost behind a run, counted once per teacher run and recursively.

A run's teachers are checkpoints ``<teacher run_dir>/checkpoints/<file>.pt``; a teacher's cost is its own whole
training wall-clock (``train_wct_s`` of its ``summary.json``). A teacher that was itself distilled (a Matryoshka
generation) brings its teachers along, and so on: the cost behind a run is the sum over the whole chain of ancestors,
each teacher *run* counted once even if several runs of the chain, or several of its checkpoints, use it.

A student that read a teacher cache (``teachers: [{cache: DIR}]``, ``recipes/teacher_cache.py``) ran no teacher, but
the cache was produced once for it and the other students that read it: :class:`CacheIndex` finds each cache's
manifest (its ``production`` record and its teachers' checkpoints, whose training counts as any teacher's), and
:data:`CACHE_RULE` says how its production time is shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from benchmarks.core.records import RunFiles, checkpoint_run_dir, normalize_path

CACHE_FORMAT = 'teacher-cache/1'  # algorithms.distillation.teacher_cache.FORMAT (not imported: no torch here)
CACHE_RULE = (
    "A student that read a teacher cache is given, beside its time-to-target, one with the cache's production time "
    "added: the producer's wall-clock as the cache's manifest records it (summed over the sessions that wrote it), "
    "divided by the number of students of the same seed that read the same cache (listed below); the teachers' "
    "own training stays in the teachers' column. A run without a cache has nothing to add; a cache whose manifest or "
    "production record is missing leaves the column empty for its students."
)


@dataclass(frozen=True)
class TeacherNode:
    """What is known of one teacher run: its training wall-clock and its own teachers' checkpoints."""

    train_wct_s: Optional[float]
    teachers: tuple[str, ...] = ()
    name: str = ''


@dataclass
class TeacherCost:
    """The cost behind a run: ``seconds`` summed over ``ancestors`` (teacher run folders, each once); ``missing``
    lists the teacher run folders whose training time is not known (their cost is then not in ``seconds``)."""

    seconds: float = 0.0
    ancestors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


class TeacherIndex:
    """Teacher run folder (as the checkpoint paths name it) -> :class:`TeacherNode`.

    Built from run records (a run's ``config.yaml`` ``run_dir``, its ``summary.json`` and its config's teachers) and,
    for teachers without records, from Matryoshka manifests (each entry's ``checkpoint``, ``train_wct_s`` and
    ``teachers``). A teacher path that names no indexed folder exactly is matched by the longest indexed run key it
    ends with (records copied to another root keep their keys but not their absolute location).
    """

    def __init__(self) -> None:
        self.nodes: dict[str, TeacherNode] = {}
        self._by_key: dict[str, str] = {}

    def add(self, run_dir: str, node: TeacherNode, key: Optional[str] = None, overwrite: bool = True) -> None:
        run_dir = normalize_path(run_dir)
        if overwrite or run_dir not in self.nodes:
            self.nodes[run_dir] = node
        if key:
            self._by_key[normalize_path(key)] = run_dir

    @classmethod
    def build(cls, runs: Mapping[str, RunFiles], manifests: Iterable[Mapping[str, Any]] = ()) -> 'TeacherIndex':
        index = cls()
        for key, run in runs.items():
            index.add(run.configured_run_dir, TeacherNode(run.train_wct_s, tuple(run.teacher_checkpoints), key), key)
        for manifest in manifests:
            for generation in manifest.get('generations', []):
                for entry in generation:
                    if 'checkpoint' in entry:
                        node = TeacherNode(entry.get('train_wct_s'), tuple(entry.get('teachers') or ()),
                                           f"g{entry.get('generation')}/m{entry.get('member')}")
                        index.add(checkpoint_run_dir(entry['checkpoint']), node, overwrite=False)
        return index

    def find(self, checkpoint: str) -> tuple[str, Optional[TeacherNode]]:
        """The teacher run folder of ``checkpoint`` and what is known of it (``None`` if nothing)."""
        run_dir = checkpoint_run_dir(checkpoint)
        if run_dir in self.nodes:
            return run_dir, self.nodes[run_dir]
        parts = run_dir.replace(os.sep, '/').split('/')
        for n in range(len(parts)):  # longest suffix first
            suffix = '/'.join(parts[n:])
            if suffix in self._by_key:
                target = self._by_key[suffix]
                return target, self.nodes[target]
        return run_dir, None

    def cost(self, teacher_checkpoints: Iterable[str]) -> TeacherCost:
        """The summed training wall-clock of the teachers behind ``teacher_checkpoints``, recursively, each teacher
        run once."""
        result = TeacherCost()
        seen: set[str] = set()
        stack = list(teacher_checkpoints)[::-1]
        while stack:
            run_dir, node = self.find(stack.pop())
            if run_dir in seen:
                continue
            seen.add(run_dir)
            result.ancestors.append(run_dir)
            if node is None or node.train_wct_s is None:
                result.missing.append(run_dir)
            else:
                result.seconds += float(node.train_wct_s)
            if node is not None:
                stack.extend(list(node.teachers)[::-1])
        return result


def cache_folders(run: RunFiles) -> list[str]:
    """The teacher caches ``run`` read: the ``cache`` of each teacher item, in any algorithm of its config."""
    out: list[str] = []
    for section in (run.config.get('algorithms') or {}).values():
        for t in (section.get('teachers') or []) if isinstance(section, dict) else []:
            folder = t.get('cache') if isinstance(t, dict) else None
            if isinstance(folder, str) and normalize_path(folder) not in out:
                out.append(normalize_path(folder))
    return out


@dataclass
class CacheInfo:
    """One teacher cache as a report sees it: its production wall-clock (None if its manifest does not say), its
    teachers' checkpoints, and the runs that read it (filled by :func:`benchmarks.core.analysis.analyse`)."""

    key: str
    seconds: Optional[float] = None
    teachers: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    readers: list[str] = field(default_factory=list)

    @property
    def share(self) -> Optional[float]:
        """The production time each reader carries: ``seconds / len(readers)``."""
        return None if self.seconds is None or not self.readers else self.seconds / len(self.readers)

    @property
    def machine(self) -> Optional[str]:
        sessions = (self.manifest.get('production') or {}).get('sessions') or [{}]
        return (sessions[-1].get('machine') or {}).get('cpu')


class CacheIndex:
    """Cache folder (as a student's config names it) -> :class:`CacheInfo`, from the teacher-cache manifests found
    under a runs root (:func:`benchmarks.core.records.load_manifests`, by folder relative to it), matched by the
    longest of those folders the named one ends with (records copied elsewhere keep their relative layout)."""

    def __init__(self, manifests: Mapping[str, Mapping[str, Any]]) -> None:
        self.infos: dict[str, CacheInfo] = {}
        for key, manifest in manifests.items():
            if manifest.get('format') == CACHE_FORMAT:
                production = manifest.get('production')
                seconds = production.get('seconds') if isinstance(production, Mapping) else None
                teachers = [t['checkpoint'] for t in manifest.get('teachers') or []
                            if isinstance(t, Mapping) and isinstance(t.get('checkpoint'), str)]
                self.infos[normalize_path(key)] = CacheInfo(normalize_path(key), None if seconds is None else
                                                            float(seconds), teachers, dict(manifest))

    def find(self, folder: str) -> CacheInfo:
        """The cache a config's ``folder`` names (a new :class:`CacheInfo` without production time if its manifest
        is not under the root; the same object for every reader of one cache)."""
        folder = normalize_path(folder)
        parts = folder.replace(os.sep, '/').split('/')
        for n in range(len(parts)):  # longest suffix first
            suffix = '/'.join(parts[n:])
            if suffix in self.infos:
                return self.infos[suffix]
        return self.infos.setdefault(folder, CacheInfo(folder))
