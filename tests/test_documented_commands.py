"""Every command the project writes for its users works as written: in README.md, benchmarks/README.md, the method
cards (algorithms/*/README.md), the committed reports (benchmarks/results/), the YAML comments under yamls/ and
benchmarks/studies/, and the usage lines of the commands' docstrings (recipes/*.py).

A command is ``composer [-n N] SCRIPT ...``, ``python SCRIPT ...``, ``python -m MODULE ...`` (also as
``.venv/bin/...``) or ``make TARGET``, found in markdown code (fenced lines and inline spans), in YAML comment lines
indented after ``#`` (``#   composer ...``) and inline spans in YAML comments, and in docstring lines indented by
four spaces and inline spans; a trailing backslash joins the next line, ``# ...`` is a comment, ``a && b`` are two
commands. Usage placeholders are read as usage: ``[optional ...]`` groups are dropped when they end in ``...`` or
hold a metavar (``[--k K]``) and unwrapped otherwise (``[a | b]``: ``a``), ``<name>`` and ``key=...`` are values
(a script or module with a ``<name>`` in it is a pattern, not checked), and a command abbreviated with a bare
``...`` is checked only for its entry point and paths; ``composer -n 8`` alone names the launcher, not a command.

For each command: its script, module or make target exists; every repository file it names (``yamls/...yaml``,
``benchmarks/studies/...yaml``, ``recipes/...py``, ...) exists (run outputs and user data need not); its arguments
parse with the entry point's own parser (run in process up to ``parse_args``, nothing after it runs); the YAML it
names loads with that command's loader and the overrides on the line (the loaders refuse unknown keys; for
``train.py`` the keys of the ``model`` and loader sections are checked too). Each entry point's ``--help`` exits 0.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
import runpy
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = ('composer', '.venv/bin/composer')
COMMAND = re.compile(r'(?:composer|\.venv/bin/composer|python3?|\.venv/bin/python|make)(?=\s|$)')
REPO_FILE = re.compile(r'(?:yamls|benchmarks|recipes|algorithms|tests)/[^\s<>]+\.(?:ya?ml|py)')
PLACEHOLDER = re.compile(r'(?<![\w./:-])[A-Z][A-Z0-9_]*(?![\w./:-])')  # a metavar: --k K, --world-size N
SPAN = re.compile(r'(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)', re.S)  # `code` or ``code``, closed by as many backticks


# --- extraction ---------------------------------------------------------------------------------------------------

def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines ending in a backslash joined with the next one; each kept with the number of its first line."""
    out: list[tuple[int, str]] = []
    pending: Optional[tuple[int, str]] = None
    for number, text in lines:
        if pending is not None:
            number, text = pending[0], pending[1] + ' ' + text.strip()
        pending = (number, text.rstrip()[:-1]) if text.rstrip().endswith('\\') else None
        if pending is None:
            out.append((number, text))
    return out + ([pending] if pending else [])


def _spans(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    """Inline code spans (single or double backticks, possibly over a line break), with their line numbers."""
    return [(first_line + text.count('\n', 0, m.start()), ' '.join(m.group(2).split())) for m in SPAN.finditer(text)]


def from_markdown(text: str) -> list[tuple[int, str]]:
    lines, fenced, prose, inside = text.splitlines(), [], [], False
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith('```'):
            inside = not inside
            prose.append('')
        elif inside:
            fenced.append((number, line.strip()))
            prose.append('')
        else:
            prose.append(line)
    return _joined(fenced) + _spans('\n'.join(prose))


def from_yaml(text: str) -> list[tuple[int, str]]:
    comments = [(n, line.lstrip()[1:]) for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith('#')]
    found = _joined([(n, c.strip()) for n, c in comments if c.startswith('   ')])  # '#   composer ...' lines
    blocks: list[list[tuple[int, str]]] = []  # consecutive comment lines: a span may run over a line break
    for n, c in comments:
        if blocks and blocks[-1][-1][0] == n - 1:
            blocks[-1].append((n, c))
        else:
            blocks.append([(n, c)])
    for block in blocks:
        found += _spans('\n'.join(c for _, c in block), block[0][0])
    return found


def from_docstring(source: str) -> list[tuple[int, str]]:
    module = ast.parse(source)
    doc, first = ast.get_docstring(module) or '', module.body[0].lineno if module.body else 1
    usage = [(first + i, line.strip()) for i, line in enumerate(doc.splitlines()) if line.startswith('    ')]
    return _joined(usage) + _spans(doc, first)


def sources() -> dict[Path, Callable[[str], list[tuple[int, str]]]]:
    """Every file whose commands are checked, with its extractor."""
    found: dict[Path, Callable[[str], list[tuple[int, str]]]] = {}
    for path in [REPO / 'README.md', REPO / 'benchmarks' / 'README.md', *sorted(REPO.glob('algorithms/*/README.md')),
                 *sorted((REPO / 'benchmarks' / 'results').rglob('*.md'))]:
        found[path] = from_markdown
    for path in [*sorted((REPO / 'yamls').rglob('*.yaml')), *sorted((REPO / 'benchmarks' / 'studies').glob('*.yaml'))]:
        found[path] = from_yaml
    for path in sorted((REPO / 'recipes').glob('*.py')):
        found[path] = from_docstring
    return found


# --- parsing ------------------------------------------------------------------------------------------------------

@dataclass
class Command:
    where: str                  # file:line
    text: str                   # as written (one command of an 'a && b' line)
    kind: str                   # 'script', 'module' or 'make'
    entry: str                  # recipes/train.py, recipes.prepare_data, or a make target list
    args: list[str] = field(default_factory=list)
    abbreviated: bool = False   # a bare '...' stands for arguments left out

    @property
    def label(self) -> str:
        return f'{self.where}: {self.text}'


def _usage(text: str) -> str:
    """Usage placeholders as values: ``<a b>`` and ``key=...`` -> ``<>``; optional ``[...]`` groups dropped when
    they end in ``...`` or hold a metavar (``[--k K]``), unwrapped otherwise, ``[a | b]`` and ``[--x a|b]`` read
    as their first alternative."""
    text = re.sub(r'<[^<>]*>', '<>', text)
    text = re.sub(r'=\.\.\.(?=\s|$)', '=<>', text)  # 'pretrained=...': a value to fill in
    out, i = '', 0
    while i < len(text):
        if text[i] == '[' and (i == 0 or text[i - 1].isspace()):
            depth, j = 0, i
            while j < len(text):
                depth += {'[': 1, ']': -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            if depth == 0:
                inner = text[i + 1:j].split('|')[0].strip()  # [a | b], [--x a|b]: the first alternative
                example = not text[i + 1:j].rstrip().endswith('...') and not PLACEHOLDER.search(inner)
                out += inner if example else ''
                i = j + 1
                continue
        out += text[i]
        i += 1
    return out


def parse(where: str, text: str) -> list[Command]:
    """The commands of one written line (none if it names a launcher or interpreter without a command)."""
    tokens = shlex.split(_usage(text), comments=True)
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in ('&&', ';'):
            parts.append([])
        else:
            parts[-1].append(token)
    commands = []
    for part in parts:
        if not part or not COMMAND.fullmatch(part[0]) or any('<>' in t for t in part[:3]):
            continue  # not a command, or a pattern ('python -m benchmarks.<family>.report')
        raw = ' '.join(part)
        if part[0] == 'make':
            commands.append(Command(where, raw, 'make', ' '.join(t for t in part[1:] if '=' not in t)))
            continue
        rest = part[1:]
        if part[0] in LAUNCHERS:
            while rest[:1] and rest[0] in ('-n', '--nproc'):
                rest = rest[2:]
        elif rest[:1] == ['-m'] and len(rest) > 1:
            commands.append(Command(where, raw, 'module', rest[1], rest[2:], '...' in rest[2:]))
            continue
        if not rest:  # 'composer -n 8', '.venv/bin/composer': the launcher named, no command
            continue
        commands.append(Command(where, raw, 'script', rest[0], rest[1:], '...' in rest[1:]))
    return commands


def documented_commands() -> list[Command]:
    found = []
    for path, extract in sources().items():
        rel = path.relative_to(REPO).as_posix()
        for number, text in extract(path.read_text()):
            if COMMAND.match(text):
                found += parse(f'{rel}:{number}', text)
    return found


COMMANDS = documented_commands()


# --- running a command's parser -----------------------------------------------------------------------------------

class Parsed(BaseException):
    """Raised by the patched ``parse_args`` with the namespace, so that nothing after the parser runs."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def run_parser(cmd: Command, args: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The command's entry point run in this process with ``args`` until its ``parse_args`` returns."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: Any, **k: Any) -> argparse.Namespace:
        raise Parsed(original(self, *a, **k))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_then_stop)
    monkeypatch.setattr(sys, 'argv', [cmd.entry, *args])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # runpy: the module was imported before
        try:
            if cmd.kind == 'module':
                runpy.run_module(cmd.entry, run_name='__main__', alter_sys=True)
            else:
                runpy.run_path(str(REPO / cmd.entry), run_name='__main__')
        except Parsed as done:
            return done.namespace
    raise AssertionError(f'{cmd.entry}: no argparse parser was reached')


# --- loaders ------------------------------------------------------------------------------------------------------

def _load_recipe(path: str, overrides: list[str]) -> None:
    """``train.py``'s loader, and the keys of the sections it leaves to their builders checked the same way."""
    from recipes.core.config import load_config
    from recipes.data.registry import resolve_options
    from recipes.models.registry import model_options

    cfg, plain = load_config(path, overrides), load_config(path)
    for override in overrides:
        key = override.split('=', 1)[0].strip("'\"")
        section, _, rest = key.partition('.')
        if section in ('train_loader', 'eval_loader') and rest:
            resolve_options(cfg[section], section)  # unknown option keys are refused
        elif section == 'model' and rest:
            assert rest.split('.')[0] in model_options(cfg['model']['name']), f'{key}: no such model option'
        elif rest:  # algorithm, optimizer, ... options: the recipe states the key it overrides
            node: Any = plain
            for part in key.split('.'):
                assert isinstance(node, dict) and part in node, f'{key}: not a key of {path}'
                node = node[part]


def _spec_loader(module: str, name: str = 'load_spec') -> Callable[[str, list[str]], Any]:
    return lambda path, overrides: getattr(importlib.import_module(module), name)(path, overrides)


def _load_study(path: str, overrides: list[str] | None = None) -> None:
    from benchmarks.study.spec import load_study
    load_study(path)


# the loader of the YAML each entry point reads: (argument's attribute, loader(path, overrides))
LOADERS: dict[str, tuple[str, Callable[[str, list[str]], Any]]] = {
    'recipes/train.py': ('file', _load_recipe),
    'recipes/compare_models.py': ('file', _load_recipe),
    'recipes/prune_pipeline.py': ('file', _spec_loader('recipes.prune_pipeline')),
    'recipes/matryoshka.py': ('file', _spec_loader('recipes.matryoshka')),
    'recipes/glue.py': ('file', _spec_loader('recipes.glue')),
    'recipes/blockwise.py': ('file', _spec_loader('recipes.pipelines.blockwise_config', 'load_blockwise')),
    'benchmarks.study': ('study', _load_study),
    'benchmarks.bert.study': ('study', _load_study),
}
OPTION_LOADERS = {'study': _load_study, 'recipe': _load_recipe}  # --study / --recipe of any command


@pytest.fixture
def no_user_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaders with their checks of user files off (checkpoints, data folders: run outputs and user data need
    not exist where the docs are tested); option names and values, and the repository's own files, are still
    checked."""
    from recipes.core import checkpoint_safety
    from recipes.data import registry

    replacements = [(checkpoint_safety.check_checkpoint, lambda key, path: None),
                    (registry.check_data, lambda cfg, key: registry.resolve_options(cfg, key))]
    for module in [m for m in list(sys.modules.values()) if m is not None]:
        for name, value in list(vars(module).items()):
            for original, replacement in replacements:
                if value is original:  # wherever it was imported by name
                    monkeypatch.setattr(module, name, replacement)


def _in_repo(path: Any) -> bool:
    return isinstance(path, str) and bool(REPO_FILE.fullmatch(path))


def make_targets() -> set[str]:
    return set(re.findall(r'^([\w.-]+)\s*:(?!=)', (REPO / 'Makefile').read_text(), flags=re.M))


# --- tests --------------------------------------------------------------------------------------------------------

def test_the_extractor_finds_the_documented_commands():
    found = {(c.where.split(':')[0], c.entry) for c in COMMANDS}
    assert ('README.md', 'train') in found and ('README.md', 'recipes/prune_pipeline.py') in found
    assert ('yamls/c4/bert_base_kd_100.yaml', 'recipes/train.py') in found
    assert ('recipes/text_to_mds.py', 'recipes.text_to_mds') in found
    assert ('benchmarks/results/svcca_speed.md', 'benchmarks/measurements/svcca_speed.py') in found
    kd = next(c for c in COMMANDS if c.where.startswith('yamls/c4/bert_base_kd_100.yaml') and 'teachers' in c.text)
    assert kd.args[-1].startswith('algorithms.knowledge_distillation.teachers=[')  # continuation joined, quotes off
    assert parse('x', 'python -m m [--a 1] [k=v ...] <a b> [x | y] [--s a|b] [--k K]  # note')[0].args == [
        '--a', '1', '<>', 'x', '--s', 'a']
    assert _spans('``a`` b ``c``\n`d`') == [(1, 'a'), (1, 'c'), (2, 'd')]
    assert parse('x', 'make data && composer -n 8 recipes/train.py -f a.yaml')[1].args == ['-f', 'a.yaml']
    assert parse('x', 'composer -n 8') == [] and parse('x', 'python -m a.b ...')[0].abbreviated


def check(cmd: Command, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Every check of one command; an AssertionError naming the file, line and command if one fails."""
    if cmd.kind == 'make':
        missing = set(cmd.entry.split()) - make_targets()
        assert not missing, f'{cmd.label}: no make target {", ".join(sorted(missing))} in the Makefile'
        return
    if cmd.kind == 'module':
        spec = importlib.util.find_spec(cmd.entry)
        assert spec is not None, f'{cmd.label}: no module {cmd.entry}'
        if spec.submodule_search_locations is not None:
            assert importlib.util.find_spec(f'{cmd.entry}.__main__'), f'{cmd.label}: package without __main__'
    else:
        assert (REPO / cmd.entry).is_file(), f'{cmd.label}: no script {cmd.entry}'
    for token in cmd.args:
        for value in token.split('=', 1)[-1].strip('[]').split(','):
            if _in_repo(value):
                assert (REPO / value).is_file(), f'{cmd.label}: {value} does not exist'
    if cmd.abbreviated:
        return
    try:
        ns = run_parser(cmd, cmd.args, monkeypatch)
    except SystemExit:
        error = capsys.readouterr().err.strip().splitlines()[-1:]
        raise AssertionError(f'{cmd.label}: its arguments do not parse: {" ".join(error)}') from None
    attr, load = LOADERS.get(cmd.entry, (None, None))
    named = [(getattr(ns, attr, None), getattr(ns, 'overrides', None) or [], load)] if attr else []
    named += [(getattr(ns, a, None), [], loader) for a, loader in OPTION_LOADERS.items() if a != attr]
    for path, overrides, loader in named:
        if path is not None and (Path(str(path)).is_absolute() or _in_repo(path)):
            try:
                loader(str(path), list(overrides))
            except Exception as e:  # noqa: BLE001 - the loader's one-line message is the failure
                raise AssertionError(f'{cmd.label}: {path} does not load: {e}') from None


@pytest.mark.parametrize('cmd', COMMANDS, ids=[c.label for c in COMMANDS])
def test_every_documented_command_works_as_written(cmd: Command, monkeypatch, capsys, no_user_files):
    check(cmd, monkeypatch, capsys)


BROKEN = {  # one mistake each, and what the failure says
    'composer recipes/train.py -f yamls/fashion_mnist/nope.yaml': 'nope.yaml does not exist',
    'composer recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml max_epochs=2': "unknown key 'max_epochs'",
    'composer recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml optimizer.lrr=0.1': 'optimizer.lrr: not a key',
    'composer recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml train_loader.skipp=5': 'skipp',
    'composer recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml model.widthz=3': 'model.widthz: no such model option',
    'python recipes/prune_pipeline.py -f yamls/pipelines/fashion_mnist/pruning_convnet.yaml seeds=1': "'seeds'",
    'python recipes/blockwise.py -f yamls/pipelines/fashion_mnist/blockwise_vgg.yaml schedule.worker=2': 'worker',
    'python recipes/glue.py -f yamls/pipelines/glue/tiny_local.yaml pretrained=x.pt taskz=[sst2]': 'taskz',
    'python -m benchmarks.study yamls/fashion_mnist/kd_kl.yaml': 'does not load',  # a recipe, not a study
    'python -m benchmarks.kd.report runs/x --study benchmarks/studies/gone.yaml --out o': 'gone.yaml does not exist',
    'python -m benchmarks.seeds_report runs/x': 'no module benchmarks.seeds_report',
    'python -m benchmarks.study benchmarks/studies/fashion_mnist_long.yaml --onlyy a': 'unrecognized arguments',
    'python -m recipes.prepare_data cifar10 --out data      (needs network once)': 'do not parse',
    'python recipes/trian.py': 'no script recipes/trian.py',
    'make trian': 'no make target trian',
}


@pytest.mark.parametrize('line', BROKEN)
def test_a_broken_line_fails_and_says_why(line: str, monkeypatch, capsys, no_user_files):
    with pytest.raises(AssertionError, match=re.escape(BROKEN[line])):
        for cmd in parse('broken.md:1', line):
            check(cmd, monkeypatch, capsys)


ENTRY_POINTS = sorted({(c.kind, c.entry) for c in COMMANDS if c.kind != 'make'})


@pytest.mark.parametrize('kind,entry', ENTRY_POINTS, ids=[e for _, e in ENTRY_POINTS])
def test_every_entry_point_parses_help(kind: str, entry: str, monkeypatch, capsys):
    cmd = Command('--help', '--help', kind, entry)
    monkeypatch.setattr(sys, 'argv', [entry, '--help'])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as done:
        warnings.simplefilter('ignore', RuntimeWarning)
        if kind == 'module':
            runpy.run_module(entry, run_name='__main__', alter_sys=True)
        else:
            runpy.run_path(str(REPO / entry), run_name='__main__')
    assert done.value.code in (0, None), f'{entry} --help exited {done.value.code}'
    assert 'usage:' in capsys.readouterr().out, cmd.label


def test_the_composer_launcher_is_installed_beside_this_python():
    assert any(c.text.startswith(LAUNCHERS) for c in COMMANDS)
    assert (Path(sys.executable).parent / 'composer').exists()
