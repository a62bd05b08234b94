"""The blockwise run's report: which layers were replaced (and why the others were not), parameters and MACs per
layer before and after (the seed's table 4.4), teacher vs student test accuracy, the schedule's makespan and energy.

Writes ``<run_dir>/blockwise.json`` (everything, for studies) and ``<run_dir>/blockwise.md`` (the tables).
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch.utils.data import DataLoader

from algorithms.blockwise import accuracy, block_path, load_block, module_macs
from algorithms.callbacks.machine import machine_info
from recipes.data.registry import build_dataset, resolve_options

__all__ = ['write_report', 'layer_rows', 'markdown']

EVAL_ACCURACY = 'eval/MulticlassAccuracy'  # as RunRecord writes it


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_rows(bw: Any) -> list[dict[str, Any]]:
    """One row per replaceable layer: kept or not and why, parameters and MACs before and after."""
    layers = bw.layers()  # also fills bw.costlier
    rows = [{'layer': layer.conv, 'norm': layer.norm, 'in_shape': list(layer.in_shape),
             'out_shape': list(layer.out_shape), 'kept': False,
             'reason': f"not replaced: a {bw.bw['block']} block would cost more MACs", 'params_before': layer.params,
             'params_after': layer.params, 'macs_before': layer.macs, 'macs_after': layer.macs, 'best_epoch': None,
             'seconds': None, 'worker': None} for layer in bw.costlier]
    for layer in layers:
        _, s = load_block(block_path(bw.run_dir / 'blocks', layer.conv))
        kept = bool(s['accepted'])
        best, ref = s['best_accuracy'], s['reference_accuracy']
        why = (f'spliced {best:.2f}% vs teacher {ref:.2f}% on validation' if best is not None and ref is not None
               else 'no check')
        rows.append({'layer': layer.conv, 'norm': layer.norm, 'in_shape': list(layer.in_shape),
                     'out_shape': list(layer.out_shape), 'kept': kept,
                     'reason': ('kept: ' if kept else f'teacher layer stays (drop > {bw.bw["max_drop"]} points): ') + why,
                     'params_before': layer.params, 'params_after': s['block_params'] if kept else layer.params,
                     'macs_before': layer.macs, 'macs_after': s['block_macs'] if kept else layer.macs,
                     'best_epoch': s['best_epoch'], 'seconds': s['seconds'], 'worker': s.get('worker')})
    return rows


def _test_loader(bw: Any) -> DataLoader:
    opts = resolve_options({**bw.recipe['eval_loader'], 'num_workers': 0}, 'eval_loader')
    return DataLoader(build_dataset(opts), batch_size=bw.bw['eval_batch_size'], shuffle=False)


def write_report(bw: Any) -> dict[str, Any]:
    """Measure and write the report of ``bw`` (a :class:`recipes.blockwise.Blockwise` whose blocks exist)."""
    teacher = bw.teacher()
    assembled = bw.student(teacher)
    test = _test_loader(bw)
    shape = bw.input_shape
    models = {
        'teacher': {'test_accuracy': accuracy(teacher, test, bw.device), 'params': _params(teacher),
                    'macs': module_macs(teacher, shape)},
        'assembled': {'test_accuracy': accuracy(assembled, test, bw.device), 'params': _params(assembled),
                      'macs': module_macs(assembled, shape)},
    }
    summary_path = bw.run_dir / 'fine_tune' / 'summary.json'
    if summary_path.is_file():
        final = json.loads(summary_path.read_text())['final_metrics']
        models['student'] = {**models['assembled'], 'test_accuracy': 100.0 * final[EVAL_ACCURACY]}
    tasks = json.loads((bw.run_dir / 'tasks.json').read_text())
    report = {
        'run_name': bw.cfg['run_name'], 'config': bw.cfg, 'layers': layer_rows(bw), 'models': models,
        'reference_val_accuracy': json.loads((bw.run_dir / 'reference.json').read_text())['val_accuracy'],
        'schedule': {k: tasks[k] for k in ('mode', 'policy', 'workers', 'makespan_s', 'startup_s', 'resumed',
                                           'assignment')},
        'energy': tasks.get('energy'),
        'machine': {**machine_info(), 'run_device': str(bw.device)},  # a machine.json session, and the run's device
    }
    (bw.run_dir / 'blockwise.json').write_text(json.dumps(report, indent=1) + '\n')
    (bw.run_dir / 'blockwise.md').write_text(markdown(report))
    return report


def _pct(after: float, before: float) -> str:
    return f'{100.0 * (after - before) / before:+.1f}%' if before else 'n/a'


def models_table(models: dict[str, dict[str, Any]]) -> list[str]:
    """Teacher, assembled and fine-tuned student: accuracy, parameters and MACs, with the changes from the teacher."""
    t = models['teacher']
    lines = ['| model | test accuracy (%) | params | MACs per example |', '|---|---:|---:|---:|']
    for name, m in models.items():
        change = '' if name == 'teacher' else \
            f" ({_pct(m['params'], t['params'])} params, {_pct(m['macs'], t['macs'])} MACs)"
        lines.append(f"| {name} | {m['test_accuracy']:.2f} | {m['params']:,} | {m['macs']:,}{change} |")
    return lines


def machine_line(machine: dict[str, Any]) -> str:
    """``Machine: <CPU>, <n> CPUs, torch <version>, device <run device> (<GPU>).`` from the report's machine session."""
    device = machine['run_device']
    gpu = f" ({machine['device']})" if device.startswith('cuda') else ''
    return f"Machine: {machine['cpu']}, {machine['cores']} CPUs, torch {machine['torch']}, device {device}{gpu}."


def markdown(report: dict[str, Any]) -> str:
    """The report's tables as markdown."""
    lines = [f"# Blockwise distillation: {report['run_name']}", '',
             machine_line(report['machine']), '',
             '| layer | in -> out | kept | params before | params after | MACs before | MACs after | why |',
             '|---|---|---|---:|---:|---:|---:|---|']
    for r in report['layers']:
        lines.append(f"| {r['layer']} | {r['in_shape']} -> {r['out_shape']} | {'yes' if r['kept'] else 'no'} | "
                     f"{r['params_before']:,} | {r['params_after']:,} | {r['macs_before']:,} | {r['macs_after']:,} | "
                     f"{r['reason']} |")
    lines += ['', *models_table(report['models'])]
    s = report['schedule']
    lines += ['', f"Tasks: mode {s['mode']}, policy {s['policy']}, {s['workers']} worker(s), makespan "
              f"{s['makespan_s']:.1f} s (cluster start-up {s['startup_s']:.1f} s not included)"
              + (' (resumed: some blocks had finished earlier)' if s['resumed'] else '') + '.', '']
    return '\n'.join(lines)
