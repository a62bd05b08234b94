"""Images/s of the recipe's training loop (Composer Trainer, the recipe's loaders and callbacks) against the fastest
bare PyTorch loop we can write for the same model, batch, optimizer and augmentation, side by side in one process.

    .venv/bin/python -m benchmarks.loader_throughput [--recipe yamls/fashion_mnist/resnet8.yaml] [--rounds 4]
        [--steps 60] [--out benchmarks/results/loader_throughput.md] [KEY=VALUE ...]

The bare loop: the model built from the recipe, ``channels_last``, the same optimizer class and settings, batches
gathered from the same in-memory tensors with the same batched crop and flip, forward, cross-entropy (the recipe's
label smoothing), backward, step; nothing else. The two loops alternate in rounds of ``--steps`` steps after one
warm-up round each, so that drift of the machine falls on both; the ratio of their summed times is the result
(goal: the recipe at >= 0.90 of the bare loop). No evaluation, no checkpoints in either. The machine is printed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Optional

import torch

from benchmarks.markdown import table
from benchmarks.standalone import emit

log = logging.getLogger('benchmarks.loader_throughput')


def recipe_trainer(recipe: str, overrides: list[str]) -> Any:
    """The recipe's Trainer, without evaluation or checkpoints, for a long duration (fit is called in chunks)."""
    from recipes.builders import launch, prepare
    from recipes.config import load_config

    cfg = load_config(recipe, [*overrides, 'eval_loader=null', 'save_folder=null', 'progress_bar=false',
                               'max_duration=100000ba', 'run_dir=runs/loader-throughput', 'loggers={}'])
    trainer = launch(prepare(cfg))
    trainer.spin_dataloaders = False  # a fit() chunk that starts mid-epoch must not re-read the batches before it
    return trainer, cfg


def bare_loop(trainer: Any, cfg: dict[str, Any], channels_last: bool = True, compile: bool = False) -> Any:
    """A step function over the recipe's own model copy, optimizer settings and data tensors."""
    import copy

    from recipes import registry

    model = copy.deepcopy(trainer.state.model.module)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = torch.compile(model) if compile else model
    optimizer = registry.build_named('optimizer', registry.OPTIMIZERS, cfg['optimizer'], model.parameters())
    loader = trainer.state.train_dataloader
    dataset, sampler = loader.dataset, copy.copy(loader.sampler)  # its own epoch counter
    smoothing = float((cfg['algorithms'].get('label_smoothing') or {}).get('smoothing', 0.0))
    batches = iter(())

    def step() -> int:
        nonlocal batches
        key = next(batches, None)
        if key is None:
            sampler.set_epoch(sampler.epoch + 1)
            batches = iter(sampler)
            key = next(batches)
        x, y = dataset[key][:2]
        if not channels_last:
            x = x.contiguous()
        loss = torch.nn.functional.cross_entropy(forward(x), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(y)

    return step


def measure(recipe: str, overrides: list[str], rounds: int, steps: int) -> dict[str, Any]:
    trainer, cfg = recipe_trainer(recipe, overrides)
    step = bare_loop(trainer, cfg)
    batch = cfg['global_train_batch_size']
    times: dict[str, list[float]] = {'recipe': [], 'bare': []}
    for r in range(rounds + 1):  # round 0 warms both up and is not counted
        t = time.perf_counter()
        trainer.fit(duration=f'{steps}ba')
        recipe_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(steps):
            step()
        bare_s = time.perf_counter() - t
        if r:
            times['recipe'].append(recipe_s)
            times['bare'].append(bare_s)
        log.info('round %d: recipe %.1f img/s, bare %.1f img/s', r, steps * batch / recipe_s, steps * batch / bare_s)
    trainer.close()
    images = rounds * steps * batch
    recipe_ips, bare_ips = images / sum(times['recipe']), images / sum(times['bare'])
    per_round = [b / r for r, b in zip(times['recipe'], times['bare'])]
    return {'recipe': recipe, 'overrides': overrides, 'batch': batch, 'rounds': rounds, 'steps': steps,
            'recipe_ips': recipe_ips, 'bare_ips': bare_ips, 'ratio': recipe_ips / bare_ips,
            'ratio_per_round': per_round, 'threads': torch.get_num_threads()}


def choices(recipe: str, overrides: list[str], steps: int, rounds: int) -> list[tuple[str, str]]:
    """The bare loop under the settings one might choose between, interleaved in ``rounds`` of ``steps`` after a
    warm-up: contiguous vs ``channels_last``, 1 vs all threads, ``torch.compile`` (its failure reported, not raised)."""
    trainer, cfg = recipe_trainer(recipe, overrides)
    batch, threads = cfg['global_train_batch_size'], torch.get_num_threads()
    settings = (('contiguous (NCHW)', {'channels_last': False}, threads), ('channels_last', {}, threads),
                ('channels_last, 1 thread', {}, 1), ('channels_last + torch.compile', {'compile': True}, threads))
    steps_of, seconds, failed = {}, {name: 0.0 for name, _, _ in settings}, {}
    for r in range(rounds + 1):  # round 0: warm-up (and compilation), not counted
        for name, kwargs, n_threads in settings:
            if name in failed:
                continue
            torch.set_num_threads(n_threads)
            try:
                step = steps_of.setdefault(name, bare_loop(trainer, cfg, **kwargs))
                t = time.perf_counter()
                for _ in range(steps):
                    step()
                if r:
                    seconds[name] += time.perf_counter() - t
            except Exception as e:  # noqa: BLE001 (a setting that does not work here is a result)
                failed[name] = f'failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:120]}'
            finally:
                torch.set_num_threads(threads)
    trainer.close()
    return [(name, failed.get(name) or f'{rounds * steps * batch / seconds[name]:.1f}') for name, _, _ in settings]


def render(result: dict[str, Any], machine: dict[str, Any], cmd: str,
           options: list[tuple[str, str]] | None = None) -> str:
    ok = 'met' if result['ratio'] >= 0.90 else 'not met'
    rounds = ', '.join(f'{r:.3f}' for r in result['ratio_per_round'])
    return '\n'.join([
        '# Training-loop throughput: the recipe vs a bare PyTorch loop', '',
        f'Command: `{cmd}`', '',
        f"Machine: {machine.get('cpu')} ({machine.get('cores')} cores, {result['threads']} torch threads), "
        f"{machine.get('device')}, torch {machine.get('torch')}, Composer {machine.get('composer')}; "
        f"{machine.get('date')}.", '',
        f"Recipe `{result['recipe']}` {' '.join(result['overrides'])}, batch {result['batch']}; "
        f"{result['rounds']} interleaved rounds of {result['steps']} steps each after a warm-up round.", '',
        '| loop | images/s |', '|---|---|',
        f"| recipe (Composer Trainer, in-memory loader, callbacks) | {result['recipe_ips']:.1f} |",
        f"| bare PyTorch (same model channels_last, optimizer, batches) | {result['bare_ips']:.1f} |", '',
        f"**Ratio recipe / bare: {result['ratio']:.3f}** (goal >= 0.90: {ok}); per round: {rounds}.", '',
        *(['## The bare loop under other settings (images/s, the same rounds, interleaved)', '',
           *table(['setting', 'images/s'], options), ''] if options else [])])


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    p = argparse.ArgumentParser(prog='python -m benchmarks.loader_throughput', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--recipe', default='yamls/fashion_mnist/resnet8.yaml')
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--steps', type=int, default=60)
    p.add_argument('--out', help='also write the markdown result here')
    p.add_argument('--choices', action='store_true', help='also time the bare loop contiguous vs channels_last, '
                   'with 1 thread, and under torch.compile')
    p.add_argument('overrides', nargs='*', help='recipe overrides, KEY=VALUE')
    args = p.parse_args(argv)
    from benchmarks.machine import machine_info

    result = measure(args.recipe, args.overrides, args.rounds, args.steps)
    options = choices(args.recipe, args.overrides, args.steps, args.rounds) if args.choices else None
    cmd = ' '.join(['.venv/bin/python -m benchmarks.loader_throughput', *(argv if argv is not None else sys.argv[1:])])
    emit(render(result, machine_info(), cmd, options), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
