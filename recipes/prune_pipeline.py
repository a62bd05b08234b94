"""The seed's pruning study (chapter II, "pruning is not compression") as one resumable command.

    composer recipes/prune_pipeline.py -f yamls/pipelines/fashion_mnist/pruning_convnet.yaml [dotted.key=value ...]
    composer recipes/prune_pipeline.py -f yamls/pipelines/fashion_mnist/pruning_convnet.yaml seed=1   # another seed

A spec YAML names a dense training recipe and the sparsities and methods to compare. Every stage is a training run
of that recipe with ``autoresume``, in its own folder under ``out_dir``:

* ``original/``: the dense model (the recipe as it is, with the spec's ``overrides``);
* ``magnitude-s<S>/``: the original's weights (``load_path`` + ``load_weights_only``), every prunable layer pruned
  one-shot to sparsity S at the first batch (``magnitude_pruning``), then retrained with the mask fixed (``finetune``
  overrides);
* ``reinit-s<S>/``: post-pruning re-initialisation: the masks of ``magnitude-s<S>``, a fresh initialisation,
  trained from scratch (``post_pruning_reinit``; ``scratch`` overrides, the original's duration by default);
* ``random-s<S>/``: random sparse initialisation at S, from scratch (``random_sparse_init``; ``scratch`` overrides);
* ``iterative/``: the original's weights pruned on the ``iterative.schedule`` (e.g. 60/70/80/90%) while retraining.

Layer-wise, as in the seed: every conv / linear layer to the same sparsity, the final classifier dense (``exclude``).
Every stage's config is validated before the first one starts; a bad spec is one ``error:`` line and exit status 2,
and no folder is created. A finished stage (``summary.json`` finished and its checkpoint present) is skipped and an
interrupted one resumes from its last checkpoint, so the command can simply be run again. ``<out_dir>/manifest.json``
lists every stage with its checkpoints (one per epoch with ``save_every_epoch``, for representation similarity over
retraining), final metrics and own training wall-clock.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from composer.utils import dist  # noqa: E402
from omegaconf import MISSING  # noqa: E402

from algorithms.callbacks.run_record import (LATEST_CHECKPOINT, MANIFEST_FILE, SUMMARY_FILE,  # noqa: E402
                                            epoch_checkpoints, read_records, run_finished)
from algorithms.pruning import MagnitudePruning, RandomSparseInit, prunable_layers  # noqa: E402
from algorithms.pruning.magnitude_pruning import parse_schedule  # noqa: E402
from recipes.core.algorithm_factories import post_pruning_reinit  # noqa: E402
from recipes.core.builders import prepare  # noqa: E402
from recipes.core.cli import Stage, dotlist, driver_args, run_main, run_stages, train_stage  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.core.registry import check_kwargs  # noqa: E402
from recipes.core import schema  # noqa: E402

log = logging.getLogger('recipes.prune_pipeline')

METHODS = ('magnitude', 'reinit', 'random', 'iterative')
#: The seed's iterative schedule (60/70/80/90%, see algorithms/pruning/README.md), used when the spec has none.
SEED_ITERATIVE = {'schedule': [['2ep', 0.6], ['4ep', 0.7], ['6ep', 0.8], ['8ep', 0.9]], 'max_duration': '10ep'}
ALGORITHM_KEYS = {MagnitudePruning: 'magnitude_pruning', RandomSparseInit: 'random_sparse_init'}


@dataclass
class PruneSpec:
    """A pruning spec YAML (``base: other_spec.yaml`` and dotted overrides as for recipes)."""

    name: str = MISSING
    recipe: str = MISSING  # the dense training recipe
    out_dir: str = 'runs/${name}/seed${seed}'
    seed: int = 0
    sparsities: list[float] = field(default_factory=lambda: [0.3, 0.45, 0.6, 0.75, 0.9])
    methods: list[str] = field(default_factory=lambda: ['magnitude', 'reinit', 'random'])
    exclude: Optional[list[str]] = None  # layers kept dense; None: the final classifier
    overrides: dict[str, Any] = field(default_factory=dict)  # every stage's recipe
    finetune: dict[str, Any] = field(default_factory=dict)  # the magnitude stages'
    scratch: dict[str, Any] = field(default_factory=dict)  # the reinit and random stages'
    scratch_seed: Optional[int] = None  # None: seed + 1
    iterative: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SEED_ITERATIVE))  # schedule + overrides
    save_every_epoch: bool = True


def load_spec(path: str | Path, overrides: Optional[list[str]] = None) -> dict[str, Any]:
    """Read and validate a pruning spec; paths in it are relative to the working directory or the repository root."""
    spec = schema.load_spec(path, overrides, PruneSpec)
    if not spec['sparsities']:
        raise ConfigError('sparsities: expected at least one sparsity')
    for i, s in enumerate(spec['sparsities']):
        if not 0 < s < 1:
            raise ConfigError(f'sparsities[{i}]: expected a number strictly between 0 and 1 (the fraction of each '
                              f'layer\'s weights set to zero), got {s!r}')
    if len(set(spec['sparsities'])) != len(spec['sparsities']):
        raise ConfigError(f"sparsities: each sparsity once, got {spec['sparsities']}")
    if not spec['methods']:
        raise ConfigError(f"methods: expected at least one of {', '.join(METHODS)}")
    for i, m in enumerate(spec['methods']):
        if m not in METHODS:
            raise ConfigError(f"methods[{i}]: unknown method {m!r}; expected one of {', '.join(METHODS)}")
    iterative = spec['iterative']
    if 'schedule' not in iterative:
        raise ConfigError("missing required key 'iterative.schedule'")
    try:
        parse_schedule(iterative['schedule'])
    except ValueError as e:
        raise ConfigError(f'iterative.schedule: {e}') from None
    if spec['scratch_seed'] is None:
        spec['scratch_seed'] = spec['seed'] + 1
    spec['recipe'] = str(_recipe_path(spec['recipe']))
    return spec


def _recipe_path(recipe: str) -> Path:
    for candidate in (Path(recipe), REPO / recipe):
        if candidate.is_file():
            return candidate
    raise ConfigError(f'recipe: YAML file not found: {recipe}')


def _tag(sparsity: float) -> str:
    return f'{sparsity:g}'


def checkpoint_of(run_dir: str) -> str:
    return f'{run_dir}/{LATEST_CHECKPOINT}'


def stage_configs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stage in order, as ``{name, method, sparsity, cfg}`` (``cfg`` a resolved training config)."""
    out = spec['out_dir']
    original_ckpt = checkpoint_of(f'{out}/original')
    exclude = spec['exclude']
    methods = set(spec['methods'])

    def config(stage: str, extra: dict[str, Any], seed: int, retraining: bool) -> dict[str, Any]:
        run_dir = f'{out}/{stage}'
        forced = {'seed': seed, 'run_name': f"{spec['name']}-{stage}", 'run_dir': run_dir,
                  'save_folder': f'{run_dir}/checkpoints', 'autoresume': True}
        if retraining and spec['save_every_epoch']:
            forced.update({'save_interval': '1ep', 'save_num_checkpoints_to_keep': -1})
        return load_config(spec['recipe'], [*dotlist(spec['overrides']), *dotlist(extra), *dotlist(forced)])

    def from_original(cfg: dict[str, Any], schedule: list) -> dict[str, Any]:
        cfg['load_path'] = original_ckpt
        cfg['load_weights_only'] = True
        cfg['algorithms']['magnitude_pruning'] = {'schedule': schedule, 'exclude': exclude}
        return cfg

    stages = [{'name': 'original', 'method': 'original', 'sparsity': None,
               'cfg': config('original', {}, spec['seed'], retraining=False)}]
    sparsities = spec['sparsities']
    if methods & {'magnitude', 'reinit'}:  # re-initialisation takes the magnitude stage's masks
        for s in sparsities:
            cfg = from_original(config(f'magnitude-s{_tag(s)}', spec['finetune'], spec['seed'], True), [['0ba', s]])
            stages.append({'name': f'magnitude-s{_tag(s)}', 'method': 'magnitude', 'sparsity': s, 'cfg': cfg})
    if 'reinit' in methods:
        for s in sparsities:
            cfg = config(f'reinit-s{_tag(s)}', spec['scratch'], spec['scratch_seed'], True)
            cfg['algorithms']['post_pruning_reinit'] = {
                'checkpoint': checkpoint_of(f'{out}/magnitude-s{_tag(s)}'), 'reinit': True}
            stages.append({'name': f'reinit-s{_tag(s)}', 'method': 'reinit', 'sparsity': s, 'cfg': cfg})
    if 'random' in methods:
        for s in sparsities:
            cfg = config(f'random-s{_tag(s)}', spec['scratch'], spec['scratch_seed'], True)
            cfg['algorithms']['random_sparse_init'] = {'sparsity': s, 'seed': spec['seed'], 'exclude': exclude}
            stages.append({'name': f'random-s{_tag(s)}', 'method': 'random', 'sparsity': s, 'cfg': cfg})
    if 'iterative' in methods:
        extra = {k: v for k, v in spec['iterative'].items() if k != 'schedule'}
        schedule = [list(entry) for entry in spec['iterative']['schedule']]
        cfg = from_original(config('iterative', extra, spec['seed'], True), schedule)
        end = schema.check_time('max_duration', cfg['max_duration'], allow_zero=False)
        for i, (when, _) in enumerate(schedule):
            time = schema.check_time(f'iterative.schedule[{i}]', when)
            if time.unit == end.unit and time.value >= end.value:
                raise ConfigError(f"iterative.schedule[{i}]: {when} is not before the iterative stage's max_duration "
                                  f"{cfg['max_duration']}, so that round would never prune")
        stages.append({'name': 'iterative', 'method': 'iterative', 'sparsity': schedule[-1][1], 'cfg': cfg})
    return stages


def check_stage(cfg: dict[str, Any], pending: set[str]) -> Any:
    """Validate one stage's config as far as it can be before earlier stages ran: everything ``prepare`` checks,
    with a ``load_path`` or ``post_pruning_reinit.checkpoint`` that an earlier stage will write (``pending``) only
    checked by name, plus the ``exclude`` layers of the pruning algorithms against the model. Returns the model."""
    probe = copy.deepcopy(cfg)
    if probe['load_path'] in pending:
        probe['load_path'], probe['load_weights_only'] = None, False
    reinit = probe['algorithms'].get('post_pruning_reinit')
    if isinstance(reinit, dict) and reinit.get('checkpoint') in pending:
        del probe['algorithms']['post_pruning_reinit']
        check_kwargs('algorithms.post_pruning_reinit', post_pruning_reinit, reinit)
    run = prepare(probe)
    model = run.trainer_kwargs['model']
    for algorithm in run.trainer_kwargs['algorithms']:
        key = ALGORITHM_KEYS.get(type(algorithm))
        if key is not None:
            _check_exclude(f'algorithms.{key}.exclude', model, algorithm.exclude)
    return model


def _check_exclude(key: str, model: Any, exclude: Optional[list[str]]) -> None:
    try:
        prunable_layers(model, exclude)
    except KeyError as e:
        raise ConfigError(f'{key}: {e.args[0]}') from None


def _entry(stage: dict[str, Any], status: str) -> dict[str, Any]:
    cfg = stage['cfg']
    summary_path = Path(cfg['run_dir']) / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    records = read_records(cfg['run_dir'])
    # a summary written before the final evaluation (older run records) lacks its metrics: the record has them
    metrics = summary.get('final_metrics') or (records[-1].get('metrics', {}) if records else {})
    algorithms = cfg['algorithms']
    source = cfg['load_path'] if stage['method'] in ('magnitude', 'iterative') else \
        algorithms.get('post_pruning_reinit', {}).get('checkpoint')
    entry = {
        'stage': stage['name'], 'method': stage['method'], 'sparsity': stage['sparsity'], 'seed': cfg['seed'],
        'run_dir': cfg['run_dir'], 'checkpoint': checkpoint_of(cfg['run_dir']),
        'epoch_checkpoints': [str(p) for p in epoch_checkpoints(cfg['run_dir'])], 'from': source,
        'metrics': metrics, 'train_wct_s': summary.get('train_wct_s'),
        'total_wct_s': summary.get('total_wct_s'), 'step': summary.get('step'), 'status': status,
    }
    if stage['method'] == 'iterative':
        entry['schedule'] = algorithms['magnitude_pruning']['schedule']
    return entry


def plan(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Stage]]:
    """The stages of ``spec`` (as :func:`stage_configs`) and the :class:`Stage` that checks, skips or trains each."""
    stages = stage_configs(spec)
    pending: set[str] = set()
    checks = []
    for i, stage in enumerate(stages):
        def check(stage=stage, pending=frozenset(pending), first=i == 0) -> None:
            try:
                model = check_stage(stage['cfg'], set(pending))
                if first:  # the spec's own key, checked against the original model
                    _check_exclude('exclude', model, spec['exclude'])
            except ConfigError as e:
                raise ConfigError(str(e) if first else f"stage {stage['name']}: {e}") from None
        checks.append(check)
        pending.add(checkpoint_of(stage['cfg']['run_dir']))
    run_list = [Stage(name=stage['name'], run=lambda cfg=stage['cfg']: train_stage(cfg),
                      done=lambda cfg=stage['cfg']: run_finished(cfg['run_dir'], need_checkpoint=True), check=check)
                for stage, check in zip(stages, checks)]
    return stages, run_list


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Check every stage, train those not finished, write and return the manifest."""
    stages, run_list = plan(spec)
    status = run_stages(run_list, log)
    manifest = {'name': spec['name'], 'seed': spec['seed'], 'recipe': spec['recipe'], 'out_dir': spec['out_dir'],
                'stages': [_entry(stage, status[stage['name']]) for stage in stages]}
    if dist.get_global_rank() == 0:
        out = Path(spec['out_dir'])
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + '\n')
    return manifest


def main(argv: Optional[list[str]] = None) -> int:
    args = driver_args(argv, __doc__)

    def body() -> int:
        spec = load_spec(args.file, args.overrides)
        manifest = run(spec)
        for e in manifest['stages']:
            log.info('%-16s %-9s %s train %.1fs', e['stage'], e['status'], e['metrics'], e['train_wct_s'] or 0.0)
        log.info('manifest: %s', Path(spec['out_dir']) / MANIFEST_FILE)
        return 0

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
