"""Compare two trained models of one recipe layer by layer: SVCCA or linear CKA on the recipe's eval data.

    python recipes/compare_models.py -f yamls/fashion_mnist/resnet8.yaml \\
        --a runs/fmnist-resnet8/checkpoints/latest-rank0.pt --b runs/other/checkpoints/latest-rank0.pt \\
        --layers layer1 layer2 layer3 fc --method svcca --out runs/compare [dotted.key=value ...]

Both models are built from the recipe's ``model`` section, take their weights from the two checkpoints (a
Composer checkpoint or a state dict, loaded with ``weights_only=True``) and see the same ``eval_loader`` batches in
the same order. Writes ``similarity.csv``, ``similarity.md`` and ``similarity.png`` (a heat-map) to ``--out``.
Bad input (a missing YAML, data folder or checkpoint, an unknown key or layer name, too few datapoints for a
layer) exits with status 2 and one line ``error: ...``. See ``algorithms/analysis/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any, Union

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python recipes/compare_models.py` runs this file as a script from a checkout
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from algorithms.analysis import CONV_MODES, METHODS, layer_similarity, similarity_heatmap  # noqa: E402
from algorithms.distillation import load_teacher_weights  # noqa: E402
from algorithms.common.feature_taps import resolve_module  # noqa: E402
from recipes.core.checkpoint_safety import checkpoint_error  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.data.registry import build_dataloader, check_data  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.models.registry import build_model  # noqa: E402

log = logging.getLogger('recipes.compare_models')
COLUMNS = ('layer', 'method', 'similarity', 'neurons', 'neurons_b', 'datapoints', 'kept_a', 'kept_b')


def _keep(text: str) -> Union[int, float]:
    """``64`` -> 64 directions; ``0.99`` -> 99% of the variance."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected an int or a float, got {text!r}') from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-f', '--file', required=True, help='the recipe YAML both checkpoints were trained with')
    p.add_argument('--a', required=True, help='checkpoint of model A (the reference)')
    p.add_argument('--b', required=True, help='checkpoint of model B')
    p.add_argument('--layers', nargs='+', required=True, help='dotted module paths, e.g. layer1 layer2 layer3 fc')
    p.add_argument('--method', choices=METHODS, default='svcca')
    p.add_argument('--conv-mode', choices=CONV_MODES, default='positions',
                   help='conv layers: each spatial position a datapoint, or the spatial mean (default %(default)s)')
    p.add_argument('--keep', type=_keep, default=0.99,
                   help='SVCCA: share of variance kept (float) or number of directions (int) (default %(default)s)')
    p.add_argument('--max-datapoints', type=int, default=10_000,
                   help='uniform sample of datapoints per layer, seeded (default %(default)s)')
    p.add_argument('--max-batches', type=int, default=None, help='eval batches used (default: all)')
    p.add_argument('--batch-size', type=int, default=None, help="default: the recipe's global_eval_batch_size")
    p.add_argument('--device', default=None, help="e.g. cpu, cuda (default: cuda when available, else cpu)")
    p.add_argument('--seed', type=int, default=0, help='seeds the datapoint sample (default %(default)s)')
    p.add_argument('--label', default=None, help="the heat-map's column label (default: 'B vs A' file names)")
    p.add_argument('--out', required=True, help='folder for similarity.csv, similarity.md, similarity.png')
    p.add_argument('overrides', nargs='*', help='dotted.key=value pairs merged over the YAML')
    args = p.parse_args(argv)
    # `--layers a b key=value` swallows the overrides that follow it: a module path never holds '='.
    args.overrides = [x for x in args.layers if '=' in x] + args.overrides
    args.layers = [x for x in args.layers if '=' not in x]
    if not args.layers:
        p.error('--layers: no layer name given')
    return args


def _load(cfg: dict[str, Any], path: str, flag: str) -> torch.nn.Module:
    """The recipe's model with the weights at ``path``; every failure (missing, not a checkpoint, unsafe, weights
    that do not fit) one ConfigError naming ``flag``."""
    model = build_model(**cfg['model'])
    try:
        return load_teacher_weights(model, path)
    except Exception as e:  # noqa: BLE001 - see checkpoint_error
        raise checkpoint_error(flag, path, e) from None


def write_results(rows: list[dict[str, Any]], out: Path, args: argparse.Namespace, label: str) -> None:
    """``similarity.csv``, ``similarity.md`` and the heat-map ``similarity.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'similarity.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({k: '' if v is None else v for k, v in row.items()} for row in rows)
    lines = [f'# Layer similarity ({args.method})', '',
             f'A: `{args.a}`; B: `{args.b}`; recipe `{args.file}`; conv mode `{args.conv_mode}`'
             + (f'; keep {args.keep}' if args.method == 'svcca' else '') + '.', '',
             '| layer | similarity | neurons A / B | datapoints | kept A / B |', '|---|---|---|---|---|']
    for r in rows:
        kept = f"{r['kept_a']} / {r['kept_b']}" if r['kept_a'] is not None else '-'
        lines.append(f"| {r['layer']} | {r['similarity']:.4f} | {r['neurons']} / {r['neurons_b']} | "
                     f"{r['datapoints']} | {kept} |")
    (out / 'similarity.md').write_text('\n'.join(lines) + '\n')
    try:
        similarity_heatmap({label: rows}, out / 'similarity.png', title=f'{args.method.upper()} per layer',
                           xlabel='compared models')
    except ImportError as e:
        log.warning('no heat-map: %s', e)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    args = parse_args(argv)
    try:
        cfg = load_config(args.file, args.overrides)
        if not cfg.get('eval_loader'):
            raise ConfigError('eval_loader: the recipe has none; the models are compared on its eval data')
        check_data(cfg['eval_loader'], 'eval_loader')
        model_a, model_b = _load(cfg, args.a, '--a'), _load(cfg, args.b, '--b')
        for model in (model_a, model_b):
            for name in args.layers:
                resolve_module(model, name)
        batch_size = args.batch_size or cfg['global_eval_batch_size'] or cfg['global_train_batch_size']
        loader = build_dataloader(cfg['eval_loader'], batch_size, key='eval_loader')
        logging.getLogger().setLevel(logging.INFO)
        device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
        rows = layer_similarity(model_a, model_b, loader, args.layers, method=args.method, conv_mode=args.conv_mode,
                                keep=args.keep, max_datapoints=args.max_datapoints, max_batches=args.max_batches,
                                device=device, seed=args.seed)
    except KeyError as e:  # an unknown layer name; its message names the closest ones
        sys.stderr.write(f'error: {e.args[0] if e.args else e}\n')
        return 2
    except (ConfigError, FileNotFoundError, ValueError) as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    label = args.label or f'{Path(args.b).name} vs {Path(args.a).name}'
    out = Path(args.out)
    write_results(rows, out, args, label)
    for r in rows:
        log.info('%s: %s %.4f', r['layer'], r['method'], r['similarity'])
    log.info('wrote %s (similarity.csv, similarity.md, similarity.png)', out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
