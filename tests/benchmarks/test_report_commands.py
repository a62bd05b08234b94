"""Every report shares one command line (``python -m benchmarks.<family>.report ROOT --out DIR``): a missing, empty or
record-less ROOT is one ``error:`` line, exit status 2, and nothing written; and every ``python -m benchmarks....``
command the READMEs, the committed reports and the study YAML headers name exists and parses ``--help``, so that a
named command cannot rot."""
from __future__ import annotations

import importlib
import importlib.util
import re
import runpy
import sys
import warnings
from pathlib import Path

import pytest

from benchmarks.study.spec import REPO

FAMILIES = ('kd', 'bert', 'pruning', 'bias', 'blockwise')
STUDIES = {'kd': 'benchmarks/studies/fashion_mnist_long.yaml', 'bert': 'benchmarks/studies/bert_sotu.yaml'}
NAMED = re.compile(r'python -m (benchmarks(?:\.\w+)+)')


def named_modules() -> dict[str, list[str]]:
    """``{module: [files naming it]}`` over README.md, benchmarks/README.md, the committed reports and the header
    comment lines of the study YAMLs."""
    texts = {p: p.read_text() for p in [REPO / 'README.md', REPO / 'benchmarks' / 'README.md',
                                        *sorted((REPO / 'benchmarks' / 'results').rglob('*.md'))]}
    for p in sorted((REPO / 'benchmarks' / 'studies').glob('*.yaml')):
        texts[p] = '\n'.join(line for line in p.read_text().splitlines() if line.lstrip().startswith('#'))
    found: dict[str, list[str]] = {}
    for path, text in texts.items():
        for name in NAMED.findall(text):
            found.setdefault(name, []).append(str(path.relative_to(REPO)))
    return found


def test_the_commands_are_found_where_they_are_named():
    names = named_modules()
    assert {f'benchmarks.{f}.report' for f in FAMILIES} <= set(names)  # every report is named somewhere
    assert 'benchmarks.seeds_report' not in names  # a module that never existed


@pytest.mark.parametrize('module', sorted(named_modules()))
def test_every_named_command_exists_and_parses_help(module, monkeypatch, capsys):
    where = ', '.join(sorted(set(named_modules()[module])))
    spec = importlib.util.find_spec(module)
    assert spec is not None, f'{module} (named in {where}) does not exist'
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f'{module}.__main__') is not None, f'{module} (named in {where}): no __main__'
    monkeypatch.setattr(sys, 'argv', [module, '--help'])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as done:
        warnings.simplefilter('ignore', RuntimeWarning)  # runpy: the module was imported before
        runpy.run_module(module, run_name='__main__', alter_sys=True)
    assert done.value.code in (0, None), f'{module} --help (named in {where}) exited {done.value.code}'
    assert 'usage:' in capsys.readouterr().out


def _report(family: str, root: Path, out: Path, capsys) -> tuple[int, str]:
    main = importlib.import_module(f'benchmarks.{family}.report').main
    extra = ['--study', str(REPO / STUDIES[family])] if family in STUDIES else []
    code = main([str(root), *extra, '--out', str(out)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize('family', FAMILIES)
def test_missing_empty_or_recordless_root_is_one_error_line_and_writes_nothing(family, tmp_path, capsys):
    out = tmp_path / 'new' / 'report'
    code, err = _report(family, tmp_path / 'none', out, capsys)
    assert code == 2 and err == f"error: no such folder: {tmp_path / 'none'}\n"
    assert not (tmp_path / 'new').exists()

    empty = tmp_path / 'empty'
    empty.mkdir()
    code, err = _report(family, empty, out, capsys)
    assert code == 2 and err.startswith('error: ') and err.count('\n') == 1 and 'empty' in err
    assert not (tmp_path / 'new').exists()

    stray = tmp_path / 'stray'
    (stray / 'records').mkdir(parents=True)
    (stray / 'notes.txt').write_text('no records here')
    code, err = _report(family, stray, out, capsys)  # a new --out: left behind by no one
    assert code == 2 and err.startswith('error: ') and err.count('\n') == 1
    assert not (tmp_path / 'new').exists()

    kept = tmp_path / 'kept'  # an --out that was there (say a committed report) keeps what it held
    (kept / 'records').mkdir(parents=True)
    (kept / 'records' / 'original-seed0.json').write_text('{}')
    (kept / 'report.md').write_text('# before\n')
    code, err = _report(family, stray, kept, capsys)
    assert code == 2 and err.count('\n') == 1
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob('*')) == [
        'records', 'records/original-seed0.json', 'report.md']
    assert (kept / 'report.md').read_text() == '# before\n'
