"""The distillation factories are derived from their classes: a factory cannot drift from its algorithm's signature."""

import functools
import inspect

import pytest

from algorithms.feature_distillation import AttentionTransfer
from recipes.core.algorithm_factories import (DISTILLATION_METHODS, HIDDEN, TEACHER_FACTORIES, DistillationMethod,
                                              teacher_pool)
from recipes.core.errors import ConfigError
from recipes.core.registry import check_kwargs
from tests.helpers.teacher_registry import resnet_registry


def _class_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """``cls(...)``'s keyword arguments, through ``**kwargs`` into the parents (written here independently)."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = list(inspect.signature(vars(klass)['__init__']).parameters.values())[1:]
        out.update({p.name: p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                    and p.name not in out})
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return out
    return out


TEACHER_ARGUMENTS = list(inspect.signature(teacher_pool).parameters)[2:]


@pytest.mark.parametrize('name', sorted(TEACHER_FACTORIES))
def test_a_factory_takes_exactly_its_class_arguments_and_the_teacher_arguments(name):
    method = DISTILLATION_METHODS[name]
    factory = inspect.signature(TEACHER_FACTORIES[name]).parameters
    own = {n: p for n, p in _class_arguments(method.cls).items()
           if n not in HIDDEN and n not in TEACHER_ARGUMENTS and n not in method.computed}
    assert set(factory) == set(own) | set(TEACHER_ARGUMENTS) | {'registry'}
    assert TEACHER_ARGUMENTS == ['teachers', 'pool_mode', 'k', 'seed', 'score_metric']
    for n, p in own.items():  # the class's defaults, unless the factory fills the argument itself
        assert factory[n].default == (None if n in method.optional else p.default), (name, n)
    teacher = inspect.signature(teacher_pool).parameters
    assert all(factory[n].default == teacher[n].default for n in TEACHER_ARGUMENTS)
    assert 'teachers' in _class_arguments(method.cls)  # the pool is the class's first argument


def test_the_registry_checks_yaml_arguments_against_the_derived_signature():
    fn = functools.partial(TEACHER_FACTORIES['attention_transfer'], registry=None)
    with pytest.raises(ConfigError) as e:
        check_kwargs('algorithms.attention_transfer', fn, {'teachers': [], 'student_features': ['a'], 'bogus': 1})
    message = str(e.value)
    assert "unknown key 'algorithms.attention_transfer.bogus'" in message and '\n' not in message
    for allowed in ('student_features', 'p', 'weight', 'start', 'pool_mode', 'score_metric', 'teachers'):
        assert allowed in message.split('allowed: ')[1].split(', ')
    assert 'key' not in message.split('allowed: ')[1].split(', ')  # hidden: a YAML never names the loss key
    with pytest.raises(ConfigError, match='weight'):
        check_kwargs('algorithms.attention_transfer', fn, {'teachers': [], 'student_features': 'a', 'weight': 'x'})
    with pytest.raises(ConfigError, match="missing required key 'algorithms.fsp.end'"):
        check_kwargs('algorithms.fsp', functools.partial(TEACHER_FACTORIES['fsp'], registry=None),
                     {'teachers': [], 'student_features': ['a', 'b']})
    check_kwargs('algorithms.crd', functools.partial(TEACHER_FACTORIES['crd'], registry=None), {'teachers': []})


def test_a_new_method_is_one_table_entry(tmp_path):
    class SharperAT(AttentionTransfer):
        def __init__(self, teachers, student_features: list, sharpness: float = 3.0, weight: float = 1000.0,
                     end: str = '1dur'):
            super().__init__(teachers, student_features, p=sharpness, weight=weight, end=end)

    factory = DistillationMethod(SharperAT).factory('sharper_at')
    assert list(inspect.signature(factory).parameters) == ['teachers', 'student_features', 'sharpness', 'weight',
                                                           'end', 'pool_mode', 'k', 'seed', 'score_metric', 'registry']
    registry, teachers = resnet_registry(tmp_path)
    term = factory(teachers, ['layer1'], sharpness=4.0, weight=10.0, pool_mode='random_1', seed=2, registry=registry)
    assert isinstance(term, SharperAT) and term.p == 4.0 and term.weight == 10.0
    assert term.pool is next(iter(registry.pools.values()))  # the pool the teacher arguments made
    with pytest.raises(ConfigError, match='sharper_at'):
        factory(teachers, ['layer1'], weight=-1.0, registry=registry)  # the class's own check, named by the key
