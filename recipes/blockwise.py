"""The blockwise-distillation trainer: replace a trained teacher's costly convolutions by cheaper blocks.

    composer recipes/blockwise.py -f yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml [dotted.key=value ...]
    python recipes/blockwise.py -f yamls/pipelines/fashion_mnist/blockwise_vgg.yaml schedule.workers=2

Stages (each skipped when its result exists, so running the same command again resumes):

1. ``teacher``: trains ``teacher.recipe`` into ``<run_dir>/teacher`` unless ``teacher.checkpoint`` is given.
2. ``reference``: the teacher's accuracy on the validation split (the last ``val_size`` training images, never
   used to train a block), the reference of the acceptance threshold ``max_drop``.
3. ``blocks``: ``mode: parallel`` runs one task per replaceable layer (``algorithms.blockwise.task``) under
   ``schedule.policy`` (serial, round robin, bin packing, Dask work stealing) on ``schedule.workers`` local workers
   or the cluster at ``schedule.address``; a finished block is a file in ``<run_dir>/blocks`` and is never trained
   again. ``top_down``/``bottom_up``: craft distillation, one layer after another in this process. The stage's
   makespan, per-task times (``task_times.json``, for a later bin-packing run) and energy go to ``tasks.json``.
   The stage counts as done once ``tasks.json`` exists: after changing ``blockwise`` settings, use a new
   ``run_dir`` or delete ``tasks.json`` (a stored block trained with other settings is then trained again).
4. ``fine_tune``: the accepted blocks spliced into the teacher, ``fine_tune.freeze`` frozen (the seed froze 1x1
   convs and the classifier for ResNet), trained with the teacher's recipe plus ``fine_tune.overrides``
   (Composer Trainer, autoresume) into ``<run_dir>/fine_tune``.
5. ``report``: ``blockwise.json`` and ``blockwise.md``: per layer, kept or not (and why), parameters and MACs
   before and after; teacher and student test accuracy, parameters and MACs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `composer recipes/blockwise.py` runs this file as a script from a checkout
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from algorithms.blockwise import (BlockTask, LocalTrainingSettings, ScheduleSettings, accuracy, assemble,  # noqa: E402
                                  block_path, build_block, craft_sequential, find_replaceable, freeze, load_block,
                                  module_macs, run_block_task, run_tasks)
from algorithms.callbacks.run_record import LATEST_CHECKPOINT, run_finished  # noqa: E402
from algorithms.distillation.teachers import load_teacher_weights, module_weights  # noqa: E402
from recipes.pipelines.blockwise_config import load_blockwise, recipe_config  # noqa: E402
from recipes.core.checkpoint_safety import checkpoint_error  # noqa: E402
from recipes.core.cli import Stage, driver_args, run_main, run_stages, train_stage  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.data.registry import build_dataset, resolve_options  # noqa: E402
from recipes.models.registry import build_module  # noqa: E402
from recipes.data.tensor_data import crop_batch  # noqa: E402

log = logging.getLogger('recipes.blockwise')
TASKS_FILE, TIMES_FILE, REFERENCE_FILE, REPORT_FILE = 'tasks.json', 'task_times.json', 'reference.json', 'blockwise.json'


def _datasets(loader: dict[str, Any], val_size: int, train_subset: Optional[int]) -> tuple[Any, Any]:
    """(local-training set, validation set): the validation split is the last ``val_size`` images of the training
    split (evaluation transform); local training uses the images before it (the recipe's augmentation)."""
    plain = {k: v for k, v in loader.items() if k not in ('subset', 'downsample', 'downsample_seed', 'indices')}
    full = build_dataset(resolve_options({**plain, 'augment': False}))
    n = len(full)
    if val_size >= n:
        raise ValueError(f'blockwise.val_size: {val_size} leaves no training images (the split has {n})')
    train = build_dataset(resolve_options(plain))
    keep = min(n - val_size, train_subset or n)
    return Subset(train, range(keep)), Subset(full, range(n - val_size, n))


class TensorBatches:
    """Batches of cached image tensors, reshuffled on every pass (torch's global generator: the task seeds it),
    with batched augmentation: a random crop after padding by ``pad`` pixels (with the images' minimum, i.e.
    black after normalisation) and a random horizontal flip."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, pad: int = 0,
                 flip: bool = False) -> None:
        self.x, self.y, self.batch_size, self.shuffle, self.pad, self.flip = x, y, batch_size, shuffle, pad, flip
        self.fill = float(x.min()) if len(x) else 0.0

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            dy = torch.randint(0, 2 * self.pad + 1, (len(x),))
            dx = torch.randint(0, 2 * self.pad + 1, (len(x),))
            x = crop_batch(x, self.pad, dy, dx, self.fill).contiguous()
        if self.flip:
            x = torch.where((torch.rand(len(x)) < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def __iter__(self):
        order = torch.randperm(len(self.x)) if self.shuffle else torch.arange(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.x[idx]
            yield (self._augment(x) if self.shuffle else x), self.y[idx]


def cache_tensors(dataset: Any, path: Path) -> None:
    """Write ``dataset`` (evaluation transform) as one ``{'x', 'y'}`` tensor file, atomically."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=1000, shuffle=False, num_workers=0):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    torch.save({'x': torch.cat(xs), 'y': torch.cat(ys)}, tmp)
    os.replace(tmp, path)


def block_data(loader: dict[str, Any], val_size: int, train_subset: Optional[int], batch_size: int,
               eval_batch_size: int, cache: Optional[str] = None, pad: int = 0, flip: bool = False,
               ) -> tuple[Any, Any]:
    """A task's data (module-level, so that a ``functools.partial`` of it travels to Dask workers): the cached
    tensors in ``cache`` (a folder with ``train.pt`` and ``val.pt``) if given, else the recipe's dataset."""
    if cache is not None:
        train = torch.load(Path(cache) / 'train.pt', weights_only=True, mmap=True)
        val = torch.load(Path(cache) / 'val.pt', weights_only=True, mmap=True)
        return (TensorBatches(train['x'], train['y'], batch_size, True, pad, flip),
                TensorBatches(val['x'], val['y'], eval_batch_size, False))
    train, val = _datasets(loader, val_size, train_subset)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0),
            DataLoader(val, batch_size=eval_batch_size, shuffle=False, num_workers=0))


class Blockwise:
    """One blockwise run: the validated config and the paths and objects its stages share."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.recipe = recipe_config(cfg)
        self.run_dir = Path(cfg['run_dir'])
        self.bw, self.sched = cfg['blockwise'], cfg['schedule']
        self.checkpoint = Path(cfg['teacher']['checkpoint'] or self.run_dir / 'teacher' / LATEST_CHECKPOINT)
        self.build_teacher = functools.partial(build_module, **self.recipe['model'])
        self.loader = {**self.recipe['train_loader'], 'num_workers': 0}
        self.cache_dir = self.run_dir / 'data' if self.bw['cache'] else None
        self.data = functools.partial(block_data, self.loader, self.bw['val_size'], self.bw['train_subset'],
                                      self.bw['batch_size'], self.bw['eval_batch_size'],
                                      str(self.cache_dir) if self.cache_dir else None, self.bw['crop_padding'],
                                      self.bw['flip'])
        self.device = torch.device(self.bw['device'] or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self._input_shape: Optional[tuple[int, ...]] = None
        self._layers: Optional[list[Any]] = None
        self.costlier: list[Any] = []

    def check(self) -> None:
        """What the stages would find late, checked before anything is written (a ConfigError): the validation split
        leaves training images, and a given ``teacher.checkpoint`` fits the teacher's architecture (keys and shapes,
        memory-mapped on a ``meta`` model: nothing is read but the file's index)."""
        try:
            _datasets({**self.loader, 'augment': False}, self.bw['val_size'], self.bw['train_subset'])
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.cfg['teacher']['checkpoint'] is not None:
            with torch.device('meta'):
                model = self.build_teacher()
            try:
                module_weights(model, self.checkpoint, mmap=True)
            except Exception as e:  # noqa: BLE001 - not a checkpoint, unsafe, or another architecture: one line
                raise checkpoint_error('teacher.checkpoint', str(self.checkpoint), e) from None

    # --- shared pieces ---------------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._input_shape is None:
            _, val = _datasets({**self.recipe['train_loader'], 'num_workers': 0}, self.bw['val_size'], 1)
            self._input_shape = tuple(val[0][0].shape)
        return self._input_shape

    def teacher(self) -> torch.nn.Module:
        return load_teacher_weights(self.build_teacher(), self.checkpoint).to(self.device).eval()

    def layers(self) -> list[Any]:
        """The layers with a task; ``self.costlier`` lists those left alone because their block would cost more."""
        if self._layers is None:
            with torch.device('meta'):
                model = self.build_teacher()
            self._layers, self.costlier = [], []
            for layer in find_replaceable(model, self.input_shape, self.bw['layers']):
                block = build_block(self.bw['block'], model.get_submodule(layer.conv))
                cheaper = module_macs(block, layer.in_shape) < layer.macs
                (self._layers if cheaper or not self.bw['skip_costlier'] else self.costlier).append(layer)
                if not cheaper and self.bw['skip_costlier']:
                    log.info('%s: not replaced, a %s block would cost more MACs than the layer', layer.conv,
                             self.bw['block'])
        return self._layers

    def settings(self) -> LocalTrainingSettings:
        return LocalTrainingSettings(**{f.name: self.bw[f.name] for f in dataclasses.fields(LocalTrainingSettings)})

    def _json(self, name: str) -> Any:
        return json.loads((self.run_dir / name).read_text())

    def _write(self, name: str, obj: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / name).write_text(json.dumps(obj, indent=1) + '\n')

    # --- stages ----------------------------------------------------------------------------------------------------
    def train_teacher(self) -> None:
        run_dir = self.run_dir / 'teacher'
        train_stage(recipe_config(self.cfg, {'run_name': f"{self.cfg['run_name']}-teacher", 'run_dir': str(run_dir),
                                             'save_folder': str(run_dir / 'checkpoints'), 'autoresume': True}))

    def ensure_cache(self) -> None:
        """The images as tensors once, for every task (rebuilt when the data settings changed)."""
        if self.cache_dir is None:
            return
        meta = {'loader': self.loader, 'val_size': self.bw['val_size'], 'train_subset': self.bw['train_subset']}
        meta_path = self.cache_dir / 'meta.json'
        if meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
            return
        train, val = _datasets({**self.loader, 'augment': False}, self.bw['val_size'], self.bw['train_subset'])
        cache_tensors(train, self.cache_dir / 'train.pt')
        cache_tensors(val, self.cache_dir / 'val.pt')
        meta_path.write_text(json.dumps(meta))

    def reference(self) -> None:
        self.ensure_cache()
        _, val = self.data()
        self._write(REFERENCE_FILE, {'val_accuracy': accuracy(self.teacher(), val, self.device),
                                     'val_size': self.bw['val_size']})

    def blocks(self) -> None:
        from algorithms.profiling.energy import EnergySampler

        self.ensure_cache()
        layers, reference = self.layers(), self._json(REFERENCE_FILE)['val_accuracy']
        sampler = EnergySampler().start() if self.cfg['energy'] else None
        started = time.time()
        if self.bw['mode'] == 'parallel':
            outcome = self._parallel(layers, reference)
        else:
            outcome = self._craft(layers, reference)
        energy = sampler.stop() if sampler is not None else None
        summaries = outcome.results
        self._write(TIMES_FILE, {k: s['seconds'] for k, s in summaries.items() if s.get('status') == 'trained'})
        self._write(TASKS_FILE, {
            'mode': self.bw['mode'], 'policy': self.sched['policy'], 'workers': self.sched['workers'],
            'address': self.sched['address'], 'makespan_s': outcome.makespan_s, 'startup_s': outcome.startup_s,
            'started': started, 'assignment': outcome.assignment, 'finished_at': outcome.finished_at,
            'resumed': any(s.get('status') == 'finished earlier' for s in summaries.values()),
            'tasks': summaries, 'energy': energy})

    def task(self, layer: Any, reference: Optional[float], out_dir: Optional[Path] = None) -> BlockTask:
        """The task that trains ``layer``'s block (its result in ``out_dir``, by default ``<run_dir>/blocks``)."""
        return BlockTask(layer=layer, block=self.bw['block'], settings=self.settings(),
                         build_teacher=self.build_teacher, checkpoint=str(self.checkpoint),
                         input_shape=self.input_shape, data=self.data, out_dir=str(out_dir or self.run_dir / 'blocks'),
                         reference=reference, seed=self.cfg['seed'], device=self.bw['device'])

    def _parallel(self, layers: list[Any], reference: float) -> Any:
        times = json.loads(Path(self.sched['times']).read_text()) if self.sched['times'] else None
        tasks = [self.task(layer, reference) for layer in layers]
        settings = ScheduleSettings(policy=self.sched['policy'], workers=self.sched['workers'],
                                    address=self.sched['address'], gpus=self.sched['gpus'], times=times,
                                    torch_threads=self.sched['torch_threads'])
        return run_tasks(tasks, run_block_task, lambda t: t.key, settings)

    def _craft(self, layers: list[Any], reference: float) -> Any:
        from algorithms.blockwise import RunOutcome

        torch.manual_seed(self.cfg['seed'])
        train, val = self.data()
        teacher = self.teacher()
        threads = torch.get_num_threads()
        if self.sched['torch_threads']:
            torch.set_num_threads(self.sched['torch_threads'])  # as one worker
        start = time.perf_counter()
        make = lambda layer, conv: build_block(self.bw['block'], conv)  # noqa: E731
        try:
            _, results = craft_sequential(teacher, layers, self.bw['mode'], make, train, self.settings(),
                                          lambda model: accuracy(model, val, self.device), reference, self.device)
        finally:
            torch.set_num_threads(threads)
        summaries = {}
        by_layer = {layer.conv: layer for layer in layers}
        for result in results:
            layer = by_layer[result.layer]
            block = build_block(self.bw['block'], teacher.get_submodule(layer.conv))
            summaries[layer.conv] = {**result.summary(), 'status': 'trained', 'layer_macs': layer.macs,
                                     'layer_params': layer.params, 'block_macs': module_macs(block, layer.in_shape),
                                     'block_params': sum(p.numel() for p in block.parameters())}
            path = block_path(self.run_dir / 'blocks', layer.conv)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({'state_dict': result.state_dict, 'summary': summaries[layer.conv]}, path)
        return RunOutcome(summaries, time.perf_counter() - start, 0.0)

    def student(self, teacher: Optional[torch.nn.Module] = None) -> torch.nn.Module:
        """The teacher (loaded unless given; left unchanged) with every accepted block spliced in."""
        teacher = teacher if teacher is not None else self.teacher()
        layers = self.layers()
        blocks = {}
        for layer in layers:
            state, summary = load_block(block_path(self.run_dir / 'blocks', layer.conv))
            if summary['accepted']:
                block = build_block(self.bw['block'], teacher.get_submodule(layer.conv))
                block.load_state_dict(state)
                blocks[layer.conv] = block
        return assemble(teacher, layers, blocks)

    def fine_tune(self) -> None:
        from recipes.core.builders import launch, prepare
        from recipes.core import registry

        run_dir = self.run_dir / 'fine_tune'
        cfg = recipe_config(self.cfg, {**self.cfg['fine_tune']['overrides'],
                                       'run_name': f"{self.cfg['run_name']}-fine-tune", 'run_dir': str(run_dir),
                                       'save_folder': str(run_dir / 'checkpoints'), 'autoresume': True})
        run = prepare(cfg)
        model = run.trainer_kwargs['model']
        model.module = self.student().to('cpu').train()
        frozen = freeze(model.module, self.cfg['fine_tune']['freeze'])
        log.info('fine-tuning the assembled student; frozen: %s', ', '.join(frozen) or 'nothing')
        trainable = [p for p in model.parameters() if p.requires_grad]
        run.trainer_kwargs['optimizers'] = registry.build_named('optimizer', registry.OPTIMIZERS, cfg['optimizer'],
                                                                trainable)
        trainer = launch(run)
        try:
            trainer.fit()
        finally:
            trainer.close()

    def report(self) -> None:
        from recipes.pipelines.blockwise_report import write_report

        write_report(self)


def stages(bw: Blockwise) -> list[Stage]:
    cfg, run_dir = bw.cfg, bw.run_dir
    out = []
    if cfg['teacher']['checkpoint'] is None:  # the later stages read the teacher's latest checkpoint
        out.append(Stage('teacher', bw.train_teacher, lambda: run_finished(run_dir / 'teacher', need_checkpoint=True)))
    out += [Stage('reference', bw.reference, lambda: (run_dir / REFERENCE_FILE).is_file()),
            Stage('blocks', bw.blocks, lambda: (run_dir / TASKS_FILE).is_file())]
    if cfg['fine_tune'] is not None:
        out.append(Stage('fine_tune', bw.fine_tune, lambda: run_finished(run_dir / 'fine_tune')))
    out.append(Stage('report', bw.report))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    args = driver_args(argv, __doc__, prog='recipes/blockwise.py')

    def body() -> int:
        bw = Blockwise(load_blockwise(args.file, args.overrides))
        bw.check()  # before the data cache or any stage's folder is written
        run_stages(stages(bw), log)
        log.info('report: %s', bw.run_dir / 'blockwise.md')
        return 0

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
