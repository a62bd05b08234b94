"""Matryoshka distillation: each generation of students, distilled from a pool, becomes the next generation's pool.

    composer recipes/matryoshka.py -f yamls/pipelines/fashion_mnist/matryoshka.yaml [dotted.key=value ...]

A spec YAML names a student recipe, the starting pool (teacher checkpoints, each with the hyper-parameters its
run used) and the number of generations. Generation g trains one student per pool member, with that member's
hyper-parameters (as the seed did), distilled from the whole pool of generation g-1 by the student recipe's
``knowledge_distillation`` settings; the students' final checkpoints are the next pool. ``<out_dir>/manifest.json``
lists every checkpoint with its metrics and its own training wall-clock. A student that finished is not trained
again and one that was interrupted resumes from its last checkpoint, so the command can simply be run again.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from omegaconf import MISSING  # noqa: E402

from algorithms.callbacks import checkpoint_record  # noqa: E402
from algorithms.callbacks.run_record import LATEST_CHECKPOINT as CHECKPOINT  # noqa: E402
from algorithms.callbacks.run_record import MANIFEST_FILE, run_finished  # noqa: E402
from recipes.core.builders import prepare  # noqa: E402
from recipes.core.cli import Stage, dotlist, driver_args, run_main, run_stages, train_stage  # noqa: E402
from recipes.core.checkpoint_safety import check_checkpoint  # noqa: E402
from recipes.core import schema  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402

log = logging.getLogger('recipes.matryoshka')


@dataclass
class PoolMember:
    checkpoint: str = MISSING  # a teacher of generation 0
    overrides: dict[str, Any] = field(default_factory=dict)  # the hyper-parameters its run used (dotted keys)


@dataclass
class MatryoshkaSpec:
    """A Matryoshka spec YAML (``base: other_spec.yaml`` and dotted overrides as for recipes)."""

    name: str = MISSING
    student_recipe: str = MISSING
    generations: int = MISSING
    pool: list[PoolMember] = MISSING
    overrides: dict[str, Any] = field(default_factory=dict)  # every student's recipe
    out_dir: str = 'runs/${name}'


def load_spec(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read and validate a Matryoshka spec (paths in it are relative to the repository root, like recipes')."""
    spec = schema.load_spec(path, overrides, MatryoshkaSpec)
    if spec['generations'] < 1:
        raise ConfigError(f"generations: expected a positive int, got {spec['generations']}")
    if not spec['pool']:
        raise ConfigError('pool: expected at least one teacher')
    if not (REPO / spec['student_recipe']).is_file() and not Path(spec['student_recipe']).is_file():
        raise ConfigError(f"student_recipe: YAML file not found: {spec['student_recipe']}")
    return spec


def student_config(spec: dict[str, Any], generation: int, index: int, pool: list[str]) -> dict[str, Any]:
    """The config of student ``index`` of ``generation``: the recipe, the spec's overrides, then the member's."""
    name = f"{spec['name']}-g{generation}-m{index}"
    run_dir = f"{spec['out_dir']}/g{generation}/m{index}"
    recipe = Path(spec['student_recipe'])
    recipe = recipe if recipe.is_file() else REPO / recipe
    cfg = load_config(recipe, [
        *dotlist(spec['overrides']), *dotlist(spec['pool'][index]['overrides']),
        f'run_name={name}', f'run_dir={run_dir}', f'save_folder={run_dir}/checkpoints', 'autoresume=true',
    ])
    kd = cfg['algorithms'].get('knowledge_distillation')
    if kd is None:
        raise ConfigError(f'student_recipe: {recipe} has no algorithms.knowledge_distillation section')
    kd['teachers'] = list(pool)
    return cfg


def _entry(checkpoint: str, generation: int, index: int, teachers: list[str]) -> dict[str, Any]:
    try:
        record = checkpoint_record(checkpoint)
    except (ValueError, AttributeError):  # a plain state dict: no record of how it was trained
        record = {}
    return {
        'generation': generation, 'member': index, 'checkpoint': checkpoint, 'teachers': teachers,
        'metrics': record.get('metrics', {}), 'train_wct_s': record.get('train_wct_s'),
        'total_wct_s': record.get('total_wct_s'), 'step': record.get('step'),
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train every generation that is not finished yet; write and return the manifest."""
    out = Path(spec['out_dir'])
    pool = [m['checkpoint'] for m in spec['pool']]
    for i, path in enumerate(pool):  # missing, not a checkpoint or unsafe: one line, before anything is written
        check_checkpoint(f'pool[{i}].checkpoint', path)
    manifest: dict[str, Any] = {'name': spec['name'], 'generations': [[_entry(p, 0, i, []) for i, p in enumerate(pool)]]}
    for g in range(1, spec['generations'] + 1):
        configs = [student_config(spec, g, i, pool) for i in range(len(spec['pool']))]
        stages = [Stage(name=f"generation {g} member {i} ({cfg['run_name']})",
                        run=lambda cfg=cfg: train_stage(cfg),
                        done=lambda cfg=cfg: run_finished(cfg['run_dir'], need_checkpoint=True),
                        check=(lambda cfg=cfg: prepare(cfg)) if g == 1 else None)  # later pools do not exist yet
                  for i, cfg in enumerate(configs)]
        run_stages(stages, log)
        students = [f"{cfg['run_dir']}/{CHECKPOINT}" for cfg in configs]
        manifest['generations'].append([_entry(p, g, i, pool) for i, p in enumerate(students)])
        pool = students
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + '\n')
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = driver_args(argv, __doc__)

    def body() -> int:
        manifest = run(load_spec(args.file, args.overrides))
        for generation in manifest['generations']:
            for e in generation:
                log.info('g%d m%d %s %s train %.1fs', e['generation'], e['member'], e['checkpoint'], e['metrics'],
                         e['train_wct_s'] or 0.0)
        return 0

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
