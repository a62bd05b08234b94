"""GLUE: fine-tune one pre-trained BERT on every task (or a list) and write the table of scores.

    composer recipes/glue.py -f yamls/pipelines/glue/bert_base.yaml pretrained=/path/ckpt.pt [tasks=[sst2,rte]] [seeds=[1,2,3]]

The driver spec (``yamls/pipelines/glue/bert_base.yaml``) names the checkpoint of a ``bert_mlm`` run (``pretrained``), the
``tasks``, the fine-tuning ``recipe`` of each task (``yamls/glue/{task}.yaml``, or a mapping task -> YAML), the
``seeds`` (each task is fine-tuned once per seed; its metrics are averaged over them), ``overrides`` for every task's
recipe and ``task_overrides`` for one task's (dotted keys, e.g. ``{rte: {optimizer.lr: 1.0e-5}}``), and ``from_mnli``:
tasks that start from the fine-tuned MNLI model (of the first seed) instead of ``pretrained`` (MosaicML's BERT recipe
does this for RTE, MRPC and STS-B; only when ``mnli`` is among the tasks). Every run's recipe is checked (model built,
loaders, sequence length) before the first one starts.

Each run lives in ``<out_dir>/<task>/seed<seed>/`` (config, run record, checkpoints) and ends by writing
``glue.json`` there (its metrics and task score). A run with that file is skipped; an interrupted one resumes from its
last checkpoint (``autoresume``), so running the same command again finishes the job. At the end
``<out_dir>/glue_results.md`` and ``glue_results.json`` hold each task's metrics and score (percent, mean over seeds)
and the GLUE score, the mean of the task scores (:mod:`recipes.data.text.glue_tasks`). MNLI is evaluated on its matched
(``eval``) and mismatched (``eval_mismatched``) validation sets.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from omegaconf import MISSING  # noqa: E402

from algorithms.callbacks.run_record import CONFIG_FILE, LATEST_CHECKPOINT, SUMMARY_FILE  # noqa: E402
from recipes.core.checkpoint_safety import check_checkpoint  # noqa: E402
from recipes.core.cli import Stage, dotlist, driver_args, run_main, run_stages  # noqa: E402
from recipes.core import schema  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.data.text.glue_tasks import TASKS, GlueTask, eval_label, glue_score, metric_keys, task_score  # noqa: E402

__all__ = ['load_spec', 'task_config', 'run', 'results_table', 'RESULT_FILE', 'TABLE_MD', 'TABLE_JSON']

log = logging.getLogger('recipes.glue')
RESULT_FILE = 'glue.json'
TABLE_MD, TABLE_JSON = 'glue_results.md', 'glue_results.json'


@dataclass
class GlueSpec:
    """A GLUE driver spec YAML (``base: other_spec.yaml`` and dotted overrides as for recipes)."""

    name: str = MISSING
    pretrained: Optional[str] = None  # required: checked with a hint (the command line usually gives it)
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    recipe: Any = schema.union(str, dict, default='yamls/glue/{task}.yaml')  # a path pattern or task -> path
    seeds: list[int] = field(default_factory=lambda: [17])
    overrides: dict[str, Any] = field(default_factory=dict)  # every task's recipe (dotted keys)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> its recipe's overrides
    from_mnli: list[str] = field(default_factory=list)
    out_dir: str = 'runs/${name}'


def _task_names(key: str, values: list[Any]) -> list[str]:
    for i, name in enumerate(values):
        if not isinstance(name, str) or name not in TASKS:
            raise ConfigError(f'{key}[{i}]: unknown GLUE task {name!r}; allowed: {", ".join(TASKS)}')
    if len(set(values)) != len(values):
        raise ConfigError(f'{key}: a task is listed twice: {values}')
    return list(values)


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() or path.is_file() else REPO / path


def recipe_path(spec: dict[str, Any], task: str) -> Path:
    """The fine-tuning recipe of ``task`` (relative paths: to the working directory, else to the repository)."""
    recipe = spec['recipe']
    if isinstance(recipe, dict):
        if task not in recipe:
            raise ConfigError(f'recipe: no recipe for task {task!r} (the mapping names {", ".join(recipe)})')
        return _path(recipe[task])
    return _path(recipe.replace('{task}', task))


def load_spec(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read and validate a GLUE driver spec (``base:`` and dotted overrides as in recipes); checks the checkpoint
    (present, loadable with ``weights_only=True``) and that every task's recipe file exists."""
    spec = schema.load_spec(path, overrides, GlueSpec)
    for task in spec['task_overrides']:
        if task not in TASKS:
            raise ConfigError(f"unknown key 'task_overrides.{task}'; allowed: {', '.join(TASKS)}")
    if spec['pretrained'] is None:
        raise ConfigError("missing required key 'pretrained': the checkpoint of a bert_mlm run, e.g. "
                          'pretrained=runs/bert/checkpoints/latest-rank0.pt')
    if not spec['tasks']:
        raise ConfigError('tasks: expected at least one GLUE task')
    spec['tasks'] = [t.lower() for t in spec['tasks']]
    _task_names('tasks', spec['tasks'])
    _task_names('from_mnli', spec['from_mnli'])
    if 'mnli' in spec['from_mnli']:
        raise ConfigError('from_mnli: mnli cannot start from itself')
    if not spec['seeds']:
        raise ConfigError(f'seeds: expected a non-empty list of ints, got {spec["seeds"]!r}')
    if len(set(spec['seeds'])) != len(spec['seeds']):
        raise ConfigError(f'seeds: a seed is listed twice: {spec["seeds"]}')
    check_checkpoint('pretrained', spec['pretrained'])
    for task in spec['tasks']:
        recipe = recipe_path(spec, task)
        if not recipe.is_file():
            raise ConfigError(f'recipe: YAML file not found for task {task}: {recipe}')
    return spec


def run_dir(spec: dict[str, Any], task: str, seed: int) -> Path:
    return Path(spec['out_dir']) / task / f'seed{seed}'


def _flat(section: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    """``{'optimizer': {'lr': 1}}`` -> ``{'optimizer.lr': 1}`` (dotted keys pass through)."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def task_config(spec: dict[str, Any], task: str, seed: int, pretrained: str) -> dict[str, Any]:
    """The resolved recipe of one run: the task's recipe, the spec's overrides, the task's, then the driver's own
    settings (``model.pretrained``, seed, run folder, ``autoresume``). A ConfigError if the recipe is for another
    task than ``task`` (its ``model.task`` and loaders' ``task`` must all be ``task``)."""
    folder = run_dir(spec, task, seed)
    recipe = recipe_path(spec, task)
    cfg = load_config(recipe, [
        *dotlist(_flat(spec['overrides'])), *dotlist(_flat(spec['task_overrides'].get(task, {}))),
        f'model.pretrained={pretrained}', f'seed={seed}', f"run_name={spec['name']}-{task}-seed{seed}",
        f'run_dir={folder}', f'save_folder={folder}/checkpoints', 'autoresume=true',
    ])
    named = {'model.task': cfg['model'].get('task'), 'train_loader.task': cfg['train_loader'].get('task'),
             'eval_loader.task': (cfg['eval_loader'] or {}).get('task')}
    for key, value in named.items():
        if value != task:
            raise ConfigError(f'{recipe}: {key} is {value!r}, but the driver runs it for task {task!r}')
    if cfg['model'].get('name') != 'bert_classifier':
        raise ConfigError(f"{recipe}: model.name is {cfg['model'].get('name')!r}; GLUE fine-tuning needs "
                          'bert_classifier')
    return cfg


def extra_eval_loaders(cfg: dict[str, Any], task: GlueTask) -> dict[str, dict[str, Any]]:
    """Evaluator label -> loader config for the task's evaluation splits after the first (MNLI's mismatched set)."""
    first = cfg['eval_loader']
    return {eval_label(task, split): {**first, 'split': split} for split in task.eval_splits[1:]
            if first.get('split') == task.eval_splits[0]}


def check_run(cfg: dict[str, Any]) -> None:
    """Everything about one run that can be checked before training: the recipe (``prepare``: the model is built, so
    the checkpoint is loaded into it, and the loaders are checked against it) and the extra evaluation loaders."""
    from recipes.core.builders import prepare
    from recipes.data.registry import check_data, check_model_fits_loader

    task = TASKS[cfg['model']['task']]
    model = prepare(cfg).trainer_kwargs['model']
    for label, loader in extra_eval_loaders(cfg, task).items():
        check_data(loader, f'eval_loader ({label})')
        check_model_fits_loader(model, loader, f'eval_loader ({label})')


def _evaluators(cfg: dict[str, Any], task: GlueTask) -> list[Any]:
    from composer.core import Evaluator
    from composer.utils import dist

    from recipes.core.builders import data_device
    from recipes.data.registry import build_dataloader

    loaders = {'eval': cfg['eval_loader'], **extra_eval_loaders(cfg, task)}
    batch = cfg['global_eval_batch_size'] // dist.get_world_size()
    return [Evaluator(label=label, dataloader=build_dataloader(loader, batch, f'eval_loader ({label})',
                                                               seed=cfg['seed'], device=data_device(cfg['device'])))
            for label, loader in loaders.items()]


def _computed(trainer: Any) -> dict[str, float]:
    return {f'{label}/{name}': float(metric.compute())
            for label, metrics in trainer.state.eval_metrics.items() for name, metric in metrics.items()}


def train_and_evaluate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune one run (resuming it if it was interrupted), evaluate it on every evaluation split of its task and
    write ``<run_dir>/glue.json``; returns that record."""
    from composer.utils import dist

    from recipes.core.builders import launch, prepare

    task = TASKS[cfg['model']['task']]
    trainer = launch(prepare(cfg))
    try:
        evaluators = _evaluators(cfg, task) if len(task.eval_splits) > 1 else None
        state = trainer.state
        if state.timestamp.get(state.max_duration.unit) < state.max_duration:
            trainer.fit(**({'eval_dataloader': evaluators, 'eval_interval': cfg['eval_interval']}
                           if evaluators else {}))
        else:  # resumed from the final checkpoint of a run cut off before it wrote its result: evaluate only
            trainer.eval(eval_dataloader=evaluators or _evaluators(cfg, task))
        metrics = _computed(trainer)
    finally:
        trainer.close()
    summary = Path(cfg['run_dir']) / SUMMARY_FILE
    clocks = json.loads(summary.read_text()) if summary.is_file() else {}
    record = {
        'task': task.name, 'seed': cfg['seed'], 'pretrained': cfg['model'].get('pretrained'),
        'metrics': {k: metrics[k] for k in metric_keys(task)}, 'score': task_score(task, metrics),
        'train_wct_s': clocks.get('train_wct_s'), 'step': clocks.get('step'),
    }
    if dist.get_global_rank() == 0:
        (Path(cfg['run_dir']) / RESULT_FILE).write_text(json.dumps(record, indent=2) + '\n')
    return record


def _result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _check_out_dir(spec: dict[str, Any]) -> None:
    """A ConfigError if a run folder of ``out_dir`` was started from another checkpoint (results would mix)."""
    for task in spec['tasks']:
        for seed in spec['seeds']:
            config = run_dir(spec, task, seed) / CONFIG_FILE
            if not config.is_file():
                continue
            used = (yaml.safe_load(config.read_text()) or {}).get('model', {}).get('pretrained')
            expected = spec['pretrained']
            if task in spec['from_mnli'] and 'mnli' in spec['tasks']:
                expected = str(run_dir(spec, 'mnli', spec['seeds'][0]) / LATEST_CHECKPOINT)
            if used != expected:
                raise ConfigError(f'out_dir: {config.parent} was fine-tuned from {used}, not {expected}; '
                                  'give each checkpoint its own out_dir (or name)')


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune every (task, seed) not finished yet, then write and return the results table."""
    tasks = spec['tasks']
    second = [t for t in tasks if t in spec['from_mnli'] and 'mnli' in tasks]
    order = [t for t in tasks if t not in second] + second
    mnli_model = str(run_dir(spec, 'mnli', spec['seeds'][0]) / LATEST_CHECKPOINT)
    _check_out_dir(spec)
    stages = []
    for task in order:
        start = mnli_model if task in second else spec['pretrained']
        for seed in spec['seeds']:
            # a task that starts from MNLI is checked with the pre-trained checkpoint (the same architecture): the
            # MNLI model does not exist yet
            check_cfg = task_config(spec, task, seed, spec['pretrained'])
            stages.append(Stage(
                name=f'{task} seed {seed}',
                run=lambda task=task, seed=seed, start=start: train_and_evaluate(task_config(spec, task, seed, start)),
                done=lambda task=task, seed=seed: _result(run_dir(spec, task, seed)) is not None,
                check=lambda cfg=check_cfg: check_run(cfg)))
    run_stages(stages, log)
    from composer.utils import dist

    dist.barrier()  # every rank's runs are over and rank 0 has written their results
    table = results_table(spec)
    if dist.get_global_rank() == 0:
        out = Path(spec['out_dir'])
        out.mkdir(parents=True, exist_ok=True)
        (out / TABLE_JSON).write_text(json.dumps(table, indent=2) + '\n')
        (out / TABLE_MD).write_text(markdown(table))
    return table


def results_table(spec: dict[str, Any]) -> dict[str, Any]:
    """Each task's metrics and score in percent, averaged over the seeds that finished, and the GLUE score (the mean
    of the task scores; ``None`` unless every task of the spec has a result)."""
    rows = []
    for task in spec['tasks']:
        results = [r for s in spec['seeds'] if (r := _result(run_dir(spec, task, s))) is not None]
        if not results:
            rows.append({'task': task, 'seeds': 0, 'metrics': {}, 'score': None, 'score_sd': None})
            continue
        keys = metric_keys(task)
        scores = [r['score'] for r in results]
        rows.append({
            'task': task, 'seeds': len(results),
            'metrics': {k: 100.0 * statistics.fmean(r['metrics'][k] for r in results) for k in keys},
            'score': statistics.fmean(scores), 'score_sd': statistics.stdev(scores) if len(scores) > 1 else None,
        })
    complete = all(row['score'] is not None for row in rows)
    return {'name': spec['name'], 'pretrained': spec['pretrained'], 'tasks': rows,
            'glue_score': glue_score(row['score'] for row in rows) if complete else None}


def markdown(table: dict[str, Any]) -> str:
    """The table as markdown: one row per task (its metrics, score, seeds) and the GLUE score."""
    lines = [f"# GLUE: {table['name']}", '', f"Pre-trained checkpoint: `{table['pretrained']}`", '',
             '| task | metrics (%) | score | seeds |', '|---|---|---:|---:|']
    for row in table['tasks']:
        metrics = ', '.join(f'{k} {v:.2f}' for k, v in row['metrics'].items()) or 'not run'
        score = '-' if row['score'] is None else f"{row['score']:.2f}" + (
            f" ± {row['score_sd']:.2f}" if row['score_sd'] is not None else '')
        lines.append(f"| {row['task']} | {metrics} | {score} | {row['seeds']} |")
    glue = table['glue_score']
    lines.append(f"| **GLUE** (mean of {len(table['tasks'])} tasks) | | "
                 f"{'-' if glue is None else f'**{glue:.2f}**'} | |")
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    args = driver_args(argv, __doc__)

    def body() -> int:
        table = run(load_spec(args.file, args.overrides))
        sys.stdout.write(markdown(table))
        return 0

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
