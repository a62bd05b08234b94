"""The teachers' own training cost behind a run, counted once per teacher run and recursively.

A run's teachers are checkpoints ``<teacher run_dir>/checkpoints/<file>.pt``; a teacher's cost is its own whole
training wall-clock (``train_wct_s`` of its ``summary.json``). A teacher that was itself distilled (a Matryoshka
generation) brings its teachers along, and so on: the cost behind a run is the sum over the whole chain of ancestors,
each teacher *run* counted once even if several runs of the chain, or several of its checkpoints, use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from benchmarks.core.records import RunFiles, checkpoint_run_dir, normalize_path


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

