"""Images/s of the recipe's training loop (Composer Trainer, the recipe's loaders and callbacks) against the fastest
bare PyTorch loop we can write for the same model, batch, optimizer and augmentation, side by side in one process.

    .venv/bin/python -m benchmarks.measurements.loader_throughput [--recipe yamls/fashion_mnist/resnet8.yaml] [--rounds 4]
        [--steps 60] [--choices] [--ablations] [--out benchmarks/results/loader_throughput.md] [KEY=VALUE ...]

The bare loop: the model built from the recipe, ``channels_last``, the same optimizer class and settings, batches
gathered from the same in-memory tensors with the same batched crop and flip, forward, cross-entropy (the recipe's
label smoothing), backward, step; nothing else. The two loops alternate in rounds of ``--steps`` steps after one
warm-up round each, their order reversed every other round, so that drift of the machine (and whatever the loop
before leaves behind) falls on both; the ratio of their summed times is the result
(goal: the recipe at >= 0.90 of the bare loop). No evaluation, no checkpoints in either. The machine is printed.
"""
from __future__ import annotations

import copy
import functools
import sys
from typing import Any, Callable, Iterator, Optional

import torch

from benchmarks.core.markdown import table
from benchmarks.core.machine import machine_info
from benchmarks.measurements.timing import emit, header, interleave, markdown, script, typed_command
from recipes.core import registry
from recipes.core.builders import launch, prepare
from recipes.core.config import load_config


def recipe_trainer(recipe: str, overrides: list[str]) -> Any:
    """The recipe's Trainer, without evaluation or checkpoints, for a long duration (fit is called in chunks)."""
    cfg = load_config(recipe, [*overrides, 'eval_loader=null', 'save_folder=null', 'progress_bar=false',
                               'max_duration=100000ba', 'run_dir=runs/loader-throughput', 'loggers={}'])
    trainer = launch(prepare(cfg))
    trainer.spin_dataloaders = False  # a fit() chunk that starts mid-epoch must not re-read the batches before it
    return trainer, cfg


def bare_loop(trainer: Any, cfg: dict[str, Any], channels_last: bool = True,
              compile: bool = False) -> Callable[[], None]:
    """A step function over the recipe's own model copy, optimizer settings and data tensors."""
    model = copy.deepcopy(trainer.state.model.module)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = torch.compile(model) if compile else model
    optimizer = registry.build_named('optimizer', registry.OPTIMIZERS, cfg['optimizer'], model.parameters())
    loader = trainer.state.train_dataloader
    dataset, sampler = loader.dataset, copy.copy(loader.sampler)  # its own epoch counter
    smoothing = float((cfg['algorithms'].get('label_smoothing') or {}).get('smoothing', 0.0))

    def keys() -> Iterator[Any]:  # the sampler's batch keys, epoch after epoch
        while True:
            sampler.set_epoch(sampler.epoch + 1)
            yield from sampler

    batches = keys()

    def step() -> None:
        x, y = dataset[next(batches)][:2]
        if not channels_last:
            x = x.contiguous()
        loss = torch.nn.functional.cross_entropy(forward(x), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(recipe: str, overrides: list[str], rounds: int, steps: int) -> dict[str, Any]:
    """Images/s of the recipe's Trainer and of the bare loop, ``rounds`` interleaved rounds after a warm-up."""
    trainer, cfg = recipe_trainer(recipe, overrides)
    step = bare_loop(trainer, cfg)
    times = interleave({'recipe': lambda: trainer.fit(duration=f'{steps}ba'),
                        'bare': lambda: [step() for _ in range(steps)]}, rounds, alternate=True)
    trainer.close()
    batch = cfg['global_train_batch_size']
    recipe_ips, bare_ips = (rounds * steps * batch / sum(times[name]) for name in ('recipe', 'bare'))
    return {'recipe': recipe, 'overrides': overrides, 'batch': batch, 'rounds': rounds, 'steps': steps,
            'recipe_ips': recipe_ips, 'bare_ips': bare_ips, 'ratio': recipe_ips / bare_ips,
            'ratio_per_round': [b / r for r, b in zip(times['recipe'], times['bare'])]}


def choices(recipe: str, overrides: list[str], steps: int, rounds: int) -> list[tuple[str, str]]:
    """The bare loop under the settings one might choose between, interleaved in ``rounds`` of ``steps`` after a
    warm-up: contiguous vs ``channels_last``, 1 vs all threads, ``torch.compile`` (its failure reported, not raised)."""
    trainer, cfg = recipe_trainer(recipe, overrides)
    threads = torch.get_num_threads()
    settings = {'contiguous (NCHW)': ({'channels_last': False}, threads), 'channels_last': ({}, threads),
                'channels_last, 1 thread': ({}, 1), 'channels_last + torch.compile': ({'compile': True}, threads)}
    loops = {name: (bare_loop(trainer, cfg, **kwargs), n_threads) for name, (kwargs, n_threads) in settings.items()}
    failed: dict[str, str] = {}

    def run(name: str) -> None:  # one round of one setting; the warm-up round compiles
        step, n_threads = loops[name]
        if name in failed:
            return
        torch.set_num_threads(n_threads)
        try:
            for _ in range(steps):
                step()
        except Exception as e:  # noqa: BLE001 (a setting that does not work here is a result)
            failed[name] = f'failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:120]}'
        finally:
            torch.set_num_threads(threads)

    times = interleave({name: functools.partial(run, name) for name in settings}, rounds)
    trainer.close()
    images = rounds * steps * cfg['global_train_batch_size']
    return [(name, failed.get(name) or f'{images / sum(times[name]):.1f}') for name in settings]


def _composer_label_smoothing(trainer: Any) -> bool:
    """Swap the recipe's fused label smoothing for Composer's soft-target one (same settings); False if it has none."""
    from composer.algorithms import LabelSmoothing as Composer

    from algorithms.label_smoothing import LabelSmoothing
    algos = trainer.state.algorithms
    found = [i for i, a in enumerate(algos) if isinstance(a, LabelSmoothing)]
    for i in found:
        algos[i] = Composer(smoothing=algos[i].smoothing, target_key=algos[i].target_key)
    return bool(found)


def _no_train_metrics(trainer: Any) -> bool:
    had = bool(trainer.state.train_metrics)
    trainer.state.train_metrics = {}  # Composer skips the training-accuracy update when there is none
    return had


ABLATIONS = {'recipe as configured': None,
             "recipe with Composer's LabelSmoothing (soft targets)": _composer_label_smoothing,
             'recipe without the training-accuracy metric': _no_train_metrics}


def ablations(recipe: str, overrides: list[str], steps: int, rounds: int) -> list[tuple[str, str, str]]:
    """Where the recipe's time beyond the bare loop goes: the recipe as configured, with Composer's soft-target label
    smoothing in place of the fused one, and without its training-accuracy metric, each a Trainer of its own, and
    the bare loop, interleaved in ``rounds`` of ``steps`` after a warm-up; images/s and the ratio to the bare loop. A
    change the recipe gives no room for (no label smoothing, no training metric) is left out."""
    trainers = {}
    for name, change in ABLATIONS.items():
        trainer, cfg = recipe_trainer(recipe, overrides)
        if change is None or change(trainer):
            trainers[name] = trainer
        else:
            trainer.close()
    step = bare_loop(trainers['recipe as configured'], cfg)
    fns: dict[str, Callable[[], Any]] = {name: functools.partial(t.fit, duration=f'{steps}ba')
                                         for name, t in trainers.items()}
    fns['bare PyTorch loop'] = lambda: [step() for _ in range(steps)]
    times = interleave(fns, rounds, alternate=True)
    for t in trainers.values():
        t.close()
    images = rounds * steps * cfg['global_train_batch_size']
    bare = sum(times['bare PyTorch loop'])
    return [(name, f'{images / sum(times[name]):.1f}', f'{bare / sum(times[name]):.3f}') for name in fns]


def render(result: dict[str, Any], machine: dict[str, Any], cmd: str,
           options: list[tuple[str, str]] | None = None, parts: list[tuple[str, str, str]] | None = None) -> str:
    ok = 'met' if result['ratio'] >= 0.90 else 'not met'
    rounds = ', '.join(f'{r:.3f}' for r in result['ratio_per_round'])
    return markdown([
        *header('Training-loop throughput: the recipe vs a bare PyTorch loop', cmd, machine, threads=True),
        f"Recipe `{result['recipe']}` {' '.join(result['overrides'])}, batch {result['batch']}; "
        f"{result['rounds']} interleaved rounds of {result['steps']} steps each after a warm-up round, the order "
        'reversed every other round.', '',
        '| loop | images/s |', '|---|---|',
        f"| recipe (Composer Trainer, in-memory loader, callbacks) | {result['recipe_ips']:.1f} |",
        f"| bare PyTorch (same model channels_last, optimizer, batches) | {result['bare_ips']:.1f} |", '',
        f"**Ratio recipe / bare: {result['ratio']:.3f}** (goal >= 0.90: {ok}); per round: {rounds}.",
        *(['', '## The bare loop under other settings (images/s, the same rounds, interleaved)', '',
           *table(['setting', 'images/s'], options)] if options else []),
        *(['', '## Where the recipe\'s time goes (each a Trainer of its own; the same rounds, interleaved)', '',
           *table(['loop', 'images/s', 'ratio to the bare loop'], parts)] if parts else [])])


def main(argv: Optional[list[str]] = None) -> int:
    p = script('loader_throughput', __doc__)
    p.add_argument('--recipe', default='yamls/fashion_mnist/resnet8.yaml')
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--steps', type=int, default=60)
    p.add_argument('--out', help='also write the markdown result here')
    p.add_argument('--choices', action='store_true', help='also time the bare loop contiguous vs channels_last, '
                   'with 1 thread, and under torch.compile')
    p.add_argument('--ablations', action='store_true', help="also time the recipe with Composer's soft-target label "
                   'smoothing and without its training-accuracy metric, beside the bare loop')
    p.add_argument('overrides', nargs='*', help='recipe overrides, KEY=VALUE')
    args = p.parse_args(argv)
    result = measure(args.recipe, args.overrides, args.rounds, args.steps)
    options = choices(args.recipe, args.overrides, args.steps, args.rounds) if args.choices else None
    parts = ablations(args.recipe, args.overrides, args.steps, args.rounds) if args.ablations else None
    emit(render(result, machine_info(), typed_command('loader_throughput', argv), options, parts), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
