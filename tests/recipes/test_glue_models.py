"""``bert_classifier`` (recipes/models/glue_models.py): encoder weights from a real Composer checkpoint of a ``bert_mlm`` run,
errors in one line, and a short fine-tuning through the recipe machinery that learns a separable tiny task."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from recipes.core.errors import ConfigError
from recipes.models.registry import build_model
from tests.helpers.glue_text import TINY, write_glue, write_mlm_checkpoint, write_tiny_tokenizer


@pytest.fixture(scope='module')
def tok(tmp_path_factory) -> str:
    return write_tiny_tokenizer(tmp_path_factory.mktemp('tok'))


@pytest.fixture(scope='module')
def mlm_checkpoint(tmp_path_factory, tok) -> Path:
    return write_mlm_checkpoint(tmp_path_factory.mktemp('mlm'), tok)


def test_encoder_weights_come_from_the_checkpoint_and_the_head_is_fresh(mlm_checkpoint, tok):
    from algorithms.common.checkpoint_loading import safe_load

    saved = safe_load(mlm_checkpoint)['state']['model']
    # no config given: the architecture comes from the checkpoint (hidden 32, 2 layers), not bert-base's default
    model = build_model('bert_classifier', task='sst2', pretrained=str(mlm_checkpoint), tokenizer=tok)
    encoder = model.model.bert.state_dict()
    assert model.model.config.hidden_size == 32 and model.model.config.num_hidden_layers == 2
    loaded = {k.removeprefix('model.bert.'): v for k, v in saved.items() if k.startswith('model.bert.')}
    assert set(loaded) == {k for k in encoder if not k.startswith('pooler.')}  # masked LMs have no pooler
    for key, value in loaded.items():
        assert torch.equal(encoder[key], value), key
    assert model.model.classifier.weight.shape == (2, 32)
    # the head is fresh: a second build with another seed differs in the head only
    torch.manual_seed(1)
    other = build_model('bert_classifier', task='sst2', pretrained=str(mlm_checkpoint), tokenizer=tok)
    assert torch.equal(other.model.bert.encoder.layer[1].output.dense.weight,
                       encoder['encoder.layer.1.output.dense.weight'])
    assert not torch.equal(other.model.classifier.weight, model.model.classifier.weight)


def test_a_bare_state_dict_and_a_classifier_checkpoint_load_too(mlm_checkpoint, tok, tmp_path):
    """A Hugging Face state dict (``bert.`` keys, no config recorded: ``config`` and the fields say the shape) and
    the checkpoint of a fine-tuned classifier (MNLI before RTE: its pooler comes along)."""
    source = build_model('bert_classifier', task='mnli', config='bert-tiny', tokenizer=tok, **TINY)
    bare = tmp_path / 'bare.pt'
    torch.save(source.model.state_dict(), bare)  # bert.embeddings..., bert.pooler..., classifier...
    model = build_model('bert_classifier', task='rte', config='bert-tiny', pretrained=str(bare), tokenizer=tok,
                        **TINY)
    for key, value in source.model.bert.state_dict().items():
        assert torch.equal(model.model.bert.state_dict()[key], value), key
    assert model.model.classifier.weight.shape == (2, 32)  # RTE's head, not MNLI's 3 classes


@pytest.mark.parametrize('options, expected', [
    ({'task': 'sst2', 'pretrained': '/nowhere/ckpt.pt'}, r'^model: pretrained: checkpoint file not found: /nowhere'),
    ({'task': 'sst2', 'num_labels': 3}, r'^model: num_labels: 3 does not fit task sst2, which has 2$'),
    ({'task': 'ax'}, r"^model: task: unknown GLUE task 'ax'; allowed: mnli"),
    ({}, r'^model: task: required \(one of mnli, qqp'),
])
def test_bad_options_are_one_line_errors(options, expected):
    with pytest.raises(ConfigError, match=expected) as excinfo:
        build_model('bert_classifier', config='bert-tiny', **options)
    assert '\n' not in str(excinfo.value)


def test_checkpoints_that_do_not_fit_are_one_line_errors(mlm_checkpoint, tok, tmp_path):
    bare = tmp_path / 'bare.pt'
    small = build_model('bert_classifier', task='sst2', config='bert-tiny', tokenizer=tok, **TINY)
    torch.save(small.model.state_dict(), bare)
    cases = {  # a bare state dict records no config: bert-tiny's hidden size 128 is not the checkpoint's 32
        str(bare): r'^model: pretrained: .*bare.pt does not fit the model: embeddings.word_embeddings.weight is '
                   r'\(25, 32\) in the checkpoint and \(25, 128\) here',
    }
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    cases[str(tmp_path / 'other.pt')] = r'^model: pretrained: .*other.pt holds no BERT encoder weights .*it has weights'
    torch.save({'state': {'model': {}, 'x': Fraction(1, 3)}}, tmp_path / 'unsafe.pt')  # not on the allowlist
    cases[str(tmp_path / 'unsafe.pt')] = r'^model: pretrained: .*unsafe.pt cannot be loaded with weights_only=True'
    for path, expected in cases.items():
        with pytest.raises(ConfigError, match=expected) as excinfo:
            build_model('bert_classifier', task='sst2', config='bert-tiny', pretrained=path, tokenizer=tok)
        assert '\n' not in str(excinfo.value)


def test_fine_tuning_from_yaml_trains_the_checkpoint(mlm_checkpoint, tok, tmp_path):
    """yamls/glue/sst2_local_tiny.yaml through the recipe machinery (glue dataset, dynamic padding, bert_classifier
    from the checkpoint): the fine-tuned encoder moves away from the checkpoint, the training loss falls (12 of the
    16 labels are 1: the labels reach the loss), and the run record holds the task's metric."""
    from algorithms.common.checkpoint_loading import safe_load
    from recipes.core.builders import launch, prepare
    from recipes.core.config import load_config
    from recipes.data.registry import build_dataloader

    rows = [{'sentence': f'the {w} {noun} was {"good" if i >= 4 else "bad"}', 'label': int(i >= 4)}
            for i, (w, noun) in enumerate((w, n) for w in ('film', 'movie', 'plot', 'story') for n in ('fun', 'dull')
                                          for _ in range(2))]
    for split in ('train', 'validation'):
        write_glue(tmp_path / 'glue', 'sst2', split, rows)
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / 'yamls' / 'glue' / 'sst2_local_tiny.yaml', [
        f'train_loader.path={tmp_path / "glue"}', f'train_loader.tokenizer={tok}', 'train_loader.max_seq_len=32',
        f'run_dir={tmp_path / "run"}', f'model.pretrained={mlm_checkpoint}', 'model.hidden_dropout_prob=0.0',
        'model.attention_probs_dropout_prob=0.0', 'save_folder=null', 'global_train_batch_size=8',
        'global_eval_batch_size=16', 'optimizer.lr=3.0e-3', 'max_duration=4ep', 'eval_interval=4ep',
        'progress_bar=false', 'callbacks={}'])
    run = prepare(cfg)
    model = run.trainer_kwargs['model']
    batch = next(iter(build_dataloader({**cfg['eval_loader'], 'split': 'train'}, 16)))

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(dict(batch)).loss)

    before = loss()
    trainer = launch(run)
    trainer.fit()
    trainer.close()
    assert loss() < before
    saved = safe_load(mlm_checkpoint)['state']['model']['model.bert.encoder.layer.0.attention.self.query.weight']
    assert not torch.equal(model.model.bert.encoder.layer[0].attention.self.query.weight, saved)
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert list(summary['final_metrics']) == ['eval/Accuracy'] and summary['step'] == 8
    assert summary['final_metrics']['eval/Accuracy'] * 16 in range(17)  # a count of the 16 examples
