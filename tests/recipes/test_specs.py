"""One spec loader for every YAML (recipes/core/schema.py): each kind of driver spec and a recipe accept ``base:``
and refuse an unknown key (top level and nested), a wrong type and a missing required key in one line naming the
dotted key, through the command's real entry point, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch
import yaml
from omegaconf import MISSING

from recipes import glue, matryoshka, prune_pipeline, train
from recipes import blockwise
from recipes.core.config import load_config, load_mapping
from recipes.core.errors import ConfigError
from recipes.core.schema import load_spec, union, validate
from recipes.pipelines.blockwise_config import load_blockwise
from tests.conftest import DEFAULT_YAML, tiny_overrides

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / 'yamls' / 'pipelines'


@dataclass
class Kind:
    """A kind of YAML: the real file, its loader, its command's ``main``, the key of its output folder."""

    path: Path
    load: Callable[..., dict[str, Any]]
    main: Callable[[list[str]], int]
    out_key: str
    change: tuple[str, Any]  # a key a variant changes, and its new value
    wrong_type: tuple[str, Any, str]  # (key, value, expected message)
    required: tuple[str, str]  # (dotted key removed, expected message)
    unknown_nested: tuple[dict[str, Any], str]  # (section added, expected message)


KINDS = {
    'prune_pipeline': Kind(
        PIPELINES / 'fashion_mnist/pruning_convnet.yaml', prune_pipeline.load_spec, prune_pipeline.main, 'out_dir',
        ('seed', 3), ('seed', 'abc', "seed: expected int, got str 'abc'"),
        ('recipe', "missing required key 'recipe'"),
        ({'finetune': {'optimizer.lrr': 0.1}}, "stage magnitude-s0.3: unknown key 'optimizer.lrr'")),
    'matryoshka': Kind(
        PIPELINES / 'fashion_mnist/matryoshka.yaml', matryoshka.load_spec, matryoshka.main, 'out_dir',
        ('generations', 1), ('generations', 'two', "generations: expected int, got str 'two'"),
        ('student_recipe', "missing required key 'student_recipe'"),
        ({'pool': [{'checkpoint': 'a.pt', 'ckpt': 'b.pt'}]}, "unknown key 'pool[0].ckpt'; allowed: checkpoint, "
                                                             'overrides')),
    'glue': Kind(
        PIPELINES / 'glue/tiny_local.yaml', glue.load_spec, glue.main, 'out_dir',
        ('seeds', [5]), ('seeds', ['a'], "seeds[0]: expected int, got str 'a'"),
        ('name', "missing required key 'name'"),
        ({'task_overrides': {'wnli': {}}}, "unknown key 'task_overrides.wnli'; allowed: mnli")),
    'blockwise': Kind(
        PIPELINES / 'fashion_mnist/blockwise_resnet8.yaml', load_blockwise, blockwise.main, 'run_dir',
        ('blockwise', {'epochs': 1}), ('schedule', {'workers': 'two'}, "schedule.workers: expected int, got str"),
        ('teacher.recipe', "missing required key 'teacher.recipe'"),
        ({'blockwise': {'bogus': 1}}, "unknown key 'blockwise.bogus'; allowed: alpha, batch_size")),
    'recipe': Kind(
        DEFAULT_YAML, load_config, train.main, 'run_dir',
        ('seed', 5), ('autoresume', 3, 'autoresume: expected bool, got int 3'),
        ('run_name', "missing required key 'run_name'"),
        ({'train_loader': {'shufle': True}}, "unknown key 'train_loader.shufle'; allowed: ")),
}


@pytest.fixture
def pretrained(tmp_path) -> Path:
    """A checkpoint file that weights-only loading accepts (the GLUE spec checks it when it loads)."""
    path = tmp_path / 'mlm.pt'
    torch.save({'state': {'model': {}}}, path)
    return path


def data_overrides(kind: str, root: Path) -> dict[str, Any]:
    """What points each kind at the tiny Fashion-MNIST (only the kinds whose checks look at the data)."""
    paths = {'train_loader.path': str(root), 'eval_loader.path': str(root), 'train_loader.subset': None}
    return {'prune_pipeline': {'overrides': paths}, 'blockwise': {'teacher': {'overrides': paths}}}.get(kind, {})


def variant(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / 'variant.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


def run_main(kind: str, spec: dict[str, Any], tmp_path: Path, fmnist_root: Path, capsys) -> str:
    """``main(['-f', spec])`` with the output folder in ``tmp_path``: exit status 2, exactly one ``error:`` line on
    stderr, nothing written; returns the line."""
    k = KINDS[kind]
    out = tmp_path / 'out'
    spec = {**spec, k.out_key: str(out)}
    argv = ['-f', str(variant(tmp_path, spec))]
    if kind == 'recipe':
        argv += [o for o in tiny_overrides(fmnist_root, out) if not o.startswith('run_dir=')]
    assert k.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: '), err
    assert not out.exists(), 'a folder was written before the error'
    return err.strip()


def without(path: Path, dotted: str) -> dict[str, Any]:
    """The real file (its ``base:`` chain merged) without the key ``dotted``."""
    spec = load_mapping(path)
    *parents, last = dotted.split('.')
    section = spec
    for name in parents:
        section = section[name]
    del section[last]
    return spec


@pytest.mark.parametrize('kind', KINDS)
def test_a_variant_with_base_loads_with_its_change(kind, tmp_path, fmnist_root, pretrained, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe paths in the specs are relative to the repository root
    k = KINDS[kind]
    key, value = k.change
    same = {'base': str(k.path), **(data_overrides(kind, fmnist_root) if kind == 'blockwise' else {})}
    changed = {**same, key: value}
    if kind == 'blockwise':  # both sections are mappings: the variant's keys merge over the base's
        changed['blockwise'] = {**value}
    extra = [f'pretrained={pretrained}'] if kind == 'glue' else []
    original = k.load(variant(tmp_path, same), extra)
    if kind != 'blockwise':
        assert original == k.load(k.path, extra)  # the base alone is the real file
    loaded = k.load(variant(tmp_path, changed), extra)
    if kind == 'blockwise':
        assert loaded['blockwise']['epochs'] == 1 and original['blockwise']['epochs'] == 4
        assert loaded['blockwise']['lr'] == original['blockwise']['lr'] == 2e-3  # the rest from the base
        assert loaded['teacher']['recipe'] == original['teacher']['recipe']
    else:
        assert loaded[key] == value and original[key] != value
        others = set(loaded) - {key, 'out_dir', 'scratch_seed'}
        assert {o: loaded[o] for o in others} == {o: original[o] for o in others}
    if kind == 'prune_pipeline':  # interpolations resolve over the whole chain
        assert loaded['out_dir'] == 'runs/fmnist-convnet-pruning/seed3'


@pytest.mark.parametrize('kind', KINDS)
def test_unknown_top_level_key_is_one_line(kind, tmp_path, fmnist_root, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    err = run_main(kind, {'base': str(KINDS[kind].path), 'colour': 'blue'}, tmp_path, fmnist_root, capsys)
    assert err.startswith("error: unknown key 'colour'; allowed: ")


@pytest.mark.parametrize('kind', KINDS)
def test_unknown_nested_key_is_one_line_naming_the_dotted_key(kind, tmp_path, fmnist_root, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    k = KINDS[kind]
    section, expected = k.unknown_nested
    spec = {'base': str(k.path), **data_overrides(kind, fmnist_root), **section}
    assert f'error: {expected}' in run_main(kind, spec, tmp_path, fmnist_root, capsys)


@pytest.mark.parametrize('kind', KINDS)
def test_wrong_type_is_one_line_naming_the_key(kind, tmp_path, fmnist_root, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    key, value, expected = KINDS[kind].wrong_type
    err = run_main(kind, {'base': str(KINDS[kind].path), key: value}, tmp_path, fmnist_root, capsys)
    assert err.startswith(f'error: {expected}'), err


@pytest.mark.parametrize('kind', KINDS)
def test_missing_required_key_is_one_line_naming_the_key(kind, tmp_path, fmnist_root, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    key, expected = KINDS[kind].required
    err = run_main(kind, without(KINDS[kind].path, key), tmp_path, fmnist_root, capsys)
    assert err.startswith(f'error: {expected}'), err


# --- the loader itself ----------------------------------------------------------------------------------------------
@dataclass
class Member:
    checkpoint: str = MISSING
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Toy:
    name: str = MISSING
    flag: bool = False
    when: Any = union(str, int, default='1ep')
    extra: dict[str, Any] = field(default_factory=lambda: {'a': 1})
    member: Optional[Member] = None
    out: str = 'runs/${name}'


@pytest.mark.parametrize('values, expected', [
    ({'name': 5}, "name: expected str, got int 5"),  # OmegaConf alone would turn it into '5'
    ({'name': 'x', 'flag': 1}, 'flag: expected bool, got int 1'),  # ... and this into true
    ({'name': 'x', 'when': 1.5}, 'when: expected str or int, got float 1.5'),
    ({'name': 'x', 'member': {'ckpt': 'a'}}, "unknown key 'member.ckpt'; allowed: checkpoint, overrides"),
    ({'name': 'x', 'member': {}}, "missing required key 'member.checkpoint'"),
    ({'name': 'x', 'member': 'a.pt'}, "member: expected dict or null, got str 'a.pt'"),
    ({'name': 'x', 'flag': '${name}'}, 'flag: cannot resolve interpolation'),
])
def test_validate_refuses_as_written(values, expected):
    with pytest.raises(ConfigError, match='^' + expected.replace('[', r'\[').replace('(', r'\(')) as info:
        validate(values, Toy, where=' (in toy.yaml)')
    assert str(info.value).endswith(' (in toy.yaml)') and '\n' not in str(info.value)


def test_validate_fills_defaults_and_a_given_free_form_section_replaces_its_default():
    out = validate({'name': 'x', 'extra': {'b': 2}, 'member': {'checkpoint': 'a.pt'}}, Toy)
    assert out == {'name': 'x', 'flag': False, 'when': '1ep', 'extra': {'b': 2},
                   'member': {'checkpoint': 'a.pt', 'overrides': {}}, 'out': 'runs/x'}


def test_base_chain_is_relative_to_the_file_and_cycles_are_refused(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'a.yaml').write_text('name: a\nflag: true\n')
    (tmp_path / 'sub' / 'b.yaml').write_text('base: ../a.yaml\nname: b\n')
    loaded = load_spec(tmp_path / 'sub' / 'b.yaml', ['when=2ep'], Toy)
    assert (loaded['name'], loaded['flag'], loaded['when'], loaded['out']) == ('b', True, '2ep', 'runs/b')
    (tmp_path / 'a.yaml').write_text('base: sub/b.yaml\nname: a\n')
    with pytest.raises(ConfigError, match='base: circular reference'):
        load_spec(tmp_path / 'sub' / 'b.yaml', None, Toy)
