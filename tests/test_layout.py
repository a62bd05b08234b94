"""The house's floor plan: the README's layout map names every folder of the project (and only those), no folder of
recipes/ or benchmarks/ grows past a dozen modules, and algorithms/ never imports recipes/ or benchmarks/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP = ('algorithms', 'recipes', 'yamls', 'benchmarks', 'tests')


def tracked_folders() -> set[str]:
    files = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    folders = set()
    for f in files:
        parts = Path(f).parts[:-1]
        if not parts or parts[0] not in TOP or parts[:2] == ('benchmarks', 'results') and len(parts) > 2:
            continue  # the results' run records are data, not rooms of the house
        folders.update('/'.join(parts[:i]) for i in range(1, len(parts) + 1))
    return folders


def mapped_folders() -> set[str]:
    """Folders of the README's layout block: indentation (2 spaces a level) gives the parent."""
    text = (REPO / 'README.md').read_text()
    block = text[text.index('## Layout'):]
    block = block[block.index('```\n') + 4:]
    block = block[:block.index('```')]
    stack: list[str] = []
    folders = set()
    for line in block.splitlines():
        m = re.match(r'( *)([\w.-]+)/\s', line + ' ')
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        folders.add('/'.join(stack))
    return folders


def test_the_readme_maps_every_folder_and_only_real_ones():
    real, mapped = tracked_folders(), mapped_folders()
    assert sorted(real - mapped) == [], 'folders missing from the README layout map'
    assert sorted(mapped - real) == [], 'the README layout map names folders that do not exist'


def test_no_folder_of_recipes_or_benchmarks_holds_more_than_12_modules():
    for top in ('recipes', 'benchmarks'):
        for folder in [REPO / top, *(p for p in (REPO / top).rglob('*') if p.is_dir())]:
            modules = [p for p in folder.glob('*.py') if p.name != '__init__.py']
            assert len(modules) <= 12, f'{folder.relative_to(REPO)} holds {len(modules)} modules'


def test_algorithms_never_imports_recipes_or_benchmarks():
    pattern = re.compile(r'^\s*(from|import)\s+(recipes|benchmarks)\b', re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / 'algorithms').rglob('*.py') if pattern.search(p.read_text())]
    assert offenders == []
